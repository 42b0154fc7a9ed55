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
  /** /proc, where the processes' maps are */
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

/**
 * Cuts ranges into consecutive groups of at most `segmentBytes` (a range cut where a group is full), one
 * image file each: a buffered write takes the file's inode lock (tmpfs, ext4), so workers writing one
 * file at the same time wait for each other, while workers writing different files do not.
 */
export function splitIntoSegments(ranges: readonly MemoryRange[], segmentBytes: number): MemoryRange[][] {
  const segments: MemoryRange[][] = [];
  let current: MemoryRange[] = [];
  let filled = 0;
  for (const range of ranges) {
    let done = 0;
    while (done < range.length) {
      const length = Math.min(range.length - done, segmentBytes - filled);
      current.push({ start: range.start + done, length });
      done += length;
      filled += length;
      if (filled === segmentBytes) {
        segments.push(current);
        current = [];
        filled = 0;
      }
    }
  }
  if (current.length > 0) segments.push(current);
  return segments;
}

/** Segment size for `bytes` of memory: whole chunks, about two segments per worker so that every worker has a file of its own. */
export function segmentBytesFor(bytes: number, options: Pick<MemoryImageOptions, 'chunkBytes' | 'maxWorkers'>): number {
  const chunks = Math.ceil(bytes / options.chunkBytes);
  return options.chunkBytes * Math.max(1, Math.floor(chunks / (2 * options.maxWorkers)));
}

/** Chunk tasks of several images, taking one chunk of each image in turn: workers running at the same time write different files. */
function interleaved<T>(perImage: T[][]): { task: T; image: number; chunk: number }[] {
  const order: { task: T; image: number; chunk: number }[] = [];
  const longest = Math.max(0, ...perImage.map((tasks) => tasks.length));
  for (let chunk = 0; chunk < longest; chunk++) {
    perImage.forEach((tasks, image) => {
      if (chunk < tasks.length) order.push({ task: tasks[chunk]!, image, chunk });
    });
  }
  return order;
}

/**
 * One copy task per chunk of each image, from the process's memory into the file ('save') or back
 * ('fill'), interleaved across images; `hash(image)`: whether that image's chunks are hashed.
 */
function chunkTasks(images: readonly ProcessImage[], plans: ImageChunk[][], direction: 'save' | 'fill', hash: (image: number) => boolean) {
  return interleaved(
    images.map((image, i) =>
      plans[i]!.map((chunk): CopyTask => {
        const memory = { pid: image.pid };
        const file = { file: image.file };
        const pieces = chunk.pieces.map((piece) =>
          direction === 'save' ? { from: piece.address, to: piece.fileOffset, length: piece.length } : { from: piece.fileOffset, to: piece.address, length: piece.length },
        );
        return direction === 'save' ? { source: memory, target: file, pieces, hash: hash(i) } : { source: file, target: memory, pieces, hash: hash(i) };
      }),
    ),
  );
}

/** What to save of (or fill into) one process. */
export interface ProcessImage {
  pid: number;
  ranges: MemoryRange[];
  /** absolute path of the image file */
  file: string;
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
  const order = chunkTasks(images, plans, 'save', () => true);
  // A half-written image is never left behind for a caller that retries into the same place.
  const digests = await copyAndHashChunks(order.map(({ task }) => task), options.maxWorkers).catch(async (err: unknown) => {
    await Promise.all(images.map((image) => fs.rm(image.file, { force: true })));
    throw err;
  });
  const chunkSha256 = images.map((_, i) => new Array<string>(plans[i]!.length));
  order.forEach(({ image, chunk }, i) => (chunkSha256[image]![chunk] = digests[i]!));
  return images.map((image, i) => ({ size: totalBytes(image.ranges), chunkBytes: options.chunkBytes, chunkSha256: chunkSha256[i]! }));
}

/**
 * Writes each image back into its process's memory. Refuses before writing anything when an image's size
 * differs from its ranges or a range is not private anonymous memory of the process (a foreign or edited
 * artifact). Images with a `digest` are verified chunk by chunk as they are written: a chunk that differs is
 * a CorruptArtifactError naming the file and chunk, and the process then holds those wrong bytes and must
 * not be resumed by the caller. Images without one are only copied (the caller verifies them otherwise).
 */
