import type { Logger } from '../../lib/log.ts';
import type { KubeClient } from '../../lib/kube/client.ts';
import { fencedClient } from './fenced-client.ts';
import type { LeaderElector } from './leader-election.ts';

/** Something that runs until its signal aborts (an informer, a controller). */
export interface Runnable {
  run(signal: AbortSignal): Promise<void>;
}

/** Builds the informers and controllers of one leadership term around a client that is fenced to it. */
export type LeaderWork = (kube: KubeClient) => Runnable[];

/**
 * Starts the controllers only while leading: each term gets fresh informers, queues and a fenced
 * client, so nothing from a lost term can act in the next. Without an elector (single instance, tests)
 * it runs one term until shutdown. `run` resolves after a graceful shutdown: in-flight reconciles are
 * finished and, when leading, the lease is released.
 */
export class Manager {
  constructor(
    private readonly kube: KubeClient,
    private readonly work: LeaderWork,
    private readonly log: Logger,
    private readonly elector?: LeaderElector,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    if (!this.elector) return this.term(signal);
    await this.elector.run(signal, (leadership) => this.term(leadership));
  }

  private async term(leadership: AbortSignal): Promise<void> {
    const runnables = this.work(fencedClient(this.kube, leadership));
    this.log.info({ runnables: runnables.length }, 'starting controllers');
    await Promise.all(runnables.map((runnable) => runnable.run(leadership)));
    this.log.info('controllers stopped');
  }
}
