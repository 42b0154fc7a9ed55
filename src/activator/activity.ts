/**
 * What the idle controller needs to know per workload (served on GET /v1/activity): requests in
 * flight, held, the last request time and the recent request rate. Probes are not activity.
 */
export interface WorkloadActivity {
  readonly namespace: string;
  readonly name: string;
  readonly phase: string;
  readonly inFlight: number;
  readonly queued: number;
  /** RFC 3339, or null when no request arrived since this replica started. */
  readonly lastRequestTime: string | null;
  /** Requests per second, averaged over the last `RATE_WINDOW_S` seconds. */
  readonly requestRate: number;
  readonly readyEndpoints: number;
}

export const RATE_WINDOW_S = 60;

/** Request counts in one-second buckets over a sliding window; O(1) per request. */
export class RequestRate {
  private readonly buckets = new Float64Array(RATE_WINDOW_S);
  private currentSecond = 0;

  record(nowMs: number): void {
    this.advance(Math.floor(nowMs / 1000));
    this.buckets[this.currentSecond % RATE_WINDOW_S]! += 1;
  }

  perSecond(nowMs: number): number {
    this.advance(Math.floor(nowMs / 1000));
    let total = 0;
    for (const count of this.buckets) total += count;
    return total / RATE_WINDOW_S;
  }

  private advance(second: number): void {
    if (second <= this.currentSecond) return;
    const elapsed = Math.min(second - this.currentSecond, RATE_WINDOW_S);
    for (let step = 1; step <= elapsed; step++) this.buckets[(this.currentSecond + step) % RATE_WINDOW_S] = 0;
    this.currentSecond = second;
  }
}
