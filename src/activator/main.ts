/**
 * The activator process: reads its settings from the environment (docs/activator.md), starts the
 * workload source, the data path (in this process, or in KYBERNATE_ACTIVATOR_WORKERS worker
 * processes) and the admin server, and drains on SIGTERM/SIGINT.
 */
import cluster from 'node:cluster';
import { HttpKubeClient } from '../lib/kube/client.ts';
import { loadKubeConnection } from '../lib/kube/kubeconfig.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { errorMessage } from '../lib/errors.ts';
import { Activator } from './activator.ts';
import { activatorAdminView, createAdminServer, type AdminView } from './admin-server.ts';
import { ClusterPrimary } from './cluster/primary.ts';
import { runWorker } from './cluster/worker.ts';
import { configFromEnv, type ActivatorConfig } from './config.ts';
import { KubeActivationTrigger, KubeWorkloadSource } from './sources/kube-source.ts';
import { StaticWorkloadSource } from './sources/static-source.ts';
import { StaticResumeTrigger } from './sources/static-trigger.ts';
import type { ActivationTrigger, WorkloadSource } from './types.ts';

const log = createLogger('activator');

async function createSource(config: ActivatorConfig): Promise<{ source: WorkloadSource; trigger: ActivationTrigger }> {
  if (config.source.kind === 'kube') {
    const kube = new HttpKubeClient(loadKubeConnection(process.env));
    return { source: new KubeWorkloadSource(kube, log), trigger: new KubeActivationTrigger(kube) };
  }
  const file = config.source.file;
  const staticSource = await StaticWorkloadSource.fromFile(file);
  process.on('SIGHUP', () => {
    staticSource.reloadFile(file).then(
      () => log.info({ file }, 'config reloaded'),
      (error: unknown) => log.error({ file, err: error }, 'config reload failed; keeping the previous one'),
    );
  });
  return { source: staticSource, trigger: new StaticResumeTrigger(staticSource) };
}

/** The data path in this process. */
async function startSingle(config: ActivatorConfig, source: WorkloadSource, trigger: ActivationTrigger): Promise<{ view: AdminView; drain: () => Promise<void> }> {
  const activator = new Activator({ source, trigger, log, probes: config.probes, pools: config.pools });
  await activator.start();
  await new Promise<void>((resolve) => activator.server.listen(config.proxyPort, config.host, resolve));
  const drain = async (): Promise<void> => {
    const { forced } = await activator.drain(config.drainGraceMs);
    await activator.close();
    log.info({ forced }, 'drained');
  };
  return { view: activatorAdminView(activator), drain };
}

/** The data path in worker processes, one event loop each, sharing the port. */
async function startCluster(config: ActivatorConfig, source: WorkloadSource, trigger: ActivationTrigger): Promise<{ view: AdminView; drain: () => Promise<void> }> {
  const primary = new ClusterPrimary({ workers: config.workers, source, trigger, log });
  await primary.start();
  return { view: primary, drain: () => primary.drain(config.drainGraceMs) };
}

async function main(): Promise<void> {
  const config = configFromEnv(process.env);
  if (cluster.isWorker) {
    await runWorker(config, log.child({ worker: cluster.worker!.id }));
    return;
  }
  const { source, trigger } = await createSource(config);
  const { view, drain } = config.workers > 1 ? await startCluster(config, source, trigger) : await startSingle(config, source, trigger);
  const admin = createAdminServer(view);
  await admin.listen({ port: config.adminPort, host: config.host });
  log.info({ proxyPort: config.proxyPort, adminPort: config.adminPort, source: config.source.kind, workers: config.workers }, 'activator serving');
  handleShutdown(log, config, async () => {
    await drain();
    await admin.close();
  });
}

function handleShutdown(logger: Logger, config: ActivatorConfig, stop: () => Promise<void>): void {
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs: config.drainGraceMs }, 'draining');
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, `drain failed: ${errorMessage(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  log.fatal({ err: error }, `activator failed to start: ${errorMessage(error)}`);
  process.exit(1);
});
