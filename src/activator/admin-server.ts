import { hostname } from 'node:os';
import Fastify, { type FastifyInstance } from 'fastify';
import { UnavailableError } from '../lib/errors.ts';
import type { WorkloadActivity } from './activity.ts';
import type { Activator } from './activator.ts';

/** The body of GET /v1/activity, read by the idle controller from every activator replica. */
export interface ActivityReport {
  readonly replica: string;
  readonly time: string;
  readonly workloads: readonly WorkloadActivity[];
}

/** What the admin port shows: one activator process, or the primary of several (cluster mode). */
export interface AdminView {
  readonly ready: boolean;
  metrics(): Promise<{ contentType: string; text: string }>;
  activity(): Promise<readonly WorkloadActivity[]>;
}

export function activatorAdminView(activator: Activator): AdminView {
  return {
    get ready() {
      return activator.ready;
    },
    metrics: async () => ({ contentType: activator.metrics.registry.contentType, text: await activator.metrics.registry.metrics() }),
    activity: async () => activator.activity(),
  };
}

/**
 * The admin port: metrics, liveness, readiness and the activity endpoint. Off the data path, so
 * fastify's routing and JSON serialisation cost nothing that matters here.
 */
export function createAdminServer(view: AdminView, replica: string = hostname()): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => 'ok\n');
  app.get('/readyz', async (_request, reply) => {
    if (view.ready) return 'ready\n';
    return reply.code(503).send('not ready: waiting for the first workload snapshot or the workers, or draining\n');
  });
  app.get('/metrics', async (_request, reply) => {
    const { contentType, text } = await view.metrics();
    return reply.header('content-type', contentType).send(text);
  });
  app.get('/v1/activity', async (_request, reply) => {
    let workloads: readonly WorkloadActivity[];
    try {
      workloads = await view.activity();
    } catch (error) {
      if (error instanceof UnavailableError) return reply.code(503).send(`${error.message}\n`);
      throw error;
    }
    const report: ActivityReport = { replica, time: new Date().toISOString(), workloads };
    return report;
  });
  return app;
}
