import type { WorkloadActivity } from '../activity.ts';

/**
 * One replica's activity from its workers' reports: counts and rates add up, the last request is the
 * latest any worker saw; ready endpoints and phase come from the same snapshot in every worker.
 */
export function mergeWorkerActivity(reports: readonly (readonly WorkloadActivity[])[]): WorkloadActivity[] {
  const merged = new Map<string, WorkloadActivity>();
  for (const report of reports) {
    for (const activity of report) {
      const key = `${activity.namespace}/${activity.name}`;
      const seen = merged.get(key);
      merged.set(
        key,
        seen === undefined
          ? activity
          : {
              ...seen,
              inFlight: seen.inFlight + activity.inFlight,
              queued: seen.queued + activity.queued,
              lastRequestTime: latest(seen.lastRequestTime, activity.lastRequestTime),
              requestRate: seen.requestRate + activity.requestRate,
              readyEndpoints: Math.max(seen.readyEndpoints, activity.readyEndpoints),
            },
      );
    }
  }
  return [...merged.values()];
}

function latest(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return Date.parse(a) >= Date.parse(b) ? a : b;
}
