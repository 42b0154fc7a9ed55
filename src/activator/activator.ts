import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../lib/log.ts';
import type { WorkloadActivity } from './activity.ts';
import { HttpExchange, UpgradeExchange, sendError } from './exchanges.ts';
import { UpstreamPools, type PoolOptions } from './forwarder.ts';
import { ActivatorMetrics } from './metrics.ts';
import { isProbe, type ProbeRules } from './probes.ts';
import { buildRoutingTable, type RoutingTable } from './routing.ts';
import { rejectUpgrade } from './tunnel.ts';
import { workloadKey, type ActivationTrigger, type Workload, type WorkloadSource } from './types.ts';
import { RETRY_AFTER_SECONDS, WorkloadRuntime } from './workload-runtime.ts';

export interface ActivatorOptions {
  readonly source: WorkloadSource;
  readonly trigger: ActivationTrigger;
  readonly log: Logger;
  readonly probes: ProbeRules;
  readonly pools: PoolOptions;
  readonly now?: () => number;
}

export interface DrainResult {
  /** Exchanges still open when the grace period ran out (held ones got a 503, the rest were cut). */
  readonly forced: number;
}

/** Finds a header in Node's rawHeaders without building the whole headers object. */
function rawHeader(raw: readonly string[], lowerName: string): string | undefined {
  for (let index = 0; index < raw.length; index += 2) {
    const name = raw[index]!;
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) return raw[index + 1];
  }
  return undefined;
}

/**
 * The activator: routes each request to its workload, forwards it to a ready pod or holds it while
 * the workload is activated, and keeps the activity and metrics the controller and operators read.
 * `server` is the data-path HTTP server (plain node:http: measured faster than fastify, see
 * docs/activator.md); the admin endpoints live in admin-server.ts.
 */
export class Activator {
  readonly server: Server;
  readonly metrics: ActivatorMetrics;
  private readonly pools: UpstreamPools;
  private readonly runtimes = new Map<string, WorkloadRuntime>();
  private routes: RoutingTable<WorkloadRuntime> = buildRoutingTable<WorkloadRuntime>([]).table;
  private readonly now: () => number;
  private open = 0;
  /** Upgraded sockets leave the HTTP server's bookkeeping; the drain must still be able to cut them. */
  private readonly upgradedSockets = new Set<Duplex>();
  private synced = false;
  private draining = false;

  constructor(private readonly options: ActivatorOptions) {
    this.now = options.now ?? Date.now;
    this.pools = new UpstreamPools(options.pools);
    this.metrics = new ActivatorMetrics(() => this.runtimes.values());
    this.server = createServer({ keepAliveTimeout: 65_000 }, this.onRequest);
    this.server.on('upgrade', this.onUpgrade);
  }

  /** Waits for the source's first snapshot; until then /readyz says not ready. */
  async start(): Promise<void> {
    await this.options.source.start((workloads) => this.applySnapshot(workloads));
    this.synced = true;
  }

  get ready(): boolean {
    return this.synced && !this.draining;
  }

  /** Requests forwarded or held right now, over all workloads. */
  get openExchanges(): number {
    return this.open;
  }

  activity(): WorkloadActivity[] {
    const now = this.now();
    return [...this.runtimes.values()].map((runtime) => runtime.activity(now));
  }

  applySnapshot(workloads: readonly Workload[]): void {
    const seen = new Set<string>();
    for (const workload of workloads) {
      const key = workloadKey(workload);
      seen.add(key);
      const existing = this.runtimes.get(key);
      if (existing !== undefined) {
        existing.update(workload);
        continue;
      }
      const log = this.options.log.child({ workload: key });
      const deps = { trigger: this.options.trigger, pools: this.pools, metrics: this.metrics.forWorkload(key), log, now: this.now };
      this.runtimes.set(key, new WorkloadRuntime(workload, deps));
    }
    for (const [key, runtime] of this.runtimes) {
      if (seen.has(key)) continue;
      const rejected = runtime.rejectHeld(503, `workload ${key} was removed`);
      runtime.dispose();
      this.runtimes.delete(key);
      this.options.log.info({ workload: key, rejected }, 'workload removed');
    }
    const built = buildRoutingTable(
      [...this.runtimes.values()].map((runtime) => ({
        hosts: runtime.config.hosts,
        pathPrefix: runtime.config.pathPrefix,
        target: runtime,
        id: runtime.key,
      })),
    );
    for (const conflict of built.conflicts) this.options.log.error({ conflict }, 'routing conflict; route ignored');
    this.routes = built.table;
    this.pools.retainOnly(new Set([...this.runtimes.values()].flatMap((runtime) => runtime.endpointKeys())));
  }

