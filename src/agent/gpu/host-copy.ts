import fs from 'node:fs/promises';
import path from 'node:path';
import { KybernateError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { CudaCheckpointApi } from '../cuda/api.ts';
import { lockAndCheckpoint, restoreAndUnlock } from '../cuda/sequences.ts';
import { FailedPreconditionError } from '../errors.ts';
import { gainedRanges, parseMaps, totalBytes, type Mapping, type MemoryRange } from '../memory/maps.ts';
import { fillMemoryImages, MemoryReleaseError, releaseMemory, saveMemoryImages, segmentBytesFor, splitIntoSegments, type MemoryImageDigest, type MemoryImageOptions } from '../memory/memory-image.ts';
import type { Ptrace } from '../memory/ptrace.ts';
import { StoppedProcess } from '../memory/stopped-process.ts';
import { HOST_COPY_DIR } from '../store/manifest.ts';

/**
 * Smaller gains of a process during its CUDA checkpoint stay in CRIU's image: the host copy of GPU
 * memory is large allocations, while small ones may be allocator memory the process hands out again.
 */
export const MIN_HOST_COPY_RANGE_BYTES = 2 << 20;
const EINVAL = 22;

/**
 * One image file of a CUDA process's host copy of its GPU memory in the artifact (manifest `gpu.hostCopies`).
 * A process's copy is split over several files, written in parallel (segmentBytesFor).
 */
export interface HostCopy {
  /** the process's pid in its own pid namespace: the same after CRIU's restore, unlike the host pid */
  nsPid: number;
  /** the image file, relative to the artifact */
  file: string;
  ranges: MemoryRange[];
}

/** A host copy saved by this agent: the process it belongs to now, and the digests of its image. */
export interface SavedHostCopy extends HostCopy {
  pid: number;
  digest: MemoryImageDigest;
}

/** The CUDA state of the process is checkpointed but its GPU memory could not be put back: it must not be resumed. */
export class GpuStateLostError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('GpuStateLost', message, context, options);
  }
}

export interface HostCopyCheckpointOptions extends MemoryImageOptions {
  lockTimeoutMs: number;
  /** how long each thread of a process may take to stop */
  stopTimeoutMs: number;
  /** the artifact directory being written: images go to its host-copy/ */
  artifactDir: string;
  log: Logger;
  /** called when the CUDA checkpoint is done and the host copy is being saved */
  onPhase?: (name: 'host-copy') => void;
}

async function readMaps(procRoot: string, pid: number): Promise<Mapping[]> {
  return parseMaps(await fs.readFile(path.join(procRoot, String(pid), 'maps'), 'utf8'));
}

/** The innermost pid of /proc/<pid>/status's NSpid line: the pid the process has in its own namespace. */
export async function namespacePid(procRoot: string, pid: number): Promise<number> {
  const status = await fs.readFile(path.join(procRoot, String(pid), 'status'), 'utf8');
  const line = /^NSpid:\s+(.*)$/m.exec(status);
  const nsPid = Number(line?.[1]?.trim().split(/\s+/).at(-1));
  if (!Number.isInteger(nsPid) || nsPid < 1) throw new FailedPreconditionError(`cannot read the namespace pid of process ${pid}`, { pid });
  return nsPid;
}

interface HeldProcess {
  stopped: StoppedProcess;
  restoreTid: number;
  before: Mapping[];
}

/**
 * Stops every thread of the process for the host copy, or says why its host copy stays in CRIU's image
 * (its threads cannot be stopped, e.g. a debugger traces it; or a seccomp filter that the agent could not
 * suspend might refuse the madvise the agent runs in it) and returns undefined.
 */
