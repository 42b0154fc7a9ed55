import type { V1Pod } from '@kubernetes/client-node';
import { ACTIVATION_REQUESTED_AT_ANNOTATION, WORKLOAD_LABEL, type KybernateWorkload } from '../../api/index.ts';
import { parseDuration } from '../../lib/duration.ts';
import { errorMessage } from '../../lib/errors.ts';
import { hostPatternProblem } from '../routing.ts';
import { WORKLOAD_DEFAULTS, workloadKey, type Endpoint, type Workload } from '../types.ts';

export interface Translation {
  readonly workloads: Workload[];
  /** Workloads left out, and why (logged; they get no route, so their hosts answer 404). */
  readonly problems: string[];
}

/** Ready = PodReady True, has a pod IP, and is not being deleted (architecture.md, workload pods). */
export function isPodReady(pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp !== undefined || !pod.status?.podIP) return false;
  return pod.status.conditions?.some((condition) => condition.type === 'Ready' && condition.status === 'True') ?? false;
}

function readyEndpointsByWorkload(pods: readonly V1Pod[]): Map<string, { pod: string; ip: string }[]> {
  const byWorkload = new Map<string, { pod: string; ip: string }[]>();
  for (const pod of pods) {
    const workload = pod.metadata?.labels?.[WORKLOAD_LABEL];
    if (workload === undefined || !isPodReady(pod)) continue;
    const key = `${pod.metadata?.namespace ?? ''}/${workload}`;
    const list = byWorkload.get(key) ?? [];
    list.push({ pod: pod.metadata?.name ?? '', ip: pod.status!.podIP! });
    byWorkload.set(key, list);
  }
  return byWorkload;
}

/**
 * The activator's view of the cluster, pure: KybernateWorkloads (routing config, phase) joined with
 * their labelled pods (readiness, IPs). Endpoints are sorted by pod name so that load balancing
 * order does not change with watch event order.
 */
export function translateCluster(workloads: readonly KybernateWorkload[], pods: readonly V1Pod[]): Translation {
  const endpoints = readyEndpointsByWorkload(pods);
  const result: Workload[] = [];
  const problems: string[] = [];
  for (const object of workloads) {
    const namespace = object.metadata.namespace ?? 'default';
    const name = object.metadata.name ?? '';
    const key = workloadKey({ namespace, name });
    const activator = object.spec?.activator;
    const hosts = activator?.hosts ?? [];
    if (hosts.length === 0) continue; // Not reachable through the activator: nothing to route.
    const badHost = hosts.map(hostPatternProblem).find((problem) => problem !== undefined);
    if (badHost !== undefined) {
      problems.push(`workload ${key}: ${badHost}`);
      continue;
    }
    let activationTimeoutMs: number = WORKLOAD_DEFAULTS.activationTimeoutMs;
    if (activator?.activationTimeout !== undefined) {
      try {
        activationTimeoutMs = parseDuration(activator.activationTimeout);
      } catch (error) {
        problems.push(`workload ${key}: spec.activator.activationTimeout: ${errorMessage(error)}`);
        continue;
      }
    }
    const port = activator?.port ?? 8080;
    const ready: Endpoint[] = (endpoints.get(key) ?? [])
      .sort((a, b) => a.pod.localeCompare(b.pod))
      .map(({ pod, ip }) => ({ host: ip, port, pod }));
    result.push({
      namespace,
      name,
      hosts,
      pathPrefix: activator?.pathPrefix ?? WORKLOAD_DEFAULTS.pathPrefix,
      activationTimeoutMs,
      queueSize: activator?.queueSize ?? WORKLOAD_DEFAULTS.queueSize,
      containerConcurrency: activator?.containerConcurrency ?? WORKLOAD_DEFAULTS.containerConcurrency,
      endpoints: ready,
      phase: object.status?.phase ?? '',
    });
  }
  return { workloads: result, problems };
}

/** The wake request's merge patch: only the annotation, so concurrent patches by other replicas never conflict. */
export function activationPatch(at: Date): { metadata: { annotations: Record<string, string> } } {
  return { metadata: { annotations: { [ACTIVATION_REQUESTED_AT_ANNOTATION]: at.toISOString() } } };
}
