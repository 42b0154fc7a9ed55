/**
 * The activator process in cluster mode (KYBERNATE_ACTIVATOR_WORKERS=2), started like in production
 * (src/activator/main.ts, static source) with a real backend on loopback: the workers share the
 * port, the primary aggregates metrics and activity, releases held requests in every worker,
 * replaces a crashed worker and drains on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeLoopbackPort, waitFor } from '../support/wait.ts';
import { startBackend, type Backend } from './harness.ts';

const MAIN = fileURLToPath(new URL('../../src/activator/main.ts', import.meta.url));

let backend: Backend;
let dir: string;
let primary: ChildProcess;
let proxyUrl: string;
let adminUrl: string;

beforeAll(async () => {
  backend = await startBackend((req, res) => {
    const delayMs = req.url === '/slow' ? 500 : 0;
    setTimeout(() => res.end('ok\n'), delayMs);
  });
  dir = await mkdtemp(path.join(tmpdir(), 'kyb-activator-cluster-'));
  const config = path.join(dir, 'activator.yaml');
  await writeFile(
    config,
    [
      'workloads:',
      `  - { name: ready, hosts: [ready.test], endpoints: ["${backend.address}"] }`,
      `  - { name: held, hosts: [held.test], endpoints: ["${backend.address}"], suspended: true, activationTimeout: 30s }`,
    ].join('\n'),
  );
  const [proxyPort, adminPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
  proxyUrl = `http://127.0.0.1:${proxyPort}`;
  adminUrl = `http://127.0.0.1:${adminPort}`;
  primary = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: {
      ...process.env,
      KYBERNATE_ACTIVATOR_SOURCE: 'static',
      KYBERNATE_ACTIVATOR_CONFIG: config,
      KYBERNATE_ACTIVATOR_WORKERS: '2',
      KYBERNATE_ACTIVATOR_PORT: String(proxyPort),
      KYBERNATE_ACTIVATOR_ADMIN_PORT: String(adminPort),
      KYBERNATE_ACTIVATOR_HOST: '127.0.0.1',
      KYBERNATE_ACTIVATOR_DRAIN_GRACE: '10s',
      KYBERNATE_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  await waitFor('the activator primary and both workers to be ready', () => readyz().then((status) => status === 200), { timeoutMs: 30_000, retryErrors: true });
}, 40_000);

afterAll(async () => {
  if (primary.exitCode === null && primary.signalCode === null) {
    primary.kill('SIGKILL');
    await once(primary, 'exit');
  }
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

async function readyz(): Promise<number> {
  const response = await request(`${adminUrl}/readyz`);
  await response.body.dump();
  return response.statusCode;
}

/** The worker processes: the primary's children. */
async function workerPids(): Promise<number[]> {
  const text = await readFile(`/proc/${primary.pid}/task/${primary.pid}/children`, 'utf8');
  return text.trim().split(/\s+/).filter(Boolean).map(Number);
}

async function metricValue(name: string, labels: string): Promise<number> {
  const text = await (await request(`${adminUrl}/metrics`)).body.text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

/** Requests on separate connections, so the primary hands them to both workers. */
async function sendConcurrently(host: string, count: number): Promise<number[]> {
  const pool = new Pool(proxyUrl, { connections: count, pipelining: 1 });
  try {
    return await Promise.all(
      Array.from({ length: count }, async () => {
        const response = await pool.request({ path: '/', method: 'GET', headers: { host } });
        await response.body.dump();
        return response.statusCode;
      }),
    );
  } finally {
    await pool.close();
  }
}

describe('cluster mode', () => {
  it('runs two workers on one port; metrics and activity add up over both', async () => {
    expect(await workerPids()).toHaveLength(2);
    const before = backend.seen.length;
    const statuses = await sendConcurrently('ready.test', 200);
    expect(statuses.every((status) => status === 200)).toBe(true);
    expect(backend.seen.length - before).toBe(200);
    expect(await metricValue('kybernate_activator_requests_total', 'workload="default/ready",code="200"')).toBe(200);

    const activity = (await (await request(`${adminUrl}/v1/activity`)).body.json()) as { workloads: { name: string; lastRequestTime: string | null; requestRate: number; inFlight: number }[] };
    const ready = activity.workloads.find((workload) => workload.name === 'ready');
    expect(ready?.lastRequestTime).not.toBeNull();
    expect(ready?.requestRate).toBeCloseTo(200 / 60, 5);
    expect(ready?.inFlight).toBe(0);
  });

  it('releases the requests every worker held once the workload is activated', async () => {
    const before = backend.seen.filter((req) => req.headers.host === 'held.test').length;
    const statuses = await sendConcurrently('held.test', 20);
    expect(statuses).toEqual(Array(20).fill(200));
    expect(backend.seen.filter((req) => req.headers.host === 'held.test').length - before).toBe(20);
  });

  it('replaces a crashed worker', async () => {
    const [victim] = await workerPids();
    process.kill(victim!, 'SIGKILL');
    await waitFor('a replacement worker', async () => {
      const pids = await workerPids();
      return pids.length === 2 && !pids.includes(victim!) && (await readyz()) === 200;
    }, { timeoutMs: 20_000 });
    expect(await sendConcurrently('ready.test', 10)).toEqual(Array(10).fill(200));
  });

  it('drains on SIGTERM: a request in flight completes, then the primary exits 0', async () => {
    const slow = request(`${proxyUrl}/slow`, { headers: { host: 'ready.test' } });
    await waitFor('the slow request to reach the backend', () => backend.seen.some((req) => req.url === '/slow'));
    const exited = once(primary, 'exit') as Promise<[number | null, string | null]>;
    primary.kill('SIGTERM');
    const response = await slow;
    expect(response.statusCode).toBe(200);
    expect(await response.body.text()).toBe('ok\n');
    const [code] = await exited;
    expect(code).toBe(0);
  });
});
