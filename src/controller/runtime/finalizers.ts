import type { KubeClient, KubeObject } from '../../lib/kube/client.ts';
import type { ResourceType } from '../../lib/kube/resources.ts';

export function hasFinalizer(object: KubeObject, finalizer: string): boolean {
  return object.metadata?.finalizers?.includes(finalizer) ?? false;
}

/**
 * Adds or removes one finalizer with a merge patch that carries the object's resourceVersion, so the
 * list is never written over a concurrent change (that write fails with 409 and the reconcile retries).
 */
export async function setFinalizer<T extends KubeObject>(kube: KubeClient, type: ResourceType, object: T, finalizer: string, present: boolean): Promise<T> {
  const current = object.metadata?.finalizers ?? [];
  if (current.includes(finalizer) === present) return object;
  const finalizers = present ? [...current, finalizer] : current.filter((f) => f !== finalizer);
  return kube.mergePatch<T>(type, object.metadata?.namespace, object.metadata?.name ?? '', {
    metadata: { finalizers, resourceVersion: object.metadata?.resourceVersion },
  });
}
