import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import os from 'node:os';
import { hashChunks, type ChunkTask } from './hash-pool.ts';
import { CRIU_DIR, type FileDigest } from './manifest.ts';

/**
 * How the store hashes artifact files. A CRIU image of a GPU process is one pages file of the size of the
 * GPU memory (19 GB for 16 GiB): hashed on one thread that took 20-27 s, the largest single cost of a
 * checkpoint and of a restore. Such files are hashed as fixed-size chunks on worker threads; the dozens
 * of small files of any image are hashed whole on the main thread as before (no worker is started for them).
 */
export interface HashingOptions {
  /** CRIU image files larger than this are hashed (and recorded) as chunks of this many bytes. */
  chunkBytes: number;
  /** worker threads of one hashing call */
  maxWorkers: number;
}

export const DEFAULT_CHUNK_BYTES = 64 << 20;
/**
 * On the H100 node (16 cores, SHA-NI) sha256 from the page cache ran at 1.05 GB/s on one worker, 6.7 on 8 and
 * 10.2 on 16 (docs/gpu.md): still gaining at 16, so the cap only keeps a large node from starting dozens.
 */
const MAX_HASH_WORKERS = 16;

export function defaultHashingOptions(): HashingOptions {
  return { chunkBytes: DEFAULT_CHUNK_BYTES, maxWorkers: Math.max(1, Math.min(os.availableParallelism(), MAX_HASH_WORKERS)) };
}

/** How one file is hashed: whole, or in chunks of `chunkBytes` (the last one shorter). */
export type HashLayout = { kind: 'whole' } | { kind: 'chunked'; chunkBytes: number };

/**
 * The layout a new checkpoint records for a file. The rootfs diff and the spec stay whole: the diff's
 * sha256 is its content digest in containerd, which a restore hands to containerd as it is.
 */
export function layoutFor(rel: string, size: number, chunkBytes: number): HashLayout {
  return rel.startsWith(`${CRIU_DIR}/`) && size > chunkBytes ? { kind: 'chunked', chunkBytes } : { kind: 'whole' };
}

/** The layout a recorded digest was made with, for re-hashing the file the same way. */
export function layoutOf(digest: FileDigest): HashLayout {
  return 'chunkSha256' in digest ? { kind: 'chunked', chunkBytes: digest.chunkBytes } : { kind: 'whole' };
}

/** The byte ranges [start, start + length) of a chunked file of `size` bytes; none for an empty file. */
export function chunkRanges(size: number, chunkBytes: number): { start: number; length: number }[] {
  const ranges: { start: number; length: number }[] = [];
  for (let start = 0; start < size; start += chunkBytes) ranges.push({ start, length: Math.min(chunkBytes, size - start) });
  return ranges;
}

export interface HashRequest {
  /** absolute path */
  file: string;
  size: number;
  layout: HashLayout;
}

/**
 * Hashes every file as its layout says: the chunks of all chunked files on one worker pool, the whole
 * files side by side on the main thread meanwhile. Results keep the order of `requests`.
 */
export async function hashFiles(requests: HashRequest[], options: HashingOptions): Promise<FileDigest[]> {
  const tasks: ChunkTask[] = [];
  const firstTask = requests.map((request) => {
    const first = tasks.length;
    if (request.layout.kind === 'chunked') {
      for (const range of chunkRanges(request.size, request.layout.chunkBytes)) tasks.push({ file: request.file, ...range });
    }
    return first;
  });
  const wholeIndexes = requests.flatMap((request, index) => (request.layout.kind === 'whole' ? [index] : []));
  const [chunkDigests, wholeDigests] = await Promise.all([
    hashChunks(tasks, options.maxWorkers),
    mapConcurrently(wholeIndexes, (index) => sha256File(requests[index]!.file)),
  ]);
  const whole = new Map(wholeIndexes.map((index, i) => [index, wholeDigests[i]!]));
  return requests.map((request, index): FileDigest => {
    if (request.layout.kind === 'whole') return { sha256: whole.get(index)! };
    const count = chunkRanges(request.size, request.layout.chunkBytes).length;
    return { chunkBytes: request.layout.chunkBytes, chunkSha256: chunkDigests.slice(firstTask[index], firstTask[index]! + count) };
  });
}

/**
 * Whole files hashed side by side: a CRIU image is dozens of small files, and one at a time each waits for
 * its own open/read/close round trips through libuv's pool (about 1 ms apiece on a loaded node). Bounded so
 * that many files do not hold one 1 MiB read buffer each at once. Results keep the input order.
 */
const WHOLE_FILE_CONCURRENCY = 8;

async function mapConcurrently<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(WHOLE_FILE_CONCURRENCY, items.length) }, worker));
  return results;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
