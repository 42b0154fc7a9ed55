import type { KubeObject } from './client.ts';

export type IndexFunc<T> = (object: T) => string[];

/** `namespace/name`, the key of the cache and of the work queue. */
export function objectKey(object: KubeObject): string {
  const { namespace, name } = object.metadata ?? {};
  return namespace ? `${namespace}/${name ?? ''}` : (name ?? '');
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { namespace: '', name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export interface CacheDelta<T> {
  added: T[];
  updated: { old: T; current: T }[];
  deleted: T[];
}

/**
 * The informer's local copy of the objects, with secondary indexes (e.g. pods by workload) so that
 * reconcilers read without API calls. Objects are stored as received; callers must not mutate them.
 */
export class IndexedCache<T extends KubeObject> {
  private readonly objects = new Map<string, T>();
  private readonly indexes = new Map<string, Map<string, Set<string>>>();

  constructor(private readonly indexers: Record<string, IndexFunc<T>> = {}) {
    for (const name of Object.keys(indexers)) this.indexes.set(name, new Map());
  }

  get(namespace: string, name: string): T | undefined {
    return this.objects.get(namespace ? `${namespace}/${name}` : name);
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  byIndex(indexName: string, value: string): T[] {
    const index = this.indexes.get(indexName);
    if (!index) throw new Error(`no index "${indexName}" in this cache`);
    return [...(index.get(value) ?? [])].flatMap((key) => this.objects.get(key) ?? []);
  }

  /** Stores the object; returns the previous version, if any. */
  upsert(object: T): T | undefined {
    const key = objectKey(object);
    const old = this.objects.get(key);
    if (old) this.unindex(key, old);
    this.objects.set(key, object);
    this.index(key, object);
    return old;
  }

  remove(object: T): T | undefined {
    const key = objectKey(object);
    const old = this.objects.get(key);
    if (!old) return undefined;
    this.unindex(key, old);
    this.objects.delete(key);
    return old;
  }

  /** Replaces everything with a fresh list and says what changed (a re-list after a watch gap). */
  replaceAll(objects: readonly T[]): CacheDelta<T> {
    const delta: CacheDelta<T> = { added: [], updated: [], deleted: [] };
    const fresh = new Set(objects.map(objectKey));
    for (const old of this.list()) {
      if (!fresh.has(objectKey(old))) {
        this.remove(old);
        delta.deleted.push(old);
      }
    }
    for (const object of objects) {
      const old = this.upsert(object);
      if (!old) delta.added.push(object);
      else if (old.metadata?.resourceVersion !== object.metadata?.resourceVersion) delta.updated.push({ old, current: object });
    }
    return delta;
  }

  private index(key: string, object: T): void {
    for (const [name, indexFunc] of Object.entries(this.indexers)) {
      const index = this.indexes.get(name)!;
      for (const value of indexFunc(object)) {
        const keys = index.get(value) ?? new Set<string>();
        keys.add(key);
        index.set(value, keys);
      }
    }
  }

  private unindex(key: string, object: T): void {
    for (const [name, indexFunc] of Object.entries(this.indexers)) {
      const index = this.indexes.get(name)!;
      for (const value of indexFunc(object)) {
        const keys = index.get(value);
        keys?.delete(key);
        if (keys?.size === 0) index.delete(value);
      }
    }
  }
}
