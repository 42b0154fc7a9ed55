import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  makeInformer,
  setHeaderOptions,
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type ObjectCache,
  type V1Pod,
} from '@kubernetes/client-node';
import {
  ACTIVATION_REQUESTED_AT_ANNOTATION,
  API_GROUP,
  API_VERSION,
  WORKLOAD_LABEL,
  WORKLOAD_NAMES,
  type KybernateWorkload,
} from '../../api/index.ts';
import { UnavailableError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { ActivationTrigger, Workload, WorkloadSource } from '../types.ts';
import { activationPatch, translateCluster } from './kube-translate.ts';

const WATCH_RESTART_DELAY_MS = 2_000;

type CachedInformer<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

/**
 * Workloads from Kubernetes: an informer on KybernateWorkloads (all namespaces) and one on pods
 * labelled `kybernate.io/workload`. Every change recomputes the whole view (translateCluster) once
 * per event-loop turn, however many watch events arrived in it.
 */
export class KubeWorkloadSource implements WorkloadSource {
  private readonly workloads: CachedInformer<KybernateWorkload & KubernetesObject>;
  private readonly pods: CachedInformer<V1Pod>;
  private listener: ((workloads: readonly Workload[]) => void) | undefined;
  private scheduled = false;
  private stopped = false;

  constructor(
    kubeConfig: KubeConfig,
    private readonly log: Logger,
  ) {
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const plural = WORKLOAD_NAMES.plural;
    this.workloads = makeInformer(
      kubeConfig,
      `/apis/${API_GROUP}/${API_VERSION}/${plural}`,
      () => custom.listClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural }) as Promise<KubernetesListObject<KybernateWorkload & KubernetesObject>>,
    );
    this.pods = makeInformer(kubeConfig, '/api/v1/pods', () => core.listPodForAllNamespaces({ labelSelector: WORKLOAD_LABEL }), WORKLOAD_LABEL);
    this.watch('workloads', this.workloads);
    this.watch('pods', this.pods);
  }

  private watch<T extends KubernetesObject>(name: string, informer: Informer<T>): void {
    informer.on('add', this.schedule);
    informer.on('update', this.schedule);
    informer.on('delete', this.schedule);
    informer.on('error', (error: unknown) => this.restartLater(name, informer, error));
  }

  async start(onSnapshot: (workloads: readonly Workload[]) => void): Promise<void> {
    this.listener = onSnapshot;
    try {
      await Promise.all([this.workloads.start(), this.pods.start()]);
    } catch (error) {
      throw new UnavailableError(`cannot list workloads and pods from the API server: ${errorMessage(error)}`, {}, { cause: error });
    }
    this.publish();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.listener = undefined;
    await Promise.all([this.workloads.stop(), this.pods.stop()]);
  }

  private readonly schedule = (): void => {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.publish();
    });
  };

  private publish(): void {
    if (this.listener === undefined) return;
    const { workloads, problems } = translateCluster(this.workloads.list(), this.pods.list());
    for (const problem of problems) this.log.warn({ problem }, 'workload not routed');
    this.listener(workloads);
  }

  private restartLater<T extends KubernetesObject>(name: string, informer: Informer<T>, error: unknown): void {
    if (this.stopped) return;
    this.log.warn({ watch: name, err: error }, 'watch failed; restarting');
    setTimeout(() => {
      if (this.stopped) return;
      informer.start().catch((restartError: unknown) => this.restartLater(name, informer, restartError));
    }, WATCH_RESTART_DELAY_MS).unref();
  }
}

/** The wake request of architecture.md: merge-patch the activation annotation onto the workload. */
export class KubeActivationTrigger implements ActivationTrigger {
  private readonly custom: CustomObjectsApi;

  constructor(
    kubeConfig: KubeConfig,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi);
  }

  async requestActivation(workload: { namespace: string; name: string }): Promise<void> {
    try {
      await this.custom.patchNamespacedCustomObject(
        {
          group: API_GROUP,
          version: API_VERSION,
          plural: WORKLOAD_NAMES.plural,
          namespace: workload.namespace,
          name: workload.name,
          body: activationPatch(this.now()),
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (error) {
      throw new UnavailableError(
        `patching ${ACTIVATION_REQUESTED_AT_ANNOTATION} on ${workload.namespace}/${workload.name} failed: ${errorMessage(error)}`,
        { workload: `${workload.namespace}/${workload.name}` },
        { cause: error },
      );
    }
  }
}