async function holdForHostCopy(ptrace: Ptrace, pid: number, options: HostCopyCheckpointOptions): Promise<StoppedProcess | undefined> {
  let stopped: StoppedProcess;
  try {
    stopped = await StoppedProcess.stop(ptrace, pid, { timeoutMs: options.stopTimeoutMs, procRoot: options.procRoot ?? '/proc' });
  } catch (err) {
    options.log.warn({ pid, err: errorMessage(err) }, 'cannot stop the threads of the process: its GPU memory goes into the CRIU image');
    return undefined;
  }
  if (await stopped.syscallsAllowed()) return stopped;
  await stopped.detach();
  options.log.warn({ pid }, 'the process has a seccomp filter the agent cannot suspend (not privileged?): its GPU memory goes into the CRIU image');
  return undefined;
}

/**
 * The CUDA checkpoint of `cudaPids` with the host copy of their GPU memory kept out of CRIU's image:
 * the processes are locked, then every thread of each is stopped except the driver's restore thread,
 * which moves the GPU memory into host memory; what each process gained meanwhile is that host copy
 * (nothing else of it ran). It is written to image files beside the CRIU image, chunk by chunk on all
 * cores, and freed in the process, so that CRIU's single-threaded dump (and later restore) only moves the
 * rest. Resolves with the saved copies; the processes are CUDA-checkpointed and run on (their CUDA calls
 * block). On failure the freed memory is written back and every process is CUDA-running again.
 */
export async function checkpointKeepingHostCopyOut(
  api: CudaCheckpointApi,
  ptrace: Ptrace,
  cudaPids: readonly number[],
  options: HostCopyCheckpointOptions,
): Promise<SavedHostCopy[]> {
  const procRoot = options.procRoot ?? '/proc';
  const { log } = options;
  const held = new Map<number, HeldProcess>();
  const letGo = async (): Promise<void> => {
    await Promise.all([...held.values()].map((process) => process.stopped.detach()));
  };
  let checkpointed: number[];
  try {
    checkpointed = await lockAndCheckpoint(api, cudaPids, {
      lockTimeoutMs: options.lockTimeoutMs,
      log,
      beforeCheckpoint: async (pids) => {
        for (const pid of pids) {
          const restoreTid = await api.getRestoreThreadId(pid);
          const stopped = await holdForHostCopy(ptrace, pid, options);
          if (!stopped) continue;
          if (!stopped.threads.includes(restoreTid)) {
            await stopped.detach();
            log.warn({ pid, restoreTid }, 'the driver names a restore thread the process does not have: its GPU memory goes into the CRIU image');
            continue;
          }
          const process: HeldProcess = { stopped, restoreTid, before: [] };
          held.set(pid, process);
          process.before = await readMaps(procRoot, pid);
          stopped.runThread(restoreTid);
        }
      },
      beforeRollback: letGo,
    });
  } catch (err) {
    await letGo();
    throw err;
  }

  options.onPhase?.('host-copy');
  const released: SavedHostCopy[] = [];
  try {
    for (const process of held.values()) await process.stopped.haltThread(process.restoreTid);
    const copies: (HostCopy & { pid: number })[] = [];
    const gained = new Map<number, MemoryRange[]>();
    for (const [pid, process] of held) {
      const ranges = gainedRanges(process.before, await readMaps(procRoot, pid), MIN_HOST_COPY_RANGE_BYTES);
      if (ranges.length === 0) {
        log.warn({ pid }, 'the process gained no large memory during its CUDA checkpoint; its GPU memory stays in the CRIU image');
        continue;
      }
      gained.set(pid, ranges);
      const nsPid = await namespacePid(procRoot, pid);
      const segments = splitIntoSegments(ranges, segmentBytesFor(totalBytes(ranges), options));
      segments.forEach((segment, k) => copies.push({ pid, nsPid, file: `${HOST_COPY_DIR}/pid-${nsPid}-${k}.img`, ranges: segment }));
    }
    if (copies.length === 0) {
      await letGo();
      return [];
    }
    await fs.mkdir(path.join(options.artifactDir, HOST_COPY_DIR), { recursive: true, mode: 0o700 });
    const digests = await saveMemoryImages(
      copies.map((copy) => ({ pid: copy.pid, ranges: copy.ranges, file: path.join(options.artifactDir, copy.file) })),
      options,
    );
    const saved = copies.map((copy, i) => ({ ...copy, digest: digests[i]! }));
    for (const [pid, ranges] of gained) {
      const ofProcess = saved.filter((copy) => copy.pid === pid);
      try {
        await releaseMemory(held.get(pid)!.stopped, ranges);
      } catch (err) {
        if (!(err instanceof MemoryReleaseError && err.errno === EINVAL && err.releasedRanges === 0)) {
          released.push(...ofProcess);
          throw err;
        }
        // Locked memory cannot be freed from outside: this copy stays in the process, and so in CRIU's image.
        log.warn({ pid }, 'the host copy of GPU memory is locked memory: it stays in the CRIU image');
        await Promise.all(ofProcess.map((copy) => fs.rm(path.join(options.artifactDir, copy.file), { force: true })));
        continue;
      }
      released.push(...ofProcess);
    }
    await letGo();
    log.info({ pids: [...new Set(released.map((c) => c.pid))], files: released.length, bytes: totalBytes(released.flatMap((c) => c.ranges)) }, 'host copy of GPU memory saved beside the CRIU image');
    return released;
  } catch (err) {
    log.warn({ err: errorMessage(err), released: released.map((c) => c.pid) }, 'saving the host copy failed; putting everything back');
    await undoCheckpoint(api, checkpointed, released, letGo, options);
    throw err;
  }
}

