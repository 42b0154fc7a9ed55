import { backoffDelay, TokenBucket, type BackoffPolicy } from '../../lib/backoff.ts';
import { realScheduler, type Scheduler } from '../../lib/scheduler.ts';

export interface WorkQueueOptions {
  /** Per-key retry backoff after failed reconciles. */
  itemBackoff: BackoffPolicy;
  /** Overall retry rate over all keys (token bucket). */
  retryQps: number;
  retryBurst: number;
  scheduler?: Scheduler;
}

export const DEFAULT_WORKQUEUE_OPTIONS: WorkQueueOptions = {
  itemBackoff: { baseMs: 5, maxMs: 300_000, factor: 2 },
  retryQps: 10,
  retryBurst: 100,
};

/**
 * A rate-limited work queue with the guarantees of client-go's workqueue:
 * - dedup: a key waiting in the queue is queued once, however often it is added;
 * - per-key serialization: a key handed out by `get` is not handed out again until `done`; a key added
 *   while it is being processed is queued again when `done` is called, so no change is lost;
 * - `addRateLimited` delays by max(per-key exponential backoff, overall token bucket); `forget` resets.
 */
export class WorkQueue<K extends string = string> {
  private readonly queue: K[] = [];
  private readonly dirty = new Set<K>();
  private readonly processing = new Set<K>();
  private readonly failures = new Map<K, number>();
  private readonly delayed = new Map<K, { dueAt: number; cancel: () => void }>();
  private readonly waiters: ((key: K | undefined) => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private readonly bucket: TokenBucket;
  private readonly scheduler: Scheduler;
  private shuttingDown = false;

  constructor(private readonly options: WorkQueueOptions = DEFAULT_WORKQUEUE_OPTIONS) {
    this.scheduler = options.scheduler ?? realScheduler;
    this.bucket = new TokenBucket(options.retryQps, options.retryBurst, () => this.scheduler.now());
  }

  add(key: K): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(key);
    } else {
      this.queue.push(key);
    }
  }

  /** Adds the key after `delayMs`; an earlier pending delay for the same key wins. */
  addAfter(key: K, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const dueAt = this.scheduler.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending && pending.dueAt <= dueAt) return;
    pending?.cancel();
    const cancel = this.scheduler.setTimer(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { dueAt, cancel });
  }

  addRateLimited(key: K): void {
    const failures = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, failures);
    this.addAfter(key, Math.max(backoffDelay(this.options.itemBackoff, failures), this.bucket.reserve()));
  }

  forget(key: K): void {
    this.failures.delete(key);
  }

  retries(key: K): number {
    return this.failures.get(key) ?? 0;
  }

  /** The next key to process, or undefined once the queue is shut down. */
  get(): Promise<K | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: K): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
    if (this.processing.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  get length(): number {
    return this.queue.length;
  }

  /** Stops handing out keys (waiting `get`s resolve undefined) and resolves once in-flight keys are done. */
  shutDown(): Promise<void> {
    this.shuttingDown = true;
    for (const { cancel } of this.delayed.values()) cancel();
    this.delayed.clear();
    this.queue.length = 0;
    this.dirty.clear();
    for (const resolve of this.waiters.splice(0)) resolve(undefined);
    if (this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
