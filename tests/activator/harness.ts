/**
 * Real servers on loopback for the activator's tests: backends that count what reaches them, and an
 * in-process activator (data path + admin server) over a static workload source.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Activator } from '../../src/activator/activator.ts';
import { activatorAdminView, createAdminServer } from '../../src/activator/admin-server.ts';
import { DEFAULT_PROBE_RULES, type ProbeRules } from '../../src/activator/probes.ts';
import { StaticWorkloadSource, type StaticConfig } from '../../src/activator/sources/static-source.ts';
import type { ActivationTrigger } from '../../src/activator/types.ts';
import { createLogger } from '../../src/lib/log.ts';
import { waitFor as waitUntil } from '../support/wait.ts';

export interface Backend {
  readonly server: Server;
  readonly address: string;
  /** Requests that reached this backend, in arrival order. */
  readonly seen: IncomingMessage[];
  close(): Promise<void>;
}

export async function startBackend(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Backend> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    address: `127.0.0.1:${port}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Records activation requests and runs `onActivate` for each (resume the workload, fail, or nothing
 * for a controller that has not answered yet).
 */
export class RecordingTrigger implements ActivationTrigger {
  readonly calls: string[] = [];
  onActivate: (key: string) => Promise<void> = async () => undefined;

  async requestActivation(workload: { namespace: string; name: string }): Promise<void> {
    const key = `${workload.namespace}/${workload.name}`;
    this.calls.push(key);
    await this.onActivate(key);
  }
}

export interface RunningActivator {
  readonly activator: Activator;
  readonly admin: FastifyInstance;
  readonly source: StaticWorkloadSource;
  readonly trigger: RecordingTrigger;
  readonly url: string;
  readonly port: number;
  readonly adminUrl: string;
  close(): Promise<void>;
}

export async function startActivator(config: StaticConfig, probes: ProbeRules = DEFAULT_PROBE_RULES): Promise<RunningActivator> {
  const source = new StaticWorkloadSource(config);
  const trigger = new RecordingTrigger();
  const activator = new Activator({
    source,
    trigger,
    log: createLogger('activator-test'),
    probes,
    pools: { connectionsPerEndpoint: 256, keepAliveTimeoutMs: 10_000 },
  });
  await activator.start();
  await new Promise<void>((resolve) => activator.server.listen(0, '127.0.0.1', resolve));
  const { port } = activator.server.address() as AddressInfo;
  const admin = createAdminServer(activatorAdminView(activator), 'test-replica');
  const adminUrl = await admin.listen({ port: 0, host: '127.0.0.1' });
  return {
    activator,
    admin,
    source,
    trigger,
    url: `http://127.0.0.1:${port}`,
    port,
    adminUrl,
    close: async () => {
      if (activator.server.listening) await activator.drain(1_000);
      await activator.close();
      await admin.close();
    },
  };
}

/** Polls until `check` holds; fails the test with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  await waitUntil(what, check, { timeoutMs, intervalMs: 5 });
}

export function queued(running: RunningActivator, name: string): number {
  return running.activator.activity().find((workload) => workload.name === name)?.queued ?? -1;
}
