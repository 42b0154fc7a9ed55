import type { Pool } from 'undici';
import type { Logger } from '../lib/log.ts';
import { errorMessage } from '../lib/errors.ts';
import { ActivationGate } from './activation.ts';
import { RequestRate, type WorkloadActivity } from './activity.ts';
import { pickEndpoint } from './breaker.ts';
import type { UpstreamPools } from './forwarder.ts';
import { HoldQueue, type HeldEntry } from './hold-queue.ts';
import type { WorkloadMetrics } from './metrics.ts';
import { endpointKey, workloadKey, type ActivationTrigger, type Endpoint, type Workload } from './types.ts';

/** A ready pod with its connection pool and its share of the workload's in-flight requests. */
export interface Target {
  readonly endpoint: Endpoint;
  readonly key: string;
  readonly pool: Pool;
  inFlight: number;
}

/** A request (or Upgrade) waiting in the hold queue. */
export interface HeldExchange {
  /** Released: forward to this pod and call `WorkloadRuntime.complete` when done. */
  start(target: Target): void;
  /** Not released: answer with this status (503 or 504) and message. */
  reject(status: number, message: string, retryAfterSeconds?: number): void;
}

export interface RuntimeDeps {
  readonly trigger: ActivationTrigger;
  readonly pools: UpstreamPools;
  readonly metrics: WorkloadMetrics;
  readonly log: Logger;
  readonly now: () => number;
}

/** Seconds a client is told to wait after a 503 (queue full, activation failed, draining). */
export const RETRY_AFTER_SECONDS = 1;

/**
 * Everything the activator keeps for one workload: its ready pods and their breakers, the hold queue,
 * the activation gate and the activity counters. The request path calls `acquire` (warm) or `hold`
 * (cold or every pod at its limit); pods becoming ready or finishing a request release held ones.
 */
export class WorkloadRuntime {
  readonly key: string;
  private targets: Target[] = [];
  private readonly queue: HoldQueue<HeldExchange>;
  private readonly gate = new ActivationGate();
  private readonly rate = new RequestRate();
  private lastRequestAt: number | undefined;
  private roundRobin = 0;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryAt = Infinity;
  /** Requests being forwarded now (released ones included). */
  inFlight = 0;

  constructor(
    private workload: Workload,
    private readonly deps: RuntimeDeps,
  ) {
    this.key = workloadKey(workload);
    this.queue = new HoldQueue(workload.queueSize);
    this.update(workload);
  }

  get queued(): number {
    return this.queue.size;
  }

  get readyTargets(): number {
    return this.targets.length;
  }

  get config(): Workload {
    return this.workload;
  }

  get metrics(): WorkloadMetrics {
    return this.deps.metrics;
  }

  get log(): Logger {
    return this.deps.log;
  }

  /** A new snapshot of this workload: pods may have become ready or gone away, limits may have changed. */
  update(workload: Workload): void {
    this.workload = workload;
    this.queue.setCapacity(workload.queueSize);
    const previous = new Map(this.targets.map((target) => [target.key, target]));
    this.targets = workload.endpoints.map((endpoint) => {
      const key = endpointKey(endpoint);
      return previous.get(key) ?? { endpoint, key, pool: this.deps.pools.get(endpoint), inFlight: 0 };
    });
    if (this.targets.length > 0) {
      if (this.gate.pending) this.deps.log.info({ readyPods: this.targets.length, held: this.queue.size }, 'workload ready, releasing held requests');
      this.gate.ready();
      this.releaseHeld();
    } else if (this.queue.size > 0) {
      // The last pod went away while requests wait for a slot: they now wait for an activation.
      this.requestActivation(this.deps.now());
    }
  }

  endpointKeys(): string[] {
    return this.targets.map((target) => target.key);
  }

  /** A real request (not a probe) arrived: it counts as activity. */
  recordRequest(now: number): void {
    this.lastRequestAt = now;
    this.rate.record(now);
  }

  /** Warm path: a pod with a free slot, reserved for this request; undefined means hold it. */
  acquire(): Target | undefined {
    // Held requests go first, so a newcomer never overtakes the queue.
    if (this.queue.size > 0 || this.targets.length === 0) return undefined;
    return this.reserve();
  }

