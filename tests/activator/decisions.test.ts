/** The activator's small pure decisions: load balancing, activation, probes, headers, rates, config. */
import { describe, expect, it } from 'vitest';
import { ActivationGate } from '../../src/activator/activation.ts';
import { RATE_WINDOW_S, RequestRate } from '../../src/activator/activity.ts';
import { pickEndpoint } from '../../src/activator/breaker.ts';
import { configFromEnv } from '../../src/activator/config.ts';
import { stripResponseHopByHop, upstreamRequestHeaders } from '../../src/activator/headers.ts';
import { DEFAULT_PROBE_RULES, isProbe } from '../../src/activator/probes.ts';
import { InvalidInputError } from '../../src/lib/errors.ts';

const pods = (...loads: number[]) => loads.map((inFlight) => ({ inFlight }));

describe('pickEndpoint (breaker + load balancing)', () => {
  it('takes the least loaded pod below the limit', () => {
    expect(pickEndpoint(pods(3, 1, 2), 0, 0)).toBe(1);
    expect(pickEndpoint(pods(1, 1, 0), 2, 0)).toBe(2);
  });

  it('returns -1 when every pod is at its limit or there is none', () => {
    expect(pickEndpoint(pods(2, 2), 2, 0)).toBe(-1);
    expect(pickEndpoint([], 0, 0)).toBe(-1);
  });

  it('breaks ties round-robin from the start index', () => {
    expect([0, 1, 2, 3].map((start) => pickEndpoint(pods(0, 0, 0), 0, start % 3))).toEqual([0, 1, 2, 0]);
  });
});

describe('ActivationGate', () => {
  it('asks once per suspended period, again after a failure or after the retry interval', () => {
    const gate = new ActivationGate();
    const first = gate.begin(0, 1_000);
    expect(first).toBe(1);
    expect(gate.begin(10, 1_000)).toBeUndefined();
    expect(gate.fail(first!)).toBe(true);
    const second = gate.begin(20, 1_000);
    expect(second).toBe(2);
    expect(gate.fail(first!)).toBe(false);
    expect(gate.begin(1_020, 1_000)).toBe(3);
    gate.ready();
    expect(gate.pending).toBe(false);
    expect(gate.fail(3)).toBe(false);
    expect(gate.begin(1_030, 1_000)).toBe(4);
  });
});

describe('probes', () => {
  it('recognizes kubelet and load-balancer user agents and configured paths', () => {
    expect(isProbe(DEFAULT_PROBE_RULES, 'kube-probe/1.31', '/')).toBe(true);
    expect(isProbe(DEFAULT_PROBE_RULES, 'ELB-HealthChecker/2.0', '/')).toBe(true);
    expect(isProbe(DEFAULT_PROBE_RULES, 'curl/8.0', '/healthz')).toBe(false);
    const rules = { userAgentPrefixes: [], paths: ['/healthz'] };
    expect(isProbe(rules, 'curl/8.0', '/healthz?full=1')).toBe(true);
    expect(isProbe(rules, undefined, '/healthz/deep')).toBe(false);
  });
});

describe('header rewriting', () => {
  const client = { remoteAddress: '10.0.0.9', protocol: 'http' as const };

  it('drops hop-by-hop request headers, those named by Connection, and appends X-Forwarded-For', () => {
    const { headers, hasBody } = upstreamRequestHeaders(
      ['Host', 'a.test', 'Connection', 'keep-alive, X-Trace-Hop', 'X-Trace-Hop', '1', 'TE', 'trailers', 'Expect', '100-continue', 'X-Forwarded-For', '1.2.3.4', 'Accept', '*/*'],
      client,
    );
    expect(headers).toEqual(['Host', 'a.test', 'Accept', '*/*', 'x-forwarded-for', '1.2.3.4, 10.0.0.9', 'x-forwarded-proto', 'http', 'x-forwarded-host', 'a.test']);
    expect(hasBody).toBe(false);
  });

  it('keeps X-Forwarded-Proto/Host set by a proxy in front, and sees a body by its headers', () => {
    const { headers, hasBody } = upstreamRequestHeaders(
      ['Host', 'a.test', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'public.test', 'Transfer-Encoding', 'chunked'],
      client,
    );
    expect(headers).toEqual(['Host', 'a.test', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'public.test', 'x-forwarded-for', '10.0.0.9']);
    expect(hasBody).toBe(true);
    expect(upstreamRequestHeaders(['Content-Length', '0'], client).hasBody).toBe(false);
    expect(upstreamRequestHeaders(['Content-Length', '12'], client).hasBody).toBe(true);
  });

  it('passes Connection and Upgrade for an upgrade handshake when asked to', () => {
    const { headers } = upstreamRequestHeaders(['Host', 'a', 'Connection', 'Upgrade', 'Upgrade', 'websocket'], client, new Set(['connection', 'upgrade']));
    expect(headers.slice(0, 6)).toEqual(['Host', 'a', 'Connection', 'Upgrade', 'Upgrade', 'websocket']);
  });

  it('strips hop-by-hop response headers', () => {
    const headers: Record<string, string | string[] | undefined> = {
      connection: 'keep-alive, x-hop',
      'x-hop': '1',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'content-type': 'text/plain',
    };
    stripResponseHopByHop(headers);
    expect(headers).toEqual({ 'content-type': 'text/plain' });
  });
});

describe('RequestRate', () => {
  it('averages requests per second over the window and forgets old seconds', () => {
    const rate = new RequestRate();
    for (let i = 0; i < 120; i++) rate.record(1_000_000 + i * 10);
    expect(rate.perSecond(1_001_500)).toBeCloseTo(120 / RATE_WINDOW_S);
    expect(rate.perSecond(1_000_000 + RATE_WINDOW_S * 1_000 + 2_000)).toBe(0);
  });
});

describe('configFromEnv', () => {
  it('has defaults and reads the documented variables', () => {
    const defaults = configFromEnv({});
    expect(defaults).toMatchObject({ proxyPort: 8080, adminPort: 9090, source: { kind: 'kube' }, drainGraceMs: 30_000 });
    const custom = configFromEnv({
      KYBERNATE_ACTIVATOR_SOURCE: 'static',
      KYBERNATE_ACTIVATOR_CONFIG: '/etc/a.yaml',
      KYBERNATE_ACTIVATOR_PORT: '0',
      KYBERNATE_ACTIVATOR_DRAIN_GRACE: '5s',
      KYBERNATE_ACTIVATOR_PROBE_PATHS: '/healthz, /ready',
    });
    expect(custom).toMatchObject({ proxyPort: 0, source: { kind: 'static', file: '/etc/a.yaml' }, drainGraceMs: 5_000 });
    expect(custom.probes.paths).toEqual(['/healthz', '/ready']);
  });

  it('rejects bad values with the variable named', () => {
    expect(() => configFromEnv({ KYBERNATE_ACTIVATOR_PORT: 'http' })).toThrow(/KYBERNATE_ACTIVATOR_PORT="http"/);
    expect(() => configFromEnv({ KYBERNATE_ACTIVATOR_SOURCE: 'static' })).toThrow(InvalidInputError);
    expect(() => configFromEnv({ KYBERNATE_ACTIVATOR_SOURCE: 'consul' })).toThrow(/expected "kube" or "static"/);
  });
});
