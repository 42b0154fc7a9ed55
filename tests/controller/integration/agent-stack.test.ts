import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findCondition, type KybernateCheckpoint, type KybernateRestore } from '../../../src/api/index.ts';
import type { CudaCheckpointApi, GpuUuidPair } from '../../../src/agent/cuda/api.ts';
import { FakeCudaDriver, TEST_GPU_UUID, testGpuSupport } from '../../cuda/fake-driver.ts';
import { GrpcNodeAgent } from '../../../src/controller/agent/grpc-node-agent.ts';
import { getOptional } from '../../../src/lib/kube/client.ts';
import { CHECKPOINTS, PODS, RESTORES } from '../../../src/lib/kube/resources.ts';
import { useAgentStack } from '../../agent/helpers/agent.ts';
import { removeTestContainer, runTestContainer } from '../../agent/helpers/containers.ts';
import { counterValues, isConsecutive, waitForCounter } from '../../agent/helpers/observe.ts';
import { TEST_IMAGE_REF, testImageArgs } from '../../harness/containerd/index.ts';
import { createNamespace, runPod, startController, useControllerEnvironment, waitFor, type RunningController } from './env.ts';

/**
 * The API side and the real node agent together: kube-apiserver + the controller with its gRPC
 * NodeAgent, talking to src/agent on a unix socket, in front of containerd + runc + CRIU. A counter
 * container stands in for the pod's container (no kubelet here): the pod's status names its id.
 */