export async function fillMemoryImages(images: readonly (ProcessImage & { digest?: MemoryImageDigest })[], options: MemoryImageOptions): Promise<void> {
  for (const image of images) {
    const size = await fs.stat(image.file).then((stat) => stat.size, () => -1);
    const expected = totalBytes(image.ranges);
    if (size !== expected || (image.digest && image.digest.size !== expected)) {
      throw new CorruptArtifactError(`memory image ${image.file} is ${size} bytes, its ranges need ${expected}${image.digest ? ` and the manifest records ${image.digest.size}` : ''}`, {
        file: image.file,
        pid: image.pid,
      });
    }
    const maps = parseMaps(await fs.readFile(path.join(options.procRoot ?? '/proc', String(image.pid), 'maps'), 'utf8'));
    if (!insidePrivateAnonymous(image.ranges, maps)) {
      throw new CorruptArtifactError(`memory image ${image.file} names ranges that are not private anonymous memory of process ${image.pid}`, { file: image.file, pid: image.pid });
    }
  }
  const plans = images.map((image) => planChunks(image.ranges, image.digest?.chunkBytes ?? options.chunkBytes));
  images.forEach((image, i) => {
    if (image.digest && plans[i]!.length !== image.digest.chunkSha256.length) {
      throw new CorruptArtifactError(`memory image ${image.file} has ${plans[i]!.length} chunks, the manifest records ${image.digest.chunkSha256.length}`, { file: image.file });
    }
  });
  const order = chunkTasks(images, plans, 'fill', (image) => images[image]!.digest !== undefined);
  const digests = await copyAndHashChunks(order.map(({ task }) => task), options.maxWorkers);
  const bad = new Map<number, number[]>();
  order.forEach(({ image, chunk }, i) => {
    const recorded = images[image]!.digest?.chunkSha256[chunk];
    if (recorded !== undefined && digests[i] !== recorded) bad.set(image, [...(bad.get(image) ?? []), chunk]);
  });
  for (const [image, chunks] of bad) {
    const file = images[image]!.file;
    const chunkBytes = images[image]!.digest!.chunkBytes;
    const first = Math.min(...chunks);
    const length = plans[image]![first]!.length;
    throw new CorruptArtifactError(
      `memory image ${file}: checksum of chunk ${first} (bytes ${first * chunkBytes}-${first * chunkBytes + length - 1})${chunks.length > 1 ? ` and ${chunks.length - 1} more chunks` : ''} differs from the manifest`,
      { file, pid: images[image]!.pid, chunks },
    );
  }
}

const SYS_MADVISE = 28;
const MADV_DONTNEED = 4;

/** madvise refused a range; `releasedRanges` of the ranges before it were freed. */
export class MemoryReleaseError extends ProcessControlError {
  readonly errno: number;
  readonly releasedRanges: number;

  constructor(pid: number, range: MemoryRange, errno: number, releasedRanges: number) {
    super(`madvise(MADV_DONTNEED) of ${range.length} bytes at 0x${range.start.toString(16)} in process ${pid} failed: errno ${errno}`, { pid, errno, releasedRanges });
    this.errno = errno;
    this.releasedRanges = releasedRanges;
  }
}

/**
 * Frees the ranges in the stopped process (madvise MADV_DONTNEED, run by one of its threads): the mappings
 * stay, their pages are gone and read as zeros until written again. CRIU then dumps them as empty. Locked
 * memory (mlock) is refused with EINVAL.
 */
export async function releaseMemory(stopped: StoppedProcess, ranges: readonly MemoryRange[]): Promise<void> {
  for (const [i, range] of ranges.entries()) {
    const result = await stopped.syscall(SYS_MADVISE, [range.start, range.length, MADV_DONTNEED]);
    if (result !== 0) throw new MemoryReleaseError(stopped.pid, range, -result, i);
  }
}
