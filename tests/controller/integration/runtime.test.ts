import { spawn } from 'node:child_process';
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KybernateWorkload } from '../../../src/api/index.ts';
import { getOptional, type KubeClient, type KubeObject } from '../../../src/controller/kube/client.ts';
import { toMicroTime } from '../../../src/controller/runtime/time.ts';
import { EVENTS, LEASES, PODS, SERVICES, WORKLOADS } from '../../../src/controller/kube/resources.ts';
import { Informer } from '../../../src/controller/runtime/informer.ts';
import { updateStatus } from '../../../src/controller/runtime/status.ts';
import { createLogger } from '../../../src/lib/log.ts';
import type { ControlPlane } from '../../harness/kube/index.ts';
import { ActivityServer, createNamespace, runPod, startController, startKube, waitFor, waitForWorkload, workloadManifest } from './env.ts';

type Event = KubeObject & { reason: string; reportingInstance: string; regarding: { name: string } };
type Lease = KubeObject & { spec?: { holderIdentity?: string; leaseTransitions?: number } };

describe('controller runtime against a real kube-apiserver', () => {
  let plane: ControlPlane;
  let kube: KubeClient;
  let activity: ActivityServer;

  beforeAll(async () => {
    ({ plane, kube } = await startKube());
    activity = await new ActivityServer().start();
  });

  afterAll(async () => {
    await activity?.stop();
    await plane?.stop();
  });

  it('status writes retry a 409 with a fresh read, and a guarded transition happens once', async () => {
    const ns = await createNamespace(kube, 'conflict');
    const created = await kube.create(WORKLOADS, workloadManifest(ns, 'w'));
    const stale = (await updateStatus(kube, WORKLOADS, created, (current) => ({ ...current.status, phase: 'Suspended' as const }))).object!;

    // A concurrent writer bumps resourceVersion after our read.
    await kube.mergePatch(WORKLOADS, ns, 'w', { metadata: { labels: { touched: 'yes' } } });
    const seen: (string | undefined)[] = [];
    const result = await updateStatus(kube, WORKLOADS, stale, (current: KybernateWorkload) => {
      seen.push(current.metadata.resourceVersion);
      return { ...current.status, message: 'written after a conflict' };
    });
    expect(result.written).toBe(true);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(stale.metadata.resourceVersion);
    expect(result.object?.metadata.labels).toEqual({ touched: 'yes' });
    expect(result.object?.status?.message).toBe('written after a conflict');

    // Two writers race Suspended -> Restoring from the same stale copy: only one transition is written.
    const toRestoring = (current: KybernateWorkload) => (current.status?.phase === 'Suspended' ? { ...current.status, phase: 'Restoring' as const } : undefined);
    const fresh = await kube.get<KybernateWorkload>(WORKLOADS, ns, 'w');
    const outcomes = await Promise.all([updateStatus(kube, WORKLOADS, fresh, toRestoring), updateStatus(kube, WORKLOADS, fresh, toRestoring)]);
    expect(outcomes.map((o) => o.written).sort()).toEqual([false, true]);
    expect((await kube.get<KybernateWorkload>(WORKLOADS, ns, 'w')).status?.phase).toBe('Restoring');
  });

  it('an informer keeps its cache right across an API server restart mid-watch', async () => {
    const ns = await createNamespace(kube, 'restart');
    const informer = new Informer<KybernateWorkload>(kube, WORKLOADS, createLogger('test'), {
      namespace: ns,
      backoff: { baseMs: 100, maxMs: 1_000, factor: 2 },
    });
    const seen: string[] = [];
    informer.addHandlers({ onAdd: (w) => seen.push(`add ${w.metadata.name}`), onDelete: (w) => seen.push(`delete ${w.metadata.name}`) });
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await informer.synced;
    await kube.create(WORKLOADS, workloadManifest(ns, 'before'));
    await kube.create(WORKLOADS, workloadManifest(ns, 'doomed'));
    await waitFor('both cached', () => informer.cache.list().length === 2);

    await plane.restartApiServer();
    // Changes right after the restart (the informer may still be reconnecting) must all arrive.
    await kube.delete(WORKLOADS, ns, 'doomed');
    await kube.create(WORKLOADS, workloadManifest(ns, 'after'));
    await waitFor('cache follows', () => informer.cache.list().map((w) => w.metadata.name).sort().join() === 'after,before');
    expect(seen).toEqual(expect.arrayContaining(['add before', 'add doomed', 'delete doomed', 'add after']));
    stop.abort();
    await running;
  });

  it('the controller keeps reconciling after an API server restart', async () => {
    const controller = startController(plane, activity, 'restart-survivor');
    try {
      const ns = await createNamespace(kube, 'survive');
      await kube.create(WORKLOADS, workloadManifest(ns, 'one'));
      await waitFor('service one', () => getOptional<V1Service>(kube, SERVICES, ns, 'one'));
      await plane.restartApiServer();
      await kube.create(WORKLOADS, workloadManifest(ns, 'two'));
      await waitFor('service two', () => getOptional<V1Service>(kube, SERVICES, ns, 'two'), 60_000);
      await waitForWorkload(kube, ns, 'two', 'Running');
    } finally {
      await controller.stop();
    }
  });

  it('only the leader acts; when it stops, the standby takes over', async () => {
    const a = startController(plane, activity, 'instance-a');
    await waitFor('a leads', () => a.elector.isLeader());
    const b = startController(plane, activity, 'instance-b');
    try {
      const ns = await createNamespace(kube, 'leader');
      await kube.create(WORKLOADS, workloadManifest(ns, 'first', { suspend: true }));
      await waitForWorkload(kube, ns, 'first', 'Suspended');
      // Give b every chance to act wrongly: several retry periods.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(b.elector.isLeader()).toBe(false);
      const reporters = async (name: string) =>
        new Set((await kube.list<Event>(EVENTS, ns)).items.filter((e) => e.regarding.name === name).map((e) => e.reportingInstance));
      expect(await reporters('first')).toEqual(new Set(['instance-a']));

      await a.stop(); // graceful: releases the lease
      await waitFor('b leads', () => b.elector.isLeader(), 15_000);
      const lease = await kube.get<Lease>(LEASES, 'default', 'kybernate-controller');
      expect(lease.spec?.holderIdentity).toBe('instance-b');
      await kube.create(WORKLOADS, workloadManifest(ns, 'second', { suspend: true }));
      await waitForWorkload(kube, ns, 'second', 'Suspended');
      await waitFor('an event from b', async () => (await reporters('second')).size > 0);
      expect(await reporters('second')).toEqual(new Set(['instance-b']));
    } finally {
      await b.stop();
      await a.stop();
    }
  });

  it('a leader that cannot renew stops acting before another may take over', async () => {
    const a = startController(plane, activity, 'instance-c');
    await waitFor('c leads', () => a.elector.isLeader());
    // Another writer takes the lease away (as if c had been partitioned and the lease expired).
    const lease = await kube.get<Lease>(LEASES, 'default', 'kybernate-controller');
    await kube.replace(LEASES, { ...lease, spec: { ...lease.spec, holderIdentity: 'usurper', renewTime: toMicroTime(new Date()), leaseDurationSeconds: 30 } });
    await waitFor('c steps down', () => !a.elector.isLeader(), 15_000);
    const ns = await createNamespace(kube, 'deposed');
    await kube.create(WORKLOADS, workloadManifest(ns, 'ignored'));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await getOptional(kube, SERVICES, ns, 'ignored')).toBeUndefined();
    await a.stop();
  });

  it('main.ts wires a working controller: it leads, finds activators by pod, goes Idle, and on SIGTERM releases the lease and exits 0', async () => {
    const ns = await createNamespace(kube, 'main');
    // An "activator" pod whose IP and admin port lead to the loopback activity server.
    const activatorPort = Number(new URL(activity.url).port);
    await kube.create(PODS, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'activator-0', namespace: ns, labels: { app: 'activator' } }, spec: { containers: [{ name: 'a', image: 'registry.local/activator:1' }] } });
    await kube.mergePatch(PODS, ns, 'activator-0', { status: { phase: 'Running', podIP: '127.0.0.1' } }, 'status');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/controller/main.ts'], {
      env: {
        PATH: process.env.PATH,
        KUBECONFIG: plane.kubeconfigPath,
        KYBERNATE_IDENTITY: 'main-process',
        KYBERNATE_LEASE_NAMESPACE: 'default',
        KYBERNATE_LEASE_NAME: 'main-test',
        KYBERNATE_ACTIVATOR_PODS: `${ns}/app=activator`,
        KYBERNATE_ACTIVATOR_ADMIN_PORT: String(activatorPort),
        KYBERNATE_ACTIVITY_POLL_INTERVAL: '300ms',
        KYBERNATE_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await kube.create(WORKLOADS, workloadManifest(ns, 'wired', { idleTimeout: '6s' }));
      await waitForWorkload(kube, ns, 'wired', 'Running', undefined, 60_000);
      expect((await kube.get<Lease>(LEASES, 'default', 'main-test')).spec?.holderIdentity).toBe('main-process');
      // Idle (after half of idleTimeout) needs complete activity, i.e. the discovered activator answered.
      activity.workloads = [{ namespace: ns, name: 'wired', inFlight: 0, queued: 0, lastRequestTime: null }];
      const pod = (await kube.list<V1Pod>(PODS, ns, { labelSelector: 'kybernate.io/workload=wired' })).items[0]!;
      await runPod(kube, ns, pod.metadata!.name!);
      await waitForWorkload(kube, ns, 'wired', 'Idle', undefined, 30_000);
      // At idleTimeout it checkpoints through the gRPC agent client, which here has no mTLS material: a clear, final error.
      const failed = await waitForWorkload(kube, ns, 'wired', 'Failed', undefined, 30_000);
      expect(failed.status?.message).toContain('mTLS material for the node agents is missing');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect((await kube.get<Lease>(LEASES, 'default', 'main-test')).spec?.holderIdentity).toBe('');
  });
});
