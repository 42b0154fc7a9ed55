import path from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KybernateCheckpoint, KybernateRestore } from '../../../src/api/index.ts';
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
});
