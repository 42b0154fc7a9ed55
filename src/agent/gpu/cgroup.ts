import fs from 'node:fs/promises';
import path from 'node:path';
import { KybernateError } from '../../lib/errors.ts';

/** The cgroup v2 path in a /proc/<pid>/cgroup file ("0::/kybernate/ctr-1"), or null for a v1-only process. */
export function parseCgroupV2Path(text: string): string | null {
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  return line === undefined ? null : line.slice(3).trim();
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
export async function containerPids(initPid: number, procRoot = '/proc', cgroupRoot = '/sys/fs/cgroup'): Promise<number[]> {
  let text: string;
  try {
    text = await fs.readFile(`${procRoot}/${initPid}/cgroup`, 'utf8');
  } catch (err) {
    throw new KybernateError('ProcReadFailed', `cannot read the cgroup of pid ${initPid}: ${(err as Error).message}`, { pid: initPid }, { cause: err });
  }
  const cgroup = parseCgroupV2Path(text);
  if (cgroup === null) throw new KybernateError('ProcReadFailed', `pid ${initPid} is in no cgroup v2 (GPU checkpoints need the unified hierarchy)`, { pid: initPid });
  const pids = await pidsBelow(path.join(cgroupRoot, cgroup));
  return [...new Set([initPid, ...pids])].sort((a, b) => a - b);
}
