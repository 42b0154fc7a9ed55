import { hostname } from 'node:os';
import { InvalidInputError } from '../lib/errors.ts';
import { parseDuration } from '../lib/duration.ts';
import { DNS_SUBDOMAIN_PATTERN } from '../api/schema-kit.ts';
import { DEFAULT_GPU_POD_CONFIG, type GpuPodConfig } from './gpu/pod-gpu.ts';

export interface ControllerConfig {
  /** Watch only this namespace; undefined = all. */
  watchNamespace: string | undefined;
  identity: string;
  leaderElection: {
    enabled: boolean;
    namespace: string;
    leaseName: string;
    leaseDurationMs: number;
    renewDeadlineMs: number;
    retryPeriodMs: number;
  };
  workers: number;
  /** Fixed activator admin URLs; added to those of `activatorPods`. */
  activatorUrls: string[];
  /** Find the activator replicas by their pods. */
  activatorPods: { namespace: string; labelSelector: string; adminPort: number } | undefined;
  activityPollIntervalMs: number;
  activityTimeoutMs: number;
  operationTimeoutMs: number;
  agent: {
    /** gRPC address of a node's agent; `{node}` is replaced by the node name. */
    addressTemplate: string;
    /** Directory with ca.crt, tls.crt and tls.key for mTLS to the agents. */
    tlsDir: string;
  };
  /** Pod-level needs of GPU workloads. */
  gpu: GpuPodConfig;
}

/** Reads the controller's configuration from environment variables; every bad value is named in the error. */
export function loadConfig(env: NodeJS.ProcessEnv): ControllerConfig {
  const duration = (name: string, fallback: string) => {
    try {
      return parseDuration(env[name] ?? fallback);
    } catch (err) {
      throw new InvalidInputError(`${name}: ${(err as Error).message}`, { variable: name }, { cause: err });
    }
  };
  const workers = Number(env.KYBERNATE_WORKERS ?? '4');
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    throw new InvalidInputError(`KYBERNATE_WORKERS: expected an integer from 1 to 64, got "${env.KYBERNATE_WORKERS}"`, { variable: 'KYBERNATE_WORKERS' });
  }
  const activatorUrls = (env.KYBERNATE_ACTIVATOR_URLS ?? '').split(',').map((url) => url.trim()).filter((url) => url !== '');
  for (const url of activatorUrls) {
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
      throw new InvalidInputError(`KYBERNATE_ACTIVATOR_URLS: "${url}" is not an http(s) URL`, { variable: 'KYBERNATE_ACTIVATOR_URLS', url });
    }
  }
  const activatorPods = parseActivatorPods(env);
  const addressTemplate = env.KYBERNATE_AGENT_ADDRESS ?? '{node}:7443';
  if (!addressTemplate.includes('{node}')) {
    throw new InvalidInputError(`KYBERNATE_AGENT_ADDRESS: "${addressTemplate}" must contain {node}`, { variable: 'KYBERNATE_AGENT_ADDRESS' });
  }
  const config: ControllerConfig = {
    watchNamespace: env.KYBERNATE_WATCH_NAMESPACE || undefined,
    identity: env.KYBERNATE_IDENTITY ?? env.POD_NAME ?? hostname(),
    leaderElection: {
      enabled: (env.KYBERNATE_LEADER_ELECTION ?? 'true') !== 'false',
      namespace: env.KYBERNATE_LEASE_NAMESPACE ?? env.POD_NAMESPACE ?? 'kybernate-system',
      leaseName: env.KYBERNATE_LEASE_NAME ?? 'kybernate-controller',
      leaseDurationMs: duration('KYBERNATE_LEASE_DURATION', '15s'),
      renewDeadlineMs: duration('KYBERNATE_RENEW_DEADLINE', '10s'),
      retryPeriodMs: duration('KYBERNATE_RETRY_PERIOD', '2s'),
    },
    workers,
    activatorUrls,
    activatorPods,
    activityPollIntervalMs: duration('KYBERNATE_ACTIVITY_POLL_INTERVAL', '5s'),
    activityTimeoutMs: duration('KYBERNATE_ACTIVITY_TIMEOUT', '2s'),
    operationTimeoutMs: duration('KYBERNATE_OPERATION_TIMEOUT', '10m'),
    agent: { addressTemplate, tlsDir: env.KYBERNATE_AGENT_TLS_DIR ?? '/etc/kybernate/agent-tls' },
    gpu: parseGpuPodConfig(env),
  };
  const { leaseDurationMs, renewDeadlineMs, retryPeriodMs } = config.leaderElection;
  if (!(retryPeriodMs < renewDeadlineMs && renewDeadlineMs < leaseDurationMs)) {
    throw new InvalidInputError('leader election needs KYBERNATE_RETRY_PERIOD < KYBERNATE_RENEW_DEADLINE < KYBERNATE_LEASE_DURATION', {
      leaseDurationMs,
      renewDeadlineMs,
      retryPeriodMs,
    });
  }
  return config;
}

