/**
 * The pure half of leader election on a coordination.k8s.io/v1 Lease, following client-go's rules:
 * a candidate may take the lease when nobody holds it or the holder's renewTime + leaseDuration has
 * passed (judged by the local clock at which this candidate last saw the lease change, not by the
 * holder's timestamps, so clock skew between nodes does not matter); the holder renews it.
 */
export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number | null;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number | null;
}

/** What this candidate remembers about the lease: the spec it last saw and when (local clock) it changed. */
export interface LeaseObservation {
  spec: LeaseSpec;
  observedAtMs: number;
}

export type LeaseDecision =
  | { action: 'acquire'; spec: LeaseSpec }
  | { action: 'renew'; spec: LeaseSpec }
  | { action: 'wait'; holder: string; expiresInMs: number };

export function decideLease(params: {
  identity: string;
  current: LeaseSpec | undefined;
  observation: LeaseObservation | undefined;
  leaseDurationMs: number;
  nowMs: number;
  formatTime: (ms: number) => string;
}): LeaseDecision {
  const { identity, current, observation, leaseDurationMs, nowMs, formatTime } = params;
  const now = formatTime(nowMs);
  const durationSeconds = Math.ceil(leaseDurationMs / 1000);
  const holder = current?.holderIdentity ?? '';
  if (holder === identity) {
    return { action: 'renew', spec: { ...current, leaseDurationSeconds: durationSeconds, renewTime: now } };
  }
  if (holder !== '') {
    // The holder's own duration counts: it may have been configured differently from us.
    const holderDurationMs = (current?.leaseDurationSeconds ?? durationSeconds) * 1000;
    const seenChangeAt = observation && sameLease(observation.spec, current) ? observation.observedAtMs : nowMs;
    const expiresInMs = seenChangeAt + holderDurationMs - nowMs;
    if (expiresInMs > 0) return { action: 'wait', holder, expiresInMs };
  }
  return {
    action: 'acquire',
    spec: {
      holderIdentity: identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime: now,
      renewTime: now,
      // Like client-go: a new Lease starts at 0, every change of holder counts one transition.
      leaseTransitions: current ? (current.leaseTransitions ?? 0) + 1 : 0,
    },
  };
}

/** The spec a leader writes when it steps down, so that others need not wait for expiry. */
export function releasedLease(current: LeaseSpec, nowMs: number, formatTime: (ms: number) => string): LeaseSpec {
  return { ...current, holderIdentity: '', leaseDurationSeconds: 1, renewTime: formatTime(nowMs) };
}

/** A leader that could not renew within renewDeadline must stop acting: another may take over soon. */
export function mustStepDown(lastRenewedAtMs: number, renewDeadlineMs: number, nowMs: number): boolean {
  return nowMs - lastRenewedAtMs >= renewDeadlineMs;
}

export function sameLease(a: LeaseSpec | undefined, b: LeaseSpec | undefined): boolean {
  return (
    (a?.holderIdentity ?? '') === (b?.holderIdentity ?? '') &&
    (a?.renewTime ?? '') === (b?.renewTime ?? '') &&
    (a?.leaseTransitions ?? 0) === (b?.leaseTransitions ?? 0)
  );
}
