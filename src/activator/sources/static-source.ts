import { readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { parseDuration } from '../../lib/duration.ts';
import { InvalidInputError, NotFoundError } from '../../lib/errors.ts';
import { hostPatternProblem } from '../routing.ts';
import { WORKLOAD_DEFAULTS, workloadKey, type Endpoint, type Workload, type WorkloadSource } from '../types.ts';

const StaticWorkloadSchema = Type.Object(
  {
    namespace: Type.Optional(Type.String({ minLength: 1 })),
    name: Type.String({ minLength: 1 }),
    hosts: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    pathPrefix: Type.Optional(Type.String()),
    /** "host:port" of each pod; IPv6 as "[::1]:8080". */
    endpoints: Type.Optional(Type.Array(Type.String())),
    /** Suspended: the endpoints are not ready, requests are held and activation is requested. */
    suspended: Type.Optional(Type.Boolean()),
    activationTimeout: Type.Optional(Type.String()),
    queueSize: Type.Optional(Type.Integer({ minimum: 1 })),
    containerConcurrency: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export const StaticConfigSchema = Type.Object({ workloads: Type.Array(StaticWorkloadSchema) }, { additionalProperties: false });
export type StaticConfig = Static<typeof StaticConfigSchema>;

interface StaticWorkload {
  readonly workload: Workload;
  readonly podEndpoints: readonly Endpoint[];
  suspended: boolean;
}

export function parseEndpoint(text: string, where: string): Endpoint {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || port < 1 || port > 65535) {
    throw new InvalidInputError(`${where}: endpoint "${text}" is not "host:port"`, { endpoint: text });
  }
  return { host: match[1] ?? match[2]!, port, pod: text };
}

function toStaticWorkload(entry: Static<typeof StaticWorkloadSchema>): StaticWorkload {
  const namespace = entry.namespace ?? 'default';
  const where = `workload ${namespace}/${entry.name}`;
  for (const host of entry.hosts) {
    const problem = hostPatternProblem(host);
    if (problem !== undefined) throw new InvalidInputError(`${where}: ${problem}`, { workload: `${namespace}/${entry.name}` });
  }
  const podEndpoints = (entry.endpoints ?? []).map((text) => parseEndpoint(text, where));
  const workload: Workload = {
    namespace,
    name: entry.name,
    hosts: entry.hosts,
    pathPrefix: entry.pathPrefix ?? WORKLOAD_DEFAULTS.pathPrefix,
    activationTimeoutMs: entry.activationTimeout === undefined ? WORKLOAD_DEFAULTS.activationTimeoutMs : parseDuration(entry.activationTimeout),
    queueSize: entry.queueSize ?? WORKLOAD_DEFAULTS.queueSize,
    containerConcurrency: entry.containerConcurrency ?? WORKLOAD_DEFAULTS.containerConcurrency,
    endpoints: [],
    phase: 'Running',
  };
  return { workload, podEndpoints, suspended: entry.suspended ?? false };
}

export function parseStaticConfig(input: unknown, origin: string): StaticWorkload[] {
  if (!Value.Check(StaticConfigSchema, input)) {
    const problems = [...Value.Errors(StaticConfigSchema, input)].slice(0, 5).map((error) => `${error.path || '/'}: ${error.message}`);
    throw new InvalidInputError(`${origin}: invalid activator config: ${problems.join('; ')}`, { origin });
  }
  const workloads = input.workloads.map(toStaticWorkload);
  const keys = new Set<string>();
  for (const { workload } of workloads) {
    const key = workloadKey(workload);
    if (keys.has(key)) throw new InvalidInputError(`${origin}: workload ${key} is listed twice`, { origin, workload: key });
    keys.add(key);
  }
  return workloads;
}

/**
 * Workloads from a fixed config (an object or a YAML/JSON file): for tests, the benchmark and local
 * demos. `setSuspended`/`setEndpoints` play the controller's part: a suspended workload has no
 * ready endpoints, and resuming it releases its held requests.
 */
export class StaticWorkloadSource implements WorkloadSource {
  private workloads: StaticWorkload[];
  private listener: ((workloads: readonly Workload[]) => void) | undefined;

  constructor(config: StaticConfig | unknown, origin = 'static config') {
    this.workloads = parseStaticConfig(config, origin);
  }

  static async fromFile(path: string): Promise<StaticWorkloadSource> {
    return new StaticWorkloadSource(await readConfigFile(path), path);
  }

  async start(onSnapshot: (workloads: readonly Workload[]) => void): Promise<void> {
    this.listener = onSnapshot;
    this.publish();
  }

  async stop(): Promise<void> {
    this.listener = undefined;
  }

  /** Replaces the whole config (a reload); the new one is validated before anything changes. */
  replace(config: unknown, origin = 'static config'): void {
    this.workloads = parseStaticConfig(config, origin);
    this.publish();
  }

  async reloadFile(path: string): Promise<void> {
    this.replace(await readConfigFile(path), path);
  }

  setSuspended(key: string, suspended: boolean): void {
    this.find(key).suspended = suspended;
    this.publish();
  }

  setEndpoints(key: string, endpoints: readonly string[]): void {
    const entry = this.find(key);
    const podEndpoints = endpoints.map((text) => parseEndpoint(text, `workload ${key}`));
    this.workloads = this.workloads.map((candidate) => (candidate === entry ? { ...entry, podEndpoints } : candidate));
    this.publish();
  }

  snapshot(): Workload[] {
    return this.workloads.map(({ workload, podEndpoints, suspended }) => ({
      ...workload,
      endpoints: suspended ? [] : podEndpoints,
      phase: suspended ? 'Suspended' : 'Running',
    }));
  }

  private find(key: string): StaticWorkload {
    const entry = this.workloads.find(({ workload }) => workloadKey(workload) === key);
    if (entry === undefined) throw new NotFoundError(`no workload ${key} in the static config`, { workload: key });
    return entry;
  }

  private publish(): void {
    this.listener?.(this.snapshot());
  }
}

async function readConfigFile(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8');
  try {
    return parseYaml(text) as unknown;
  } catch (error) {
    throw new InvalidInputError(`${path}: not valid YAML/JSON`, { path }, { cause: error });
  }
}
