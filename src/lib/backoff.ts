/** Per-failure exponential backoff: base * factor^(failures-1), capped at max. Pure, so it is unit-tested. */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  factor: number;
}

export function backoffDelay(policy: BackoffPolicy, failures: number): number {
  if (failures <= 0) return 0;
  // Cap the exponent before Math.pow so thousands of failures do not overflow to Infinity.
  const exponent = Math.min(failures - 1, 64);
  return Math.min(policy.maxMs, policy.baseMs * Math.pow(policy.factor, exponent));
}

/**
 * Spreads reconnects of many controllers over [delay/2, delay) so that an API server restart does not
 * meet a thundering herd. `random` is injected to keep the function pure.
 */
export function withJitter(delayMs: number, random: () => number): number {
  return delayMs / 2 + (delayMs / 2) * random();
}

/**
 * Overall rate limit shared by every key of a work queue (a token bucket): `burst` retries may happen at
 * once, then `qps` per second. `reserve` returns how long the caller must wait for its token.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.tokens = burst;
    this.updatedAt = now();
  }

  reserve(): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) / 1000) * this.qps);
    this.updatedAt = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }
}
