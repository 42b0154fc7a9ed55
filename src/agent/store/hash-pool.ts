import { Worker } from 'node:worker_threads';

/** One byte range of a file to hash. */
export interface ChunkTask {
  file: string;
  start: number;
  length: number;
}

/** A worker could not read its range (the file shrank after its size was checked, or it is unreadable). */
export class ChunkReadError extends Error {
  readonly task: ChunkTask;
  readonly code: string | undefined;

  constructor(task: ChunkTask, message: string, code: string | undefined) {
    super(`${task.file} bytes ${task.start}-${task.start + task.length - 1}: ${message}`);
    this.name = 'ChunkReadError';
    this.task = task;
    this.code = code;
  }
}

/** Bytes one worker reads at a time: big enough for few syscalls, small enough that N workers hold little. */
const READ_BYTES = 4 << 20;

/**
 * The worker's whole program, run with `eval`: plain JavaScript, so that it works the same under tsx, in
 * the built agent and in an esbuild bundle (a worker file beside the module would be lost in a bundle).
 * Synchronous reads are right here: the worker has nothing else to do, and the libuv pool (4 threads by
 * default) would otherwise cap the parallelism.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const buffer = Buffer.allocUnsafe(${READ_BYTES});
parentPort.on('message', ({ index, file, start, length }) => {
  try {
    const hash = createHash('sha256');
    const fd = openSync(file, 'r');
    try {
      let done = 0;
      while (done < length) {
        const read = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), start + done);
        if (read === 0) throw Object.assign(new Error('file ends at byte ' + (start + done)), { code: 'ESHORT' });
        hash.update(buffer.subarray(0, read));
        done += read;
      }
    } finally {
      closeSync(fd);
    }
    parentPort.postMessage({ index, sha256: hash.digest('hex') });
  } catch (err) {
    parentPort.postMessage({ index, error: String(err && err.message), code: err && err.code });
  }
});
`;

type WorkerReply = { index: number; sha256: string } | { index: number; error: string; code?: string };

/**
 * Hashes byte ranges with sha256 on up to `maxWorkers` worker threads, started for this call and ended
 * with it (an idle agent holds no threads). Results keep the order of `tasks`. The first failure ends
 * every worker and rejects.
 */
export async function hashChunks(tasks: ChunkTask[], maxWorkers: number): Promise<string[]> {
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
