import { errorMessage } from '../lib/errors.ts';
import { createLogger } from '../lib/log.ts';
import { ActivatorDirectory } from './activity/activator-directory.ts';
import { HttpActivitySource } from './activity/activity-source.ts';
import { GrpcNodeAgent } from './agent/grpc-node-agent.ts';
import { loadConfig } from './config.ts';
import { kybernateControllers } from './controllers.ts';
import { HttpKubeClient } from '../lib/kube/client.ts';
import { loadKubeConnection } from '../lib/kube/kubeconfig.ts';
import { LeaderElector } from './runtime/leader-election.ts';
import { Manager } from './runtime/manager.ts';

const log = createLogger('controller');
const config = loadConfig(process.env);
// In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config.
const kube = new HttpKubeClient(loadKubeConnection(process.env));
const agent = GrpcNodeAgent.mtls(config.agent.addressTemplate, config.agent.tlsDir);
const activators = config.activatorPods ? new ActivatorDirectory(kube, config.activatorPods, log) : undefined;
const activatorUrls = () => [...config.activatorUrls, ...(activators?.urls() ?? [])];
if (!activators && config.activatorUrls.length === 0) {
  log.warn('neither KYBERNATE_ACTIVATOR_PODS nor KYBERNATE_ACTIVATOR_URLS is set: activity is unknown, so no workload is suspended for idleness');
}

const work = kybernateControllers(
  {
    namespace: config.watchNamespace,
    identity: config.identity,
    workers: config.workers,
    activityPollIntervalMs: config.activityPollIntervalMs,
    operationTimeoutMs: config.operationTimeoutMs,
    gpu: config.gpu,
  },
  { agent, activity: new HttpActivitySource(activatorUrls, config.activityTimeoutMs, log), log },
);
const elector = config.leaderElection.enabled ? new LeaderElector(kube, { ...config.leaderElection, identity: config.identity }, log) : undefined;
const manager = new Manager(kube, work, log, elector);

const shutdown = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    log.info({ signal }, 'shutting down: finishing in-flight reconciles, releasing the lease');
    shutdown.abort();
  });
}
log.info({ identity: config.identity, namespace: config.watchNamespace ?? '(all)', leaderElection: config.leaderElection.enabled }, 'controller starting');
Promise.all([manager.run(shutdown.signal), activators?.run(shutdown.signal)])
  .then(() => {
    agent.close();
    log.info('controller stopped');
  })
  .catch((err: unknown) => {
    log.fatal({ err: errorMessage(err) }, 'controller failed');
    process.exitCode = 1;
  });
