import type { V1Pod } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KybernateRestore, KybernateWorkload } from '../../../src/api/index.ts';
import { findCondition } from '../../../src/api/index.ts';
import { PODS, RESTORES, WORKLOADS } from '../../../src/lib/kube/resources.ts';
import { createNamespace, isReady, runPod, useControllerEnvironment, waitFor, waitForWorkload, workloadManifest } from './env.ts';

const GiB = 2 ** 30;
const MODEL = 'NVIDIA H100 80GB HBM3';
const UUID = 'GPU-11111111-2222-3333-4444-555555555555';
const OPERATION_TIMEOUT_MS = 8_000;

/**
 * A wake that waits too long (here: for a GPU the node never reports) fails the workload; its restore,
 * which never reached the agent, is withdrawn so that a GPU freeing up later does not restore into the
 * failed workload's pod. The node's GPU report comes from the in-process test agent, a NAMED STAND-IN
 * (no GPU on this machine).
 */
describe('a restore timed out while waiting for a GPU (stand-in agent GPU reports) against a real kube-apiserver', () => {
  const env = useControllerEnvironment({ withController: true, operationTimeoutMs: OPERATION_TIMEOUT_MS });
  let ns: string;
  beforeAll(async () => {
    ns = await createNamespace(env.kube, 'restore-timeout');
    await env.kube.create({ apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', plural: 'runtimeclasses', namespaced: false }, { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: 'nvidia' }, handler: 'nvidia' });
    env.controller.agent.gpuCapture = { driverVersion: '580.159.04', driverApiVersion: 13000, processes: 1, devices: [{ uuid: UUID, model: MODEL, memoryTotalBytes: 80 * GiB, capturedBytes: 16 * GiB }] };
  });

  it('fails the workload with RestoreTimedOut and withdraws the pending restore; a GPU reported afterwards restores nothing', async () => {
    const manifest = workloadManifest(ns, 'late') as unknown as { spec: Record<string, unknown> };
    manifest.spec.checkpoint = { gpu: { enabled: true } };
    await env.kube.create(WORKLOADS, manifest as unknown as KybernateWorkload);
    const firstPod = await waitFor('the first pod', async () => (await env.kube.list<V1Pod>(PODS, ns)).items.find((pod) => !pod.metadata?.deletionTimestamp));
    await runPod(env.kube, ns, firstPod.metadata!.name!, 'gpu-node-t');
    await waitForWorkload(env.kube, ns, 'late', 'Running', isReady);
    await env.kube.mergePatch(WORKLOADS, ns, 'late', { spec: { suspend: true } });
    await waitForWorkload(env.kube, ns, 'late', 'Suspended');

    env.controller.agent.gpuReports.set('gpu-node-t', { usable: false, error: 'no NVIDIA kernel driver on this node' });
    await env.kube.mergePatch(WORKLOADS, ns, 'late', { spec: { suspend: false } });
    const failed = await waitForWorkload(env.kube, ns, 'late', 'Failed', undefined, 4 * OPERATION_TIMEOUT_MS);
    expect(findCondition(failed.status?.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'RestoreTimedOut' });
    await waitFor('the pending restore to be withdrawn', async () => (await env.kube.list<KybernateRestore>(RESTORES, ns)).items.length === 0);

    env.controller.agent.gpuReports.set('gpu-node-t', { usable: true, driverVersion: '580.159.04', driverApiVersion: 13000, supportedDriverApiVersions: [13000], gpus: [{ uuid: UUID, model: MODEL, memoryTotalBytes: 80 * GiB, memoryFreeBytes: 79 * GiB }] });
    // Longer than the preflight's longest retry delay seen so far: a restore still there would have gone ahead.
    await sleep(3_000);
    expect(env.controller.agent.restores.filter((restore) => restore.target.namespace === ns)).toHaveLength(0);
    expect((await env.kube.get<KybernateWorkload>(WORKLOADS, ns, 'late')).status?.phase).toBe('Failed');
  });
});