  private readonly exchangeDone = (): void => {
    this.open--;
  };

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.draining) {
      res.shouldKeepAlive = false;
      sendError(res, 503, 'activator is shutting down; retry', RETRY_AFTER_SECONDS);
      return;
    }
    const url = req.url ?? '/';
    const raw = req.rawHeaders;
    const runtime = this.routes.match(rawHeader(raw, 'host'), url);
    if (runtime === undefined) {
      this.metrics.unrouted.inc();
      sendError(res, 404, `no workload serves host "${rawHeader(raw, 'host') ?? ''}" and path "${url}"`);
      return;
    }
    if (isProbe(this.options.probes, rawHeader(raw, 'user-agent'), url)) {
      this.answerProbe(runtime, req, res);
      return;
    }
    runtime.recordRequest(this.now());
    this.open++;
    new HttpExchange(runtime, req, res, this.exchangeDone).admit();
  };

  /** Forwarded when a pod has a free slot right now; otherwise answered here. Never wakes, never counts. */
  private answerProbe(runtime: WorkloadRuntime, req: IncomingMessage, res: ServerResponse): void {
    this.metrics.probes.inc();
    if (runtime.readyTargets === 0 || runtime.queued > 0) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-kybernate-probe': 'activator' });
      res.end(`ok (workload ${runtime.key} is ${runtime.config.phase || 'not ready'}; answered by the activator)\n`);
      return;
    }
    this.open++;
    new HttpExchange(runtime, req, res, this.exchangeDone).admit();
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    this.upgradedSockets.add(socket);
    socket.once('close', () => this.upgradedSockets.delete(socket));
    if (this.draining) {
      rejectUpgrade(socket, 503, 'Service Unavailable', 'activator is shutting down; retry', `retry-after: ${RETRY_AFTER_SECONDS}\r\n`);
      return;
    }
    const url = req.url ?? '/';
    const runtime = this.routes.match(rawHeader(req.rawHeaders, 'host'), url);
    if (runtime === undefined) {
      this.metrics.unrouted.inc();
      rejectUpgrade(socket, 404, 'Not Found', `no workload serves host "${rawHeader(req.rawHeaders, 'host') ?? ''}" and path "${url}"`);
      return;
    }
    runtime.recordRequest(this.now());
    this.open++;
    new UpgradeExchange(runtime, req, socket, head, this.exchangeDone).admit();
  };

  /**
   * Graceful drain: stop accepting connections, refuse new requests on open ones (503 + close), let
   * forwarded and held requests finish, and after `graceMs` answer what is still held with 503 and
   * cut the rest.
   */
  async drain(graceMs: number): Promise<DrainResult> {
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = this.now() + graceMs;
    while (this.open > 0 && this.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      this.server.closeIdleConnections();
    }
    const forced = this.open;
    if (forced > 0) {
      for (const runtime of this.runtimes.values()) runtime.rejectHeld(503, `activator shut down before workload ${runtime.key} became ready; retry`);
      this.options.log.warn({ forced }, 'drain grace period ran out');
    }
    this.server.closeAllConnections();
    for (const socket of this.upgradedSockets) socket.destroy();
    await closed;
    return { forced };
  }

  async close(): Promise<void> {
    for (const runtime of this.runtimes.values()) runtime.dispose();
    await this.options.source.stop();
    await this.pools.close();
  }
}
