import { describe, expect, it } from 'vitest';
import type { KubeClient } from '../../../src/lib/kube/client.ts';
import { WORKLOADS } from '../../../src/lib/kube/resources.ts';
import { Controller, controllerOwnerKey, type ReconcileRequest } from '../../../src/controller/runtime/controller.ts';
import { fencedClient, NotLeaderError } from '../../../src/controller/runtime/fenced-client.ts';
import { createLogger } from '../../../src/lib/log.ts';
import { ManualScheduler } from './manual-scheduler.ts';

const log = createLogger('test');
const tick = () => new Promise((resolve) => setImmediate(resolve));

function controllerWith(reconcile: (request: ReconcileRequest) => Promise<{ requeueAfterMs?: number } | void>, workers = 4) {
  const scheduler = new ManualScheduler();
  const controller = new Controller('test', { reconcile }, log, {
    workers,
    queue: { itemBackoff: { baseMs: 100, maxMs: 10_000, factor: 2 }, retryQps: 1_000, retryBurst: 1_000, scheduler },
  });
  return { controller, scheduler };
}

describe('Controller', () => {
  it('never reconciles one key concurrently, and reconciles again after a change during a reconcile', async () => {
    let running = 0;
    let maxRunning = 0;
    const release: (() => void)[] = [];
    const calls: string[] = [];
    const { controller } = controllerWith(async ({ name }) => {
      calls.push(name);
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise<void>((resolve) => release.push(resolve));
      running--;
    });
    const stop = new AbortController();
    const done = controller.run(stop.signal);
    controller.queue.add('ns/a');
    await tick();
    controller.queue.add('ns/a'); // changed while being reconciled
    controller.queue.add('ns/a');
    controller.queue.add('ns/b');
    await tick();
    expect(calls).toEqual(['a', 'b']);
    release.shift()!(); // a finishes: its pending change is reconciled next
    await tick();
    expect(calls).toEqual(['a', 'b', 'a']);
    expect(maxRunning).toBe(2); // a and b in parallel, never a twice
    stop.abort();
    for (const resolve of release.splice(0)) resolve();
    await done;
  });

  it('retries a failing key with growing backoff and honours requeueAfter on success', async () => {
    let attempts = 0;
    const { controller, scheduler } = controllerWith(async () => {
      attempts++;
      if (attempts <= 2) throw new Error('API server busy');
      return { requeueAfterMs: 5_000 };
    });
    const stop = new AbortController();
    const done = controller.run(stop.signal);
    controller.queue.add('ns/a');
    await tick();
    expect(attempts).toBe(1);
    scheduler.advance(99);
    await tick();
    expect(attempts).toBe(1);
    scheduler.advance(1); // first retry after 100 ms
    await tick();
    expect(attempts).toBe(2);
    scheduler.advance(200); // second retry after 200 ms, then success
    await tick();
    expect(attempts).toBe(3);
    expect(controller.queue.retries('ns/a')).toBe(0);
    scheduler.advance(5_000); // requeueAfter
    await tick();
    expect(attempts).toBe(4);
    stop.abort();
    await done;
  });

  it('maps owned objects to their controlling owner', () => {
    const map = controllerOwnerKey('KybernateWorkload');
    const owned = (controller: boolean, kind = 'KybernateWorkload') => ({
      metadata: { namespace: 'ns', name: 'pod', ownerReferences: [{ apiVersion: 'v1', kind, name: 'w', uid: 'u', controller }] },
    });
    expect(map(owned(true))).toEqual(['ns/w']);
    expect(map(owned(false))).toEqual([]);
    expect(map(owned(true, 'ReplicaSet'))).toEqual([]);
  });
});

describe('fencedClient', () => {
  it('refuses writes once leadership is lost, reads still pass', async () => {
    const writes: string[] = [];
    const inner = {
      get: async () => ({ metadata: { name: 'x' } }),
      create: async () => (writes.push('create'), {}),
      delete: async () => void writes.push('delete'),
    } as unknown as KubeClient;
    const leadership = new AbortController();
    const client = fencedClient(inner, leadership.signal);
    await client.create(WORKLOADS, { metadata: { name: 'x' } });
    leadership.abort();
    await expect(client.create(WORKLOADS, { metadata: { name: 'y' } })).rejects.toThrow(NotLeaderError);
    await expect(client.delete(WORKLOADS, 'ns', 'x')).rejects.toThrow('no longer the leader');
    expect(await client.get(WORKLOADS, 'ns', 'x')).toEqual({ metadata: { name: 'x' } });
    expect(writes).toEqual(['create']);
  });
});
