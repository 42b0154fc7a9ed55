import { describe, expect, it } from 'vitest';
import { WorkQueue, type WorkQueueOptions } from '../../../src/controller/runtime/workqueue.ts';
import { backoffDelay, TokenBucket, withJitter } from '../../../src/lib/backoff.ts';
import { ManualScheduler } from './manual-scheduler.ts';

function newQueue(overrides: Partial<WorkQueueOptions> = {}) {
  const scheduler = new ManualScheduler();
  const queue = new WorkQueue({
    itemBackoff: { baseMs: 10, maxMs: 1_000, factor: 2 },
    retryQps: 1_000,
    retryBurst: 1_000,
    scheduler,
    ...overrides,
  });
  return { queue, scheduler };
}

describe('backoffDelay', () => {
  it.each([
    [0, 0],
    [1, 10],
    [2, 20],
    [3, 40],
    [7, 640],
    [8, 1_000],
    [10_000, 1_000],
  ])('after %d failures waits %d ms', (failures, delay) => {
    expect(backoffDelay({ baseMs: 10, maxMs: 1_000, factor: 2 }, failures)).toBe(delay);
  });

  it('jitter stays within [delay/2, delay)', () => {
    expect(withJitter(1_000, () => 0)).toBe(500);
    expect(withJitter(1_000, () => 0.999)).toBeLessThan(1_000);
  });
});

describe('TokenBucket', () => {
  it('allows a burst, then spaces reservations by 1/qps', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 2, () => now);
    expect(bucket.reserve()).toBe(0);
    expect(bucket.reserve()).toBe(0);
    expect(bucket.reserve()).toBeCloseTo(100);
    expect(bucket.reserve()).toBeCloseTo(200);
    now = 1_000; // refilled, capped at the burst size
    expect(bucket.reserve()).toBe(0);
  });
});

describe('WorkQueue', () => {
  it('hands out keys in order and deduplicates keys that wait', async () => {
    const { queue } = newQueue();
    queue.add('a');
    queue.add('b');
    queue.add('a');
    expect(queue.length).toBe(2);
    expect(await queue.get()).toBe('a');
    expect(await queue.get()).toBe('b');
  });

  it('never hands out a key that is being processed; re-queues it after done', async () => {
    const { queue } = newQueue();
    queue.add('a');
    const first = await queue.get();
    queue.add('a'); // changed while being reconciled
    queue.add('a');
    expect(queue.length).toBe(0);
    let second: string | undefined;
    void queue.get().then((key) => (second = key));
    await Promise.resolve();
    expect(second).toBeUndefined();
    queue.done(first!);
    await Promise.resolve();
    expect(second).toBe('a');
  });

  it('wakes a waiting get when a key is added', async () => {
    const { queue } = newQueue();
    const pending = queue.get();
    queue.add('x');
    expect(await pending).toBe('x');
  });

  it('delays rate-limited keys with per-key exponential backoff and resets on forget', () => {
    const { queue, scheduler } = newQueue();
    queue.addRateLimited('a');
    expect(queue.length).toBe(0);
    scheduler.advance(9);
    expect(queue.length).toBe(0);
    scheduler.advance(1);
    expect(queue.length).toBe(1);
    queue.addRateLimited('a'); // second failure: 20 ms (the key is already queued, so dedup keeps one)
    expect(queue.retries('a')).toBe(2);
    queue.forget('a');
    expect(queue.retries('a')).toBe(0);
  });

  it('applies the overall token bucket when it is slower than the per-key backoff', () => {
    const { queue, scheduler } = newQueue({ retryQps: 1, retryBurst: 1 });
    queue.addRateLimited('a'); // token available: 10 ms per-key backoff
    queue.addRateLimited('b'); // bucket empty: 1 s
    scheduler.advance(10);
    expect(queue.length).toBe(1);
    scheduler.advance(989);
    expect(queue.length).toBe(1);
    scheduler.advance(1);
    expect(queue.length).toBe(2);
  });

  it('keeps the earliest of several delayed adds of one key', () => {
    const { queue, scheduler } = newQueue();
    queue.addAfter('a', 100);
    queue.addAfter('a', 500);
    queue.addAfter('a', 50);
    expect(scheduler.pendingTimers).toBe(1);
    scheduler.advance(50);
    expect(queue.length).toBe(1);
  });

  it('on shutdown releases waiting gets, drops delayed keys and waits for in-flight keys', async () => {
    const { queue, scheduler } = newQueue();
    queue.add('busy');
    const busy = await queue.get();
    const waiting = queue.get();
    queue.addAfter('later', 100);
    let drained = false;
    const shutdown = queue.shutDown().then(() => (drained = true));
    expect(await waiting).toBeUndefined();
    expect(scheduler.pendingTimers).toBe(0);
    await Promise.resolve();
    expect(drained).toBe(false);
    queue.done(busy!);
    await shutdown;
    expect(drained).toBe(true);
    queue.add('ignored');
    expect(await queue.get()).toBeUndefined();
  });
});
