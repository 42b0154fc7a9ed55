// The harness's own promises: a private containerd per start, and stop() leaves nothing behind (no shim,
// container process, mount, runc state or temp dir), even when a task is still running or containerd died.
import { access, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildTestImage, startContainerd, testImageArgs, TEST_IMAGE_REF, type Containerd } from '../harness/containerd/index.ts';
import { waitFor } from './helpers.ts';

const NAMESPACE = 'kybernate-harness-lifecycle';

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function mountsUnder(dir: string): Promise<string[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  return mountinfo
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point.startsWith(`${dir}/`));
}

async function processAlive(pid: number): Promise<boolean> {
  // A zombie has no cmdline left; only a process that still runs counts.
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')) !== '';
}

/** Starts a counter task and returns the host pid of its process. */
async function runCounter(containerd: Containerd, id: string): Promise<number> {
  await buildTestImage(containerd);
  await containerd.ctr(['run', '--detach', '--null-io', TEST_IMAGE_REF, id, ...testImageArgs.counter()]);
  const listed = await containerd.ctr(['tasks', 'list']);
  const pid = Number(new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING`, 'm').exec(listed)?.[1]);
  expect(pid).toBeGreaterThan(0);
  return pid;
}

describe('containerd harness lifecycle', () => {
  it('gives each start its own socket, state and namespace, and the environment to reach it', async () => {
    const first = await startContainerd({ namespace: NAMESPACE });
    const second = await startContainerd({ namespace: NAMESPACE });
    try {
      expect(first.address).not.toBe(second.address);
      expect(first.env.CONTAINERD_ADDRESS).toBe(first.address);
      expect(first.env.CONTAINERD_NAMESPACE).toBe(NAMESPACE);
      expect(first.env.PATH?.split(':')[0]).toBe(first.bin.binDir);
      expect(await first.ctr(['version'])).toMatch(/Server:\s+Version:\s+1\.7\./);
      await first.ctr(['namespaces', 'create', 'only-in-first']);
      expect(await second.ctr(['namespaces', 'list', '--quiet'])).not.toContain('only-in-first');
    } finally {
      await first.stop();
      await second.stop();
    }
  });

  it('stop() kills a running task and removes its mounts, runc state and the temp folder', async () => {
    const containerd = await startContainerd({ namespace: NAMESPACE });
    const pid = await runCounter(containerd, 'left-running');
    expect(await mountsUnder(containerd.dir)).not.toEqual([]);

    await containerd.stop();
    expect(await processAlive(pid)).toBe(false);
    expect(await mountsUnder(containerd.dir)).toEqual([]);
    expect(await exists(join('/run/containerd/runc', NAMESPACE, 'left-running'))).toBe(false);
    expect(await exists(containerd.dir)).toBe(false);
  });

  it('stop() after containerd died still kills the shim and the task (runc delete), and keepLogs keeps only the logs', async () => {
    const containerd = await startContainerd({ namespace: NAMESPACE });
    const pid = await runCounter(containerd, 'orphaned');
    // Fault: containerd killed hard, as a crash would; its shim and task stay behind.
    const containerdPid = containerd.pid;
    process.kill(containerdPid, 'SIGKILL');
    await waitFor('containerd to die', async () => ((await processAlive(containerdPid)) ? undefined : true));

    await containerd.stop({ keepLogs: true });
    expect(await processAlive(pid)).toBe(false);
    expect(await mountsUnder(containerd.dir)).toEqual([]);
    expect(await readdir(containerd.dir)).toEqual(['logs']);
    expect(await readFile(join(containerd.logsDir, 'containerd.log'), 'utf8')).toContain('containerd successfully booted');
    await rm(containerd.dir, { recursive: true });
  });
});

