/**
 * `npm run bench:activator [-- --quick]`: the three measurements in one run, each against a
 * baseline measured in the same run, plus the release of 1,000 held requests:
 *   1. capacity (trivial upstream, 64 connections): activator vs nginx vs a minimal http-proxy proxy;
 *   2. a 10 ms upstream at 64 and 256 connections: direct vs via the activator (at 64 also nginx and
 *      http-proxy, for what any proxy in the path costs on this machine);
 * 1 and 2 also measure the activator in cluster mode (src/activator/main.ts with one worker per CPU).
 *   3. latency at 1 connection: direct vs via the activator (added p50/p99).
 * Installs wrk and nginx from Debian when missing. Every process is a child of this one and is
 * stopped at the end. The last stdout line is one JSON object with the results.
 */
import { execFileSync, spawn, fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

const quick = process.argv.includes('--quick');
const durationS = quick ? 2 : 8;
const repetitions = quick ? 1 : 3;
const here = fileURLToPath(new URL('.', import.meta.url));
const children: ChildProcess[] = [];

function ensureTools(): void {
  const missing = [['wrk', 'wrk'], ['nginx', 'nginx-light']].filter(([binary]) => !commandExists(binary!)).map(([, pkg]) => pkg!);
  if (missing.length === 0) return;
  console.error(`installing ${missing.join(' ')} from Debian (benchmark only)`);
  execFileSync('apt-get', ['install', '-y', '-o', 'DPkg::Lock::Timeout=600', ...missing], { stdio: 'inherit' });
}

function commandExists(name: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin'].some((dir) => existsSync(join(dir, name)));
}

/** Starts a TypeScript child that prints {"port": N} and resolves with that port. */
function startChild(script: string, args: string[], ipc = false): Promise<{ child: ChildProcess; port: number }> {
  const child = ipc
    ? fork(join(here, script), args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    : spawn(process.execPath, ['--import', 'tsx', join(here, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const line = output.split('\n').find((candidate) => candidate.startsWith('{'));
      if (line !== undefined) resolve({ child, port: (JSON.parse(line) as { port: number }).port });
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before listening`)));
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

async function startNginx(upstreamPort: number): Promise<{ port: number; dir: string; pid: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'kybernate-bench-nginx-'));
  const port = await freePort();
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;
master_process off;
daemon off;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`,
  );
  const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      return { port, dir, pid: child.pid! };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error('nginx did not start');
}

/**
 * The activator as deployed (src/activator/main.ts, static source) in cluster mode with `workers`
 * data-path processes; `pid` is the primary's, whose children are the workers.
 */
async function startClusterActivator(upstreamPort: number, workers: number): Promise<{ port: number; pid: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'kybernate-bench-activator-'));
  tempDirs.push(dir);
  const config = join(dir, 'activator.yaml');
  writeFileSync(config, `workloads:\n  - { name: bench, hosts: [bench.local], endpoints: ["127.0.0.1:${upstreamPort}"] }\n`);
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, '../../src/activator/main.ts')], {
    env: {
      ...process.env,
      KYBERNATE_ACTIVATOR_SOURCE: 'static',
      KYBERNATE_ACTIVATOR_CONFIG: config,
      KYBERNATE_ACTIVATOR_WORKERS: String(workers),
      KYBERNATE_ACTIVATOR_PORT: String(port),
      KYBERNATE_ACTIVATOR_ADMIN_PORT: String(adminPort),
      KYBERNATE_ACTIVATOR_HOST: '127.0.0.1',
      KYBERNATE_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  for (let attempt = 0; attempt < 600; attempt++) {
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((response) => response.ok, () => false);
    if (ready) return { port, pid: child.pid! };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the cluster-mode activator did not become ready within 30 s');
}

interface WrkResult {
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
}

function toMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (match === null) throw new Error(`unexpected wrk latency "${text}"`);
  const factor = { us: 0.001, ms: 1, s: 1000 }[match[2] as 'us' | 'ms' | 's'];
  return Number(match[1]) * factor;
}

function wrk(port: number, connections: number, host: string, seconds = durationS): WrkResult {
  const output = execFileSync(
    'wrk',
    ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-H', `Host: ${host}`, `http://127.0.0.1:${port}/`],
    { encoding: 'utf8' },
  );
  const requests = /(\d+) requests in/.exec(output);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const p50 = /\s50%\s+(\S+)/.exec(output);
  const p99 = /\s99%\s+(\S+)/.exec(output);
  if (requests === null || rps === null || p50 === null || p99 === null) throw new Error(`cannot parse wrk output:\n${output}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const errors = Number(non2xx?.[1] ?? 0) + (socketErrors === null ? 0 : socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0));
  return { requests: Number(requests[1]), rps: Number(rps[1]), p50Ms: toMs(p50[1]!), p99Ms: toMs(p99[1]!), errors };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** CPU time (user + system) a process and its children have used so far, in microseconds (Linux clock ticks are 10 ms). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const own = (Number(fields[11]) + Number(fields[12])) * 10_000;
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return children.reduce((sum, child) => sum + cpuMicros(child), own);
}

interface Measured extends WrkResult {
  /** CPU microseconds the proxy process spent per request: robust to other load on the machine. */
  readonly cpuUsPerRequest?: number;
}

/** Runs each named target `repetitions` times, interleaved so drift in machine load hits all alike. */
function measure(targets: Record<string, { port: number; host: string; pid?: number }>, connections: number, warmUp: boolean): Record<string, Measured> {
  const runs: Record<string, (WrkResult & { cpuUs?: number })[]> = {};
  // Unmeasured warm-up of fresh processes: their first second is JIT compilation and opening
  // upstream connections, not proxying.
  if (warmUp) for (const target of Object.values(targets)) wrk(target.port, connections, target.host, quick ? 1 : 2);
  for (let round = 0; round < repetitions; round++) {
    for (const [name, target] of Object.entries(targets)) {
      const cpuBefore = target.pid === undefined ? 0 : cpuMicros(target.pid);
      const run = wrk(target.port, connections, target.host);
      (runs[name] ??= []).push(target.pid === undefined ? run : { ...run, cpuUs: (cpuMicros(target.pid) - cpuBefore) / run.requests });
    }
  }
  const result: Record<string, Measured> = {};
  for (const [name, list] of Object.entries(runs)) {
    const cpu = list.flatMap((run) => (run.cpuUs === undefined ? [] : [run.cpuUs]));
    result[name] = {
      ...(cpu.length === 0 ? {} : { cpuUsPerRequest: Math.round(median(cpu)) }),
      requests: list.reduce((sum, run) => sum + run.requests, 0),
      rps: Math.round(median(list.map((run) => run.rps))),
      p50Ms: median(list.map((run) => run.p50Ms)),
      p99Ms: median(list.map((run) => run.p99Ms)),
      errors: list.reduce((sum, run) => sum + run.errors, 0),
    };
    console.error(`  c=${connections} ${name}: ${JSON.stringify(result[name])}`);
  }
  return result;
}

function ask<T>(child: ChildProcess, message: object, key: keyof T & string): Promise<T> {
  return new Promise((resolve) => {
    const onMessage = (reply: T): void => {
      if (reply !== null && typeof reply === 'object' && key in reply) {
        child.off('message', onMessage);
        resolve(reply);
      }
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

/** 1,000 requests held by a suspended workload, then resumed: time from ready to the last response. */
async function measureRelease(activator: ChildProcess, port: number, count: number): Promise<{ releaseMs: number; ok: number }> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: count, pipelining: 1 });
  let lastAt = 0;
  let ok = 0;
  const requests = Array.from({ length: count }, () =>
    pool.request({ path: '/', method: 'GET', headers: { host: 'held.local' } }).then(async (response) => {
      await response.body.text();
      if (response.statusCode === 200) ok++;
      lastAt = Math.max(lastAt, performance.timeOrigin + performance.now());
    }),
  );
  for (;;) {
    const { queued } = await ask<{ queued: number }>(activator, { query: 'queued' }, 'queued');
    if (queued >= count) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const { resumedAt } = await ask<{ resumedAt: number }>(activator, { resume: true }, 'resumedAt');
  await Promise.all(requests);
  await pool.close();
  return { releaseMs: Math.round((lastAt - resumedAt) * 10) / 10, ok };
}

async function main(): Promise<void> {
  ensureTools();
  const startedAt = new Date();
  const loadBefore = loadavg()[0]!;
  console.error(`activator benchmark (${quick ? 'quick' : 'full'}: ${repetitions} x ${durationS} s per point), load average ${loadBefore.toFixed(2)}`);
  const [fast, slow] = await Promise.all([startChild('upstream.ts', ['0']), startChild('upstream.ts', ['10'])]);
  const [activatorFast, activatorSlow, httpProxy, httpProxySlow, nginx, nginxSlow] = await Promise.all([
    startChild('activator-proc.ts', [`127.0.0.1:${fast.port}`], true),
    startChild('activator-proc.ts', [`127.0.0.1:${slow.port}`], true),
    startChild('http-proxy-proc.ts', [`http://127.0.0.1:${fast.port}`]),
    startChild('http-proxy-proc.ts', [`http://127.0.0.1:${slow.port}`]),
    startNginx(fast.port),
    startNginx(slow.port),
  ]);
  tempDirs.push(nginx.dir, nginxSlow.dir);
  const workers = cpus().length;
  const [clusterFast, clusterSlow] = await Promise.all([startClusterActivator(fast.port, workers), startClusterActivator(slow.port, workers)]);

  const host = 'bench.local';
  console.error('1. capacity, trivial upstream, 64 connections');
  const capacity = measure(
    {
      direct: { port: fast.port, host, pid: fast.child.pid! },
      activator: { port: activatorFast.port, host, pid: activatorFast.child.pid! },
      activatorWorkers: { port: clusterFast.port, host, pid: clusterFast.pid },
      nginx: { port: nginx.port, host, pid: nginx.pid },
      httpProxy: { port: httpProxy.port, host, pid: httpProxy.child.pid! },
    },
    64,
    true,
  );
  console.error('2. 10 ms upstream, 64 and 256 connections');
  const slow64 = measure(
    {
      direct: { port: slow.port, host },
      activator: { port: activatorSlow.port, host },
      activatorWorkers: { port: clusterSlow.port, host },
      nginx: { port: nginxSlow.port, host },
      httpProxy: { port: httpProxySlow.port, host },
    },
    64,
    true,
  );
  const slow256 = measure({ direct: { port: slow.port, host }, activator: { port: activatorSlow.port, host } }, 256, false);
  console.error('3. latency at 1 connection');
  const single = measure({ direct: { port: fast.port, host }, activator: { port: activatorFast.port, host } }, 1, false);
  console.error('4. release of 1,000 held requests');
  const release = await measureRelease(activatorFast.child, activatorFast.port, 1000);
  console.error(`  ${JSON.stringify(release)}`);

  const round3 = (value: number): number => Math.round(value * 1000) / 1000;
  const result = {
    mode: quick ? 'quick' : 'full',
    date: startedAt.toISOString(),
    cpus: cpus().length,
    load_average_before: Math.round(loadBefore * 100) / 100,
    direct_capacity_rps: capacity.direct!.rps,
    capacity_rps: capacity.activator!.rps,
    nginx_capacity_rps: capacity.nginx!.rps,
    http_proxy_capacity_rps: capacity.httpProxy!.rps,
    capacity_vs_http_proxy: round3(capacity.activator!.rps / capacity.httpProxy!.rps),
    capacity_vs_nginx: round3(capacity.activator!.rps / capacity.nginx!.rps),
    workers,
    workers_capacity_rps: capacity.activatorWorkers!.rps,
    workers_capacity_vs_http_proxy: round3(capacity.activatorWorkers!.rps / capacity.httpProxy!.rps),
    workers_capacity_vs_nginx: round3(capacity.activatorWorkers!.rps / capacity.nginx!.rps),
    cpu_us_per_request: {
      upstream_direct: capacity.direct!.cpuUsPerRequest,
      activator: capacity.activator!.cpuUsPerRequest,
      activator_workers: capacity.activatorWorkers!.cpuUsPerRequest,
      nginx: capacity.nginx!.cpuUsPerRequest,
      http_proxy: capacity.httpProxy!.cpuUsPerRequest,
    },
    slow_upstream_direct_rps_c64: slow64.direct!.rps,
    slow_upstream_rps_c64: slow64.activator!.rps,
    slow_upstream_ratio: round3(slow64.activator!.rps / slow64.direct!.rps),
    workers_slow_upstream_ratio: round3(slow64.activatorWorkers!.rps / slow64.direct!.rps),
    nginx_slow_upstream_ratio: round3(slow64.nginx!.rps / slow64.direct!.rps),
    http_proxy_slow_upstream_ratio: round3(slow64.httpProxy!.rps / slow64.direct!.rps),
    slow_upstream_ratio_c256: round3(slow256.activator!.rps / slow256.direct!.rps),
    slow_upstream_p99_ms_c256: { direct: slow256.direct!.p99Ms, activator: slow256.activator!.p99Ms },
    direct_p50_ms_c1: single.direct!.p50Ms,
    added_p50_ms_c1: round3(single.activator!.p50Ms - single.direct!.p50Ms),
    added_p99_ms_c1: round3(single.activator!.p99Ms - single.direct!.p99Ms),
    release_1000_ms: release.releaseMs,
    release_1000_ok: release.ok,
    errors: [capacity, slow64, slow256, single].flatMap((runs) => Object.values(runs)).reduce((sum, run) => sum + run.errors, 0),
  };
  console.log(JSON.stringify(result));
}

const tempDirs: string[] = [];

async function stopChildren(): Promise<void> {
  await Promise.all(
    children.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }),
  );
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

main()
  .then(
    () => 0,
    (error: unknown) => {
      console.error(error);
      return 1;
    },
  )
  .then(async (code) => {
    await stopChildren();
    process.exit(code);
  });