/** Puts released memory back, lets the threads go and brings the processes' CUDA state back. */
async function undoCheckpoint(
  api: CudaCheckpointApi,
  pids: number[],
  released: SavedHostCopy[],
  letGo: () => Promise<void>,
  options: HostCopyCheckpointOptions,
): Promise<void> {
  try {
    await putHostCopiesBack(released, options.artifactDir, options);
  } finally {
    await letGo();
  }
  await restoreAndUnlock(api, pids, { log: options.log }).catch((err: unknown) => {
    options.log.error({ pids, err: errorMessage(err) }, 'CUDA state could not be brought back after a failed checkpoint');
  });
}

/**
 * Writes saved host copies back into their (same) processes from `artifactDir`, verifying every chunk
 * (a leave-running checkpoint, a rollback). If that fails the processes must stay CUDA-checkpointed:
 * restoring them would put wrong memory on the GPU; GpuStateLostError says so.
 */
export async function putHostCopiesBack(copies: readonly SavedHostCopy[], artifactDir: string, options: MemoryImageOptions): Promise<void> {
  if (copies.length === 0) return;
  const images = copies.map((copy) => ({ pid: copy.pid, ranges: copy.ranges, file: path.join(artifactDir, copy.file), digest: copy.digest }));
  await fillMemoryImages(images, options).catch((err: unknown) => {
    const pids = copies.map((copy) => copy.pid);
    throw new GpuStateLostError(
      `the GPU memory of pids ${pids.join(',')} could not be written back (${errorMessage(err)}): their CUDA state stays checkpointed and locked; restart the container`,
      { pids },
      { cause: err },
    );
  });
}

/**
 * After CRIU restored a container: copies each recorded host copy into the restored process that has the
 * recorded namespace pid, before the CUDA restore reads it. Only copies: the caller verifies the files'
 * checksums beside the restore and must not let the processes run on (unlock them) before they passed.
 */
export async function fillRestoredHostCopies(cudaPids: readonly number[], copies: readonly HostCopy[], artifactDir: string, options: MemoryImageOptions): Promise<void> {
  const procRoot = options.procRoot ?? '/proc';
  const byNsPid = new Map(await Promise.all(cudaPids.map(async (pid) => [await namespacePid(procRoot, pid), pid] as const)));
  const placed = copies.map((copy) => {
    const pid = byNsPid.get(copy.nsPid);
    if (pid === undefined) {
      throw new FailedPreconditionError(`the restored container has no CUDA process with namespace pid ${copy.nsPid}, whose GPU memory ${copy.file} holds`, {
        nsPid: copy.nsPid,
        cudaPids,
      });
    }
    return { pid, ranges: copy.ranges, file: path.join(artifactDir, copy.file) };
  });
  await fillMemoryImages(placed, options);
}
