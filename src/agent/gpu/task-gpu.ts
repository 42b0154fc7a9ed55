import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { GpuUuidPair } from '../cuda/api.ts';
import { findCudaProcesses } from '../cuda/processes.ts';
import { lockAndCheckpoint, restoreAndUnlock } from '../cuda/sequences.ts';
import { FailedPreconditionError } from '../errors.ts';
import { loadPtrace, type Ptrace } from '../memory/ptrace.ts';
import { DEFAULT_CHUNK_BYTES, type HashingOptions } from '../store/hashing.ts';
import { containerPids } from './cgroup.ts';
import { checkpointKeepingHostCopyOut, fillRestoredHostCopies, putHostCopiesBack, type HostCopy, type SavedHostCopy } from './host-copy.ts';
import { gpuPairsFor, gpuRecord, type GpuRecord } from './record.ts';
import type { GpuSupport } from './support.ts';

/** How long each thread of a CUDA process may take to stop for the host copy (one in a CUDA call stops at once). */
const THREAD_STOP_TIMEOUT_MS = 10_000;

/** A container whose CUDA processes were checkpointed (GPU memory in host memory, GPU free). */
export interface CheckpointedGpuTask {
  cudaPids: number[];
  record: GpuRecord;
  /** host copies the agent saved beside the CRIU image and freed in the processes: put back before any CUDA restore */
  hostCopies: SavedHostCopy[];
}

/** Where a checkpoint's artifact is being written, for host copies kept out of CRIU's image. */
export interface HostCopyTarget {
  artifactDir: string;
  hashing: HashingOptions;
  /** called when the CUDA checkpoint is done and the host copy is being saved (an operation step) */
  onPhase?: (name: 'host-copy') => void;
}

async function cudaProcessesOfTask(gpu: GpuSupport, initPid: number, what: string): Promise<number[]> {
  const api = await gpu.driver();
  const pids = await containerPids(initPid, gpu.procRoot);
  const cudaPids = await findCudaProcesses(api, pids, gpu.procRoot);
  if (cudaPids.length === 0) throw new FailedPreconditionError(`${what}: no CUDA process among the container's pids ${pids.join(',')}`, { pid: initPid, pids });
  return cudaPids;
}

/** ptrace for the host copy, or undefined (with the reason logged) where the agent cannot use it. */
function ptraceForHostCopy(log: Logger): Ptrace | undefined {
  try {
    return loadPtrace();
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'the agent cannot stop processes here: the host copy of GPU memory goes into the CRIU image');
    return undefined;
  }
}

/**
 * Locks (with the timeout) and checkpoints every CUDA process of the container whose init process is
 * `initPid`, recording the GPUs and memory first. With `hostCopyTo` (a checkpoint to be dumped by CRIU)
 * and the agent writing host copies, the host copy of each process's GPU memory is saved into the
 * artifact and freed in the process (host-copy.ts). On failure every process is running again.
 */
export async function checkpointTaskGpu(gpu: GpuSupport, initPid: number, log: Logger, hostCopyTo?: HostCopyTarget): Promise<CheckpointedGpuTask> {
  const [api, availability] = await Promise.all([gpu.driver(), gpu.availability()]);
  const cudaPids = await cudaProcessesOfTask(gpu, initPid, 'GPU checkpoint');
  const record = gpuRecord(availability, cudaPids);
  const ptrace = hostCopyTo && gpu.hostCopy === 'agent' ? ptraceForHostCopy(log) : undefined;
  let hostCopies: SavedHostCopy[] = [];
  if (hostCopyTo && ptrace) {
    hostCopies = await checkpointKeepingHostCopyOut(api, ptrace, cudaPids, {
      lockTimeoutMs: gpu.lockTimeoutMs,
      stopTimeoutMs: THREAD_STOP_TIMEOUT_MS,
      artifactDir: hostCopyTo.artifactDir,
      chunkBytes: hostCopyTo.hashing.chunkBytes,
      maxWorkers: hostCopyTo.hashing.maxWorkers,
      procRoot: gpu.procRoot,
      log,
      ...(hostCopyTo.onPhase ? { onPhase: hostCopyTo.onPhase } : {}),
    });
    if (hostCopies.length > 0) record.hostCopies = hostCopies.map(({ nsPid, file, ranges }) => ({ nsPid, file, ranges }));
  } else {
    await lockAndCheckpoint(api, cudaPids, { lockTimeoutMs: gpu.lockTimeoutMs, log });
  }
  log.info({ cudaPids, gpus: record.gpus.map((g) => g.uuid), hostCopies: hostCopies.length }, 'GPU state of the container checkpointed');
  return { cudaPids, record, hostCopies };
}

