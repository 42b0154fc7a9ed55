import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What the gauges read at scrape time, so the request path never touches them. */
export interface WorkloadLoad {
  readonly key: string;
  readonly inFlight: number;
  readonly queued: number;
}

const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const HELD_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300];

/** Label children cached per workload: looking labels up on every request costs more than the proxying. */
export class WorkloadMetrics {
  private readonly byCode = new Map<number, Counter.Internal>();
  readonly upstreamSeconds: Histogram.Internal<'workload'>;
  readonly heldSeconds: Histogram.Internal<'workload'>;
  readonly activationAttempts: Counter.Internal;
  readonly activationFailures: Counter.Internal;

  constructor(
    private readonly metrics: ActivatorMetrics,
    private readonly workload: string,
  ) {
    this.upstreamSeconds = metrics.upstreamSeconds.labels(workload);
    this.heldSeconds = metrics.heldSeconds.labels(workload);
    this.activationAttempts = metrics.activationAttempts.labels(workload);
    this.activationFailures = metrics.activationFailures.labels(workload);
  }

  countResponse(code: number): void {
    let counter = this.byCode.get(code);
    if (counter === undefined) {
      counter = this.metrics.requests.labels(this.workload, String(code));
      this.byCode.set(code, counter);
    }
    counter.inc();
  }
}

export class ActivatorMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'workload' | 'code'>;
  readonly upstreamSeconds: Histogram<'workload'>;
  readonly heldSeconds: Histogram<'workload'>;
  readonly activationAttempts: Counter<'workload'>;
  readonly activationFailures: Counter<'workload'>;
  readonly probes: Counter;
  readonly unrouted: Counter;

  constructor(loads: () => Iterable<WorkloadLoad>) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'kybernate_activator_requests_total',
      help: 'Requests answered, by workload and HTTP status code (0: no status, the exchange broke off).',
      labelNames: ['workload', 'code'],
      registers,
    });
    this.upstreamSeconds = new Histogram({
      name: 'kybernate_activator_upstream_response_seconds',
      help: 'Time from sending a request to a pod until its response headers arrived.',
      labelNames: ['workload'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.heldSeconds = new Histogram({
      name: 'kybernate_activator_held_seconds',
      help: 'Time a request was held (cold start or no free slot) before it was released to a pod.',
      labelNames: ['workload'],
      buckets: HELD_BUCKETS,
      registers,
    });
    this.activationAttempts = new Counter({
      name: 'kybernate_activator_activation_attempts_total',
      help: 'Activation requests sent for a workload.',
      labelNames: ['workload'],
      registers,
    });
    this.activationFailures = new Counter({
      name: 'kybernate_activator_activation_failures_total',
      help: 'Activation requests that failed.',
      labelNames: ['workload'],
      registers,
    });
    this.probes = new Counter({
      name: 'kybernate_activator_probe_requests_total',
      help: 'Health-check requests answered or forwarded without counting as activity.',
      registers,
    });
    this.unrouted = new Counter({
      name: 'kybernate_activator_unrouted_requests_total',
      help: 'Requests whose host and path match no workload (answered 404).',
      registers,
    });
    new Gauge({
      name: 'kybernate_activator_in_flight_requests',
      help: 'Requests being forwarded to a pod now.',
      labelNames: ['workload'],
      registers,
      collect() {
        this.reset();
        for (const load of loads()) this.set({ workload: load.key }, load.inFlight);
      },
    });
    new Gauge({
      name: 'kybernate_activator_queue_depth',
      help: 'Requests held now, waiting for activation or a free slot.',
      labelNames: ['workload'],
      registers,
      collect() {
        this.reset();
        for (const load of loads()) this.set({ workload: load.key }, load.queued);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'kybernate_activator_' });
  }

  forWorkload(key: string): WorkloadMetrics {
    return new WorkloadMetrics(this, key);
  }
}
