import type { Logger } from '../../lib/log.ts';
import { errorMessage, KybernateError } from '../../lib/errors.ts';
import type { KubeObject } from '../../lib/kube/client.ts';
import { objectKey, splitKey } from '../../lib/kube/cache.ts';
import type { Informer } from '../../lib/kube/informer.ts';
import { WorkQueue, DEFAULT_WORKQUEUE_OPTIONS, type WorkQueueOptions } from './workqueue.ts';

export interface ReconcileRequest {
  namespace: string;
  name: string;
}

export interface ReconcileResult {
  /** Reconcile this key again after this long even without a change (e.g. to re-check idleness). */
  requeueAfterMs?: number;
}

export interface Reconciler {
  reconcile(request: ReconcileRequest, signal: AbortSignal): Promise<ReconcileResult | void>;
}

export interface ControllerOptions {
  workers: number;
  queue?: WorkQueueOptions;
}

/** Maps a changed object to the keys (namespace/name) of the primary objects to reconcile. */
export type KeyMapper<T> = (object: T) => string[];

export const ownKey: KeyMapper<KubeObject> = (object) => [objectKey(object)];

/** The owner of kind `kind` marked `controller: true`, in the object's namespace. */
export function controllerOwnerKey(kind: string): KeyMapper<KubeObject> {
  return (object) => {
    const owner = object.metadata?.ownerReferences?.find((ref) => ref.controller && ref.kind === kind);
    return owner ? [`${object.metadata?.namespace ?? ''}/${owner.name}`] : [];
  };
}

/**
 * Runs a Reconciler over a rate-limited work queue: informers enqueue keys, `workers` loops reconcile
 * them, never the same key twice at once. A failed reconcile is retried with backoff; success resets it.
 */
export class Controller {
  readonly queue: WorkQueue;

  constructor(
    readonly name: string,
    private readonly reconciler: Reconciler,
    private readonly log: Logger,
    private readonly options: ControllerOptions,
  ) {
    this.queue = new WorkQueue(options.queue ?? DEFAULT_WORKQUEUE_OPTIONS);
  }

  /** Reconcile the mapped keys whenever an object of `informer` is added, changed or deleted. */
  watch<T extends KubeObject>(informer: Informer<T>, mapKeys: KeyMapper<T>): void {
    const enqueue = (object: T) => {
      for (const key of mapKeys(object)) this.queue.add(key);
    };
    informer.addHandlers({ onAdd: enqueue, onUpdate: (_old, current) => enqueue(current), onDelete: enqueue });
  }

  /** Processes keys until `signal` aborts, then lets in-flight reconciles finish. */
  async run(signal: AbortSignal): Promise<void> {
    const workers = Array.from({ length: this.options.workers }, () => this.work(signal));
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await this.queue.shutDown();
    await Promise.all(workers);
  }

  private async work(signal: AbortSignal): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const request = splitKey(key);
      const log = this.log.child({ controller: this.name, namespace: request.namespace, name: request.name });
      try {
        const result = await this.reconciler.reconcile(request, signal);
        this.queue.forget(key);
        if (result?.requeueAfterMs !== undefined) this.queue.addAfter(key, result.requeueAfterMs);
      } catch (err) {
        if (!signal.aborted) {
          const context = err instanceof KybernateError ? { code: err.code, ...err.context } : {};
          log.warn({ err: errorMessage(err), retries: this.queue.retries(key), ...context }, 'reconcile failed; will retry');
          this.queue.addRateLimited(key);
        }
      } finally {
        this.queue.done(key);
      }
    }
  }
}
