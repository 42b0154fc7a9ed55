import { hostname } from 'node:os';
import Fastify, { type FastifyInstance } from 'fastify';
import type { WorkloadActivity } from './activity.ts';
import type { Activator } from './activator.ts';

/** The body of GET /v1/activity, read by the idle controller from every activator replica. */
export interface ActivityReport {
  readonly replica: string;
  readonly time: string;
  readonly workloads: readonly WorkloadActivity[];
}

/**
 * The admin port: metrics, liveness, readiness and the activity endpoint. Off the data path, so
 * fastify's routing and JSON serialisation cost nothing that matters here.
 */
export function createAdminServer(activator: Activator, replica: string = hostname()): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => 'ok\n');
  app.get('/readyz', async (_request, reply) => {
    if (activator.ready) return 'ready\n';
    return reply.code(503).send('not ready: waiting for the first workload snapshot, or draining\n');
  });
  app.get('/metrics', async (_request, reply) => {
    const registry = activator.metrics.registry;
    return reply.header('content-type', registry.contentType).send(await registry.metrics());
  });
  app.get('/v1/activity', async (): Promise<ActivityReport> => ({
    replica,
    time: new Date().toISOString(),
    workloads: activator.activity(),
  }));
  return app;
}
