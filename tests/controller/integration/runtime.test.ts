import { spawn } from 'node:child_process';
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KybernateWorkload } from '../../../src/api/index.ts';
import { getOptional, type KubeObject } from '../../../src/lib/kube/client.ts';
import { toMicroTime } from '../../../src/controller/runtime/time.ts';
import { EVENTS, LEASES, PODS, SERVICES, WORKLOADS } from '../../../src/lib/kube/resources.ts';
import { Informer } from '../../../src/lib/kube/informer.ts';
import { updateStatus } from '../../../src/controller/runtime/status.ts';
import { createLogger } from '../../../src/lib/log.ts';
import { createNamespace, runPod, startController, useControllerEnvironment, waitFor, waitForWorkload, workloadManifest } from './env.ts';

type Event = KubeObject & { reason: string; reportingInstance: string; regarding: { name: string } };
type Lease = KubeObject & { spec?: { holderIdentity?: string; leaseTransitions?: number } };

describe('controller runtime against a real kube-apiserver', () => {
  const env = useControllerEnvironment({ withController: false });

  it('status writes retry a 409 with a fresh read, and a guarded transition happens once', async () => {
    const ns = await createNamespace(env.kube, 'conflict');
    const created = await env.kube.create(WORKLOADS, workloadManifest(ns, 'w'));
    const stale = (await updateStatus(env.kube, WORKLOADS, created, (current) => ({ ...current.status, phase: 'Suspended' as const }))).object!;

    // A concurrent writer bumps resourceVersion after our read.
    await env.kube.mergePatch(WORKLOADS, ns, 'w', { metadata: { labels: { touched: 'yes' } } });
    const seen: (string | undefined)[] = [];
    const result = await updateStatus(env.kube, WORKLOADS, stale, (current: KybernateWorkload) => {
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
    const fresh = await env.kube.get<KybernateWorkload>(WORKLOADS, ns, 'w');
    const outcomes = await Promise.all([updateStatus(env.kube, WORKLOADS, fresh, toRestoring), updateStatus(env.kube, WORKLOADS, fresh, toRestoring)]);
    expect(outcomes.map((o) => o.written).sort()).toEqual([false, true]);
    expect((await env.kube.get<KybernateWorkload>(WORKLOADS, ns, 'w')).status?.phase).toBe('Restoring');
  });

  it('an informer keeps its cache right across an API server restart mid-watch', async () => {
    const ns = await createNamespace(env.kube, 'restart');
    const informer = new Informer<KybernateWorkload>(env.kube, WORKLOADS, createLogger('test'), {
      namespace: ns,
      backoff: { baseMs: 100, maxMs: 1_000, factor: 2 },
    });
    const seen: string[] = [];
    informer.addHandlers({ onAdd: (w) => seen.push(`add ${w.metadata.name}`), onDelete: (w) => seen.push(`delete ${w.metadata.name}`) });
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await informer.synced;
    await env.kube.create(WORKLOADS, workloadManifest(ns, 'before'));
    await env.kube.create(WORKLOADS, workloadManifest(ns, 'doomed'));
    await waitFor('both cached', () => informer.cache.list().length === 2);

    await env.plane.restartApiServer();
    // Changes right after the restart (the informer may still be reconnecting) must all arrive.
    await env.kube.delete(WORKLOADS, ns, 'doomed');
    await env.kube.create(WORKLOADS, workloadManifest(ns, 'after'));
    await waitFor('cache follows', () => informer.cache.list().map((w) => w.metadata.name).sort().join() === 'after,before');
    expect(seen).toEqual(expect.arrayContaining(['add before', 'add doomed', 'delete doomed', 'add after']));
    stop.abort();
    await running;
  });

  it('the controller keeps reconciling after an API server restart', async () => {
    const controller = startController(env.plane, env.activity, 'restart-survivor');
    try {
      const ns = await createNamespace(env.kube, 'survive');
      await env.kube.create(WORKLOADS, workloadManifest(ns, 'one'));
      await waitFor('service one', () => getOptional<V1Service>(env.kube, SERVICES, ns, 'one'));
      await env.plane.restartApiServer();
      await env.kube.create(WORKLOADS, workloadManifest(ns, 'two'));
      await waitFor('service two', () => getOptional<V1Service>(env.kube, SERVICES, ns, 'two'), 60_000);
      await waitForWorkload(env.kube, ns, 'two', 'Running');
    } finally {
      await controller.stop();
    }
  });

  it('only the leader acts; when it stops, the standby takes over', async () => {
    const a = startController(env.plane, env.activity, 'instance-a');
    await waitFor('a leads', () => a.elector.isLeader());
    const b = startController(env.plane, env.activity, 'instance-b');
    try {
      const ns = await createNamespace(env.kube, 'leader');
      await env.kube.create(WORKLOADS, workloadManifest(ns, 'first', { suspend: true }));
      await waitForWorkload(env.kube, ns, 'first', 'Suspended');
      // Give b every chance to act wrongly: several retry periods.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(b.elector.isLeader()).toBe(false);
      const reporters = async (name: string) =>
        new Set((await env.kube.list<Event>(EVENTS, ns)).items.filter((e) => e.regarding.name === name).map((e) => e.reportingInstance));
      expect(await reporters('first')).toEqual(new Set(['instance-a']));

      await a.stop(); // graceful: releases the lease
      await waitFor('b leads', () => b.elector.isLeader(), 15_000);
      const lease = await env.kube.get<Lease>(LEASES, 'default', 'kybernate-controller');
      expect(lease.spec?.holderIdentity).toBe('instance-b');
      await env.kube.create(WORKLOADS, workloadManifest(ns, 'second', { suspend: true }));
      await waitForWorkload(env.kube, ns, 'second', 'Suspended');
      await waitFor('an event from b', async () => (await reporters('second')).size > 0);
      expect(await reporters('second')).toEqual(new Set(['instance-b']));
    } finally {
      await b.stop();
      await a.stop();
    }
  });

  it('a leader that cannot renew stops acting before another may take over', async () => {
    const a = startController(env.plane, env.activity, 'instance-c');
    await waitFor('c leads', () => a.elector.isLeader());
    // Another writer takes the lease away (as if c had been partitioned and the lease expired).
    const lease = await env.kube.get<Lease>(LEASES, 'default', 'kybernate-controller');
    await env.kube.replace(LEASES, { ...lease, spec: { ...lease.spec, holderIdentity: 'usurper', renewTime: toMicroTime(new Date()), leaseDurationSeconds: 30 } });
    await waitFor('c steps down', () => !a.elector.isLeader(), 15_000);
    const ns = await createNamespace(env.kube, 'deposed');
    await env.kube.create(WORKLOADS, workloadManifest(ns, 'ignored'));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await getOptional(env.kube, SERVICES, ns, 'ignored')).toBeUndefined();
    await a.stop();
  });

  it('main.ts wires a working controller: it leads, finds activators by pod, goes Idle, and on SIGTERM releases the lease and exits 0', async () => {
    const ns = await createNamespace(env.kube, 'main');
    // An "activator" pod whose IP and admin port lead to the loopback activity server.
    const activatorPort = Number(new URL(env.activity.url).port);
    await env.kube.create(PODS, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'activator-0', namespace: ns, labels: { app: 'activator' } }, spec: { containers: [{ name: 'a', image: 'registry.local/activator:1' }] } });
    await env.kube.mergePatch(PODS, ns, 'activator-0', { status: { phase: 'Running', podIP: '127.0.0.1' } }, 'status');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/controller/main.ts'], {
      env: {
        PATH: process.env.PATH,
        KUBECONFIG: env.plane.kubeconfigPath,
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
      await env.kube.create(WORKLOADS, workloadManifest(ns, 'wired', { idleTimeout: '6s' }));
      await waitForWorkload(env.kube, ns, 'wired', 'Running', undefined, 60_000);
      expect((await env.kube.get<Lease>(LEASES, 'default', 'main-test')).spec?.holderIdentity).toBe('main-process');
      // Idle (after half of idleTimeout) needs complete env.activity, i.e. the discovered activator answered.
      env.activity.workloads = [{ namespace: ns, name: 'wired', inFlight: 0, queued: 0, lastRequestTime: null }];
      const pod = (await env.kube.list<V1Pod>(PODS, ns, { labelSelector: 'kybernate.io/workload=wired' })).items[0]!;
      await runPod(env.kube, ns, pod.metadata!.name!);
      await waitForWorkload(env.kube, ns, 'wired', 'Idle', undefined, 30_000);
      // At idleTimeout it checkpoints through the gRPC agent client, which here has no mTLS material: a clear, final error.
      const failed = await waitForWorkload(env.kube, ns, 'wired', 'Failed', undefined, 30_000);
      expect(failed.status?.message).toContain('mTLS material for the node agents is missing');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect((await env.kube.get<Lease>(LEASES, 'default', 'main-test')).spec?.holderIdentity).toBe('');
  });
});
