import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KybernateCheckpoint, KybernateRestore, KybernateWorkload } from '../../../src/api/index.ts';
import { findCondition } from '../../../src/api/index.ts';
import { getOptional, type KubeObject } from '../../../src/lib/kube/client.ts';
import { CHECKPOINTS, EVENTS, PODS, RESTORES, SERVICES, WORKLOADS } from '../../../src/lib/kube/resources.ts';
import { RESTORE_FROM_ANNOTATION } from '../../../src/controller/reconcilers/workload-objects.ts';
import { createNamespace, isReady, runPod, useControllerEnvironment, waitFor, waitForWorkload, workloadManifest } from './env.ts';

type Event = KubeObject & { reason: string; type: string; reportingInstance: string; regarding: { name: string; kind: string } };

describe('workload reconciler against a real kube-apiserver', () => {
  const env = useControllerEnvironment({ withController: true });

  const workload = (ns: string, name: string) => env.kube.get<KybernateWorkload>(WORKLOADS, ns, name);
  const podsOf = async (ns: string) => (await env.kube.list<V1Pod>(PODS, ns)).items;
  /** A workload whose pod runs and is ready, as after a normal start. */
  const startServing = async (ns: string, name: string) => {
    await env.kube.create(WORKLOADS, workloadManifest(ns, name));
    await runPod(env.kube, ns, (await firstPod(ns)).metadata!.name!);
    return waitForWorkload(env.kube, ns, name, 'Running', isReady);
  };
  const firstPod = (ns: string) => waitFor(`a pod in ${ns}`, async () => (await podsOf(ns))[0]);
  const eventReasons = async (ns: string, name: string) =>
    (await env.kube.list<Event>(EVENTS, ns)).items.filter((e) => e.regarding.name === name).map((e) => e.reason);
  /** Events are written after the status change they report: wait for them. */
  const eventsInclude = (ns: string, name: string, reasons: string[]) =>
    waitFor(`events ${reasons.join(', ')} on ${name}`, async () => {
      const seen = await eventReasons(ns, name);
      return reasons.every((reason) => seen.includes(reason)) ? seen : undefined;
    });

  it('creates an owned Service and pod, and reports Running/Ready once the pod is ready', async () => {
    const ns = await createNamespace(env.kube, 'create');
    const created = await env.kube.create(WORKLOADS, workloadManifest(ns, 'llm'));
    const service = await waitFor('service', () => getOptional<V1Service>(env.kube, SERVICES, ns, 'llm'));
    expect(service.spec?.selector).toEqual({ 'kybernate.io/workload': 'llm' });
    expect(service.spec?.ports?.[0]?.port).toBe(8080);
    expect(service.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'KybernateWorkload', name: 'llm', uid: created.metadata?.uid, controller: true });

    const pod = await firstPod(ns);
    expect(pod.metadata?.labels).toMatchObject({ 'kybernate.io/workload': 'llm', app: 'llm' });
    expect(pod.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'KybernateWorkload', uid: created.metadata?.uid, controller: true });

    const notReady = await waitForWorkload(env.kube, ns, 'llm', 'Running');
    expect(findCondition(notReady.status?.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'PodNotReady' });
    expect(notReady.status?.observedGeneration).toBe(notReady.metadata.generation);

    await runPod(env.kube, ns, pod.metadata!.name!);
    const ready = await waitForWorkload(env.kube, ns, 'llm', 'Running', isReady);
    expect(ready.status).toMatchObject({ phase: 'Running', node: 'node-a', endpoints: [{ pod: pod.metadata!.name, ip: '10.244.0.7', port: 8080, ready: true }] });
    expect(findCondition(ready.status?.conditions, 'Suspended')).toMatchObject({ status: 'False' });
    expect(findCondition(ready.status?.conditions, 'CheckpointAvailable')).toMatchObject({ status: 'False', reason: 'NoCheckpoint' });
  });

  it('follows spec updates (Service port) and leaves a deleted workload alone', async () => {
    const ns = await createNamespace(env.kube, 'update');
    await env.kube.create(WORKLOADS, workloadManifest(ns, 'svc'));
    await waitFor('service', () => getOptional<V1Service>(env.kube, SERVICES, ns, 'svc'));
    await env.kube.mergePatch(WORKLOADS, ns, 'svc', { spec: { activator: { port: 9090 } } });
    await waitFor('service port 9090', async () => (await env.kube.get<V1Service>(SERVICES, ns, 'svc')).spec?.ports?.[0]?.port === 9090);
    const updated = await waitForWorkload(env.kube, ns, 'svc', 'Running', (w) => w.status?.observedGeneration === 2);
    expect(updated.metadata.generation).toBe(2);

    await env.kube.delete(WORKLOADS, ns, 'svc');
    await waitFor('workload gone', async () => (await getOptional(env.kube, WORKLOADS, ns, 'svc')) === undefined);
    // No garbage collector runs here: the owned objects stay, and the controller must not recreate or touch them.
    const service = await env.kube.get<V1Service>(SERVICES, ns, 'svc');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await env.kube.get<V1Service>(SERVICES, ns, 'svc')).metadata?.resourceVersion).toBe(service.metadata?.resourceVersion);
  });

  it('goes idle -> Suspending -> Suspended through a checkpoint, and wakes exactly once on concurrent wake requests', async () => {
    const ns = await createNamespace(env.kube, 'idle');
    await env.kube.create(WORKLOADS, workloadManifest(ns, 'idle', { idleTimeout: '3s' }));
    const pod = await firstPod(ns);
    const podName = pod.metadata!.name!;
    // Requests in flight keep it running whatever the time since the last request.
    env.activity.workloads = [{ namespace: ns, name: 'idle', inFlight: 1, queued: 0, lastRequestTime: new Date(Date.now() - 3_600_000).toISOString() }];
    await runPod(env.kube, ns, podName);
    await waitForWorkload(env.kube, ns, 'idle', 'Running', isReady);
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect((await workload(ns, 'idle')).status?.phase).toBe('Running');
    expect(env.controller.agent.checkpoints.filter((c) => c.container.namespace === ns)).toHaveLength(0);

    env.activity.workloads = [{ namespace: ns, name: 'idle', inFlight: 0, queued: 0, lastRequestTime: new Date().toISOString() }];
    const suspended = await waitForWorkload(env.kube, ns, 'idle', 'Suspended', undefined, 30_000);
    expect(findCondition(suspended.status?.conditions, 'Suspended')).toMatchObject({ status: 'True', reason: 'IdleTimeout' });
    expect(findCondition(suspended.status?.conditions, 'CheckpointAvailable')).toMatchObject({ status: 'True' });
    expect(findCondition(suspended.status?.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'Suspended' });
    expect(suspended.status?.suspendedAt).toBeDefined();
    expect(suspended.status?.lastSuspendDurationSeconds).toBeGreaterThanOrEqual(0);
    const checkpointName = suspended.status!.lastCheckpointRef!;
    const checkpoint = await env.kube.get<KybernateCheckpoint>(CHECKPOINTS, ns, checkpointName);
    expect(checkpoint.spec).toMatchObject({ podName, containerName: 'server', leaveRunning: false });
    expect(checkpoint.status).toMatchObject({ phase: 'Completed', node: 'node-a', containerID: `${podName}-server`, sizeBytes: 4096 });
    expect(checkpoint.metadata?.finalizers).toContain('kybernate.io/checkpoint-artifact');
    expect(checkpoint.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'KybernateWorkload', name: 'idle' });
    expect(env.controller.agent.checkpoints.filter((c) => c.container.namespace === ns)).toHaveLength(1);
    expect(await podsOf(ns)).toHaveLength(0);
    await eventsInclude(ns, 'idle', ['Suspending', 'Suspended']);

    // Several activator replicas ask at once (the contract: a merge patch of the annotation).
    await Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        env.kube.mergePatch(WORKLOADS, ns, 'idle', { metadata: { annotations: { 'kybernate.io/activation-requested-at': new Date(Date.now() + i).toISOString() } } }),
      ),
    );
    const restorePod = await firstPod(ns);
    expect(restorePod.metadata?.annotations?.[RESTORE_FROM_ANNOTATION]).toBe(checkpointName);
    expect(restorePod.spec?.nodeName).toBe('node-a');
    const restore = await waitFor('restore Completed', async () => {
      const r = await getOptional<KybernateRestore>(env.kube, RESTORES, ns, restorePod.metadata!.name!);
      return r?.status?.phase === 'Completed' ? r : undefined;
    });
    expect(restore.spec).toMatchObject({ checkpointRef: checkpointName, targetPod: { name: restorePod.metadata?.name, node: 'node-a' } });
    expect(restore.status?.restoredPod).toBe(restorePod.metadata?.name);
    expect((await workload(ns, 'idle')).status?.phase).toBe('Restoring');

    env.activity.workloads = [{ namespace: ns, name: 'idle', inFlight: 3, queued: 0, lastRequestTime: new Date().toISOString() }];
    await runPod(env.kube, ns, restorePod.metadata!.name!);
    const running = await waitForWorkload(env.kube, ns, 'idle', 'Running', isReady);
    expect(running.status?.lastRestoreDurationSeconds).toBeGreaterThanOrEqual(0);
    const restoreCalls = env.controller.agent.restores.filter((r) => r.target.namespace === ns);
    expect(restoreCalls).toHaveLength(1);
    expect(restoreCalls[0]).toMatchObject({ artifact: { node: 'node-a', checkpointId: `${ns}.${checkpointName}` }, target: { pod: restorePod.metadata?.name, container: 'server' } });
    const reasons = await eventsInclude(ns, 'idle', ['Restored']);
    expect(reasons.filter((r) => r === 'Restoring')).toHaveLength(1);
    expect((await env.kube.list(RESTORES, ns)).items).toHaveLength(1);
  });

  it('suspend: true suspends (SuspendRequested); clearing it restores', async () => {
    const ns = await createNamespace(env.kube, 'suspend');
    await startServing(ns, 'job');
    await env.kube.mergePatch(WORKLOADS, ns, 'job', { spec: { suspend: true } });
    const suspended = await waitForWorkload(env.kube, ns, 'job', 'Suspended');
    expect(findCondition(suspended.status?.conditions, 'Suspended')).toMatchObject({ status: 'True', reason: 'SuspendRequested' });

    // A wake request does not override spec.suspend.
    await env.kube.mergePatch(WORKLOADS, ns, 'job', { metadata: { annotations: { 'kybernate.io/activation-requested-at': new Date().toISOString() } } });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await workload(ns, 'job')).status?.phase).toBe('Suspended');

    await env.kube.mergePatch(WORKLOADS, ns, 'job', { spec: { suspend: false } });
    await waitForWorkload(env.kube, ns, 'job', 'Restoring');
    const restored = await firstPod(ns);
    const firstCheckpoint = suspended.status!.lastCheckpointRef!;
    expect(restored.metadata?.annotations?.[RESTORE_FROM_ANNOTATION]).toBe(firstCheckpoint);
    await runPod(env.kube, ns, restored.metadata!.name!);
    await waitForWorkload(env.kube, ns, 'job', 'Running', isReady);

    // A second suspend supersedes the first checkpoint and its restore: they are deleted, images included.
    await env.kube.mergePatch(WORKLOADS, ns, 'job', { spec: { suspend: true } });
    const again = await waitForWorkload(env.kube, ns, 'job', 'Suspended', (w) => w.status?.lastCheckpointRef !== firstCheckpoint);
    await waitFor('first checkpoint deleted', async () => (await getOptional(env.kube, CHECKPOINTS, ns, firstCheckpoint)) === undefined);
    expect(env.controller.agent.deletes).toContainEqual({ node: 'node-a', checkpointId: `${ns}.${firstCheckpoint}` });
    expect((await env.kube.list(RESTORES, ns)).items).toHaveLength(0);
    expect((await env.kube.list<KybernateCheckpoint>(CHECKPOINTS, ns)).items.map((c) => c.metadata?.name)).toEqual([again.status?.lastCheckpointRef]);
  });

  it('a never-started workload suspends without a checkpoint and wakes into a fresh pod', async () => {
    const ns = await createNamespace(env.kube, 'cold');
    await env.kube.create(WORKLOADS, workloadManifest(ns, 'cold', { suspend: true }));
    const suspended = await waitForWorkload(env.kube, ns, 'cold', 'Suspended');
    expect(suspended.status?.lastCheckpointRef).toBeUndefined();
    expect(findCondition(suspended.status?.conditions, 'CheckpointAvailable')).toMatchObject({ status: 'False', reason: 'NoCheckpoint' });
    expect(await podsOf(ns)).toHaveLength(0);
    await env.kube.mergePatch(WORKLOADS, ns, 'cold', { spec: { suspend: false } });
    const pod = await firstPod(ns);
    expect(pod.metadata?.annotations?.[RESTORE_FROM_ANNOTATION]).toBeUndefined();
    await runPod(env.kube, ns, pod.metadata!.name!);
    await waitForWorkload(env.kube, ns, 'cold', 'Running');
    expect(env.controller.agent.restores.filter((r) => r.target.namespace === ns)).toHaveLength(0);
  });

  it('a failed checkpoint marks the workload Failed with a Warning event, and a spec change starts over', async () => {
    const ns = await createNamespace(env.kube, 'fail');
    await startServing(ns, 'bad');
    env.controller.agent.failNext.checkpoint = 'criu dump: task has an open device';
    await env.kube.mergePatch(WORKLOADS, ns, 'bad', { spec: { suspend: true } });
    const failed = await waitForWorkload(env.kube, ns, 'bad', 'Failed');
    expect(failed.status?.message).toContain('criu dump: task has an open device');
    const checkpoint = await env.kube.get<KybernateCheckpoint>(CHECKPOINTS, ns, failed.status!.lastCheckpointRef!);
    expect(checkpoint.status).toMatchObject({ phase: 'Failed', conditions: [expect.objectContaining({ type: 'Completed', status: 'False', reason: 'CheckpointFailed' })] });
    await eventsInclude(ns, 'bad', ['CheckpointFailed']);
    expect(await podsOf(ns)).toHaveLength(1);

    await env.kube.mergePatch(WORKLOADS, ns, 'bad', { spec: { suspend: false } });
    await waitForWorkload(env.kube, ns, 'bad', 'Running');
  });

  it('a failed restore marks the workload Failed (RestoreFailed) with a Warning event', async () => {
    const ns = await createNamespace(env.kube, 'restorefail');
    await startServing(ns, 'wake');
    await env.kube.mergePatch(WORKLOADS, ns, 'wake', { spec: { suspend: true } });
    await waitForWorkload(env.kube, ns, 'wake', 'Suspended');
    env.controller.agent.failNext.restore = 'criu restore: pid 1 of the checkpoint is in use';
    await env.kube.mergePatch(WORKLOADS, ns, 'wake', { spec: { suspend: false } });
    const failed = await waitForWorkload(env.kube, ns, 'wake', 'Failed');
    expect(failed.status?.message).toContain('pid 1 of the checkpoint is in use');
    expect(findCondition(failed.status?.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'RestoreFailed' });
    await eventsInclude(ns, 'wake', ['RestoreFailed']);
  });
});
