import { Worker } from 'node:worker_threads';

/** One byte range of a file to hash. */
export interface ChunkTask {
  file: string;
  start: number;
  length: number;
}

/**
 * Bytes read from `source` at each piece's `from`, hashed in order and, when `target` is set, written to
 * it at the piece's `to`. Source and target are paths: a file, or /proc/<pid>/mem, whose positions are
 * the process's addresses (how the agent copies process memory to an image file and back).
 */
export interface CopyTask {
  source: string;
  target: string | null;
  pieces: { from: number; to: number; length: number }[];
  /** false: copy only (the bytes are verified elsewhere); the task's result is then '' */
  hash?: boolean;
}

/** A worker could not read or write its range (the file shrank, the process is gone, the address is not mapped). */
export class ChunkReadError extends Error {
  readonly task: CopyTask;
  readonly code: string | undefined;

  constructor(task: CopyTask, message: string, code: string | undefined) {
    const first = task.pieces[0];
    const last = task.pieces.at(-1);
    const range = first && last ? ` bytes ${first.from}-${last.from + last.length - 1}` : '';
    super(`${task.source}${range}${task.target ? ` -> ${task.target}` : ''}: ${message}`);
    this.name = 'ChunkReadError';
    this.task = task;
    this.code = code;
  }
}

/** Bytes one worker moves at a time: big enough for few syscalls, small enough that N workers hold little. */
const BUFFER_BYTES = 4 << 20;

/**
 * The worker's whole program, run with `eval`: plain JavaScript, so that it works the same under tsx, in
 * the built agent and in an esbuild bundle (a worker file beside the module would be lost in a bundle).
 * Synchronous reads and writes are right here: the worker has nothing else to do, and the libuv pool (4
 * threads by default) would otherwise cap the parallelism. The bytes are hashed from the buffer they are
 * written from, so a copy is hashed exactly as it was written.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, writeSync, closeSync } = require('node:fs');
const buffer = Buffer.allocUnsafe(${BUFFER_BYTES});
parentPort.on('message', ({ index, source, target, pieces, hash: hashing }) => {
  try {
    const hash = hashing === false ? null : createHash('sha256');
    const from = openSync(source, 'r');
    let to = -1;
    try {
      if (target !== null) to = openSync(target, 'r+');
      for (const piece of pieces) {
        let done = 0;
        while (done < piece.length) {
          const read = readSync(from, buffer, 0, Math.min(buffer.length, piece.length - done), piece.from + done);
          if (read === 0) throw Object.assign(new Error('source ends at byte ' + (piece.from + done)), { code: 'ESHORT' });
          if (hash) hash.update(buffer.subarray(0, read));
          if (to >= 0) for (let written = 0; written < read; ) written += writeSync(to, buffer, written, read - written, piece.to + done + written);
          done += read;
        }
      }
    } finally {
      closeSync(from);
      if (to >= 0) closeSync(to);
    }
    parentPort.postMessage({ index, sha256: hash ? hash.digest('hex') : '' });
  } catch (err) {
    parentPort.postMessage({ index, error: String(err && err.message), code: err && err.code });
  }
});
`;

type WorkerReply = { index: number; sha256: string } | { index: number; error: string; code?: string };

/**
 * Runs copy-and-hash tasks on up to `maxWorkers` worker threads, started for this call and ended with it
 * (an idle agent holds no threads), and resolves with the sha256 of each task's bytes in the order of
 * `tasks` ('' for copy-only tasks). Tasks start in the order given. The first failure ends every worker
 * and rejects.
 */
export async function copyAndHashChunks(tasks: CopyTask[], maxWorkers: number): Promise<string[]> {
  if (tasks.length === 0) return [];
  const results = new Array<string>(tasks.length);
  const workers = Array.from({ length: Math.max(1, Math.min(maxWorkers, tasks.length)) }, () => new Worker(WORKER_SOURCE, { eval: true }));
  let next = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let pending = tasks.length;
      const feed = (worker: Worker): void => {
        if (next >= tasks.length) return;
        const index = next++;
        worker.postMessage({ index, ...tasks[index]! });
      };
      for (const worker of workers) {
        worker.on('message', (reply: WorkerReply) => {
          if ('error' in reply) {
            reject(new ChunkReadError(tasks[reply.index]!, reply.error, reply.code));
            return;
          }
          results[reply.index] = reply.sha256;
          if (--pending === 0) resolve();
          else feed(worker);
        });
        worker.on('error', reject);
        worker.on('exit', (code) => {
          if (pending > 0) reject(new Error(`hash worker exited with code ${code} before the work was done`));
        });
        feed(worker);
      }
    });
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
  return results;
}

/** Hashes byte ranges of files with sha256 on up to `maxWorkers` worker threads; results keep the order of `tasks`. */
export async function hashChunks(tasks: ChunkTask[], maxWorkers: number): Promise<string[]> {
  return copyAndHashChunks(
    tasks.map(({ file, start, length }) => ({ source: file, target: null, pieces: [{ from: start, to: 0, length }] })),
    maxWorkers,
  );
}
