import type { Logger } from '../../lib/log.ts';
import type { GpuUuidPair } from '../cuda/api.ts';
import { findCudaProcesses } from '../cuda/processes.ts';
import { lockAndCheckpoint, restoreAndUnlock } from '../cuda/sequences.ts';
import { FailedPreconditionError } from '../errors.ts';
import { containerPids } from './cgroup.ts';
import { gpuPairsFor, gpuRecord, type GpuRecord } from './record.ts';
import type { GpuSupport } from './support.ts';

/** A container whose CUDA processes were checkpointed (GPU memory in host memory, GPU free). */
export interface CheckpointedGpuTask {
  cudaPids: number[];
  record: GpuRecord;
}

async function cudaProcessesOfTask(gpu: GpuSupport, initPid: number, what: string): Promise<number[]> {
  const api = await gpu.driver();
  const pids = await containerPids(initPid, gpu.procRoot);
  const cudaPids = await findCudaProcesses(api, pids, gpu.procRoot);
  if (cudaPids.length === 0) throw new FailedPreconditionError(`${what}: no CUDA process among the container's pids ${pids.join(',')}`, { pid: initPid, pids });
  return cudaPids;
}

/**
 * Locks (with the timeout) and checkpoints every CUDA process of the container whose init process is
 * `initPid`, recording the GPUs and memory first. On failure every process is running again.
 */
export async function checkpointTaskGpu(gpu: GpuSupport, initPid: number, log: Logger): Promise<CheckpointedGpuTask> {
  const [api, availability] = await Promise.all([gpu.driver(), gpu.availability()]);
  const cudaPids = await cudaProcessesOfTask(gpu, initPid, 'GPU checkpoint');
  const record = gpuRecord(availability, cudaPids);
  await lockAndCheckpoint(api, cudaPids, { lockTimeoutMs: gpu.lockTimeoutMs, log });
  log.info({ cudaPids, gpus: record.gpus.map((g) => g.uuid) }, 'GPU state of the container checkpointed');
  return { cudaPids, record };
}

/** Brings checkpointed processes back onto their GPUs and running (leave-running, rollback, resume). */
export async function restoreTaskGpuInPlace(gpu: GpuSupport, cudaPids: readonly number[], log: Logger, gpuPairs?: readonly GpuUuidPair[]): Promise<void> {
  await restoreAndUnlock(await gpu.driver(), cudaPids, { log, ...(gpuPairs ? { gpuPairs } : {}) });
}

/**
 * After CRIU restored the container (its processes are CUDA-checkpointed, with new host pids): restores
 * their GPU state onto this node's GPUs (mapped when the recorded ones are not here) and unlocks them;
 * restoreAndUnlock checks that each is running.
 */
export async function restoreTaskGpu(
  gpu: GpuSupport,
  initPid: number,
  record: GpuRecord,
  requestedPairs: readonly GpuUuidPair[],
  log: Logger,
): Promise<{ cudaPids: number[]; gpuPairs: GpuUuidPair[] | undefined }> {
  const availability = await gpu.availability();
  const gpuPairs = gpuPairsFor(record, availability.gpus, requestedPairs);
  const cudaPids = await cudaProcessesOfTask(gpu, initPid, 'GPU restore');
  await restoreTaskGpuInPlace(gpu, cudaPids, log, gpuPairs);
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
  await restoreTaskGpuInPlace(gpu, cudaPids, log, requestedPairs.length > 0 ? requestedPairs : undefined);
  return cudaPids;
}
