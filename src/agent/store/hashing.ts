import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import { hashChunks } from './hash-pool.ts';
import { CRIU_DIR, isHostCopyPath, type FileDigest } from './manifest.ts';

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
 * sha256 is its content digest in containerd, which a restore hands to containerd as it is. Host copies
 * are always chunked: a restore verifies them chunk by chunk while it writes them back.
 */
export function layoutFor(rel: string, size: number, chunkBytes: number): HashLayout {
  if (isHostCopyPath(rel)) return { kind: 'chunked', chunkBytes };
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

export interface FileToHash {
  /** absolute path */
  file: string;
  /** how to hash the file, given its size on disk; undefined: do not hash it (e.g. its size is already wrong) */
  layout: (size: number) => HashLayout | undefined;
}

export interface HashedFile {
  size: number;
  digest?: FileDigest;
}

/**
 * Stats and hashes every file as its layout says. Whole files are hashed in the same lane as their stat,
 * side by side on the main thread (as for a CPU container's small image files, whose verify must stay
 * ~30 ms); the chunks of all chunked files then go to one worker pool. Results keep the input order.
 */
export async function statAndHashFiles(files: FileToHash[], options: HashingOptions): Promise<HashedFile[]> {
  const chunked: { index: number; ranges: { start: number; length: number }[]; chunkBytes: number }[] = [];
  const results = await mapConcurrently(files, async ({ file, layout }, index): Promise<HashedFile> => {
    const { size } = await fs.stat(file);
    const chosen = layout(size);
    if (chosen?.kind === 'whole') return { size, digest: { sha256: await sha256File(file) } };
    if (chosen?.kind === 'chunked') chunked.push({ index, ranges: chunkRanges(size, chosen.chunkBytes), chunkBytes: chosen.chunkBytes });
    return { size };
  });
  const digests = await hashChunks(
    chunked.flatMap(({ index, ranges }) => ranges.map((range) => ({ file: files[index]!.file, ...range }))),
    options.maxWorkers,
  );
  let next = 0;
  for (const { index, ranges, chunkBytes } of chunked) {
    results[index]!.digest = { chunkBytes, chunkSha256: digests.slice(next, next + ranges.length) };
    next += ranges.length;
  }
  return results;
}

/**
 * Whole files hashed side by side: a CRIU image is dozens of small files, and one at a time each waits for
 * its own open/read/close round trips through libuv's pool (about 1 ms apiece on a loaded node). Bounded so
 * that many files do not hold one 1 MiB read buffer each at once. Results keep the input order.
 */
const WHOLE_FILE_CONCURRENCY = 8;

async function mapConcurrently<T, R>(items: T[], fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, index);
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
