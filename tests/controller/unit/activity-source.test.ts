import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { aggregateActivity, HttpActivitySource, parseActivityDocument } from '../../../src/controller/activity/activity-source.ts';
import { createLogger } from '../../../src/lib/log.ts';

describe('parseActivityDocument', () => {
  it('accepts the documented shape', () => {
    const body = { workloads: [{ namespace: 'ns', name: 'w', inFlight: 1, queued: 0, lastRequestTime: '2026-11-27T10:00:00Z', requestRate: 2 }] };
    expect(parseActivityDocument(body, 'a')).toEqual([{ namespace: 'ns', name: 'w', inFlight: 1, queued: 0, lastRequestTime: '2026-11-27T10:00:00Z' }]);
  });

  it.each([
    [null, 'has no "workloads" array'],
    [{}, 'has no "workloads" array'],
    [{ workloads: [{ namespace: 'ns', name: 'w', inFlight: -1, queued: 0 }] }, 'workloads[0] is malformed'],
    [{ workloads: [{ namespace: 'ns', inFlight: 0, queued: 0 }] }, 'workloads[0] is malformed'],
    [{ workloads: [{ namespace: 'ns', name: 'w', inFlight: 0, queued: 0, lastRequestTime: 'yesterday' }] }, 'workloads[0] is malformed'],
  ])('rejects %j', (body, message) => {
    expect(() => parseActivityDocument(body, 'http://a')).toThrow(message);
  });
});

describe('aggregateActivity', () => {
  it('sums counts and takes the latest request time over replicas', () => {
    const report = aggregateActivity([
      [{ namespace: 'ns', name: 'w', inFlight: 1, queued: 2, lastRequestTime: '2026-11-27T10:00:00Z' }],
      [{ namespace: 'ns', name: 'w', inFlight: 3, queued: 0, lastRequestTime: '2026-11-27T10:00:05Z' }],
      [{ namespace: 'ns', name: 'w', inFlight: 0, queued: 0, lastRequestTime: null }],
    ]);
    expect(report.snapshot('ns', 'w')).toEqual({ inFlight: 4, queued: 2, lastRequestTimeMs: Date.parse('2026-11-27T10:00:05Z'), complete: true });
    expect(report.snapshot('ns', 'unknown')).toEqual({ inFlight: 0, queued: 0, lastRequestTimeMs: undefined, complete: true });
  });

  it('marks everything incomplete when a replica did not answer', () => {
    const report = aggregateActivity([[{ namespace: 'ns', name: 'w', inFlight: 0, queued: 0, lastRequestTime: null }], undefined]);
    expect(report.snapshot('ns', 'w').complete).toBe(false);
    expect(report.snapshot('ns', 'other').complete).toBe(false);
  });
});

describe('HttpActivitySource against real HTTP servers on loopback', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });

  async function serve(status: number, body: unknown): Promise<string> {
    const server = createServer((req, res) => {
      if (req.url !== '/v1/activity') return void res.writeHead(404).end();
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  const log = createLogger('test');

  it('reads and aggregates every replica', async () => {
    const a = await serve(200, { workloads: [{ namespace: 'ns', name: 'w', inFlight: 2, queued: 1, lastRequestTime: '2026-11-27T10:00:00Z' }] });
    const b = await serve(200, { workloads: [{ namespace: 'ns', name: 'w', inFlight: 1, queued: 0, lastRequestTime: null }] });
    const report = await new HttpActivitySource(() => [a, b], 2_000, log).read();
    expect(report.snapshot('ns', 'w')).toEqual({ inFlight: 3, queued: 1, lastRequestTimeMs: Date.parse('2026-11-27T10:00:00Z'), complete: true });
  });

  it('treats an erroring, malformed or unreachable replica as unknown activity', async () => {
    const good = await serve(200, { workloads: [] });
    const failing = await serve(500, {});
    const malformed = await serve(200, { nope: true });
    const closed = await serve(200, { workloads: [] });
    await new Promise((resolve) => servers.pop()!.close(resolve));
    for (const bad of [failing, malformed, closed]) {
      const report = await new HttpActivitySource(() => [good, bad], 2_000, log).read();
      expect(report.snapshot('ns', 'w').complete).toBe(false);
    }
  });

  it('with no replica configured, activity is unknown', async () => {
    const report = await new HttpActivitySource(() => [], 2_000, log).read();
    expect(report.snapshot('ns', 'w').complete).toBe(false);
  });
});
