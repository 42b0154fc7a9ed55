import { createLogger, type Logger } from '../../lib/log.ts';
import { NotFoundError } from '../../lib/errors.ts';
import type { CudaCheckpointApi, CudaProcessState, GpuUuidPair } from './api.ts';
import { CudaSequenceError } from './errors.ts';
import { findCudaProcesses } from './processes.ts';

export interface SequenceOptions {
  log?: Logger;
}

export interface LockAndCheckpointOptions extends SequenceOptions {
  /** Per-process lock timeout; a process still running CUDA work after it makes the whole sequence roll back. */
  lockTimeoutMs: number;
  /**
   * Runs once every process is locked and before any is checkpointed, with the pids about to be
   * checkpointed (e.g. to stop their threads and note their memory); its failure rolls back like any other.
   */
  beforeCheckpoint?: (pids: readonly number[]) => Promise<void>;
  /** Runs before a failed sequence rolls back (e.g. to let stopped threads go: the driver needs them to undo). */
  beforeRollback?: () => Promise<void>;
}

export interface RestoreAndUnlockOptions extends SequenceOptions {
  /** Old -> new GPU UUIDs when restoring onto other GPUs; must name every checkpointed GPU. */
  gpuPairs?: readonly GpuUuidPair[];
  /**
   * Runs once every process is restored (GPU memory back, still locked) and before any is unlocked, e.g.
   * waiting for the checksums of the memory just restored. Its failure is thrown as it is and leaves the
   * processes locked: their CUDA calls stay blocked, and the caller must not let them run.
   */
  beforeUnlock?: () => Promise<unknown>;
}

const defaultLog = createLogger('agent.cuda');

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

async function statesOf(api: CudaCheckpointApi, pids: readonly number[]): Promise<Map<number, CudaProcessState>> {
  const states = new Map<number, CudaProcessState>();
  for (const pid of pids) states.set(pid, await api.getState(pid));
  return states;
}

/** Runs `step` for every pid at once; resolves with the failures (the pids that succeeded are in `done`). */
async function forEachConcurrently(
  pids: readonly number[],
  step: (pid: number) => Promise<void>,
  done: number[],
): Promise<Error[]> {
  const results = await Promise.allSettled(pids.map(async (pid) => {
    await step(pid);
    done.push(pid);
  }));
  return results.flatMap((result) => (result.status === 'rejected' ? [asError(result.reason)] : []));
}

/** Brings each pid back to RUNNING from whatever lock/checkpoint state a failed sequence left it in. */
async function rollBackToRunning(api: CudaCheckpointApi, pids: readonly number[], log: Logger): Promise<Error[]> {
  const failures: Error[] = [];
  for (const pid of [...pids].reverse()) {
    try {
      const state = await api.getState(pid);
      if (state === 'checkpointed') await api.restore(pid);
      if (state === 'checkpointed' || state === 'locked') {
        await api.unlock(pid);
        log.warn({ pid, from: state }, 'rolled back to running');
      }
    } catch (err) {
      failures.push(asError(err));
    }
  }
  return failures;
}

/**
 * Locks every process (each with the timeout), then checkpoints them all: their GPU memory moves to host
 * memory and the GPUs are freed. All locks come first so that no process waits on a peer that is already
 * frozen. Processes already checkpointed are left as they are. On any failure every process this call
 * touched is brought back to RUNNING before the error is thrown. Resolves with the pids it checkpointed.
 */
export async function lockAndCheckpoint(
  api: CudaCheckpointApi,
  pids: readonly number[],
  options: LockAndCheckpointOptions,
): Promise<number[]> {
  const log = options.log ?? defaultLog;
  const states = await statesOf(api, pids);
  const blocked = pids.filter((pid) => states.get(pid) === 'locked' || states.get(pid) === 'failed');
  if (blocked.length > 0) {
    const detail = blocked.map((pid) => `${pid}=${states.get(pid)}`).join(', ');
    throw new CudaSequenceError('lock+checkpoint', pids, new Error(`processes not running: ${detail}`), [], 'nothing was changed');
  }
  const toCheckpoint = pids.filter((pid) => states.get(pid) === 'running');
  const touched: number[] = [];
  const fail = async (cause: Error): Promise<never> => {
    await options.beforeRollback?.();
    const rollbackFailures = await rollBackToRunning(api, touched, log);
    throw new CudaSequenceError('lock+checkpoint', pids, cause, rollbackFailures, 'all processes are running again');
  };

  for (const pid of toCheckpoint) {
    touched.push(pid);
    try {
      await api.lock(pid, options.lockTimeoutMs);
      log.debug({ pid }, 'locked');
    } catch (err) {
      return fail(asError(err));
    }
  }
  if (options.beforeCheckpoint) {
    try {
      await options.beforeCheckpoint(toCheckpoint);
    } catch (err) {
      return fail(asError(err));
    }
  }
  const checkpointed: number[] = [];
  const failures = await forEachConcurrently(toCheckpoint, (pid) => api.checkpoint(pid), checkpointed);
  if (failures.length > 0) return fail(failures[0]!);
  log.info({ pids: checkpointed }, 'CUDA state checkpointed, GPU memory released');
  return checkpointed;
}

