import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { WORKLOAD_LABEL, type KybernateCheckpoint, type KybernateRestore, type KybernateWorkload } from '../api/index.ts';
import type { Logger } from '../lib/log.ts';
import { ActivityPoller } from './activity/activity-poller.ts';
import type { ActivitySource } from './activity/activity-source.ts';
import type { NodeAgent } from './agent/node-agent.ts';
import type { KubeClient, KubeObject } from '../lib/kube/client.ts';
import { CHECKPOINTS, PODS, RESTORES, SERVICES, WORKLOADS, type ResourceType } from '../lib/kube/resources.ts';
import { CheckpointReconciler } from './reconcilers/checkpoint.ts';
import type { ReconcilerDeps } from './reconcilers/deps.ts';
import { RESTORES_BY_CHECKPOINT, RestoreReconciler, restoreCheckpointIndex } from './reconcilers/restore.ts';
import { PODS_BY_WORKLOAD, WorkloadReconciler, podWorkloadIndex } from './reconcilers/workload.ts';
import { objectKey } from '../lib/kube/cache.ts';
import { Controller, controllerOwnerKey, ownKey } from './runtime/controller.ts';
import { KubeEventRecorder } from './runtime/events.ts';
import { Informer, type InformerOptions } from '../lib/kube/informer.ts';
import type { LeaderWork, Runnable } from './runtime/manager.ts';
import type { WorkQueueOptions } from './runtime/workqueue.ts';
import { DEFAULT_GPU_POD_CONFIG, type GpuPodConfig } from './gpu/pod-gpu.ts';

export interface ControllerSettings {
  /** Namespace to watch; undefined = all namespaces. */
  namespace?: string;
  /** This instance's name in Events (reportingInstance) and the Lease. */
  identity: string;
  /** Concurrent reconciles per controller (never two for one object). */
  workers: number;
  activityPollIntervalMs: number;
  operationTimeoutMs: number;
  /** Pod-level needs of GPU workloads; default runtime class nvidia, resource nvidia.com/gpu. */
  gpu?: GpuPodConfig;
  queue?: WorkQueueOptions;
}

export interface ControllerDependencies {
  agent: NodeAgent;
  activity: ActivitySource;
  log: Logger;
  now?: () => Date;
}

/**
 * The informers, the activity poller and the three controllers of one leadership term. The
 * controllers start once every cache holds its first list, so no reconcile acts on a partial view.
 */
export function kybernateControllers(settings: ControllerSettings, dependencies: ControllerDependencies): LeaderWork {
  return (kube: KubeClient): Runnable[] => {
    const { log } = dependencies;
    const informer = <T extends KubeObject>(type: ResourceType, options: InformerOptions<T> = {}) =>
      new Informer<T>(kube, type, log.child({ informer: type.plural }), { namespace: settings.namespace, ...options });
    const workloads = informer<KybernateWorkload>(WORKLOADS);
    const checkpoints = informer<KybernateCheckpoint>(CHECKPOINTS);
    const restores = informer<KybernateRestore>(RESTORES, { indexers: { [RESTORES_BY_CHECKPOINT]: restoreCheckpointIndex } });
    // Only objects that carry the workload label: keeps the caches small in a big cluster.
    const pods = informer<V1Pod>(PODS, { labelSelector: WORKLOAD_LABEL, indexers: { [PODS_BY_WORKLOAD]: podWorkloadIndex } });
    const services = informer<V1Service>(SERVICES, { labelSelector: WORKLOAD_LABEL });
    const informers = [workloads, checkpoints, restores, pods, services];

    const deps: ReconcilerDeps = {
      kube,
      events: new KubeEventRecorder(kube, settings.identity, log.child({ events: true })),
      agent: dependencies.agent,
      log,
      now: dependencies.now ?? (() => new Date()),
    };
    const options = { workers: settings.workers, queue: settings.queue };
    const poller = new ActivityPoller(
      dependencies.activity,
      settings.activityPollIntervalMs,
      () => workloads.cache.list().forEach((workload) => workloadController.queue.add(objectKey(workload))),
      log.child({ activity: true }),
    );

    const workloadController = new Controller(
      'workload',
      new WorkloadReconciler(
        deps,
        { workloads: workloads.cache, pods: pods.cache, services: services.cache, checkpoints: checkpoints.cache, restores: restores.cache },
        () => poller.latest(),
        { operationTimeoutMs: settings.operationTimeoutMs, gpu: settings.gpu ?? DEFAULT_GPU_POD_CONFIG },
      ),
      log,
      options,
    );
    workloadController.watch(workloads, ownKey);
    for (const owned of [pods, services, checkpoints, restores] as Informer<KubeObject>[]) {
      workloadController.watch(owned, controllerOwnerKey(WORKLOADS.kind));
    }

    const checkpointController = new Controller('checkpoint', new CheckpointReconciler(deps, checkpoints.cache), log, options);
    checkpointController.watch(checkpoints, ownKey);

    const restoreController = new Controller('restore', new RestoreReconciler(deps, restores.cache, checkpoints.cache), log, options);
    restoreController.watch(restores, ownKey);
    restoreController.watch(checkpoints, (checkpoint) =>
      restores.cache.byIndex(RESTORES_BY_CHECKPOINT, objectKey(checkpoint)).map(objectKey),
    );

    const controllers = [workloadController, checkpointController, restoreController];
    return [
      {
        async run(signal: AbortSignal): Promise<void> {
          const running = informers.map((i) => i.run(signal));
          const aborted = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
          await Promise.race([Promise.all(informers.map((i) => i.synced)), aborted]);
          if (!signal.aborted) log.info('caches synced; starting controllers');
          await Promise.all([...running, poller.run(signal), ...controllers.map((c) => c.run(signal))]);
        },
      },
    ];
  };
}
