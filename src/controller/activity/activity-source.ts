import { request } from 'undici';
import { KybernateError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { ActivitySnapshot } from '../policy/idle-policy.ts';

/** One workload's counters as one activator replica reports them in `GET /v1/activity`. */
export interface WorkloadActivityEntry {
  namespace: string;
  name: string;
  inFlight: number;
  queued: number;
  lastRequestTime: string | null;
  requestRate?: number;
}

/** Activity of every workload over every activator replica, read at one moment. */
export interface ActivityReport {
  snapshot(namespace: string, name: string): ActivitySnapshot;
}

/** Where the idle controller gets activity from (HTTP in production, anything in tests). */
export interface ActivitySource {
  read(signal?: AbortSignal): Promise<ActivityReport>;
}

export class ActivityFormatError extends KybernateError {
  constructor(message: string, context: Record<string, unknown>) {
    super('InvalidActivity', message, context);
  }
}

/** Validates one replica's `/v1/activity` body: `{ "workloads": [WorkloadActivityEntry...] }`. */
export function parseActivityDocument(body: unknown, source: string): WorkloadActivityEntry[] {
  const workloads = (body as { workloads?: unknown } | null)?.workloads;
  if (!Array.isArray(workloads)) {
    throw new ActivityFormatError(`activity from ${source} has no "workloads" array`, { source });
  }
  return workloads.map((entry: unknown, index) => {
    const e = entry as Partial<Record<keyof WorkloadActivityEntry, unknown>>;
    const valid =
      typeof e.namespace === 'string' &&
      typeof e.name === 'string' &&
      isCount(e.inFlight) &&
      isCount(e.queued) &&
      (e.lastRequestTime === null || e.lastRequestTime === undefined || (typeof e.lastRequestTime === 'string' && !Number.isNaN(Date.parse(e.lastRequestTime))));
    if (!valid) throw new ActivityFormatError(`activity from ${source}: workloads[${index}] is malformed`, { source, index });
    return {
      namespace: e.namespace as string,
      name: e.name as string,
      inFlight: e.inFlight as number,
      queued: e.queued as number,
      lastRequestTime: (e.lastRequestTime as string | null | undefined) ?? null,
    };
  });
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

/**
 * Sums in-flight and queued requests and takes the latest request time over all replicas' reports.
 * `undefined` entries are replicas that did not answer: every snapshot is then marked incomplete.
 */
export function aggregateActivity(reports: readonly (WorkloadActivityEntry[] | undefined)[]): ActivityReport {
  const complete = reports.every((r) => r !== undefined);
  const totals = new Map<string, ActivitySnapshot>();
  for (const entry of reports.flatMap((r) => r ?? [])) {
    const key = `${entry.namespace}/${entry.name}`;
    const total = totals.get(key) ?? { inFlight: 0, queued: 0, lastRequestTimeMs: undefined, complete };
    const lastMs = entry.lastRequestTime === null ? undefined : Date.parse(entry.lastRequestTime);
    totals.set(key, {
      inFlight: total.inFlight + entry.inFlight,
      queued: total.queued + entry.queued,
      lastRequestTimeMs: latest(total.lastRequestTimeMs, lastMs),
      complete,
    });
  }
  return {
    snapshot: (namespace, name) =>
      totals.get(`${namespace}/${name}`) ?? { inFlight: 0, queued: 0, lastRequestTimeMs: undefined, complete },
  };
}

function latest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

/**
 * Reads `GET <url>/v1/activity` of every activator replica in parallel. `urls` is a function so that
 * the replica list can follow the activator pods. With no replica at all, activity is unknown
 * (incomplete): the policy then never suspends.
 */
export class HttpActivitySource implements ActivitySource {
  constructor(
    private readonly urls: () => readonly string[],
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  async read(signal?: AbortSignal): Promise<ActivityReport> {
    const urls = this.urls();
    if (urls.length === 0) return aggregateActivity([undefined]);
    return aggregateActivity(await Promise.all(urls.map((url) => this.readOne(url, signal))));
  }

  private async readOne(baseUrl: string, signal?: AbortSignal): Promise<WorkloadActivityEntry[] | undefined> {
    const url = new URL('/v1/activity', baseUrl).toString();
    try {
      const timeout = AbortSignal.timeout(this.timeoutMs);
      const response = await request(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
      if (response.statusCode !== 200) {
        await response.body.dump();
        throw new Error(`HTTP ${response.statusCode}`);
      }
      return parseActivityDocument(await response.body.json(), url);
    } catch (err) {
      this.log.warn({ url, err: errorMessage(err) }, 'activator activity unreadable; treating activity as unknown');
      return undefined;
    }
  }
}
