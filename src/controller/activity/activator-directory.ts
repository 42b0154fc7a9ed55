import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';
import type { KubeClient } from '../../lib/kube/client.ts';
import { PODS } from '../../lib/kube/resources.ts';
import { Informer } from '../../lib/kube/informer.ts';
import type { Runnable } from '../runtime/manager.ts';

export interface ActivatorPods {
  namespace: string;
  labelSelector: string;
  adminPort: number;
}

/**
 * The admin URLs of the activator replicas that may hold or serve requests: every pod with an IP that
 * is not finished. Readiness does not count: a draining replica is not ready but still has requests.
 */
export function activatorUrls(pods: readonly V1Pod[], adminPort: number): string[] {
  return pods
    .filter((pod) => pod.status?.podIP && pod.status.phase !== 'Succeeded' && pod.status.phase !== 'Failed' && !pod.metadata?.deletionTimestamp)
    .map((pod) => `http://${pod.status!.podIP!.includes(':') ? `[${pod.status!.podIP}]` : pod.status!.podIP}:${adminPort}`)
    .sort();
}

/** Follows the activator pods (a read-only watch, run by every controller instance, leader or not). */
export class ActivatorDirectory implements Runnable {
  private readonly informer: Informer<V1Pod>;

  constructor(
    kube: KubeClient,
    private readonly selector: ActivatorPods,
    log: Logger,
  ) {
    this.informer = new Informer<V1Pod>(kube, PODS, log.child({ informer: 'activator-pods' }), {
      namespace: selector.namespace,
      labelSelector: selector.labelSelector,
    });
  }

  urls(): string[] {
    return activatorUrls(this.informer.cache.list(), this.selector.adminPort);
  }

  run(signal: AbortSignal): Promise<void> {
    return this.informer.run(signal);
  }
}
