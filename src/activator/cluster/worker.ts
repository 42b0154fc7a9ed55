import { AggregatorRegistry } from 'prom-client';
import { UnavailableError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { Activator } from '../activator.ts';
import type { ActivatorConfig } from '../config.ts';
import type { ActivationTrigger, Workload, WorkloadSource } from '../types.ts';
import { isPrimaryMessage, type WorkerMessage } from './messages.ts';

function send(message: WorkerMessage): void {
  process.send?.(message);
}

/** The primary's snapshots, as a worker's workload source; `start` resolves with the first one. */
class RelayedWorkloadSource implements WorkloadSource {
  private listener: ((workloads: readonly Workload[]) => void) | undefined;
  private latest: readonly Workload[] | undefined;
  private firstArrived: (() => void) | undefined;

  async start(onSnapshot: (workloads: readonly Workload[]) => void): Promise<void> {
    this.listener = onSnapshot;
    if (this.latest !== undefined) onSnapshot(this.latest);
    else await new Promise<void>((resolve) => (this.firstArrived = resolve));
  }

  async stop(): Promise<void> {
    this.listener = undefined;
  }

  push(workloads: readonly Workload[]): void {
    this.latest = workloads;
    this.listener?.(workloads);
    this.firstArrived?.();
    this.firstArrived = undefined;
  }
}

/** Activation requests go to the primary, which holds the one real trigger for the replica. */
class RelayedActivationTrigger implements ActivationTrigger {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

  requestActivation(workload: { namespace: string; name: string }): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      send({ kind: 'kybernate:activate', id, namespace: workload.namespace, name: workload.name });
    });
  }

  settle(id: number, error: string | undefined): void {
    const waiter = this.pending.get(id);
    if (waiter === undefined) return;
    this.pending.delete(id);
    if (error === undefined) waiter.resolve();
    else waiter.reject(new UnavailableError(error));
  }

  /** The primary is gone: nobody will answer. */
  failAll(reason: string): void {
    for (const id of [...this.pending.keys()]) this.settle(id, reason);
  }
}

/**
 * One worker of a cluster-mode activator: serves the data path on the shared port with its own event
 * loop, holds its own requests, and relays activation and activity through the primary. It stops
 * when the primary says drain, or when the primary is gone (then it drains on its own).
 */
export async function runWorker(config: ActivatorConfig, log: Logger): Promise<void> {
  const source = new RelayedWorkloadSource();
  const trigger = new RelayedActivationTrigger();
  const activator = new Activator({ source, trigger, log, probes: config.probes, pools: config.pools });
  // Constructing one installs prom-client's answer to the primary's scrape; it reports this registry.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([activator.metrics.registry]);

  let stopping = false;
  const stop = async (graceMs: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const { forced } = await activator.drain(graceMs);
    await activator.close();
    log.info({ forced }, 'worker drained');
    process.exit(0);
  };

  process.on('message', (message: unknown) => {
    if (!isPrimaryMessage(message)) return;
    switch (message.kind) {
      case 'kybernate:snapshot':
        source.push(message.workloads);
        break;
      case 'kybernate:activation-done':
        trigger.settle(message.id, message.error);
        break;
      case 'kybernate:activity-query':
        send({ kind: 'kybernate:activity', id: message.id, workloads: activator.activity() });
        break;
      case 'kybernate:drain':
        void stop(message.graceMs);
        break;
    }
  });
  process.on('disconnect', () => {
    log.error('primary process gone; draining this worker');
    trigger.failAll('the activator primary process is gone');
    void stop(config.drainGraceMs);
  });
  // A terminal's Ctrl-C reaches the whole process group: the primary decides when workers drain.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);

  send({ kind: 'kybernate:hello' });
  await activator.start();
  await new Promise<void>((resolve) => activator.server.listen(config.proxyPort, config.host, resolve));
  send({ kind: 'kybernate:listening' });
}
