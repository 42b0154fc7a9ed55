import type { V1Pod } from '@kubernetes/client-node';
import { ACTIVATION_REQUESTED_AT_ANNOTATION, WORKLOAD_LABEL, type KybernateWorkload } from '../../api/index.ts';
import type { KubeClient } from '../../lib/kube/client.ts';
import { PODS, WORKLOADS } from '../../lib/kube/resources.ts';
import { Informer } from '../../lib/kube/informer.ts';
import { UnavailableError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { ActivationTrigger, Workload, WorkloadSource } from '../types.ts';
import { activationPatch, translateCluster } from './kube-translate.ts';

/*
 * The API client and informer are the project's own (src/lib/kube), shared with the controller:
 * @kubernetes/client-node 2.x does not load on Node 20, so it provides only the types.
 */

/**
 * Workloads from Kubernetes: an informer on KybernateWorkloads (all namespaces) and one on pods
 * labelled `kybernate.io/workload`. Every change recomputes the whole view (translateCluster) once
 * per event-loop turn, however many watch events arrived in it.
 */
export class KubeWorkloadSource implements WorkloadSource {
  private readonly workloads: Informer<KybernateWorkload>;
  private readonly pods: Informer<V1Pod>;
  private readonly stopping = new AbortController();
  private running: Promise<unknown> | undefined;
  private listener: ((workloads: readonly Workload[]) => void) | undefined;
  private scheduled = false;

  constructor(
    kube: KubeClient,
    private readonly log: Logger,
  ) {
    this.workloads = new Informer<KybernateWorkload>(kube, WORKLOADS, log);
    this.pods = new Informer<V1Pod>(kube, PODS, log, { labelSelector: WORKLOAD_LABEL });
    const handlers = { onAdd: this.schedule, onUpdate: this.schedule, onDelete: this.schedule };
    this.workloads.addHandlers(handlers);
    this.pods.addHandlers(handlers);
  }

  /** Resolves once both informers listed; until then the activator is not ready. */
  async start(onSnapshot: (workloads: readonly Workload[]) => void): Promise<void> {
    const signal = this.stopping.signal;
    this.running = Promise.all([this.workloads.run(signal), this.pods.run(signal)]);
    await Promise.all([this.workloads.synced, this.pods.synced]);
    this.listener = onSnapshot;
    this.publish();
  }

  async stop(): Promise<void> {
    this.listener = undefined;
    this.stopping.abort();
    await this.running;
  }

  private readonly schedule = (): void => {
    if (this.scheduled || this.listener === undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.publish();
    });
  };

  private publish(): void {
    if (this.listener === undefined) return;
    const { workloads, problems } = translateCluster(this.workloads.cache.list(), this.pods.cache.list());
    for (const problem of problems) this.log.warn({ problem }, 'workload not routed');
    this.listener(workloads);
  }
}

/** The wake request of architecture.md: merge-patch the activation annotation onto the workload. */
export class KubeActivationTrigger implements ActivationTrigger {
  constructor(
    private readonly kube: KubeClient,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async requestActivation(workload: { namespace: string; name: string }): Promise<void> {
    try {
      await this.kube.mergePatch(WORKLOADS, workload.namespace, workload.name, activationPatch(this.now()));
    } catch (error) {
      throw new UnavailableError(
        `patching ${ACTIVATION_REQUESTED_AT_ANNOTATION} on ${workload.namespace}/${workload.name} failed: ${errorMessage(error)}`,
        { workload: `${workload.namespace}/${workload.name}` },
        { cause: error },
      );
    }
  }
}