  private reserve(): Target | undefined {
    const index = pickEndpoint(this.targets, this.workload.containerConcurrency, this.roundRobin++ % this.targets.length);
    if (index === -1) return undefined;
    const target = this.targets[index]!;
    target.inFlight++;
    this.inFlight++;
    return target;
  }

  /** A forwarded request finished: free its slot and let the next held request take it. */
  complete(target: Target): void {
    target.inFlight--;
    this.inFlight--;
    if (this.queue.size > 0) this.releaseHeld();
  }

  /** Holds a request; undefined means the queue is full (answer 503). Asks for activation when suspended. */
  hold(exchange: HeldExchange): HeldEntry<HeldExchange> | undefined {
    const now = this.deps.now();
    const entry = this.queue.push(exchange, now, this.workload.activationTimeoutMs);
    if (entry === undefined) return undefined;
    this.armExpiry(entry.deadline);
    if (this.targets.length === 0) this.requestActivation(now);
    return entry;
  }

  /** The client of a held request went away: it leaves the queue and never reaches a pod. */
  cancel(ticket: number): boolean {
    return this.queue.remove(ticket);
  }

  private releaseHeld(): void {
    const now = this.deps.now();
    while (this.queue.size > 0) {
      const target = this.reserve();
      if (target === undefined) return;
      const entry = this.queue.shift()!;
      this.deps.metrics.heldSeconds.observe((now - entry.enqueuedAt) / 1000);
      entry.item.start(target);
    }
  }

  private armExpiry(deadline: number): void {
    if (deadline >= this.expiryAt) return;
    clearTimeout(this.expiryTimer);
    this.expiryAt = deadline;
    this.expiryTimer = setTimeout(this.expire, Math.max(0, deadline - this.deps.now()));
    this.expiryTimer.unref();
  }

  private readonly expire = (): void => {
    this.expiryAt = Infinity;
    this.expiryTimer = undefined;
    const expired = this.queue.takeExpired(this.deps.now());
    if (expired.length > 0) {
      this.deps.log.warn({ expired: expired.length, timeoutMs: this.workload.activationTimeoutMs }, 'held requests timed out waiting for a ready pod');
    }
    const message = `workload ${this.key} did not become ready within ${this.workload.activationTimeoutMs} ms`;
    for (const entry of expired) entry.item.reject(504, message);
    const next = this.queue.nextDeadline();
    if (next !== undefined) this.armExpiry(next);
  };

  private requestActivation(now: number): void {
    const attempt = this.gate.begin(now, this.workload.activationTimeoutMs);
    if (attempt === undefined) return;
    this.deps.metrics.activationAttempts.inc();
    this.deps.log.info({ attempt, phase: this.workload.phase }, 'requesting activation');
    // Called on a later tick, so that a trigger that readies the workload at once (a test, the static
    // demo trigger) never releases requests from inside `hold`.
    const workload = this.workload;
    Promise.resolve()
      .then(() => this.deps.trigger.requestActivation(workload))
      .catch((error: unknown) => this.activationFailed(attempt, error));
  }

  private activationFailed(attempt: number, error: unknown): void {
    this.deps.metrics.activationFailures.inc();
    if (!this.gate.fail(attempt) || this.targets.length > 0) return;
    const held = this.queue.takeAll();
    this.deps.log.error({ attempt, err: error, held: held.length }, 'activation request failed; answering held requests with 503');
    const message = `activation of workload ${this.key} failed: ${errorMessage(error)}; retry later`;
    for (const entry of held) entry.item.reject(503, message, RETRY_AFTER_SECONDS);
  }

  /** Answers every held request (workload removed, or the drain's grace period ran out). */
  rejectHeld(status: number, message: string): number {
    const held = this.queue.takeAll();
    for (const entry of held) entry.item.reject(status, message, RETRY_AFTER_SECONDS);
    return held.length;
  }

  dispose(): void {
    clearTimeout(this.expiryTimer);
  }

  activity(now: number): WorkloadActivity {
    return {
      namespace: this.workload.namespace,
      name: this.workload.name,
      phase: this.workload.phase,
      inFlight: this.inFlight,
      queued: this.queue.size,
      lastRequestTime: this.lastRequestAt === undefined ? null : new Date(this.lastRequestAt).toISOString(),
      requestRate: this.rate.perSecond(now),
      readyEndpoints: this.targets.length,
    };
  }
}
