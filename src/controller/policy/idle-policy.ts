/**
 * The scale-to-zero decision for one KybernateWorkload: pure (no IO, no clock), so every rule is a
 * row in a table test. The reconciler gathers the inputs and carries out the action.
 */
export type WorkloadPhase = 'Running' | 'Idle' | 'Suspending' | 'Suspended' | 'Restoring' | 'Failed';

/** Activity summed over every activator replica (see ActivitySource). */
export interface ActivitySnapshot {
  inFlight: number;
  queued: number;
  /** Latest request over all replicas, epoch ms; undefined when none was seen. */
  lastRequestTimeMs: number | undefined;
  /** False when some activator replica did not answer: its traffic is unknown. */
  complete: boolean;
}

export type SuspendReason = 'SuspendRequested' | 'IdleTimeout';

export interface IdlePolicyInput {
  nowMs: number;
  phase: WorkloadPhase | undefined;
  /** When the current phase was entered (epoch ms). */
  phaseSinceMs: number | undefined;
  spec: {
    suspend: boolean;
    scaleToZeroEnabled: boolean;
    idleTimeoutMs: number;
    /** How long Suspending or Restoring may take before the workload is marked Failed. */
    operationTimeoutMs: number;
  };
  podReady: boolean;
  /** Since when the current pod has been Ready (epoch ms): a fresh pod is not idle yet. */
  readySinceMs: number | undefined;
  suspendReason: SuspendReason | undefined;
  suspendedAtMs: number | undefined;
  activationRequestedAtMs: number | undefined;
  /** Undefined when no activator could be read. */
  activity: ActivitySnapshot | undefined;
}

export type IdleDecision =
  | { action: 'keep'; phase: WorkloadPhase; reason: string; message: string; recheckAfterMs?: number }
  | { action: 'suspend'; reason: SuspendReason; message: string }
  | { action: 'restore'; reason: string; message: string }
  | { action: 'fail'; reason: string; message: string };

export function decideIdleAction(input: IdlePolicyInput): IdleDecision {
  switch (input.phase) {
    case 'Suspending':
    case 'Restoring':
      return decideInProgress(input, input.phase);
    case 'Suspended':
      return decideSuspended(input);
    case 'Failed':
      return keep('Failed', 'Failed', 'the workload failed; change its spec to retry');
    case undefined:
    case 'Running':
    case 'Idle':
      return decideRunning(input);
  }
}

function decideInProgress(input: IdlePolicyInput, phase: 'Suspending' | 'Restoring'): IdleDecision {
  const elapsed = input.nowMs - (input.phaseSinceMs ?? input.nowMs);
  const { operationTimeoutMs } = input.spec;
  if (elapsed >= operationTimeoutMs) {
    const what = phase === 'Suspending' ? 'checkpoint' : 'restore';
    return {
      action: 'fail',
      reason: phase === 'Suspending' ? 'CheckpointTimedOut' : 'RestoreTimedOut',
      message: `${what} did not finish within ${operationTimeoutMs} ms`,
    };
  }
  // An operation in progress finishes first; spec.suspend or a wake request is looked at afterwards.
  return keep(phase, 'InProgress', `${phase.toLowerCase()} in progress`, operationTimeoutMs - elapsed);
}

function decideSuspended(input: IdlePolicyInput): IdleDecision {
  const { spec, suspendedAtMs, activationRequestedAtMs, activity, suspendReason } = input;
  if (spec.suspend) return keep('Suspended', 'SuspendRequested', 'spec.suspend is true');
  if (activationRequestedAtMs !== undefined && (suspendedAtMs === undefined || activationRequestedAtMs > suspendedAtMs)) {
    return { action: 'restore', reason: 'ActivationRequested', message: 'an activator asked to wake the workload' };
  }
  if (suspendReason === 'SuspendRequested') {
    return { action: 'restore', reason: 'SuspendCleared', message: 'spec.suspend was set back to false' };
  }
  if (!spec.scaleToZeroEnabled) {
    return { action: 'restore', reason: 'ScaleToZeroDisabled', message: 'scale-to-zero was disabled while suspended' };
  }
  // A safety net for a lost wake annotation: requests are waiting in an activator.
  if (activity && activity.inFlight + activity.queued > 0) {
    return { action: 'restore', reason: 'RequestsWaiting', message: `${activity.queued} request(s) queued in activators` };
  }
  return keep('Suspended', 'Idle', 'suspended until a request arrives');
}

function decideRunning(input: IdlePolicyInput): IdleDecision {
  const { spec, activity, nowMs } = input;
  if (spec.suspend) return { action: 'suspend', reason: 'SuspendRequested', message: 'spec.suspend is true' };
  if (!spec.scaleToZeroEnabled) return keep('Running', 'ScaleToZeroDisabled', 'scale-to-zero is disabled');
  if (!input.podReady || input.readySinceMs === undefined) return keep('Running', 'PodNotReady', 'waiting for a ready pod');
  // Never suspend on partial knowledge: a replica that did not answer may be serving requests.
  if (!activity || !activity.complete) {
    return keep(input.phase ?? 'Running', 'ActivityUnknown', 'activity of some activator replicas is unknown');
  }
  if (activity.inFlight + activity.queued > 0) {
    return keep('Running', 'Active', `${activity.inFlight} request(s) in flight, ${activity.queued} queued`);
  }
  const idleSinceMs = Math.max(activity.lastRequestTimeMs ?? 0, input.readySinceMs);
  const idleForMs = Math.max(0, nowMs - idleSinceMs);
  if (idleForMs >= spec.idleTimeoutMs) {
    return { action: 'suspend', reason: 'IdleTimeout', message: `no request for ${idleForMs} ms (idleTimeout ${spec.idleTimeoutMs} ms)` };
  }
  // Idle once half the timeout has passed without a request: Running/Idle does not flap with every
  // short pause of a busy service.
  const phase = idleForMs * 2 >= spec.idleTimeoutMs ? 'Idle' : 'Running';
  return keep(phase, phase === 'Idle' ? 'NoRecentRequests' : 'RecentRequests', `no request for ${idleForMs} ms`, spec.idleTimeoutMs - idleForMs);
}

function keep(phase: WorkloadPhase, reason: string, message: string, recheckAfterMs?: number): IdleDecision {
  return recheckAfterMs === undefined ? { action: 'keep', phase, reason, message } : { action: 'keep', phase, reason, message, recheckAfterMs };
}
