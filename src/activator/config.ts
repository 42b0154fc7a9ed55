import { parseDuration } from '../lib/duration.ts';
import { InvalidInputError } from '../lib/errors.ts';
import { DEFAULT_PROBE_RULES, type ProbeRules } from './probes.ts';
import type { PoolOptions } from './forwarder.ts';

/** The activator process's settings, from environment variables (documented in docs/activator.md). */
export interface ActivatorConfig {
  readonly proxyPort: number;
  readonly adminPort: number;
  readonly host: string;
  /** `kube` (in a cluster) or `static` (a YAML/JSON file, for demos and benchmarks). */
  readonly source: { readonly kind: 'kube' } | { readonly kind: 'static'; readonly file: string };
  readonly drainGraceMs: number;
  /** Data-path processes (event loops); more than 1 runs a primary that forks this many workers. */
  readonly workers: number;
  readonly probes: ProbeRules;
  readonly pools: PoolOptions;
}

function port(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new InvalidInputError(`${name}="${text}" is not a port number`, { [name]: text });
  return value;
}

function positiveInteger(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new InvalidInputError(`${name}="${text}" is not a positive integer`, { [name]: text });
  return value;
}

function list(env: NodeJS.ProcessEnv, name: string, fallback: readonly string[]): readonly string[] {
  const text = env[name];
  if (text === undefined) return fallback;
  return text.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

export function configFromEnv(env: NodeJS.ProcessEnv): ActivatorConfig {
  const sourceKind = env.KYBERNATE_ACTIVATOR_SOURCE ?? 'kube';
  let source: ActivatorConfig['source'];
  if (sourceKind === 'kube') {
    source = { kind: 'kube' };
  } else if (sourceKind === 'static') {
    const file = env.KYBERNATE_ACTIVATOR_CONFIG;
    if (!file) throw new InvalidInputError('KYBERNATE_ACTIVATOR_SOURCE=static needs KYBERNATE_ACTIVATOR_CONFIG=<file.yaml>');
    source = { kind: 'static', file };
  } else {
    throw new InvalidInputError(`KYBERNATE_ACTIVATOR_SOURCE="${sourceKind}": expected "kube" or "static"`, { source: sourceKind });
  }
  return {
    proxyPort: port(env, 'KYBERNATE_ACTIVATOR_PORT', 8080),
    adminPort: port(env, 'KYBERNATE_ACTIVATOR_ADMIN_PORT', 9090),
    host: env.KYBERNATE_ACTIVATOR_HOST ?? '0.0.0.0',
    source,
    drainGraceMs: parseDuration(env.KYBERNATE_ACTIVATOR_DRAIN_GRACE ?? '30s'),
    workers: positiveInteger(env, 'KYBERNATE_ACTIVATOR_WORKERS', 1),
    probes: {
      userAgentPrefixes: list(env, 'KYBERNATE_ACTIVATOR_PROBE_USER_AGENTS', DEFAULT_PROBE_RULES.userAgentPrefixes),
      paths: list(env, 'KYBERNATE_ACTIVATOR_PROBE_PATHS', DEFAULT_PROBE_RULES.paths),
    },
    pools: {
      connectionsPerEndpoint: positiveInteger(env, 'KYBERNATE_ACTIVATOR_CONNECTIONS_PER_POD', 256),
      keepAliveTimeoutMs: parseDuration(env.KYBERNATE_ACTIVATOR_UPSTREAM_KEEPALIVE ?? '60s'),
    },
  };
}
