import { readdir, readFile, readlink } from 'node:fs/promises';
import { KybernateError } from '../../lib/errors.ts';
import type { CudaCheckpointApi } from './api.ts';
import { CudaDriverError } from './errors.ts';

/**
 * A process may hold CUDA state if it has a /dev/nvidia* device open or maps the CUDA driver library.
 * Both are needed: a checkpointed process has closed its device files but still maps libcuda.
 */
export function mayHoldCudaState(fdTargets: readonly string[], maps: string): boolean {
  return fdTargets.some((target) => target.startsWith('/dev/nvidia')) || /\/libcuda\.so[.\d]*$/m.test(maps);
}

/** The /dev/nvidia* files a process has open (a released process has none). */
export function nvidiaDeviceFds(fdTargets: readonly string[]): string[] {
  return fdTargets.filter((target) => target.startsWith('/dev/nvidia'));
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ESRCH';
}

/** The targets of a process's open fds; null when the process is gone. */
export async function readFdTargets(pid: number, procRoot = '/proc'): Promise<string[] | null> {
  try {
    const fds = await readdir(`${procRoot}/${pid}/fd`);
    const targets = await Promise.all(fds.map((fd) => readlink(`${procRoot}/${pid}/fd/${fd}`).catch(() => '')));
    return targets.filter((target) => target !== '');
  } catch (err) {
    if (isGone(err)) return null;
    throw new KybernateError('ProcReadFailed', `cannot read the fds of pid ${pid}: ${(err as Error).message}`, { pid }, { cause: err });
  }
}

/** The pids among `pids` that may hold CUDA state (from /proc); exited pids are left out. */
export async function findCudaCandidates(pids: readonly number[], procRoot = '/proc'): Promise<number[]> {
  const candidates: number[] = [];
  for (const pid of pids) {
    const fdTargets = await readFdTargets(pid, procRoot);
    if (fdTargets === null) continue;
    let maps: string;
    try {
      maps = await readFile(`${procRoot}/${pid}/maps`, 'utf8');
    } catch (err) {
      if (isGone(err)) continue;
      throw new KybernateError('ProcReadFailed', `cannot read the maps of pid ${pid}: ${(err as Error).message}`, { pid }, { cause: err });
    }
    if (mayHoldCudaState(fdTargets, maps)) candidates.push(pid);
  }
  return candidates;
}

/**
 * Every process among `pids` that the CUDA driver knows (its state can be read). A process that loaded
 * libcuda but never initialised CUDA is not one: the driver answers it with an error.
 */
export async function findCudaProcesses(api: CudaCheckpointApi, pids: readonly number[], procRoot = '/proc'): Promise<number[]> {
  const cudaPids: number[] = [];
  for (const pid of await findCudaCandidates(pids, procRoot)) {
    try {
      await api.getState(pid);
      cudaPids.push(pid);
    } catch (err) {
      if (!(err instanceof CudaDriverError)) throw err;
    }
  }
  return cudaPids;
}