/**
 * Restores every checkpointed process (onto `gpuPairs`' GPUs when given), then unlocks them all and
 * checks that each is RUNNING. Processes already running are left alone; locked ones are only unlocked
 * (a retry after a failed unlock). If a restore fails, the processes restored so far are checkpointed
 * again, so the whole set stays released (GPU free, nothing half-running) and the call can be retried.
 */
export async function restoreAndUnlock(
  api: CudaCheckpointApi,
  pids: readonly number[],
  options: RestoreAndUnlockOptions = {},
): Promise<number[]> {
  const log = options.log ?? defaultLog;
  const states = await statesOf(api, pids);
  const failed = pids.filter((pid) => states.get(pid) === 'failed');
  if (failed.length > 0) {
    throw new CudaSequenceError('restore+unlock', pids, new Error(`CUDA state failed in pids ${failed.join(',')}`), [], 'nothing was changed');
  }
  const toRestore = pids.filter((pid) => states.get(pid) === 'checkpointed');
  const restored: number[] = [];
  const restoreFailures = await forEachConcurrently(toRestore, (pid) => api.restore(pid, options.gpuPairs), restored);
  if (restoreFailures.length > 0) {
    const undone: number[] = [];
    const rollbackFailures = await forEachConcurrently(restored, (pid) => api.checkpoint(pid), undone);
    throw new CudaSequenceError('restore+unlock', pids, restoreFailures[0]!, rollbackFailures, 'all processes are checkpointed again');
  }
  await options.beforeUnlock?.();
  const toUnlock = pids.filter((pid) => states.get(pid) !== 'running');
  const unlocked: number[] = [];
  const unlockFailures: Error[] = [];
  for (const pid of toUnlock) {
    try {
      await api.unlock(pid);
      unlocked.push(pid);
    } catch (err) {
      unlockFailures.push(asError(err));
    }
  }
  if (unlockFailures.length > 0) {
    throw new CudaSequenceError('restore+unlock', pids, unlockFailures[0]!, [], `unlocked ${unlocked.join(',') || 'none'}; retry unlocks the rest`);
  }
  const after = await statesOf(api, pids);
  const notRunning = pids.filter((pid) => after.get(pid) !== 'running');
  if (notRunning.length > 0) {
    const detail = notRunning.map((pid) => `${pid}=${after.get(pid)}`).join(', ');
    throw new CudaSequenceError('restore+unlock', pids, new Error(`not running after unlock: ${detail}`), [], 'state left as the driver reports it');
  }
  log.info({ pids: toRestore }, 'CUDA state restored, processes running');
  return toRestore;
}

/** What releaseInPlace freed: resume() takes it back. */
export interface ReleasedProcesses {
  cudaPids: number[];
}

export interface ReleaseInPlaceOptions extends LockAndCheckpointOptions {
  /** Where to look the pids up (tests point it at a fixture); default /proc. */
  procRoot?: string;
}

/**
 * Release in place: the workload's CUDA processes keep running on the host with their GPU memory copied
 * into their own memory, and the GPU is free for others. No CRIU, so resume is only the CUDA restore.
 * `pids` may be all processes of a container; the CUDA ones are found among them.
 */
export async function releaseInPlace(
  api: CudaCheckpointApi,
  pids: readonly number[],
  options: ReleaseInPlaceOptions,
): Promise<ReleasedProcesses> {
  const cudaPids = await findCudaProcesses(api, pids, options.procRoot);
  if (cudaPids.length === 0) throw new NotFoundError(`no CUDA process among pids ${pids.join(',')}`, { pids });
  await lockAndCheckpoint(api, cudaPids, options);
  return { cudaPids };
}

/** Undoes releaseInPlace: restores (optionally onto other GPUs), unlocks and verifies every process runs. */
export async function resume(
  api: CudaCheckpointApi,
  released: ReleasedProcesses,
  options: RestoreAndUnlockOptions = {},
): Promise<void> {
  await restoreAndUnlock(api, released.cudaPids, options);
}
