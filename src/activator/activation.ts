/**
 * When to ask for activation, pure. One request per suspended period: the first held request asks,
 * later ones do not, until pods become ready (the period ends), the request fails (the next held
 * request asks again) or it went unanswered for `retryAfterMs` (the controller may have missed it;
 * asking again is harmless because the wake annotation is idempotent).
 */
export class ActivationGate {
  private requestedAt: number | undefined;
  private attempt = 0;

  /** Returns the attempt number when a request should be sent now, otherwise undefined. */
  begin(now: number, retryAfterMs: number): number | undefined {
    if (this.requestedAt !== undefined && now - this.requestedAt < retryAfterMs) return undefined;
    this.requestedAt = now;
    return ++this.attempt;
  }

  /** The attempt failed; true when it is still the current one (so its held requests should fail). */
  fail(attempt: number): boolean {
    if (attempt !== this.attempt || this.requestedAt === undefined) return false;
    this.requestedAt = undefined;
    return true;
  }

  /** Pods are ready: the suspended period is over. */
  ready(): void {
    this.requestedAt = undefined;
  }

  get pending(): boolean {
    return this.requestedAt !== undefined;
  }
}
