import fs from 'node:fs/promises';
import path from 'node:path';
import { KybernateError } from '../../lib/errors.ts';

/** One line of /proc/<pid>/cgroup: "4:memory:/kybernate/ctr-1" (v1) or "0::/kybernate/ctr-1" (v2). */
export interface ProcCgroup {
  controllers: string[];
  path: string;
}

/** A cgroup filesystem from /proc/self/mountinfo: v2 (unified) or a v1 hierarchy with its controllers. */
export interface CgroupMount {
  mountPoint: string;
  version: 1 | 2;
  controllers: string[];
}

export function parseProcCgroup(text: string): ProcCgroup[] {
  return text
    .split('\n')
    .map((line) => /^\d+:([^:]*):(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ controllers: match[1] ? match[1].split(',') : [], path: match[2]! }));
}

export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  return mountinfo.split('\n').flatMap((line): CgroupMount[] => {
    const [before, after] = line.split(' - ');
    const mountPoint = before?.split(' ')[4];
    const [fsType, , superOptions] = (after ?? '').split(' ');
    if (!mountPoint) return [];
    if (fsType === 'cgroup2') return [{ mountPoint, version: 2, controllers: [] }];
    if (fsType === 'cgroup') return [{ mountPoint, version: 1, controllers: (superOptions ?? '').split(',') }];
    return [];
  });
}

/** v1 hierarchies that hold every process of a container, in order of preference. */
const V1_CONTROLLERS = ['pids', 'freezer', 'memory', 'cpu'];

/**
 * The directory of a process's cgroup: the unified (v2) one where the process is placed there, else the
 * first v1 hierarchy of V1_CONTROLLERS that is mounted (hybrid hosts place containers only in v1).
 */
export function cgroupDirOf(cgroups: readonly ProcCgroup[], mounts: readonly CgroupMount[]): string | null {
  const unified = cgroups.find((c) => c.controllers.length === 0 && c.path !== '/');
  const v2Mount = mounts.find((m) => m.version === 2);
  if (unified && v2Mount) return path.join(v2Mount.mountPoint, unified.path);
  for (const controller of V1_CONTROLLERS) {
    const cgroup = cgroups.find((c) => c.controllers.includes(controller));
    const mount = mounts.find((m) => m.version === 1 && m.controllers.includes(controller));
    if (cgroup && mount) return path.join(mount.mountPoint, cgroup.path);
  }
  return null;
}

async function pidsBelow(dir: string): Promise<number[]> {
  const procs = await fs.readFile(path.join(dir, 'cgroup.procs'), 'utf8');
  const pids = procs.split('\n').filter((l) => l !== '').map(Number);
  const entries = await fs.readdir(dir, { withFileTypes: true });
  for (const entry of entries) if (entry.isDirectory()) pids.push(...(await pidsBelow(path.join(dir, entry.name))));
  return pids;
}

/**
 * Every process of a container: the pids of the cgroup its init process is in and of the cgroups below
 * (host pids, which the CUDA driver API takes). A worker forked by the workload is in there too.
 */
export async function containerPids(initPid: number, procRoot = '/proc'): Promise<number[]> {
  const context = { pid: initPid };
  let dir: string | null;
  try {
    const [cgroups, mountinfo] = await Promise.all([fs.readFile(`${procRoot}/${initPid}/cgroup`, 'utf8'), fs.readFile(`${procRoot}/self/mountinfo`, 'utf8')]);
    dir = cgroupDirOf(parseProcCgroup(cgroups), parseCgroupMounts(mountinfo));
  } catch (err) {
    throw new KybernateError('ProcReadFailed', `cannot read the cgroup of pid ${initPid}: ${(err as Error).message}`, context, { cause: err });
  }
  if (dir === null) throw new KybernateError('ProcReadFailed', `pid ${initPid} is in no mounted cgroup hierarchy (v2 or v1 ${V1_CONTROLLERS.join('/')})`, context);
  const pids = await pidsBelow(dir);
  return [...new Set([initPid, ...pids])].sort((a, b) => a - b);
}
