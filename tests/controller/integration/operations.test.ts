import type { V1Pod } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Condition, KybernateCheckpoint, KybernateRestore } from '../../../src/api/index.ts';
import { getOptional, type KubeObject } from '../../../src/lib/kube/client.ts';
import { CHECKPOINTS, EVENTS, PODS, RESTORES } from '../../../src/lib/kube/resources.ts';
import { createNamespace, runPod, useControllerEnvironment, waitFor } from './env.ts';

type Event = KubeObject & { reason: string; type: string; regarding: { name: string } };

describe('checkpoint and restore reconcilers against a real kube-apiserver', () => {
  const env = useControllerEnvironment({ withController: true });
  let ns: string;
  beforeAll(async () => {
    ns = await createNamespace(env.kube, 'ops');
  });

  const createPod = (name: string, containers = ['server']) =>
    env.kube.create<V1Pod>(PODS, { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec: { containers: containers.map((c) => ({ name: c, image: 'registry.local/app:1' })) } });
  const createCheckpoint = (name: string, podName: string, containerName?: string) =>
    env.kube.create<KybernateCheckpoint>(CHECKPOINTS, {
      apiVersion: 'kybernate.io/v1alpha1',
      kind: 'KybernateCheckpoint',
      metadata: { name, namespace: ns },
      spec: { podName, ...(containerName ? { containerName } : {}) },
    } as unknown as KybernateCheckpoint);
  const createRestore = (name: string, checkpointRef: string, targetPod: string, node?: string) =>
    env.kube.create<KybernateRestore>(RESTORES, {
      apiVersion: 'kybernate.io/v1alpha1',
      kind: 'KybernateRestore',
      metadata: { name, namespace: ns },
      spec: { checkpointRef, targetPod: { name: targetPod, ...(node ? { node } : {}) } },
    } as unknown as KybernateRestore);
  const phaseOf = <T extends KubeObject & { status?: { phase?: string } }>(type: typeof CHECKPOINTS, name: string, phase: string) =>
    waitFor(`${type.kind} ${name} ${phase}`, async () => {
      const object = await env.kube.get<T>(type, ns, name);
      return object.status?.phase === phase ? object : undefined;
    });
  const completedCondition = (object: { status?: { conditions?: Condition[] } }) => object.status?.conditions?.find((c) => c.type === 'Completed');
  const warnings = async (name: string) =>
    (await env.kube.list<Event>(EVENTS, ns)).items.filter((e) => e.regarding.name === name && e.type === 'Warning').map((e) => e.reason);

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

    await runPod(env.kube, ns, 'app', 'node-b');
    const done = await phaseOf<KybernateCheckpoint>(CHECKPOINTS, 'snap', 'Completed');
    expect(done.status).toMatchObject({ node: 'node-b', containerID: 'app-server', location: `/var/lib/kybernate/checkpoints/${ns}.snap`, sizeBytes: 4096, checkpointDurationSeconds: 0.25 });
    expect(done.status?.startedAt).toBeDefined();
    expect(done.status?.completedAt).toBeDefined();
    expect(completedCondition(done)).toMatchObject({ status: 'True', reason: 'Checkpointed' });
    const call = env.controller.agent.checkpoints.find((c) => c.options.checkpointId === `${ns}.snap`);
    expect(call).toMatchObject({ container: { node: 'node-b', pod: 'app', container: 'server', containerId: 'app-server' }, options: { operationId: done.metadata?.uid, leaveRunning: false } });

    await env.kube.delete(CHECKPOINTS, ns, 'snap');
    await waitFor('checkpoint gone', async () => (await getOptional(env.kube, CHECKPOINTS, ns, 'snap')) === undefined);
    expect(env.controller.agent.deletes).toContainEqual({ node: 'node-b', checkpointId: `${ns}.snap` });
  });

  it('retries while the agent is unavailable instead of failing the checkpoint', async () => {
    await createPod('busy');
    await runPod(env.kube, ns, 'busy');
    env.controller.agent.unavailable = true;
    await createCheckpoint('later', 'busy');
    await phaseOf<KybernateCheckpoint>(CHECKPOINTS, 'later', 'Running');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await env.kube.get<KybernateCheckpoint>(CHECKPOINTS, ns, 'later')).status?.phase).toBe('Running');
    env.controller.agent.unavailable = false;
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
    await runPod(env.kube, ns, 'src');
    await phaseOf<KybernateCheckpoint>(CHECKPOINTS, 'base', 'Completed');

    const mismatch = await phaseOf<KybernateRestore>(RESTORES, 'wrong-node', 'Failed');
    expect(completedCondition(mismatch)).toMatchObject({ reason: 'NodeMismatch' });
    const noPod = await waitFor('TargetPodMissing', async () => {
      const r = await env.kube.get<KybernateRestore>(RESTORES, ns, 'into-1');
      return completedCondition(r)?.reason === 'TargetPodMissing' ? r : undefined;
    });
    expect(noPod.status?.phase).toBe('Pending');

    await createPod('target-1');
    const restored = await phaseOf<KybernateRestore>(RESTORES, 'into-1', 'Completed');
    expect(restored.status).toMatchObject({ restoredPod: 'target-1', node: 'node-a', containerID: 'restored-target-1', restoreDurationSeconds: 0.3 });
    expect(env.controller.agent.restores.find((r) => r.target.pod === 'target-1')).toMatchObject({
      artifact: { node: 'node-a', checkpointId: `${ns}.base` },
      target: { node: 'node-a', namespace: ns, container: 'server' },
      operationId: restored.metadata?.uid,
    });
  });

  it('a failed agent restore is reported as RestoreFailed', async () => {
    await createPod('target-2');
    env.controller.agent.failNext.restore = 'criu restore: pid 4242 is in use';
    await createRestore('clash', 'base', 'target-2');
    const failed = await phaseOf<KybernateRestore>(RESTORES, 'clash', 'Failed');
    expect(completedCondition(failed)).toMatchObject({ reason: 'RestoreFailed' });
    expect(failed.status?.message).toContain('pid 4242 is in use');
  });
});
