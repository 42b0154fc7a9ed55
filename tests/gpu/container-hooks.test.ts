import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointContainer, type AgentContext } from '../../src/agent/checkpoint.ts';
import { ContainerdClient } from '../../src/agent/containerd/client.ts';
import { CudaSequenceError } from '../../src/agent/cuda/errors.ts';
import type { GpuSupport } from '../../src/agent/gpu/support.ts';
import { CheckpointStore } from '../../src/agent/store/store.ts';
import { createLogger } from '../../src/lib/log.ts';
import { TEST_IMAGE_REF } from '../harness/containerd/index.ts';
import { useContainerd } from '../harness/containerd/vitest.ts';
import { removeTestContainer, runTestContainer } from '../agent/helpers/containers.ts';
import { FakeCudaDriver, testGpuSupport } from '../cuda/fake-driver.ts';

/**
 * The GPU hooks of the agent's checkpoint on the real stack (containerd, runc, CRIU) with the
 * FakeCudaDriver test double standing in for libcuda (no GPU here): the container's shell holds a file
 * named /dev/nvidia-fake open, which is what makes it a CUDA candidate in /proc, and the fake driver
 * knows its host pid. What is checked is the agent's order and rollback around the real CRIU dump.
 */
const getContainerd = useContainerd();
const log = createLogger('gpu-hooks-test');
// Opens the fake device on fd 3 and keeps running; its counter file shows it is not frozen.
const HOLDS_FAKE_DEVICE = ['/bin/sh', '-c', 'touch /dev/nvidia-fake; exec 3</dev/nvidia-fake; i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done'];

describe('agent checkpoint with gpu=true (real containerd + CRIU, FakeCudaDriver)', () => {
  let client: ContainerdClient;
  let ctx: AgentContext;
  let storeRoot: string;
  let events: string[];

  beforeAll(async () => {
    const { containerd } = getContainerd();
    client = new ContainerdClient({ address: containerd.address });
    storeRoot = path.join(containerd.dir, 'gpu-hooks-store');
    const store = new CheckpointStore(storeRoot);
    await store.init();
    ctx = { containerd: client, store, log, nodeInfo: { node: 'test', kernel: 'test', criu: 'test', containerd: 'test' }, criuTimeoutMs: 120_000, logDir: path.join(containerd.dir, 'gpu-hooks-logs') };
  });
  afterAll(() => client?.close());

  async function startHolder(id: string): Promise<{ pid: number; driver: FakeCudaDriver }> {
    const { containerd } = getContainerd();
    const pid = await runTestContainer(client, { id, image: TEST_IMAGE_REF, args: HOLDS_FAKE_DEVICE, namespace: containerd.namespace, logPath: path.join(containerd.dir, `${id}.log`) });
    // The shell has opened the file once its fd 3 points at it.
    for (let i = 0; i < 100 && !(await fs.readlink(`/proc/${pid}/fd/3`).catch(() => '')).startsWith('/dev/nvidia'); i++) await sleep(50);
    const driver = new FakeCudaDriver({ [pid]: 'running' });
    ctx.gpu = recordingSupport(driver);
    return { pid, driver };
  }

  /** The node's support with the fake driver and a fixed GPU list; every driver call is also an event. */
  function recordingSupport(driver: FakeCudaDriver): GpuSupport {
    events = [];
    const original = { lock: driver.lock.bind(driver), checkpoint: driver.checkpoint.bind(driver), restore: driver.restore.bind(driver), unlock: driver.unlock.bind(driver) };
    for (const name of ['lock', 'checkpoint', 'restore', 'unlock'] as const) {
      driver[name] = async (pid: number, ...rest: never[]) => {
        events.push(`cuda-${name}`);
        return (original[name] as (pid: number, ...args: never[]) => Promise<void>)(pid, ...rest);
      };
    }
    return testGpuSupport(driver);
  }

  it('leaveRunning: CUDA lock+checkpoint before the freeze, restore+unlock after the thaw, the GPU record in the manifest', async () => {
    const { containerd } = getContainerd();
    const { pid, driver } = await startHolder('gpu-hooks-ok');
    try {
      const steps: string[] = [];
      const manifest = await checkpointContainer(ctx, { namespace: containerd.namespace, containerId: 'gpu-hooks-ok', leaveRunning: true, gpu: true }, (step) => {
        steps.push(step);
        events.push(step);
      });
      // The shell gains no large memory during its (fake) CUDA checkpoint: no host copy, CRIU dumps it all.
      expect(steps).toEqual(['inspect', 'gpu-checkpoint', 'host-copy', 'pause', 'capture', 'commit', 'resume', 'gpu-restore']);
      expect(events).toEqual(['inspect', 'gpu-checkpoint', 'cuda-lock', 'cuda-checkpoint', 'host-copy', 'pause', 'capture', 'commit', 'resume', 'gpu-restore', 'cuda-restore', 'cuda-unlock']);
      expect(manifest.gpu?.hostCopies).toBeUndefined();
      expect(driver.state(pid)).toBe('running');
      expect(manifest.gpu?.processes).toEqual([{ pid, gpuUuid: null, usedBytes: null }]);
      expect(manifest.gpu?.gpus.map((g) => g.name)).toEqual(['Test GPU']);
      expect((await client.getTask('gpu-hooks-ok', { namespace: containerd.namespace })).status).toBe('RUNNING');
    } finally {
      await removeTestContainer(client, 'gpu-hooks-ok', containerd.namespace, path.join(containerd.dir, 'state'));
    }
  }, 120_000);

  it('a CUDA failure rolls back: nothing stored, the process is CUDA-running and the container keeps running', async () => {
    const { containerd } = getContainerd();
    const { pid, driver } = await startHolder('gpu-hooks-fail');
    try {
      driver.failNext('checkpoint', pid, 'CUDA_ERROR_OUT_OF_MEMORY');
      const before = (await ctx.store.list()).length;
      const err = await checkpointContainer(ctx, { namespace: containerd.namespace, containerId: 'gpu-hooks-fail', leaveRunning: false, gpu: true }, () => undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CudaSequenceError);
      expect(driver.state(pid)).toBe('running');
      expect((await ctx.store.list()).length).toBe(before);
      expect((await client.getTask('gpu-hooks-fail', { namespace: containerd.namespace })).status).toBe('RUNNING');
    } finally {
      await removeTestContainer(client, 'gpu-hooks-fail', containerd.namespace, path.join(containerd.dir, 'state'));
    }
  }, 120_000);
});
