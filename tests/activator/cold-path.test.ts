/** Held requests: release order, bursts, queue limit, timeouts, disconnects, activation failure, probes. */
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startActivator, startBackend, queued, waitFor, type Backend, type RunningActivator } from './harness.ts';

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

async function setup(workload: Record<string, unknown>, respond?: Parameters<typeof startBackend>[0]): Promise<{ backend: Backend; running: RunningActivator; agent: Agent }> {
  const backend = await startBackend(respond ?? ((req, res) => res.end(`id=${req.headers['x-id'] ?? ''}`)));
  const running = await startActivator({
    workloads: [{ name: 'llm', hosts: ['llm.test'], endpoints: [backend.address], suspended: true, ...workload }],
  });
  const agent = new Agent({ connections: 2_000 });
  cleanups.push(backend.close, running.close, () => agent.close());
  return { backend, running, agent };
}

function get(running: RunningActivator, agent: Agent, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return request(`${running.url}/`, { dispatcher: agent, headers: { host: 'llm.test', ...headers }, signal });
}

describe('activator cold path', () => {
  it('releases held requests in arrival order once the workload is ready', async () => {
    // containerConcurrency 1: one request at a time, so arrival order at the backend is release order.
    const { backend, running, agent } = await setup({ containerConcurrency: 1 });
    const responses = [];
    for (let index = 0; index < 20; index++) {
      responses.push(get(running, agent, { 'x-id': String(index) }));
      await waitFor(`request ${index} held`, () => queued(running, 'llm') === index + 1);
    }
    expect(running.trigger.calls).toEqual(['default/llm']);
    running.source.setSuspended('default/llm', false);
    const bodies = await Promise.all(responses.map(async (pending) => (await pending).body.text()));
    expect(bodies).toEqual(Array.from({ length: 20 }, (_, index) => `id=${index}`));
    expect(backend.seen.map((req) => req.headers['x-id'])).toEqual(Array.from({ length: 20 }, (_, index) => String(index)));
  });

  it('answers 1,000 concurrent requests during an activation exactly once each', async () => {
    const { backend, running, agent } = await setup({});
    running.trigger.onActivate = async (key) => {
      // The workload becomes ready in the middle of the burst: half held, the rest arriving after.
      void waitFor('half the burst held', () => queued(running, 'llm') >= 500).then(() => running.source.setSuspended(key, false));
    };
    const responses = await Promise.all(
      Array.from({ length: 1_000 }, async (_, index) => {
        const response = await get(running, agent, { 'x-id': String(index) });
        return { status: response.statusCode, body: await response.body.text() };
      }),
    );
    expect(responses.every((response, index) => response.status === 200 && response.body === `id=${index}`)).toBe(true);
    const counts = new Map<string, number>();
    for (const req of backend.seen) counts.set(String(req.headers['x-id']), (counts.get(String(req.headers['x-id'])) ?? 0) + 1);
    expect(counts.size).toBe(1_000);
    expect([...counts.values()].every((count) => count === 1)).toBe(true);
    expect(running.trigger.calls).toEqual(['default/llm']);
  });

  it('answers 503 with Retry-After when the queue is full', async () => {
    const { running, agent } = await setup({ queueSize: 2 });
    const held = [get(running, agent), get(running, agent)];
    await waitFor('two held', () => queued(running, 'llm') === 2);
    const rejected = await get(running, agent);
    expect(rejected.statusCode).toBe(503);
    expect(rejected.headers['retry-after']).toBe('1');
    expect(await rejected.body.text()).toContain('too many requests waiting (queue size 2)');
    running.source.setSuspended('default/llm', false);
    expect((await Promise.all(held)).map((response) => response.statusCode)).toEqual([200, 200]);
  });

  it('answers 504 after the activation timeout, and the backend never sees the request', async () => {
    const { backend, running, agent } = await setup({ activationTimeout: '200ms' });
    const response = await get(running, agent);
    expect(response.statusCode).toBe(504);
    expect(await response.body.text()).toContain('did not become ready within 200 ms');
    expect(queued(running, 'llm')).toBe(0);
    running.source.setSuspended('default/llm', false);
    const after = await get(running, agent);
    expect(after.statusCode).toBe(200);
    await after.body.text();
    expect(backend.seen).toHaveLength(1);
  });

  it('drops a held request whose client disconnected; the backend never sees it', async () => {
    const { backend, running, agent } = await setup({});
    const controller = new AbortController();
    const pending = get(running, agent, { 'x-id': 'gone' }, controller.signal).catch((error: unknown) => error);
    await waitFor('request held', () => queued(running, 'llm') === 1);
    controller.abort();
    await pending;
    await waitFor('queue empty after disconnect', () => queued(running, 'llm') === 0);
    running.source.setSuspended('default/llm', false);
    const response = await get(running, agent, { 'x-id': 'stays' });
    expect(await response.body.text()).toBe('id=stays');
    expect(backend.seen.map((req) => req.headers['x-id'])).toEqual(['stays']);
    expect(running.activator.openExchanges).toBe(0);
  });

  it('answers held requests with 503 when activation fails, and retries on the next request', async () => {
    const { running, agent } = await setup({});
    running.trigger.onActivate = async () => {
      throw new Error('API server unreachable');
    };
    const failed = await get(running, agent);
    expect(failed.statusCode).toBe(503);
    expect(await failed.body.text()).toContain('activation of workload default/llm failed: API server unreachable');
    running.trigger.onActivate = async (key) => running.source.setSuspended(key, false);
    const retried = await get(running, agent);
    expect(retried.statusCode).toBe(200);
    await retried.body.text();
    expect(running.trigger.calls).toEqual(['default/llm', 'default/llm']);
  });

  it('answers requests still held when the drain grace period runs out with 503', async () => {
    const { backend, running, agent } = await setup({});
    const held = get(running, agent);
    await waitFor('request held', () => queued(running, 'llm') === 1);
    expect(await running.activator.drain(200)).toEqual({ forced: 1 });
    const response = await held;
    expect(response.statusCode).toBe(503);
    expect(await response.body.text()).toContain('activator shut down before workload default/llm became ready');
    expect(backend.seen).toHaveLength(0);
  });

  it('answers probes itself without activating a suspended workload or counting them as activity', async () => {
    const { backend, running, agent } = await setup({});
    const probe = await get(running, agent, { 'user-agent': 'kube-probe/1.31' });
    expect(probe.statusCode).toBe(200);
    expect(probe.headers['x-kybernate-probe']).toBe('activator');
    await probe.body.text();
    expect(running.trigger.calls).toEqual([]);
    expect(backend.seen).toHaveLength(0);
    expect(running.activator.activity()[0]!.lastRequestTime).toBeNull();
  });
});
