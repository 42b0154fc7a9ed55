import fs from 'node:fs/promises';
import path from 'node:path';
import { CorruptArtifactError } from '../errors.ts';
import { copyAndHashChunks, type CopyTask } from '../store/hash-pool.ts';
import { insidePrivateAnonymous, parseMaps, totalBytes, type MemoryRange } from './maps.ts';
import { ProcessControlError, type StoppedProcess } from './stopped-process.ts';

/**
 * A memory image: ranges of one process's memory written one after the other into a file, recorded as the
 * sha256 of each `chunkBytes` range of the file (the store's chunked layout, so that the manifest takes
 * the digests as they are and a restore verifies each chunk while it writes it back).
 */
export interface MemoryImageDigest {
  size: number;
  chunkBytes: number;
  chunkSha256: string[];
}

export interface MemoryImageOptions {
  chunkBytes: number;
  maxWorkers: number;
  /** /proc, where /proc/<pid>/mem and maps are */
  procRoot?: string;
}

/** One chunk of an image file and where its bytes are in the process: `pieces` in file order. */
export interface ImageChunk {
  fileOffset: number;
  length: number;
  pieces: { address: number; fileOffset: number; length: number }[];
}

/** Cuts the ranges, laid out one after the other in a file, into chunks of `chunkBytes` (the last one shorter). */
export function planChunks(ranges: readonly MemoryRange[], chunkBytes: number): ImageChunk[] {
  const chunks: ImageChunk[] = [];
  let fileOffset = 0;
  for (const range of ranges) {
    let done = 0;
    while (done < range.length) {
      let chunk = chunks.at(-1);
      if (!chunk || chunk.length === chunkBytes) {
        chunk = { fileOffset, length: 0, pieces: [] };
        chunks.push(chunk);
      }
      const length = Math.min(range.length - done, chunkBytes - chunk.length);
      chunk.pieces.push({ address: range.start + done, fileOffset, length });
      chunk.length += length;
      fileOffset += length;
      done += length;
    }
  }
  return chunks;
}

/** What to save of (or fill into) one process. */
export interface ProcessImage {
  pid: number;
  ranges: MemoryRange[];
  /** absolute path of the image file */
  file: string;
}

function memPath(options: MemoryImageOptions, pid: number): string {
  return path.join(options.procRoot ?? '/proc', String(pid), 'mem');
}

/**
 * Copies each process's ranges into a new image file (0600), all chunks of all processes on one worker
 * pool, and returns each image's chunk digests. The processes must not change those ranges meanwhile (their
 * threads are stopped, or the memory is the CUDA driver's host copy, which only the driver touches).
 */
export async function saveMemoryImages(images: readonly ProcessImage[], options: MemoryImageOptions): Promise<MemoryImageDigest[]> {
  const plans = images.map((image) => planChunks(image.ranges, options.chunkBytes));
  await Promise.all(
    images.map(async (image) => {
      const handle = await fs.open(image.file, 'wx', 0o600);
      try {
        await handle.truncate(totalBytes(image.ranges));
      } finally {
        await handle.close();
      }
    }),
  );
  const tasks: CopyTask[] = images.flatMap((image, i) =>
    plans[i]!.map((chunk) => ({
      source: memPath(options, image.pid),
      target: image.file,
      pieces: chunk.pieces.map((piece) => ({ from: piece.address, to: piece.fileOffset, length: piece.length })),
    })),
  );
  // A half-written image is never left behind for a caller that retries into the same place.
  const digests = await copyAndHashChunks(tasks, options.maxWorkers).catch(async (err: unknown) => {
    await Promise.all(images.map((image) => fs.rm(image.file, { force: true })));
    throw err;
  });
  let next = 0;
  return images.map((image, i) => {
    const chunkSha256 = digests.slice(next, next + plans[i]!.length);
    next += plans[i]!.length;
    return { size: totalBytes(image.ranges), chunkBytes: options.chunkBytes, chunkSha256 };
  });
}

