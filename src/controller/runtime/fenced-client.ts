import { KybernateError } from '../../lib/errors.ts';
import type { KubeClient } from '../../lib/kube/client.ts';

/** A write attempted after this instance lost leadership. */
export class NotLeaderError extends KybernateError {
  constructor(operation: string) {
    super('NotLeader', `refusing ${operation}: this controller instance is no longer the leader`, { operation });
  }
}

/**
 * The client reconcilers get while leading: reads pass through, every write first checks that
 * leadership (the signal) still holds, so a reconcile still running when the lease is lost cannot act.
 */
export function fencedClient(kube: KubeClient, leadership: AbortSignal): KubeClient {
  const guard = (operation: string) => {
    if (leadership.aborted) throw new NotLeaderError(operation);
  };
  return {
    get: (type, namespace, name) => kube.get(type, namespace, name),
    list: (type, namespace, options) => kube.list(type, namespace, options),
    watch: (type, namespace, options, onEvent, signal) => kube.watch(type, namespace, options, onEvent, signal),
    create: async (type, object) => (guard(`create ${type.kind}`), kube.create(type, object)),
    replace: async (type, object) => (guard(`replace ${type.kind}`), kube.replace(type, object)),
    replaceStatus: async (type, object) => (guard(`status update of ${type.kind}`), kube.replaceStatus(type, object)),
    mergePatch: async (type, namespace, name, patch, subresource) => (guard(`patch ${type.kind}`), kube.mergePatch(type, namespace, name, patch, subresource)),
    delete: async (type, namespace, name, options) => (guard(`delete ${type.kind}`), kube.delete(type, namespace, name, options)),
  };
}
