/**
 * `npm run bench:activator:ws`: why the activator tunnels Upgrade requests over raw sockets instead
 * of using http-proxy's ws mode. An echo WebSocket backend behind (a) the activator and (b) a
 * minimal http-proxy ws proxy, each in its own process; the same client measures round trips on one
 * connection and new connections (handshake + one echo + close) per second, in interleaved rounds
 * (median of 3). Last line: JSON.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';

const quick = process.argv.includes('--quick');
const roundTrips = quick ? 2_000 : 20_000;
const handshakes = quick ? 200 : 1_000;
const children: ChildProcess[] = [];

function startChild(args: string[]): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve((JSON.parse(chunk.toString()) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

async function open(port: number): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { host: 'bench.local' } });
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  return socket;
}

function echo(socket: WebSocket, text: string): Promise<void> {
  return new Promise((resolve) => {
    socket.once('message', () => resolve());
    socket.send(text);
  });
}

async function measure(port: number): Promise<{ roundTripsPerS: number; connectionsPerS: number }> {
  const socket = await open(port);
  for (let i = 0; i < 200; i++) await echo(socket, 'warm');
  let start = performance.now();
  for (let i = 0; i < roundTrips; i++) await echo(socket, 'ping');
  const roundTripsPerS = Math.round(roundTrips / ((performance.now() - start) / 1000));
  socket.close();
  start = performance.now();
  for (let i = 0; i < handshakes; i++) {
    const fresh = await open(port);
    await echo(fresh, 'hi');
    fresh.terminate();
  }
  const connectionsPerS = Math.round(handshakes / ((performance.now() - start) / 1000));
  return { roundTripsPerS, connectionsPerS };
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

async function main(): Promise<void> {
  const here = (name: string): string => fileURLToPath(new URL(name, import.meta.url));
  const backendPort = await startChild([here('./upstream.ts'), '0', '--ws']);
  const targets = {
    direct: backendPort,
    activator: await startChild([here('./activator-proc.ts'), `127.0.0.1:${backendPort}`]),
    httpProxy: await startChild([here('./http-proxy-proc.ts'), `http://127.0.0.1:${backendPort}`, '--ws']),
  };
  const runs: Record<string, { roundTripsPerS: number; connectionsPerS: number }[]> = {};
  for (let round = 0; round < 3; round++) {
    for (const [name, port] of Object.entries(targets)) (runs[name] ??= []).push(await measure(port));
  }
  const result = (name: string, key: 'roundTripsPerS' | 'connectionsPerS'): number => median(runs[name]!.map((run) => run[key]));
  console.error(JSON.stringify(runs));
  console.log(
    JSON.stringify({
      mode: quick ? 'quick' : 'full',
      date: new Date().toISOString(),
      direct_ws_round_trips_per_s: result('direct', 'roundTripsPerS'),
      activator_ws_round_trips_per_s: result('activator', 'roundTripsPerS'),
      http_proxy_ws_round_trips_per_s: result('httpProxy', 'roundTripsPerS'),
      direct_ws_connections_per_s: result('direct', 'connectionsPerS'),
      activator_ws_connections_per_s: result('activator', 'connectionsPerS'),
      http_proxy_ws_connections_per_s: result('httpProxy', 'connectionsPerS'),
    }),
  );
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const child of children) child.kill();
    process.exit();
  });