/** CUDA restore (onto `gpuPairs`' GPUs when given) and unlock of processes whose GPU memory is in place. */
async function restoreOnto(gpu: GpuSupport, cudaPids: readonly number[], log: Logger, gpuPairs?: readonly GpuUuidPair[], beforeUnlock?: () => Promise<unknown>): Promise<void> {
  await restoreAndUnlock(await gpu.driver(), cudaPids, { log, ...(gpuPairs ? { gpuPairs } : {}), ...(beforeUnlock ? { beforeUnlock } : {}) });
}

/**
 * Brings the processes of a checkpointTaskGpu back onto their GPUs and running (leave-running, rollback):
 * host copies are written back from `artifactDir` first. If that fails the processes stay CUDA-checkpointed
 * (restoring them would put wrong memory on the GPU) and GpuStateLostError says so.
 */
export async function restoreTaskGpuInPlace(gpu: GpuSupport, task: CheckpointedGpuTask, log: Logger, artifactDir: string, hashing: HashingOptions): Promise<void> {
  await putHostCopiesBack(task.hostCopies, artifactDir, { chunkBytes: hashing.chunkBytes, maxWorkers: hashing.maxWorkers, procRoot: gpu.procRoot });
  await restoreOnto(gpu, task.cudaPids, log);
}

/** The host copies a restore writes back, from the artifact that holds their files. */
export interface StoredHostCopies {
  artifactDir: string;
  copies: HostCopy[];
  maxWorkers: number;
  /** the checksums of the copies' files, verified beside the restore: the processes are unlocked only once they passed */
  verified: Promise<unknown>;
  /** called when the host copies are written back and the CUDA restore begins (an operation step) */
  onPhase?: (name: 'gpu-restore') => void;
}

/**
 * After CRIU restored the container (its processes are CUDA-checkpointed, with new host pids): writes the
 * host copies kept beside the image back into them, then restores their GPU state onto this node's GPUs
 * (mapped when the recorded ones are not here), and unlocks them once the copies' checksums passed;
 * restoreAndUnlock checks that each is running. A failed checksum leaves them locked (the caller kills them).
 */
export async function restoreTaskGpu(
  gpu: GpuSupport,
  initPid: number,
  record: GpuRecord,
  requestedPairs: readonly GpuUuidPair[],
  log: Logger,
  hostCopies?: StoredHostCopies,
): Promise<{ cudaPids: number[]; gpuPairs: GpuUuidPair[] | undefined }> {
  const availability = await gpu.availability();
  const gpuPairs = gpuPairsFor(record, availability.gpus, requestedPairs);
  const cudaPids = await cudaProcessesOfTask(gpu, initPid, 'GPU restore');
  if (hostCopies && hostCopies.copies.length > 0) {
    await fillRestoredHostCopies(cudaPids, hostCopies.copies, hostCopies.artifactDir, { chunkBytes: DEFAULT_CHUNK_BYTES, maxWorkers: hostCopies.maxWorkers, procRoot: gpu.procRoot });
    log.info({ cudaPids, files: hostCopies.copies.length }, 'host copies of GPU memory written back');
    hostCopies.onPhase?.('gpu-restore');
  }
  await restoreOnto(gpu, cudaPids, log, gpuPairs, hostCopies ? () => hostCopies.verified : undefined);
  log.info({ cudaPids, gpuPairs }, 'GPU state of the restored container is back');
  return { cudaPids, gpuPairs };
}

/** Release in place: checkpoints the container's CUDA processes without CRIU; they stay in host memory. */
export async function suspendTaskGpu(gpu: GpuSupport, initPid: number, log: Logger): Promise<number[]> {
  return (await checkpointTaskGpu(gpu, initPid, log)).cudaPids;
}

/** Undoes suspendTaskGpu (found again from the cgroup, so it works after an agent restart too). */
export async function resumeTaskGpu(gpu: GpuSupport, initPid: number, requestedPairs: readonly GpuUuidPair[], log: Logger): Promise<number[]> {
  const cudaPids = await cudaProcessesOfTask(gpu, initPid, 'GPU resume');
  await restoreOnto(gpu, cudaPids, log, requestedPairs.length > 0 ? requestedPairs : undefined);
  return cudaPids;
}
