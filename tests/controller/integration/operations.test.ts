import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Condition, KybernateCheckpoint, KybernateRestore } from '../../../src/api/index.ts';
import { getOptional, type KubeClient, type KubeObject } from '../../../src/controller/kube/client.ts';
import { CHECKPOINTS, EVENTS, PODS, RESTORES } from '../../../src/controller/kube/resources.ts';
import type { ControlPlane } from '../../harness/kube/index.ts';
import { ActivityServer, createNamespace, runPod, startController, startKube, waitFor, type RunningController } from './env.ts';

type Event = KubeObject & { reason: string; type: string; regarding: { name: string } };

describe('checkpoint and restore reconcilers against a real kube-apiserver', () => {
  let plane: ControlPlane;
  let kube: KubeClient;
  let activity: ActivityServer;
  let controller: RunningController;
  let ns: string;

  beforeAll(async () => {
    ({ plane, kube } = await startKube());
    activity = await new ActivityServer().start();
    controller = startController(plane, activity);
    ns = await createNamespace(kube, 'ops');
  });

  afterAll(async () => {
    await controller?.stop();
    await activity?.stop();
    await plane?.stop();
  });

  const createPod = (name: string, containers = ['server']) =>
    kube.create<V1Pod>(PODS, { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec: { containers: containers.map((c) => ({ name: c, image: 'registry.local/app:1' })) } });
  const createCheckpoint = (name: string, podName: string, containerName?: string) =>
    kube.create<KybernateCheckpoint>(CHECKPOINTS, {
      apiVersion: 'kybernate.io/v1alpha1',
      kind: 'KybernateCheckpoint',
      metadata: { name, namespace: ns },
      spec: { podName, ...(containerName ? { containerName } : {}) },
    } as unknown as KybernateCheckpoint);
  const createRestore = (name: string, checkpointRef: string, targetPod: string, node?: string) =>
    kube.create<KybernateRestore>(RESTORES, {
      apiVersion: 'kybernate.io/v1alpha1',
      kind: 'KybernateRestore',
      metadata: { name, namespace: ns },
      spec: { checkpointRef, targetPod: { name: targetPod, ...(node ? { node } : {}) } },
    } as unknown as KybernateRestore);
  const phaseOf = <T extends KubeObject & { status?: { phase?: string } }>(type: typeof CHECKPOINTS, name: string, phase: string) =>
    waitFor(`${type.kind} ${name} ${phase}`, async () => {
      const object = await kube.get<T>(type, ns, name);
      return object.status?.phase === phase ? object : undefined;
    });
  const completedCondition = (object: { status?: { conditions?: Condition[] } }) => object.status?.conditions?.find((c) => c.type === 'Completed');
  const warnings = async (name: string) =>
    (await kube.list<Event>(EVENTS, ns)).items.filter((e) => e.regarding.name === name && e.type === 'Warning').map((e) => e.reason);

  it.each([
    ['missing-pod', undefined, undefined, 'PodNotFound', 'pod nowhere does not exist'],
    ['wrong-container', ['server'], 'sidecar', 'ContainerNotFound', 'has no container "sidecar"'],
    ['ambiguous', ['server', 'sidecar'], undefined, 'ContainerAmbiguous', 'has 2 containers (server, sidecar): set containerName'],
  ])('a checkpoint with a bad reference (%s) fails with a reason and a Warning event', async (name, containers, containerName, reason, message) => {
    const podName = containers ? `${name}-pod` : 'nowhere';
    if (containers) await createPod(podName, containers);
    await createCheckpoint(name, podName, containerName);
    const failed = await phaseOf<KybernateCheckpoint>(CHECKPOINTS, name, 'Failed');
    expect(completedCondition(failed)).toMatchObject({ status: 'False', reason });
    expect(failed.status?.message).toContain(message);
    await waitFor(`${reason} event`, async () => (await warnings(name)).includes(reason));
  });

  it('waits for its pod to run, checkpoints through the agent, and deletes the images on delete (finalizer)', async () => {
    await createPod('app');
    await createCheckpoint('snap', 'app');
    const pending = await phaseOf<KybernateCheckpoint>(CHECKPOINTS, 'snap', 'Pending');
    expect(completedCondition(pending)).toMatchObject({ status: 'False', reason: 'PodNotRunning' });
    expect(pending.metadata?.finalizers).toEqual(['kybernate.io/checkpoint-artifact']);

    await runPod(kube, ns, 'app', 'node-b');
    const done = await phaseOf<KybernateCheckpoint>(CHECKPOINTS, 'snap', 'Completed');
    expect(done.status).toMatchObject({ node: 'node-b', containerID: 'app-server', location: `/var/lib/kybernate/checkpoints/${ns}.snap`, sizeBytes: 4096, checkpointDurationSeconds: 0.25 });
    expect(done.status?.startedAt).toBeDefined();
    expect(done.status?.completedAt).toBeDefined();
    expect(completedCondition(done)).toMatchObject({ status: 'True', reason: 'Checkpointed' });
    const call = controller.agent.checkpoints.find((c) => c.options.checkpointId === `${ns}.snap`);
    expect(call).toMatchObject({ container: { node: 'node-b', pod: 'app', container: 'server', containerId: 'app-server' }, options: { operationId: done.metadata?.uid, leaveRunning: false } });

    await kube.delete(CHECKPOINTS, ns, 'snap');
    await waitFor('checkpoint gone', async () => (await getOptional(kube, CHECKPOINTS, ns, 'snap')) === undefined);
    expect(controller.agent.deletes).toContainEqual({ node: 'node-b', checkpointId: `${ns}.snap` });
  });

  it('retries while the agent is unavailable instead of failing the checkpoint', async () => {
    await createPod('busy');
    await runPod(kube, ns, 'busy');
    controller.agent.unavailable = true;
    await createCheckpoint('later', 'busy');
    await phaseOf<KybernateCheckpoint>(CHECKPOINTS, 'later', 'Running');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await kube.get<KybernateCheckpoint>(CHECKPOINTS, ns, 'later')).status?.phase).toBe('Running');
    controller.agent.unavailable = false;
    await phaseOf<KybernateCheckpoint>(CHECKPOINTS, 'later', 'Completed');
  });

  it('a restore validates its checkpoint and node, waits for the target pod, then restores', async () => {
    await createRestore('no-checkpoint', 'missing', 'target-0');
    const missing = await phaseOf<KybernateRestore>(RESTORES, 'no-checkpoint', 'Failed');
    expect(completedCondition(missing)).toMatchObject({ reason: 'CheckpointNotFound' });
    await waitFor('CheckpointNotFound event', async () => (await warnings('no-checkpoint')).includes('CheckpointNotFound'));

    // The checkpoint is not done yet: the restore waits and follows it.
    await createPod('src');
    await createCheckpoint('base', 'src');
    await createRestore('wrong-node', 'base', 'target-1', 'node-z');
    await createRestore('into-1', 'base', 'target-1');
    const waiting = await phaseOf<KybernateRestore>(RESTORES, 'into-1', 'Pending');
    expect(completedCondition(waiting)).toMatchObject({ reason: 'CheckpointNotCompleted' });
    await runPod(kube, ns, 'src');
    await phaseOf<KybernateCheckpoint>(CHECKPOINTS, 'base', 'Completed');

    const mismatch = await phaseOf<KybernateRestore>(RESTORES, 'wrong-node', 'Failed');
    expect(completedCondition(mismatch)).toMatchObject({ reason: 'NodeMismatch' });
    const noPod = await waitFor('TargetPodMissing', async () => {
      const r = await kube.get<KybernateRestore>(RESTORES, ns, 'into-1');
      return completedCondition(r)?.reason === 'TargetPodMissing' ? r : undefined;
    });
    expect(noPod.status?.phase).toBe('Pending');

    await createPod('target-1');
    const restored = await phaseOf<KybernateRestore>(RESTORES, 'into-1', 'Completed');
    expect(restored.status).toMatchObject({ restoredPod: 'target-1', node: 'node-a', containerID: 'restored-target-1', restoreDurationSeconds: 0.3 });
    expect(controller.agent.restores.find((r) => r.target.pod === 'target-1')).toMatchObject({
      artifact: { node: 'node-a', checkpointId: `${ns}.base` },
      target: { node: 'node-a', namespace: ns, container: 'server' },
      operationId: restored.metadata?.uid,
    });
  });

  it('a failed agent restore is reported as RestoreFailed', async () => {
    await createPod('target-2');
    controller.agent.failNext.restore = 'criu restore: pid 4242 is in use';
    await createRestore('clash', 'base', 'target-2');
    const failed = await phaseOf<KybernateRestore>(RESTORES, 'clash', 'Failed');
    expect(completedCondition(failed)).toMatchObject({ reason: 'RestoreFailed' });
    expect(failed.status?.message).toContain('pid 4242 is in use');
  });
});
