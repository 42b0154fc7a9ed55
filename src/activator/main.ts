/**
 * The activator process: reads its settings from the environment (docs/activator.md), starts the
 * workload source, the data-path server and the admin server, and drains on SIGTERM/SIGINT.
 */
import { HttpKubeClient } from '../lib/kube/client.ts';
import { loadKubeConnection } from '../lib/kube/kubeconfig.ts';
import { createLogger } from '../lib/log.ts';
import { errorMessage } from '../lib/errors.ts';
import { Activator } from './activator.ts';
import { createAdminServer } from './admin-server.ts';
import { configFromEnv } from './config.ts';
import { KubeActivationTrigger, KubeWorkloadSource } from './sources/kube-source.ts';
import { StaticWorkloadSource } from './sources/static-source.ts';
import { StaticResumeTrigger } from './sources/static-trigger.ts';
import type { ActivationTrigger, WorkloadSource } from './types.ts';

const log = createLogger('activator');

async function main(): Promise<void> {
  const config = configFromEnv(process.env);
  let source: WorkloadSource;
  let trigger: ActivationTrigger;
  if (config.source.kind === 'kube') {
    const kube = new HttpKubeClient(loadKubeConnection(process.env));
    source = new KubeWorkloadSource(kube, log);
    trigger = new KubeActivationTrigger(kube);
  } else {
    const file = config.source.file;
    const staticSource = await StaticWorkloadSource.fromFile(file);
    process.on('SIGHUP', () => {
      staticSource.reloadFile(file).then(
        () => log.info({ file }, 'config reloaded'),
        (error: unknown) => log.error({ file, err: error }, 'config reload failed; keeping the previous one'),
      );
    });
    source = staticSource;
    trigger = new StaticResumeTrigger(staticSource);
  }

  const activator = new Activator({ source, trigger, log, probes: config.probes, pools: config.pools });
  const admin = createAdminServer(activator);
  await admin.listen({ port: config.adminPort, host: config.host });
  await activator.start();
  await new Promise<void>((resolve) => activator.server.listen(config.proxyPort, config.host, resolve));
  log.info({ proxyPort: config.proxyPort, adminPort: config.adminPort, source: config.source.kind }, 'activator serving');

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceMs: config.drainGraceMs }, 'draining');
    void (async () => {
      const { forced } = await activator.drain(config.drainGraceMs);
      await activator.close();
      await admin.close();
      log.info({ forced }, 'drained');
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  log.fatal({ err: error }, `activator failed to start: ${errorMessage(error)}`);
  process.exit(1);
});