describe('controller + gRPC node agent + containerd/CRIU', () => {
  const stack = useAgentStack('controller');
  const env = useControllerEnvironment({ withController: false });
  let controller: RunningController<GrpcNodeAgent>;
  let ns: string;

  beforeAll(async () => {
    const t = stack();
    controller = startController(env.plane, env.activity, 'controller-grpc', new GrpcNodeAgent(() => t.client, t.namespace));
    ns = await createNamespace(env.kube, 'real');
  });

  afterAll(async () => {
    await controller?.stop();
  });

  const createPod = (name: string) =>
    env.kube.create<V1Pod>(PODS, { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec: { containers: [{ name: 'server', image: TEST_IMAGE_REF }] } });
  const phase = <T extends { status?: { phase?: string } }>(type: typeof CHECKPOINTS, name: string, wanted: string) =>
    waitFor(`${type.kind} ${name} ${wanted}`, async () => {
      const object = await env.kube.get<T & { metadata?: object }>(type, ns, name);
      if (object.status?.phase === 'Failed' && wanted !== 'Failed') throw new Error(`${name} failed: ${JSON.stringify(object.status)}`);
      return object.status?.phase === wanted ? object : undefined;
    }, 60_000);

  it('checkpoints a running container through the agent, restores it (the counter continues), and deletes the images', async () => {
    const t = stack();
    // runPod reports the container id `<pod>-<container>`: the counter runs under that id.
    const containerId = 'counter-server';
    await runTestContainer(t.ctrd, { id: containerId, image: TEST_IMAGE_REF, args: testImageArgs.counter(), namespace: t.namespace, logPath: t.originalLog(containerId) });
    await waitForCounter(t.originalLog(containerId), 3);
    await createPod('counter');
    await runPod(env.kube, ns, 'counter');

    await env.kube.create(CHECKPOINTS, { apiVersion: 'kybernate.io/v1alpha1', kind: 'KybernateCheckpoint', metadata: { name: 'snap', namespace: ns }, spec: { podName: 'counter' } });
    const done = await phase<KybernateCheckpoint>(CHECKPOINTS, 'snap', 'Completed');
    expect(done.status?.sizeBytes).toBeGreaterThan(0);
    expect(done.status?.location).toBe(path.join(t.dirs.store, `${ns}.snap`));
    expect(done.status?.checkpointDurationSeconds).toBeGreaterThan(0);
    expect((await t.client.getCheckpoint(`${ns}.snap`)).container_id).toBe(containerId);
    // leaveRunning false: the task stopped at the checkpoint; its last number is the checkpointed state.
    const before = await counterValues(t.originalLog(containerId));
    await removeTestContainer(t.ctrd, containerId, t.namespace, t.stateDir);

    await createPod('counter-restored');
    await env.kube.create(RESTORES, { apiVersion: 'kybernate.io/v1alpha1', kind: 'KybernateRestore', metadata: { name: 'back', namespace: ns }, spec: { checkpointRef: 'snap', targetPod: { name: 'counter-restored' } } });
    const restored = await phase<KybernateRestore>(RESTORES, 'back', 'Completed');
    expect(restored.status).toMatchObject({ restoredPod: 'counter-restored', containerID: containerId });
    const after = await waitForCounter(path.join(t.dirs.logs, t.namespace, `${containerId}.log`), 3);
    expect(after[0]).toBe(before.at(-1)! + 1);
    expect(isConsecutive(after)).toBe(true);
    await removeTestContainer(t.ctrd, containerId, t.namespace, t.stateDir);

    await env.kube.delete(CHECKPOINTS, ns, 'snap');
    await waitFor('checkpoint object gone', async () => (await getOptional(env.kube, CHECKPOINTS, ns, 'snap')) === undefined, 30_000);
    expect((await t.client.listCheckpoints()).checkpoints.map((c) => c.id)).not.toContain(`${ns}.snap`);
  });

  it('a gpu.enabled checkpoint asks the agent for a GPU checkpoint and shows what it captured; the restore waits while the agent reports no usable GPU and brings the GPU state back once it reports one (FakeCudaDriver)', async () => {
    const t = stack();
    const containerId = 'cuda-server';
    const GPU = TEST_GPU_UUID;
    // Holding a file named /dev/nvidia-fake open makes the shell a CUDA candidate for the agent.
    const args = ['/bin/sh', '-c', 'touch /dev/nvidia-fake; exec 3</dev/nvidia-fake; i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done'];
    const pid = await runTestContainer(t.ctrd, { id: containerId, image: TEST_IMAGE_REF, args, namespace: t.namespace, logPath: t.originalLog(containerId) });
    for (let i = 0; i < 100 && !(await fs.readlink(`/proc/${pid}/fd/3`).catch(() => '')).startsWith('/dev/nvidia'); i++) await sleep(50);
    const cuda = new RestoredPidsFakeCuda(pid);
    // The real agent with a TEST DOUBLE for libcuda/NVML (no GPU here): one 16 GiB GPU, the shell holding 1 GiB on it.
    const gpu = testGpuSupport(cuda, [{ pid, usedBytes: 2 ** 30 }]);
    t.agent.agent.ctx.gpu = gpu;
    try {
      await createPod('cuda');
      await runPod(env.kube, ns, 'cuda');
      await env.kube.create(CHECKPOINTS, { apiVersion: 'kybernate.io/v1alpha1', kind: 'KybernateCheckpoint', metadata: { name: 'gpu-snap', namespace: ns }, spec: { podName: 'cuda', gpu: { enabled: true } } });
      const done = await phase<KybernateCheckpoint>(CHECKPOINTS, 'gpu-snap', 'Completed');
      expect(done.status?.gpu).toEqual({ driverVersion: 'test', driverApiVersion: 13000, processes: 1, devices: [{ uuid: GPU, model: 'Test GPU', memoryTotalBytes: 2 ** 34, capturedBytes: 2 ** 30 }] });
      expect(done.status?.gpuMemoryBytes).toBe(2 ** 30);
      expect(cuda.state(pid)).toBe('checkpointed');
      await removeTestContainer(t.ctrd, containerId, t.namespace, t.stateDir);

      // The agent's GetStatus reports the test double's GPU, mapped for the GPU preflight.
      expect((await controller.agent.status('node-a')).gpu).toEqual({
        usable: true,
        driverVersion: 'test',
        driverApiVersion: 13000,
        supportedDriverApiVersions: [13000],
        gpus: [{ uuid: GPU, model: 'Test GPU', memoryTotalBytes: 2 ** 34, memoryFreeBytes: 2 ** 33 }],
      });

      // Back to this machine's own GPU support: no NVIDIA driver here. The preflight keeps the restore waiting with the agent's reason.
      t.agent.agent.ctx.gpu = undefined;
      const noDriver = "no NVIDIA kernel driver on this node: ENOENT: no such file or directory, open '/proc/driver/nvidia/version'";
      expect((await controller.agent.status('node-a')).gpu).toEqual({ usable: false, error: noDriver });
      cuda.adoptRestoredPids = true;
      await createPod('cuda-restored');
      await env.kube.create(RESTORES, { apiVersion: 'kybernate.io/v1alpha1', kind: 'KybernateRestore', metadata: { name: 'gpu-back', namespace: ns }, spec: { checkpointRef: 'gpu-snap', targetPod: { name: 'cuda-restored' } } });
      const waiting = await waitFor('restore waiting for a GPU', async () => {
        const restore = await env.kube.get<KybernateRestore>(RESTORES, ns, 'gpu-back');
        return findCondition(restore.status?.conditions, 'GpuReady')?.reason === 'GpuUnavailable' ? restore : undefined;
      });
      expect(waiting.status?.phase).toBe('Pending');
      expect(findCondition(waiting.status?.conditions, 'GpuReady')).toMatchObject({ status: 'False', message: expect.stringContaining(noDriver) });

      // The GPU "appears": the next check passes and the restore keeps the recorded GPU.
      t.agent.agent.ctx.gpu = gpu;
      const restored = await phase<KybernateRestore>(RESTORES, 'gpu-back', 'Completed');
      expect(restored.status?.gpuMemoryBytes).toBe(2 ** 30);
      expect(findCondition(restored.status?.conditions, 'GpuReady')).toMatchObject({ status: 'True', reason: 'CompatibleGpu', message: 'the checkpointed GPUs are free on node-a' });
      const task = await t.ctrd.getTask(containerId, { namespace: t.namespace });
      expect(cuda.state(task.pid)).toBe('running');
    } finally {
      t.agent.agent.ctx.gpu = undefined;
      await removeTestContainer(t.ctrd, containerId, t.namespace, t.stateDir).catch(() => undefined);
    }
  });
});

