/** Forwarding to ready pods: routing, headers, streaming, WebSocket, concurrency limits, drain, metrics. */
import { once } from 'node:events';
import { get as httpGet, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { WebSocket, WebSocketServer } from 'ws';
import { startActivator, startBackend, queued, waitFor, type RunningActivator } from './harness.ts';

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

function track<T extends { close(): Promise<void> }>(thing: T): T {
  cleanups.push(() => thing.close());
  return thing;
}

async function activatorFor(addresses: string[], extra: Record<string, unknown> = {}): Promise<RunningActivator> {
  return track(await startActivator({ workloads: [{ name: 'web', hosts: ['web.test', '*.apps.test'], endpoints: addresses, ...extra }] }));
}

function nodeGet(url: string, headers: Record<string, string>): Promise<{ headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ headers: res.headers, body }));
    }).on('error', reject);
  });
}

describe('activator warm path', () => {
  it('routes by exact and wildcard host; unknown hosts get 404 and are never proxied', async () => {
    const backend = track(await startBackend((req, res) => res.end(`host=${req.headers.host}`)));
    const running = await activatorFor([backend.address]);
    const exact = await request(`${running.url}/a`, { headers: { host: 'web.test' } });
    expect(await exact.body.text()).toBe('host=web.test');
    const wildcard = await request(`${running.url}/a`, { headers: { host: 'Deep.Team.apps.test:8080' } });
    expect(await wildcard.body.text()).toBe('host=Deep.Team.apps.test:8080');
    const unknown = await request(`${running.url}/a`, { headers: { host: 'evil.test' } });
    expect(unknown.statusCode).toBe(404);
    expect(await unknown.body.text()).toContain('no workload serves host "evil.test"');
    expect(backend.seen).toHaveLength(2);
  });

  it('strips hop-by-hop headers both ways and sets X-Forwarded-*', async () => {
    const backend = track(
      await startBackend((req, res) => {
        res.setHeader('x-secret-hop', 'upstream-only');
        res.setHeader('connection', 'keep-alive, x-secret-hop');
        res.setHeader('proxy-authenticate', 'Basic');
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(req.headers));
      }),
    );
    const running = await activatorFor([backend.address]);
    // node:http as the client: undici refuses to send hop-by-hop headers at all.
    const response = await nodeGet(`${running.url}/h`, {
      host: 'web.test',
      connection: 'keep-alive, x-client-hop',
      'x-client-hop': 'client-only',
      'proxy-authorization': 'Basic c2VjcmV0',
      te: 'trailers',
      'keep-alive': 'timeout=5',
      'x-forwarded-for': '203.0.113.7',
      'x-end-to-end': 'kept',
    });
    const seen = JSON.parse(response.body) as Record<string, string>;
    expect(seen['x-client-hop']).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(seen['keep-alive']).toBeUndefined();
    expect(seen['x-end-to-end']).toBe('kept');
    expect(seen['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe('web.test');
    expect(response.headers['x-secret-hop']).toBeUndefined();
    expect(response.headers['proxy-authenticate']).toBeUndefined();
  });

  it('forwards an upload sent with Expect: 100-continue (as curl does for large bodies)', async () => {
    const backend = track(
      await startBackend((req, res) => {
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk.toString()));
        req.on('end', () => res.end(`${req.headers.expect ?? 'no expect'}:${body}`));
      }),
    );
    const running = await activatorFor([backend.address]);
    const answer = await new Promise<string>((resolve, reject) => {
      const outgoing = httpRequest(`${running.url}/upload`, {
        method: 'PUT',
        agent: false,
        headers: { host: 'web.test', expect: '100-continue', 'content-length': '5' },
      });
      outgoing.on('continue', () => outgoing.end('hello'));
      outgoing.on('response', (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve(`${res.statusCode} ${body}`));
      });
      outgoing.on('error', reject);
    });
    expect(answer).toBe('200 no expect:hello');
  });

  it('relays the first Server-Sent Event before the stream ends', async () => {
    let finish: (() => void) | undefined;
    const backend = track(
      await startBackend((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: first\n\n');
        finish = () => res.end('data: last\n\n');
      }),
    );
    const running = await activatorFor([backend.address]);
    const response = await request(`${running.url}/events`, { headers: { host: 'web.test', accept: 'text/event-stream' } });
    const iterator = response.body[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(Buffer.from(first.value as Buffer).toString()).toBe('data: first\n\n');
    // The backend only ends the stream after the client saw the first event: buffering would hang here.
    finish!();
    let rest = '';
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) rest += Buffer.from(next.value as Buffer).toString();
    expect(rest).toBe('data: last\n\n');
  });

  it('proxies a WebSocket upgrade (echo), also one held while the workload activates', async () => {
    const backend = track(await startBackend((_req, res) => res.end()));
    const wss = new WebSocketServer({ server: backend.server });
    wss.on('connection', (socket, req) => socket.on('message', (data) => socket.send(`${req.headers['x-forwarded-host']}:${String(data)}`)));
    cleanups.push(async () => wss.close());
    const running = await activatorFor([backend.address]);
    const echo = async (): Promise<string> => {
      const client = new WebSocket(`ws://127.0.0.1:${running.port}/ws`, { headers: { host: 'web.test' } });
      await once(client, 'open');
      client.send('hello');
      const [data] = (await once(client, 'message')) as [Buffer];
      client.close();
      await once(client, 'close');
      return String(data);
    };
    expect(await echo()).toBe('web.test:hello');

    running.source.setSuspended('default/web', true);
    const held = echo();
    await waitFor('upgrade held', () => queued(running, 'web') === 1);
    running.source.setSuspended('default/web', false);
    expect(await held).toBe('web.test:hello');
    await waitFor('tunnels closed', () => running.activator.openExchanges === 0);
  });

  it('keeps each pod under containerConcurrency and balances across ready pods', async () => {
    const concurrency = new Map<string, { now: number; max: number; total: number }>();
    const backends = await Promise.all(
      ['a', 'b'].map(async (name) => {
        const stats = { now: 0, max: 0, total: 0 };
        concurrency.set(name, stats);
        return track(
          await startBackend((_req, res) => {
            stats.now++;
            stats.total++;
            stats.max = Math.max(stats.max, stats.now);
            setTimeout(() => {
              stats.now--;
              res.end(name);
            }, 30);
          }),
        );
      }),
    );
    const running = await activatorFor(backends.map((backend) => backend.address), { containerConcurrency: 1 });
    const agent = new Agent({ connections: 100 });
    cleanups.push(() => agent.close());
    const bodies = await Promise.all(
      Array.from({ length: 12 }, async () => (await request(`${running.url}/`, { dispatcher: agent, headers: { host: 'web.test' } })).body.text()),
    );
    expect(bodies).toHaveLength(12);
    expect(concurrency.get('a')!.max).toBe(1);
    expect(concurrency.get('b')!.max).toBe(1);
    expect(concurrency.get('a')!.total).toBe(6);
    expect(concurrency.get('b')!.total).toBe(6);
  });

  it('propagates a client abort to the pod', async () => {
    let upstreamClosed: Promise<unknown> | undefined;
    const backend = track(
      await startBackend((req, res) => {
        upstreamClosed = once(res, 'close');
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial');
      }),
    );
    const running = await activatorFor([backend.address]);
    const controller = new AbortController();
    const response = await request(`${running.url}/stream`, { headers: { host: 'web.test' }, signal: controller.signal });
    const iterator = response.body[Symbol.asyncIterator]();
    await iterator.next();
    controller.abort();
    await waitFor('backend saw the request', () => upstreamClosed !== undefined);
    await upstreamClosed;
    await waitFor('exchange finished', () => running.activator.openExchanges === 0);
    expect(running.activator.activity()[0]!.inFlight).toBe(0);
  });

  it('answers 502 with a clear message when the pod refuses the connection', async () => {
    const backend = await startBackend((_req, res) => res.end());
    const address = backend.address;
    await backend.close();
    const running = await activatorFor([address]);
    const response = await request(`${running.url}/`, { headers: { host: 'web.test' } });
    expect(response.statusCode).toBe(502);
    expect(await response.body.text()).toContain('upstream request failed');
  });

  it('drains: finishes in-flight requests and refuses new connections', async () => {
    const backend = track(await startBackend((_req, res) => setTimeout(() => res.end('done'), 300)));
    const running = await activatorFor([backend.address]);
    const inFlight = request(`${running.url}/`, { headers: { host: 'web.test' } });
    await waitFor('request in flight', () => backend.seen.length === 1);
    const drained = running.activator.drain(5_000);
    await waitFor('listener closed', () => !running.activator.server.listening);
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(running.port, '127.0.0.1');
      socket.once('connect', () => resolve('connected'));
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
    const response = await inFlight;
    expect(response.statusCode).toBe(200);
    expect(await response.body.text()).toBe('done');
    expect(await drained).toEqual({ forced: 0 });
    expect(running.activator.ready).toBe(false);
  });

  it('exposes metrics and the activity endpoint on the admin port', async () => {
    const backend = track(await startBackend((_req, res) => res.end('ok')));
    const running = await activatorFor([backend.address]);
    await (await request(`${running.url}/`, { headers: { host: 'web.test' } })).body.text();
    await (await request(`${running.url}/`, { headers: { host: 'nobody.test' } })).body.text();
    const metrics = await (await request(`${running.adminUrl}/metrics`)).body.text();
    expect(metrics).toContain('kybernate_activator_requests_total{workload="default/web",code="200"} 1');
    expect(metrics).toContain('kybernate_activator_unrouted_requests_total 1');
    expect(metrics).toContain('kybernate_activator_queue_depth{workload="default/web"} 0');
    expect(metrics).toContain('kybernate_activator_in_flight_requests{workload="default/web"} 0');
    expect(metrics).toMatch(/kybernate_activator_upstream_response_seconds_count\{workload="default\/web"\} 1/);
    const activity = (await (await request(`${running.adminUrl}/v1/activity`)).body.json()) as {
      replica: string;
      workloads: { name: string; inFlight: number; queued: number; lastRequestTime: string; requestRate: number }[];
    };
    expect(activity.replica).toBe('test-replica');
    expect(activity.workloads).toHaveLength(1);
    expect(activity.workloads[0]).toMatchObject({ name: 'web', inFlight: 0, queued: 0 });
    expect(Date.parse(activity.workloads[0]!.lastRequestTime)).toBeGreaterThan(Date.now() - 60_000);
    expect(activity.workloads[0]!.requestRate).toBeGreaterThan(0);
    expect((await request(`${running.adminUrl}/readyz`)).statusCode).toBe(200);
  });
});
