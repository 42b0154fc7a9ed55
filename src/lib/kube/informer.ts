import type { Logger } from '../log.ts';
import { errorMessage } from '../errors.ts';
import { isGone, type KubeClient, type KubeObject, type WatchEvent } from './client.ts';
import type { ResourceType } from './resources.ts';
import { backoffDelay, withJitter, type BackoffPolicy } from '../backoff.ts';
import { IndexedCache, type IndexFunc } from './cache.ts';
import { sleep } from '../scheduler.ts';

export interface InformerHandlers<T> {
  onAdd?(object: T): void;
  onUpdate?(old: T, current: T): void;
  onDelete?(object: T): void;
}

export interface InformerOptions<T> {
  namespace?: string;
  labelSelector?: string;
  indexers?: Record<string, IndexFunc<T>>;
  /** Reconnect backoff after a failed list or watch. */
  backoff?: BackoffPolicy;
  /** Server-side watch timeout range; each watch picks one at random so replicas do not reconnect in step. */
  watchTimeoutSeconds?: { min: number; max: number };
  pageSize?: number;
  random?: () => number;
}

const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 200, maxMs: 30_000, factor: 2 };
const QUICK_WATCH_END_MS = 1_000;

/**
 * List+watch of one resource type into an IndexedCache, like client-go's reflector: list (paged) once,
 * then watch from the list's resourceVersion with bookmarks, resuming from the last seen version after a
 * dropped connection (with jittered backoff); `410 Gone` (version compacted) triggers a fresh list, whose
 * differences to the cache are delivered as add/update/delete so no deletion during a gap is missed.
 */
export class Informer<T extends KubeObject> {
  readonly cache: IndexedCache<T>;
  private readonly handlers: InformerHandlers<T>[] = [];
  private resourceVersion: string | undefined;
  private markSynced!: () => void;
  /** Resolves once the first list is in the cache. */
  readonly synced = new Promise<void>((resolve) => (this.markSynced = resolve));
  private isSynced = false;

  constructor(
    private readonly kube: KubeClient,
    readonly type: ResourceType,
    private readonly log: Logger,
    private readonly options: InformerOptions<T> = {},
  ) {
    this.cache = new IndexedCache<T>(options.indexers);
  }

  addHandlers(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
  }

  hasSynced(): boolean {
    return this.isSynced;
  }

  async run(signal: AbortSignal): Promise<void> {
    const backoff = this.options.backoff ?? DEFAULT_BACKOFF;
    const random = this.options.random ?? Math.random;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === undefined) await this.relist();
        const startedAt = Date.now();
        const events = await this.watchOnce(signal);
        // A watch the server ends at once with nothing in it would otherwise be retried in a hot loop.
        if (events === 0 && Date.now() - startedAt < QUICK_WATCH_END_MS && !signal.aborted) throw new Error('watch ended immediately');
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (isGone(err)) {
          this.log.info({ kind: this.type.kind, resourceVersion: this.resourceVersion }, 'watch resourceVersion expired (410 Gone): listing again');
          this.resourceVersion = undefined;
          continue;
        }
        failures += 1;
        const delayMs = withJitter(backoffDelay(backoff, failures), random);
        this.log.warn({ kind: this.type.kind, failures, delayMs: Math.round(delayMs), err: errorMessage(err) }, 'list/watch failed; retrying');
        await sleep(delayMs, signal);
      }
    }
  }

  private async relist(): Promise<void> {
    const items: T[] = [];
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.kube.list<T>(this.type, this.options.namespace, {
        labelSelector: this.options.labelSelector,
        limit: this.options.pageSize ?? 500,
        continue: continueToken,
      });
      items.push(...page.items.map((item) => withTypeMeta(item, this.type)));
      continueToken = page.metadata.continue || undefined;
      resourceVersion = page.metadata.resourceVersion;
    } while (continueToken);
    const delta = this.cache.replaceAll(items);
    this.resourceVersion = resourceVersion;
    this.log.debug({ kind: this.type.kind, count: items.length, resourceVersion }, 'listed');
    for (const object of delta.deleted) this.emit((h) => h.onDelete?.(object));
    for (const object of delta.added) this.emit((h) => h.onAdd?.(object));
    for (const { old, current } of delta.updated) this.emit((h) => h.onUpdate?.(old, current));
    if (!this.isSynced) {
      this.isSynced = true;
      this.markSynced();
    }
  }

  /** One watch from the current resourceVersion; returns how many events (bookmarks included) it delivered. */
  private async watchOnce(signal: AbortSignal): Promise<number> {
    const { min, max } = this.options.watchTimeoutSeconds ?? { min: 300, max: 600 };
    const random = this.options.random ?? Math.random;
    let events = 0;
    await this.kube.watch<T>(
      this.type,
      this.options.namespace,
      {
        resourceVersion: this.resourceVersion ?? '',
        labelSelector: this.options.labelSelector,
        timeoutSeconds: Math.round(min + (max - min) * random()),
      },
      (event) => {
        events += 1;
        this.apply(event);
      },
      signal,
    );
    return events;
  }

  private apply(event: WatchEvent<T>): void {
    const object = withTypeMeta(event.object, this.type);
    this.resourceVersion = object.metadata?.resourceVersion ?? this.resourceVersion;
    switch (event.type) {
      case 'BOOKMARK':
        return;
      case 'ADDED':
      case 'MODIFIED': {
        const old = this.cache.upsert(object);
        if (old) this.emit((h) => h.onUpdate?.(old, object));
        else this.emit((h) => h.onAdd?.(object));
        return;
      }
      case 'DELETED':
        this.cache.remove(object);
        this.emit((h) => h.onDelete?.(object));
        return;
    }
  }

  private emit(call: (handlers: InformerHandlers<T>) => void): void {
    for (const handlers of this.handlers) {
      try {
        call(handlers);
      } catch (err) {
        this.log.error({ kind: this.type.kind, err: errorMessage(err) }, 'informer handler threw');
      }
    }
  }
}

/** List items come without apiVersion/kind; owner references and events need them. */
function withTypeMeta<T extends KubeObject>(object: T, type: ResourceType): T {
  return object.kind && object.apiVersion ? object : { ...object, apiVersion: type.apiVersion, kind: type.kind };
}
