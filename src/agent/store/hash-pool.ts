import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** One byte range of a file to hash. */
export interface ChunkTask {
  file: string;
  start: number;
  length: number;
}

/**
 * Where a task reads or writes: a file (positions are offsets) or a process's memory (positions are its
 * addresses, moved with process_vm_readv/writev: one page-table walk and lock round per 16 pages, where
 * /proc/<pid>/mem takes one per 4 KiB page).
 */
export type Endpoint = { file: string } | { pid: number };

/**
 * Bytes read from `source` at each piece's `from`, hashed in order and, when `target` is set, written to
 * it at the piece's `to` (how the agent copies process memory to an image file and back).
 */
export interface CopyTask {
  source: Endpoint;
  target: Endpoint | null;
  pieces: { from: number; to: number; length: number }[];
  /** false: copy only (the bytes are verified elsewhere); the task's result is then '' */
  hash?: boolean;
}

function describeEndpoint(endpoint: Endpoint): string {
  return 'file' in endpoint ? endpoint.file : `memory of process ${endpoint.pid}`;
}

/** A worker could not read or write its range (the file shrank, the process is gone, the address is not mapped). */
export class ChunkReadError extends Error {
  readonly task: CopyTask;
  readonly code: string | undefined;

  constructor(task: CopyTask, message: string, code: string | undefined) {
    const first = task.pieces[0];
    const last = task.pieces.at(-1);
    const range = first && last ? ` bytes ${first.from}-${last.from + last.length - 1}` : '';
    super(`${describeEndpoint(task.source)}${range}${task.target ? ` -> ${describeEndpoint(task.target)}` : ''}: ${message}`);
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
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, writeSync, closeSync } = require('node:fs');
const buffer = Buffer.allocUnsafe(${BUFFER_BYTES});
let processVm;
function processMemory() {
  if (!processVm) {
    const koffi = require(workerData.koffi);
    const libc = koffi.load('libc.so.6');
    const LocalIov = koffi.struct('LocalIov', { base: 'void *', len: 'size_t' });
    const RemoteIov = koffi.struct('RemoteIov', { base: 'uint64_t', len: 'size_t' });
    const signature = '(int pid, const LocalIov *local, unsigned long lcount, const RemoteIov *remote, unsigned long rcount, unsigned long flags)';
    processVm = { read: libc.func('intptr_t process_vm_readv' + signature), write: libc.func('intptr_t process_vm_writev' + signature), errno: () => koffi.errno() };
  }
  return processVm;
}
// An endpoint moves bytes between the worker's buffer and a file or a process's memory, at a position.
function open(endpoint, flags) {
  if ('file' in endpoint) {
    const fd = openSync(endpoint.file, flags);
    return {
      read: (length, position) => readSync(fd, buffer, 0, length, position),
      write: (offset, length, position) => writeSync(fd, buffer, offset, length, position),
      close: () => closeSync(fd),
    };
  }
  const vm = processMemory();
  const move = (call, local, position) => {
    const done = Number(vm[call](endpoint.pid, [{ base: local, len: local.length }], 1, [{ base: BigInt(position), len: local.length }], 1, 0));
    if (done >= 0) return done;
    const errno = vm.errno();
    throw Object.assign(new Error('process_vm_' + call + 'v of process ' + endpoint.pid + ' at 0x' + position.toString(16) + ' failed: errno ' + errno), { code: 'E' + errno });
  };
  return {
    read: (length, position) => move('read', buffer.subarray(0, length), position),
    write: (offset, length, position) => move('write', buffer.subarray(offset, offset + length), position),
    close: () => undefined,
  };
}
parentPort.on('message', ({ index, source, target, pieces, hash: hashing }) => {
  let from;
  let to;
  try {
    const hash = hashing === false ? null : createHash('sha256');
    from = open(source, 'r');
    if (target !== null) to = open(target, 'r+');
    for (const piece of pieces) {
      let done = 0;
      while (done < piece.length) {
        const read = from.read(Math.min(buffer.length, piece.length - done), piece.from + done);
        if (read === 0) throw Object.assign(new Error('source ends at byte ' + (piece.from + done)), { code: 'ESHORT' });
        if (hash) hash.update(buffer.subarray(0, read));
        if (to) for (let written = 0; written < read; ) written += to.write(written, read - written, piece.to + done + written);
        done += read;
      }
    }
    parentPort.postMessage({ index, sha256: hash ? hash.digest('hex') : '' });
  } catch (err) {
    parentPort.postMessage({ index, error: String(err && err.message), code: err && err.code });
  } finally {
    if (from) from.close();
    if (to) to.close();
  }
});
`;

/** koffi's entry, for workers that move process memory (resolved here: an eval'd worker has no module path of its own). */
const koffiEntry = (): string => createRequire(import.meta.url).resolve('koffi');

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
  const workerData = { koffi: tasks.some((task) => 'pid' in task.source || (task.target && 'pid' in task.target)) ? koffiEntry() : null };
  const workers = Array.from({ length: Math.max(1, Math.min(maxWorkers, tasks.length)) }, () => new Worker(WORKER_SOURCE, { eval: true, workerData }));
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
    tasks.map(({ file, start, length }) => ({ source: { file }, target: null, pieces: [{ from: start, to: 0, length }] })),
    maxWorkers,
  );
}
