import type { V1Pod } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { findCondition, type CheckpointGpuStatus, type Condition, type KybernateCheckpoint, type KybernateRestore, type KybernateWorkload } from '../../../src/api/index.ts';
import type { NodeGpu, NodeGpuReport } from '../../../src/controller/agent/node-agent.ts';
import type { KubeObject } from '../../../src/lib/kube/client.ts';
import { CHECKPOINTS, EVENTS, PODS, RESTORES, WORKLOADS, type ResourceType } from '../../../src/lib/kube/resources.ts';
import { createNamespace, isReady, runPod, useControllerEnvironment, waitFor, waitForWorkload, workloadManifest } from './env.ts';

type Event = KubeObject & { reason: string; type: string; note: string; regarding: { name: string } };

const RUNTIME_CLASSES: ResourceType = { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', plural: 'runtimeclasses', namespaced: false };
const GiB = 2 ** 30;
const H100 = 'NVIDIA H100 80GB HBM3';
const A100 = 'NVIDIA A100-SXM4-40GB';
const CHECKPOINTED_GPU = 'GPU-11111111-2222-3333-4444-555555555555';
const OTHER_GPU = 'GPU-66666666-7777-8888-9999-000000000000';

/** What the stand-in agent "captures" for a gpu.enabled checkpoint: 16 GiB on one H100. */
const CAPTURE: CheckpointGpuStatus = {
  driverVersion: '580.159.04',
  driverApiVersion: 13000,
  processes: 1,
  devices: [{ uuid: CHECKPOINTED_GPU, model: H100, memoryTotalBytes: 80 * GiB, capturedBytes: 16 * GiB }],
};
const gpu = (uuid: string, freeGib: number, model = H100): NodeGpu => ({ uuid, model, memoryTotalBytes: 80 * GiB, memoryFreeBytes: freeGib * GiB });
const usable = (...gpus: NodeGpu[]): NodeGpuReport => ({ usable: true, driverVersion: '580.159.04', driverApiVersion: 13000, supportedDriverApiVersions: [13000], gpus });
const NO_DRIVER: NodeGpuReport = { usable: false, error: 'no NVIDIA kernel driver on this node: ENOENT /proc/driver/nvidia/version' };

/**
 * The controller's GPU needs against a real kube-apiserver: pod fields of GPU workloads, and the GPU
 * preflight of restores. The node's GPU report and the checkpoint's GPU record come from the in-process
 * test agent, a NAMED STAND-IN: this machine has no GPU (the real agent's GPU path is proven in tests/gpu).
 */
describe('GPU pods and the GPU restore preflight (stand-in agent GPU reports) against a real kube-apiserver', () => {
  const env = useControllerEnvironment({ withController: true });
  let ns: string;
  beforeAll(async () => {
    ns = await createNamespace(env.kube, 'gpu');
    // The RuntimeClass admission plugin refuses pods naming a class that does not exist, as a real cluster does.
    for (const name of ['nvidia', 'nvidia-cdi']) await env.kube.create(RUNTIME_CLASSES, { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name }, handler: name } as KubeObject);
    env.controller.agent.gpuCapture = CAPTURE;
  });

  const gpuWorkload = (name: string, template?: Record<string, unknown>) => {
    const manifest = workloadManifest(ns, name) as unknown as { spec: Record<string, unknown> & { template: { spec: Record<string, unknown> } } };
    manifest.spec.checkpoint = { gpu: { enabled: true } };
    if (template) manifest.spec.template.spec = { ...manifest.spec.template.spec, ...template };
    return manifest as unknown as KybernateWorkload;
  };
  const podOf = (workload: string) =>
    waitFor(`a pod of ${workload}`, async () => (await env.kube.list<V1Pod>(PODS, ns)).items.find((p) => p.metadata?.labels?.['kybernate.io/workload'] === workload && !p.metadata.deletionTimestamp));
  const restoreWith = (name: string, accept: (restore: KybernateRestore) => boolean) =>
    waitFor(
      `restore ${name}`,
      async () => {
        const restore = await env.kube.get<KybernateRestore>(RESTORES, ns, name);
        return accept(restore) ? restore : undefined;
      },
      60_000,
    );
  const gpuReady = (object: { status?: { conditions?: Condition[] } }) => findCondition(object.status?.conditions, 'GpuReady');
  const waitingFor = (reason: string) => (restore: KybernateRestore) => restore.status?.phase === 'Pending' && gpuReady(restore)?.status === 'False' && gpuReady(restore)?.reason === reason;
  const warningReasons = async (name: string) => (await env.kube.list<Event>(EVENTS, ns)).items.filter((e) => e.regarding.name === name && e.type === 'Warning').map((e) => e.reason);
  const restoreCalls = (pod: string) => env.controller.agent.restores.filter((r) => r.target.namespace === ns && r.target.pod === pod);

  it('pods of GPU workloads get the runtime class and the GPU resource; the template decides where it says something', async () => {
    await env.kube.create(WORKLOADS, gpuWorkload('llm'));
    const pod = await podOf('llm');
    expect(pod.spec?.runtimeClassName).toBe('nvidia');
    expect(pod.spec?.containers[0]?.resources?.limits).toEqual({ 'nvidia.com/gpu': '1' });
    // The API server defaults requests of extended resources to their limits.
    expect(pod.spec?.containers[0]?.resources?.requests).toEqual({ 'nvidia.com/gpu': '1' });

    await env.kube.create(WORKLOADS, gpuWorkload('big', { runtimeClassName: 'nvidia-cdi', containers: [{ name: 'server', image: 'registry.local/llm:1', resources: { limits: { 'nvidia.com/gpu': 2 } } }] }));
    const big = await podOf('big');
    expect(big.spec?.runtimeClassName).toBe('nvidia-cdi');
    expect(big.spec?.containers[0]?.resources?.limits).toEqual({ 'nvidia.com/gpu': '2' });

    await env.kube.create(WORKLOADS, workloadManifest(ns, 'cpu'));
    const cpu = await podOf('cpu');
    expect(cpu.spec?.runtimeClassName).toBeUndefined();
    expect(cpu.spec?.containers[0]?.resources?.limits).toBeUndefined();
  });

  it('a GPU checkpoint records what was captured; its restore waits while the node has no compatible GPU, then proceeds', async () => {
    const createPod = (name: string) =>
      env.kube.create<V1Pod>(PODS, { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec: { containers: [{ name: 'server', image: 'registry.local/llm:1' }] } });
    await createPod('src');
    await runPod(env.kube, ns, 'src', 'gpu-node');
    await env.kube.create(CHECKPOINTS, { apiVersion: 'kybernate.io/v1alpha1', kind: 'KybernateCheckpoint', metadata: { name: 'snap', namespace: ns }, spec: { podName: 'src', gpu: { enabled: true } } } as KubeObject);
    const checkpoint = await waitFor('checkpoint Completed', async () => {
      const c = await env.kube.get<KybernateCheckpoint>(CHECKPOINTS, ns, 'snap');
      return c.status?.phase === 'Completed' ? c : undefined;
    });
    expect(checkpoint.status?.gpu).toEqual(CAPTURE);
    expect(checkpoint.status?.gpuMemoryBytes).toBe(16 * GiB);
    expect(env.controller.agent.checkpoints.find((c) => c.options.checkpointId === `${ns}.snap`)?.options.gpu).toMatchObject({ enabled: true, lockTimeoutMs: 10_000 });

    // Too small: the only H100 has 8 GiB free.
    env.controller.agent.gpuReports.set('gpu-node', usable(gpu(CHECKPOINTED_GPU, 8)));
    await createPod('target');
    await env.kube.create(RESTORES, { apiVersion: 'kybernate.io/v1alpha1', kind: 'KybernateRestore', metadata: { name: 'back', namespace: ns }, spec: { checkpointRef: 'snap', targetPod: { name: 'target' } } } as KubeObject);
    const tooSmall = await restoreWith('back', waitingFor('NoCompatibleGpu'));
    expect(gpuReady(tooSmall)?.message).toBe(
      `node gpu-node has no free ${H100} with 16.0 GiB for the checkpointed GPU ${CHECKPOINTED_GPU} (node has: ${CHECKPOINTED_GPU} ${H100} 8.0 GiB free of 80.0 GiB)`,
    );
    expect(findCondition(tooSmall.status?.conditions, 'Completed')).toMatchObject({ status: 'False', reason: 'NoCompatibleGpu' });
    await waitFor('NoCompatibleGpu event', async () => (await warningReasons('back')).includes('NoCompatibleGpu'));

    // Another model: still waiting, with what the node has now.
    env.controller.agent.gpuReports.set('gpu-node', usable(gpu(OTHER_GPU, 40, A100)));
    await restoreWith('back', (r) => waitingFor('NoCompatibleGpu')(r) && (gpuReady(r)?.message.includes(A100) ?? false));

    // No driver: the agent's error, as its own reason.
    env.controller.agent.gpuReports.set('gpu-node', NO_DRIVER);
    const noDriver = await restoreWith('back', waitingFor('GpuUnavailable'));
    expect(gpuReady(noDriver)?.message).toContain(`node gpu-node cannot restore GPU state (needs ${H100} with 16.0 GiB free): ${NO_DRIVER.error}`);
    await waitFor('GpuUnavailable event', async () => (await warningReasons('back')).includes('GpuUnavailable'));
    // One event per reason, not one per retry.
    expect((await warningReasons('back')).filter((reason) => reason === 'NoCompatibleGpu')).toHaveLength(1);
    expect(restoreCalls('target')).toHaveLength(0);

    // A free H100 (another one): the re-check finds it and the restore goes ahead onto it.
    env.controller.agent.gpuReports.set('gpu-node', usable(gpu(CHECKPOINTED_GPU, 2), gpu(OTHER_GPU, 70)));
    const restored = await restoreWith('back', (r) => r.status?.phase === 'Completed');
    expect(gpuReady(restored)).toMatchObject({ status: 'True', reason: 'CompatibleGpu', message: `restoring onto ${OTHER_GPU} (for ${CHECKPOINTED_GPU}) on gpu-node` });
    expect(restored.status?.gpuMemoryBytes).toBe(16 * GiB);
    expect(restoreCalls('target')).toHaveLength(1);
    expect(restoreCalls('target')[0]?.target.deviceMapping).toEqual([{ from: CHECKPOINTED_GPU, to: OTHER_GPU }]);

    // A device mapping that leaves out the checkpointed GPU can never work (the spec is immutable): it fails.
    await createPod('target-2');
    await env.kube.create(RESTORES, {
      apiVersion: 'kybernate.io/v1alpha1',
      kind: 'KybernateRestore',
      metadata: { name: 'bad-map', namespace: ns },
      spec: { checkpointRef: 'snap', targetPod: { name: 'target-2' }, gpu: { deviceMapping: [{ from: OTHER_GPU, to: OTHER_GPU }] } },
    } as KubeObject);
    const badMap = await restoreWith('bad-map', (r) => r.status?.phase === 'Failed');
    expect(gpuReady(badMap)).toMatchObject({ status: 'False', reason: 'InvalidDeviceMapping', message: expect.stringContaining(`maps ${OTHER_GPU}, which the checkpoint did not use`) });
    expect(restoreCalls('target-2')).toHaveLength(0);
  });

  it('a workload wake waits for a compatible GPU on its node (GpuReady on the workload), then restores into a GPU pod', async () => {
    await env.kube.create(WORKLOADS, gpuWorkload('wake'));
    await runPod(env.kube, ns, (await podOf('wake')).metadata!.name!, 'gpu-node-w');
    await waitForWorkload(env.kube, ns, 'wake', 'Running', isReady);
    await env.kube.mergePatch(WORKLOADS, ns, 'wake', { spec: { suspend: true } });
    const suspended = await waitForWorkload(env.kube, ns, 'wake', 'Suspended');
    expect((await env.kube.get<KybernateCheckpoint>(CHECKPOINTS, ns, suspended.status!.lastCheckpointRef!)).status?.gpu).toEqual(CAPTURE);

    env.controller.agent.gpuReports.set('gpu-node-w', NO_DRIVER);
    await env.kube.mergePatch(WORKLOADS, ns, 'wake', { spec: { suspend: false } });
    const waiting = await waitForWorkload(env.kube, ns, 'wake', 'Restoring', (w) => gpuReady(w)?.status === 'False', 60_000);
    expect(gpuReady(waiting)).toMatchObject({ reason: 'GpuUnavailable', message: expect.stringContaining(NO_DRIVER.error) });
    expect(waiting.status?.message).toContain('waiting for a compatible GPU');
    await waitFor('GpuUnavailable event on the workload', async () => (await warningReasons('wake')).includes('GpuUnavailable'));
    const pod = await podOf('wake');
    expect(pod.spec).toMatchObject({ nodeName: 'gpu-node-w', runtimeClassName: 'nvidia', containers: [{ resources: { limits: { 'nvidia.com/gpu': '1' } } }] });
    expect(restoreCalls(pod.metadata!.name!)).toHaveLength(0);

    env.controller.agent.gpuReports.set('gpu-node-w', usable(gpu(CHECKPOINTED_GPU, 79)));
    await restoreWith(pod.metadata!.name!, (r) => r.status?.phase === 'Completed');
    await runPod(env.kube, ns, pod.metadata!.name!);
    const running = await waitForWorkload(env.kube, ns, 'wake', 'Running', isReady);
    expect(gpuReady(running)).toMatchObject({ status: 'True', reason: 'CompatibleGpu' });
    // The recorded GPU is free again: restored onto it, without a mapping.
    expect(restoreCalls(pod.metadata!.name!)).toMatchObject([{ target: { deviceMapping: [] } }]);
  });
});
