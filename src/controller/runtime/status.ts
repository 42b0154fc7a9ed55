import { KybernateError } from '../../lib/errors.ts';
import { isConflict, isNotFound, type KubeClient, type KubeObject } from '../../lib/kube/client.ts';
import type { ResourceType } from '../../lib/kube/resources.ts';

type WithStatus<S> = KubeObject & { status?: S };

const MAX_CONFLICT_RETRIES = 5;

/**
 * Writes status through the status subresource, conflict-checked by resourceVersion. `compute` gets the
 * object (first the caller's copy, after a 409 a fresh read) and returns the new status, or undefined
 * for "nothing to write" — which is also how a transition guarded by a precondition (e.g. phase is still
 * Suspended) backs off when another writer got there first. Returns the stored object, the unchanged
 * object when nothing was written, or undefined when the object is gone.
 */
export async function updateStatus<T extends WithStatus<unknown>>(
  kube: KubeClient,
  type: ResourceType,
  object: T,
  compute: (current: T) => T['status'] | undefined,
): Promise<{ object: T | undefined; written: boolean }> {
  let current: T = object;
  for (let attempt = 1; ; attempt++) {
    const status = compute(current);
    if (status === undefined) return { object: current, written: false };
    try {
      return { object: await kube.replaceStatus<T>(type, { ...current, status }), written: true };
    } catch (err) {
      if (isNotFound(err)) return { object: undefined, written: false };
      if (!isConflict(err)) throw err;
      if (attempt >= MAX_CONFLICT_RETRIES) {
        throw new KybernateError('ConflictRetriesExhausted', `status of ${type.kind} ${current.metadata?.name} kept conflicting`, {
          kind: type.kind,
          namespace: current.metadata?.namespace,
          name: current.metadata?.name,
          attempts: attempt,
        }, { cause: err });
      }
      try {
        current = await kube.get<T>(type, current.metadata?.namespace, current.metadata?.name ?? '');
      } catch (readErr) {
        if (isNotFound(readErr)) return { object: undefined, written: false };
        throw readErr;
      }
    }
  }
}
