import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Containerd } from '../../harness/containerd/index.ts';
import type { AgentDirs } from './agent.ts';

import { waitFor } from '../../support/wait.ts';

export { waitFor };

const run = promisify(execFile);

/** The numbers a counter container printed, in order. */
export async function counterValues(logPath: string): Promise<number[]> {
  const text = await fs.readFile(logPath, 'utf8').catch(() => '');
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^\d+$/.test(line))
    .map(Number);
}

/** Waits until the counter printed at least `count` values (after `after` values already there). */
export function waitForCounter(logPath: string, count: number, after = 0): Promise<number[]> {
  return waitFor(`${count} counter values in ${logPath}`, async () => {
    const values = await counterValues(logPath);
    return values.length >= after + count ? values : undefined;
  });
}

export function isConsecutive(values: number[]): boolean {
  return values.every((value, i) => i === 0 || value === values[i - 1]! + 1);
}

/**
 * Everything a checkpoint or restore could leave behind that is not accounted for by the containers that
 * should exist: leases, snapshots, runc bundles, mounts, scratch dirs of the agent and of containerd.
 */
export async function leftovers(containerd: Containerd, dirs: AgentDirs, expectedContainers: string[]): Promise<string[]> {
  const found: string[] = [];
  const lines = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter(Boolean);
  const leases = lines(await containerd.ctr(['leases', 'list', '--quiet']));
  found.push(...leases.map((id) => `lease ${id}`));
  // KEY PARENT KIND, where PARENT is empty for a base layer
  const snapshots = lines(await containerd.ctr(['snapshots', 'list'])).slice(1).map((l) => l.split(/\s+/));
  for (const columns of snapshots) {
    const [key, kind] = [columns[0]!, columns.at(-1)];
    if (kind !== 'Committed' && !expectedContainers.includes(key)) found.push(`snapshot ${key} (${kind})`);
  }
  const containers = lines(await containerd.ctr(['containers', 'list', '--quiet']));
  for (const id of containers) if (!expectedContainers.includes(id)) found.push(`container ${id}`);
  const bundles = await fs.readdir(path.join(containerd.dir, 'state', 'io.containerd.runtime.v2.task', containerd.namespace)).catch(() => []);
  for (const id of bundles) if (!expectedContainers.includes(id)) found.push(`bundle ${id}`);
  for (const dir of ['staging', 'work']) {
    for (const name of await fs.readdir(path.join(dirs.store, dir)).catch(() => [])) found.push(`agent ${dir}/${name}`);
  }
  for (const name of await fs.readdir(path.join(containerd.dir, 'run')).catch(() => [])) {
    if (name.startsWith('ctrd-checkpoint')) found.push(`containerd temp ${name}`);
  }
  for (const name of await fs.readdir(path.join(containerd.dir, 'tmp')).catch(() => [])) found.push(`containerd tmp ${name}`);
  const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8');
  for (const line of lines(mountinfo)) {
    const mountPoint = line.split(' ')[4]!;
    if (!mountPoint.startsWith(containerd.dir)) continue;
    const bundle = /io\.containerd\.runtime\.v2\.task\/[^/]+\/([^/]+)\/rootfs$/.exec(mountPoint)?.[1];
    if (!bundle || !expectedContainers.includes(bundle)) found.push(`mount ${mountPoint}`);
  }
  return found;
}

/** A network namespace of our own with loopback up (`ip netns add`), removed by the returned function. */
export async function createNetns(name: string): Promise<{ path: string; remove: () => Promise<void> }> {
  await run('ip', ['netns', 'add', name]);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return {
    path: `/var/run/netns/${name}`,
    remove: async () => {
      await run('ip', ['netns', 'delete', name]).catch(() => undefined);
    },
  };
}

/**
 * GET http://127.0.0.1:<port>/ inside a network namespace (a path: /var/run/netns/x or /proc/<pid>/ns/net),
 * or undefined when nothing answers. The client is this Node binary under nsenter (busybox-static's wget
 * crashes resolving even numeric addresses).
 */
export async function httpGetInNamespace(netnsPath: string, port: number): Promise<string | undefined> {
  const script = `fetch('http://127.0.0.1:${port}/', { signal: AbortSignal.timeout(2000) }).then(async (r) => process.stdout.write(await r.text()), () => process.exit(1))`;
  try {
    const { stdout } = await run('nsenter', [`--net=${netnsPath}`, process.execPath, '-e', script], { timeout: 5_000 });
    return stdout.trim();
  } catch {
    return undefined;
  }
}
