import { describe, expect, it } from 'vitest';
import { KubeApiError, type KubeClient, type KubeList, type KubeObject, type WatchEvent } from '../../../src/lib/kube/client.ts';
import { WORKLOADS } from '../../../src/lib/kube/resources.ts';
import { Informer } from '../../../src/lib/kube/informer.ts';
import { UnavailableError } from '../../../src/lib/errors.ts';
import { createLogger } from '../../../src/lib/log.ts';

const obj = (name: string, rv: string): KubeObject => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });

type WatchScript = (onEvent: (event: WatchEvent<KubeObject>) => void, signal: AbortSignal) => Promise<void>;

/**
 * FAULT INJECTION, not a stand-in for the API server (the informer's normal path is tested against a real
 * kube-apiserver in tests/controller/integration): a 410 Gone and a dropped watch at a chosen moment
 * cannot be produced on demand by the real server.
 */
function scriptedClient(lists: KubeList<KubeObject>[], watches: WatchScript[]) {
  const watchVersions: string[] = [];
  const client = {
    list: async () => lists.shift() ?? { items: [], metadata: { resourceVersion: '999' } },
    watch: async (_type: unknown, _ns: unknown, options: { resourceVersion: string }, onEvent: (event: WatchEvent<KubeObject>) => void, signal: AbortSignal) => {
      watchVersions.push(options.resourceVersion);
      const script = watches.shift();
      if (!script) return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      return script(onEvent, signal);
    },
  } as unknown as KubeClient;
  return { client, watchVersions };
}

describe('Informer (fault injection)', () => {
  it('resumes from the last seen version after a dropped watch, and re-lists after 410 Gone, delivering deletions from the gap', async () => {
    const { client, watchVersions } = scriptedClient(
      [
        { items: [obj('a', '1'), obj('b', '2')], metadata: { resourceVersion: '10' } },
        { items: [obj('a', '1'), obj('c', '11')], metadata: { resourceVersion: '20' } },
      ],
      [
        async (onEvent) => {
          onEvent({ type: 'ADDED', object: obj('c', '11') });
          onEvent({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '15' } } });
          throw new UnavailableError('connection reset');
        },
        async () => {
          throw new KubeApiError(410, 'Expired', 'too old resource version: 15 (18)', {});
        },
      ],
    );
    const informer = new Informer<KubeObject>(client, WORKLOADS, createLogger('test'), { backoff: { baseMs: 1, maxMs: 1, factor: 1 } });
    const seen: string[] = [];
    informer.addHandlers({
      onAdd: (o) => seen.push(`add ${o.metadata?.name}`),
      onUpdate: (_old, o) => seen.push(`update ${o.metadata?.name}`),
      onDelete: (o) => seen.push(`delete ${o.metadata?.name}`),
    });
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await informer.synced;
    for (let i = 0; i < 50 && watchVersions.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    stop.abort();
    await running;

    expect(watchVersions).toEqual(['10', '15', '20']);
    expect(seen).toEqual(['add a', 'add b', 'add c', 'delete b']);
    expect(informer.cache.list().map((o) => o.metadata?.name).sort()).toEqual(['a', 'c']);
    // List items lack apiVersion/kind; the informer fills them in for owner references and events.
    expect(informer.cache.get('ns', 'a')).toMatchObject({ apiVersion: WORKLOADS.apiVersion, kind: WORKLOADS.kind });
  });
});