/**
 * Writes each image back into its process's memory, verifying every chunk against its digest as it goes.
 * Refuses before writing anything when an image's size differs from its ranges or a range is not private
 * anonymous memory of the process (a foreign or edited artifact). A chunk that differs from its digest is
 * a CorruptArtifactError naming the file and chunk: the process then holds those wrong bytes and must not
 * be resumed by the caller.
 */
export async function fillMemoryImages(images: readonly (ProcessImage & { digest: MemoryImageDigest })[], options: MemoryImageOptions): Promise<void> {
  for (const image of images) {
    const size = await fs.stat(image.file).then((stat) => stat.size, () => -1);
    if (size !== image.digest.size || totalBytes(image.ranges) !== image.digest.size) {
      throw new CorruptArtifactError(`memory image ${image.file} is ${size} bytes, its ranges need ${totalBytes(image.ranges)} and the manifest records ${image.digest.size}`, {
        file: image.file,
        pid: image.pid,
      });
    }
    const maps = parseMaps(await fs.readFile(path.join(options.procRoot ?? '/proc', String(image.pid), 'maps'), 'utf8'));
    if (!insidePrivateAnonymous(image.ranges, maps)) {
      throw new CorruptArtifactError(`memory image ${image.file} names ranges that are not private anonymous memory of process ${image.pid}`, { file: image.file, pid: image.pid });
    }
  }
  const plans = images.map((image) => planChunks(image.ranges, image.digest.chunkBytes));
  images.forEach((image, i) => {
    if (plans[i]!.length !== image.digest.chunkSha256.length) {
      throw new CorruptArtifactError(`memory image ${image.file} has ${plans[i]!.length} chunks, the manifest records ${image.digest.chunkSha256.length}`, { file: image.file });
    }
  });
  const tasks: CopyTask[] = images.flatMap((image, i) =>
    plans[i]!.map((chunk) => ({
      source: image.file,
      target: memPath(options, image.pid),
      pieces: chunk.pieces.map((piece) => ({ from: piece.fileOffset, to: piece.address, length: piece.length })),
    })),
  );
  const digests = await copyAndHashChunks(tasks, options.maxWorkers);
  let next = 0;
  for (const [i, image] of images.entries()) {
    const chunks = plans[i]!;
    const bad = chunks.flatMap((chunk, c) => (digests[next + c] === image.digest.chunkSha256[c] ? [] : [{ index: c, chunk }]));
    next += chunks.length;
    if (bad.length > 0) {
      const { index, chunk } = bad[0]!;
      throw new CorruptArtifactError(
        `memory image ${image.file}: checksum of chunk ${index} (bytes ${chunk.fileOffset}-${chunk.fileOffset + chunk.length - 1})${bad.length > 1 ? ` and ${bad.length - 1} more chunks` : ''} differs from the manifest`,
        { file: image.file, pid: image.pid, chunks: bad.map((b) => b.index) },
      );
    }
  }
}

const SYS_MADVISE = 28;
const MADV_DONTNEED = 4;

/**
 * Frees the ranges in the stopped process (madvise MADV_DONTNEED, run by one of its threads): the mappings
 * stay, their pages are gone and read as zeros until written again. CRIU then dumps them as empty.
 */
export async function releaseMemory(stopped: StoppedProcess, ranges: readonly MemoryRange[]): Promise<void> {
  for (const range of ranges) {
    const result = await stopped.syscall(SYS_MADVISE, [range.start, range.length, MADV_DONTNEED]);
    if (result !== 0) {
      throw new ProcessControlError(`madvise(MADV_DONTNEED) of ${range.length} bytes at 0x${range.start.toString(16)} in process ${stopped.pid} failed: errno ${-result}`, {
        pid: stopped.pid,
        errno: -result,
      });
    }
  }
}
