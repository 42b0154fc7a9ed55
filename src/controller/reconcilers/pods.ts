import type { V1Pod } from '@kubernetes/client-node';
import { parseKubeTime } from '../runtime/time.ts';

/** How often an operation waiting for its pod (to exist, be scheduled, run) looks again: pods of other owners are not watched. */
export const WAIT_FOR_POD_MS = 2_000;

export type ContainerResolution =
  | { ok: true; container: string; containerId: string | undefined; running: boolean }
  | { ok: false; reason: 'ContainerNotFound' | 'ContainerAmbiguous'; message: string };

/** Picks the container a checkpoint acts on: the named one, or the only one when none is named. */
export function resolveContainer(pod: V1Pod, containerName: string | undefined): ContainerResolution {
  const names = pod.spec?.containers.map((c) => c.name) ?? [];
  const podName = pod.metadata?.name ?? '';
  let name = containerName;
  if (name === undefined) {
    if (names.length !== 1) {
      return { ok: false, reason: 'ContainerAmbiguous', message: `pod ${podName} has ${names.length} containers (${names.join(', ')}): set containerName` };
    }
    name = names[0]!;
  } else if (!names.includes(name)) {
    return { ok: false, reason: 'ContainerNotFound', message: `pod ${podName} has no container "${name}" (it has ${names.join(', ') || 'none'})` };
  }
  const status = pod.status?.containerStatuses?.find((s) => s.name === name);
  const containerId = status?.containerID?.replace(/^[a-z]+:\/\//, '') || undefined;
  return { ok: true, container: name, containerId, running: status?.state?.running !== undefined };
}

export function isPodReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** Since when the pod has been Ready (epoch ms), or undefined when it is not. */
export function podReadySinceMs(pod: V1Pod): number | undefined {
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
  return ready ? (parseKubeTime(ready.lastTransitionTime) ?? 0) : undefined;
}

export function isTerminating(object: { metadata?: { deletionTimestamp?: Date | string } }): boolean {
  return object.metadata?.deletionTimestamp !== undefined && object.metadata.deletionTimestamp !== null;
}
