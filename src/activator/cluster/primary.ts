import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { errorMessage, UnavailableError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { WorkloadActivity } from '../activity.ts';
import type { AdminView } from '../admin-server.ts';
import { workloadKey, type ActivationTrigger, type Workload, type WorkloadSource } from '../types.ts';
import { mergeWorkerActivity } from './merge-activity.ts';
import { isWorkerMessage, type PrimaryMessage, type WorkerMessage } from './messages.ts';

export interface ClusterPrimaryOptions {
  readonly workers: number;
  readonly source: WorkloadSource;
  readonly trigger: ActivationTrigger;
  readonly log: Logger;
}

/** A worker that does not answer an activity query in time makes the whole report unavailable. */
const ACTIVITY_TIMEOUT_MS = 2_000;
/** More crashes than this within the window: something is wrong with every worker; let Kubernetes restart the pod. */
const RESPAWN_LIMIT = 5;
const RESPAWN_WINDOW_MS = 60_000;

/**
 * The primary process of a cluster-mode activator. It owns what must exist once per replica - the
 * workload source, the activation trigger (one request per workload at a time, whichever workers
 * ask) and the admin view - and forks workers that each run the data path on the shared port with
 * their own event loop. Crashed workers are replaced.
 */
export class ClusterPrimary implements AdminView {
  private snapshot: readonly Workload[] | undefined;
  private readonly serving = new Set<number>();
  private readonly aggregator = new AggregatorRegistry();
  private readonly activations = new Map<string, Promise<void>>();
  private readonly queries = new Map<number, (workloads: readonly WorkloadActivity[]) => void>();
  private nextQueryId = 1;
  private crashes: number[] = [];
  private draining = false;

  constructor(private readonly options: ClusterPrimaryOptions) {}

  async start(): Promise<void> {
    cluster.on('message', this.onMessage);
    cluster.on('exit', this.onExit);
    await this.options.source.start((workloads) => {
      this.snapshot = workloads;
      this.broadcast({ kind: 'kybernate:snapshot', workloads });
    });
    for (let index = 0; index < this.options.workers; index++) cluster.fork();
  }

  get ready(): boolean {
    return this.snapshot !== undefined && !this.draining && this.serving.size === this.options.workers;
  }

  async metrics(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.aggregator.contentType, text: await this.aggregator.clusterMetrics() };
  }

  /** Refuses rather than under-reports: a missing worker's requests would make a busy workload look idle. */
  async activity(): Promise<readonly WorkloadActivity[]> {
    const workers = this.liveWorkers().filter((worker) => this.serving.has(worker.id));
    if (workers.length < this.options.workers) {
      throw new UnavailableError(`only ${workers.length} of ${this.options.workers} activator workers are serving; activity would be incomplete`);
    }
    return mergeWorkerActivity(await Promise.all(workers.map((worker) => this.queryActivity(worker))));
  }

  /** Tells every worker to drain and waits until all have exited (killing them after grace + 5 s). */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    const workers = this.liveWorkers();
    const exited = Promise.all(workers.map((worker) => new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve())))));
    for (const worker of workers) this.send(worker, { kind: 'kybernate:drain', graceMs });
    const killer = setTimeout(() => {
      for (const worker of workers) if (!worker.isDead()) worker.process.kill('SIGKILL');
    }, graceMs + 5_000);
    await exited;
    clearTimeout(killer);
    await this.options.source.stop();
  }

  private readonly onMessage = (worker: Worker, message: unknown): void => {
    if (!isWorkerMessage(message)) return;
    this.handle(worker, message);
  };

  private handle(worker: Worker, message: WorkerMessage): void {
    switch (message.kind) {
      case 'kybernate:hello':
        if (this.snapshot !== undefined) this.send(worker, { kind: 'kybernate:snapshot', workloads: this.snapshot });
        break;
      case 'kybernate:listening':
        this.serving.add(worker.id);
        this.options.log.info({ worker: worker.id, pid: worker.process.pid }, 'worker serving');
        break;
      case 'kybernate:activate':
        this.activate({ namespace: message.namespace, name: message.name }).then(
          () => this.send(worker, { kind: 'kybernate:activation-done', id: message.id }),
          (error: unknown) => this.send(worker, { kind: 'kybernate:activation-done', id: message.id, error: errorMessage(error) }),
        );
        break;
      case 'kybernate:activity':
        this.queries.get(message.id)?.(message.workloads);
        break;
    }
  }

  /** Workers asking at the same time share one trigger call. */
  private activate(workload: { namespace: string; name: string }): Promise<void> {
    const key = workloadKey(workload);
    let running = this.activations.get(key);
    if (running === undefined) {
      running = this.options.trigger.requestActivation(workload).finally(() => this.activations.delete(key));
      this.activations.set(key, running);
    }
    return running;
  }

  private queryActivity(worker: Worker): Promise<readonly WorkloadActivity[]> {
    const id = this.nextQueryId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.queries.delete(id);
        reject(new UnavailableError(`activator worker ${worker.id} did not report its activity within ${ACTIVITY_TIMEOUT_MS} ms`));
      }, ACTIVITY_TIMEOUT_MS);
      this.queries.set(id, (workloads) => {
        clearTimeout(timer);
        this.queries.delete(id);
        resolve(workloads);
      });
      this.send(worker, { kind: 'kybernate:activity-query', id });
    });
  }

  private readonly onExit = (worker: Worker, code: number | null, signal: string | null): void => {
    this.serving.delete(worker.id);
    if (this.draining) return;
    const now = Date.now();
    this.crashes = [...this.crashes.filter((at) => now - at < RESPAWN_WINDOW_MS), now];
    if (this.crashes.length > RESPAWN_LIMIT) {
      this.options.log.fatal({ worker: worker.id, code, signal, crashes: this.crashes.length }, `activator workers crashed ${this.crashes.length} times within ${RESPAWN_WINDOW_MS / 1000} s; exiting`);
      process.exit(1);
    }
    this.options.log.error({ worker: worker.id, pid: worker.process.pid, code, signal }, 'activator worker exited; starting a new one (its open connections were cut)');
    cluster.fork();
  };

  private broadcast(message: PrimaryMessage): void {
    for (const worker of this.liveWorkers()) this.send(worker, message);
  }

  private send(worker: Worker, message: PrimaryMessage): void {
    if (worker.isConnected()) worker.send(message);
  }

  private liveWorkers(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined && !worker.isDead());
  }
}