/** KYBERNATE_ACTIVATOR_PODS=`<namespace>/<label selector>` with KYBERNATE_ACTIVATOR_ADMIN_PORT (default 9090). */
function parseActivatorPods(env: NodeJS.ProcessEnv): ControllerConfig['activatorPods'] {
  const text = env.KYBERNATE_ACTIVATOR_PODS;
  if (!text) return undefined;
  const slash = text.indexOf('/');
  const namespace = text.slice(0, slash);
  const labelSelector = text.slice(slash + 1);
  if (slash <= 0 || labelSelector === '') {
    throw new InvalidInputError(`KYBERNATE_ACTIVATOR_PODS: expected "<namespace>/<label selector>", got "${text}"`, { variable: 'KYBERNATE_ACTIVATOR_PODS' });
  }
  const portText = env.KYBERNATE_ACTIVATOR_ADMIN_PORT ?? '9090';
  const adminPort = Number(portText);
  if (!Number.isInteger(adminPort) || adminPort < 1 || adminPort > 65535) {
    throw new InvalidInputError(`KYBERNATE_ACTIVATOR_ADMIN_PORT: "${portText}" is not a port number`, { variable: 'KYBERNATE_ACTIVATOR_ADMIN_PORT' });
  }
  return { namespace, labelSelector, adminPort };
}

// An extended resource name: a DNS subdomain prefix, '/', a name part (e.g. nvidia.com/gpu, nvidia.com/mig-1g.10gb).
const EXTENDED_RESOURCE_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** KYBERNATE_GPU_RUNTIME_CLASS (default nvidia; empty = set none) and KYBERNATE_GPU_RESOURCE (default nvidia.com/gpu). */
function parseGpuPodConfig(env: NodeJS.ProcessEnv): GpuPodConfig {
  const runtimeClassName = env.KYBERNATE_GPU_RUNTIME_CLASS ?? DEFAULT_GPU_POD_CONFIG.runtimeClassName;
  if (runtimeClassName && (runtimeClassName.length > 253 || !new RegExp(DNS_SUBDOMAIN_PATTERN).test(runtimeClassName))) {
    throw new InvalidInputError(`KYBERNATE_GPU_RUNTIME_CLASS: "${runtimeClassName}" is not a RuntimeClass name (DNS subdomain)`, { variable: 'KYBERNATE_GPU_RUNTIME_CLASS' });
  }
  const resourceName = env.KYBERNATE_GPU_RESOURCE ?? DEFAULT_GPU_POD_CONFIG.resourceName;
  if (!EXTENDED_RESOURCE_PATTERN.test(resourceName)) {
    throw new InvalidInputError(`KYBERNATE_GPU_RESOURCE: "${resourceName}" is not an extended resource name like nvidia.com/gpu`, { variable: 'KYBERNATE_GPU_RESOURCE' });
  }
  return { runtimeClassName: runtimeClassName || undefined, resourceName };
}