/**
 * TEST DOUBLE of libcuda's checkpoint API over FakeCudaDriver, one per host pid. With
 * `adoptRestoredPids`, a pid it has not seen is a process CRIU just restored (a new host pid): the
 * driver sees it CUDA-checkpointed, as the real one sees a restored CUDA process.
 */
class RestoredPidsFakeCuda implements CudaCheckpointApi {
  readonly driverApiVersion = 13000;
  adoptRestoredPids = false;
  private readonly drivers = new Map<number, FakeCudaDriver>();

  constructor(runningPid: number) {
    this.drivers.set(runningPid, new FakeCudaDriver({ [runningPid]: 'running' }));
  }

  state(pid: number) {
    return this.drivers.get(pid)?.state(pid);
  }

  private of(pid: number): FakeCudaDriver {
    let driver = this.drivers.get(pid);
    if (!driver) {
      driver = new FakeCudaDriver(this.adoptRestoredPids ? { [pid]: 'checkpointed' } : {});
      if (this.adoptRestoredPids) this.drivers.set(pid, driver);
    }
    return driver;
  }

  lock = (pid: number, timeoutMs: number) => this.of(pid).lock(pid, timeoutMs);
  checkpoint = (pid: number) => this.of(pid).checkpoint(pid);
  restore = (pid: number, gpuPairs?: readonly GpuUuidPair[]) => this.of(pid).restore(pid, gpuPairs);
  unlock = (pid: number) => this.of(pid).unlock(pid);
  getState = (pid: number) => this.of(pid).getState(pid);
  getRestoreThreadId = (pid: number) => this.of(pid).getRestoreThreadId(pid);
}
