import { describe, expect, it } from 'vitest';
import { decideIdleAction, type ActivitySnapshot, type IdlePolicyInput } from '../../../src/controller/policy/idle-policy.ts';

const NOW = 10_000_000;
const MIN = 60_000;

function activity(partial: Partial<ActivitySnapshot> = {}): ActivitySnapshot {
  return { inFlight: 0, queued: 0, lastRequestTimeMs: undefined, complete: true, ...partial };
}

function input(partial: Omit<Partial<IdlePolicyInput>, 'spec'> & { spec?: Partial<IdlePolicyInput['spec']> } = {}): IdlePolicyInput {
  const { spec, ...rest } = partial;
  return {
    nowMs: NOW,
    phase: 'Running',
    phaseSinceMs: NOW - 60 * MIN,
    spec: { suspend: false, scaleToZeroEnabled: true, idleTimeoutMs: 5 * MIN, operationTimeoutMs: 10 * MIN, ...spec },
    podReady: true,
    readySinceMs: NOW - 60 * MIN,
    suspendReason: undefined,
    suspendedAtMs: undefined,
    activationRequestedAtMs: undefined,
    activity: activity(),
    ...rest,
  };
}

describe('decideIdleAction', () => {
  it.each<[string, IdlePolicyInput, { action: string; reason: string; phase?: string; recheckAfterMs?: number }]>([
    // Running / Idle
    ['spec.suspend suspends a running workload', input({ spec: { suspend: true } }), { action: 'suspend', reason: 'SuspendRequested' }],
    ['spec.suspend suspends even a pod that is not ready', input({ spec: { suspend: true }, podReady: false }), { action: 'suspend', reason: 'SuspendRequested' }],
    ['a new workload without a phase runs', input({ phase: undefined, podReady: false, readySinceMs: undefined }), { action: 'keep', reason: 'PodNotReady', phase: 'Running' }],
    ['scale-to-zero disabled keeps running however idle', input({ spec: { scaleToZeroEnabled: false }, activity: activity({ lastRequestTimeMs: 0 }) }), { action: 'keep', reason: 'ScaleToZeroDisabled', phase: 'Running' }],
    ['requests in flight keep it running', input({ activity: activity({ inFlight: 2, lastRequestTimeMs: NOW - 60 * MIN }) }), { action: 'keep', reason: 'Active', phase: 'Running' }],
    ['queued requests keep it running', input({ activity: activity({ queued: 1 }) }), { action: 'keep', reason: 'Active', phase: 'Running' }],
    ['idle past the timeout suspends', input({ activity: activity({ lastRequestTimeMs: NOW - 5 * MIN }) }), { action: 'suspend', reason: 'IdleTimeout' }],
    ['never requested and ready long ago suspends', input(), { action: 'suspend', reason: 'IdleTimeout' }],
    ['a recent request keeps it Running and rechecks when the timeout would pass', input({ activity: activity({ lastRequestTimeMs: NOW - 1 * MIN }) }), { action: 'keep', reason: 'RecentRequests', phase: 'Running', recheckAfterMs: 4 * MIN }],
    ['half the timeout without requests is Idle', input({ activity: activity({ lastRequestTimeMs: NOW - 3 * MIN }) }), { action: 'keep', reason: 'NoRecentRequests', phase: 'Idle', recheckAfterMs: 2 * MIN }],
    ['a freshly restored pod is not idle yet although the last request is old', input({ readySinceMs: NOW - 1 * MIN, activity: activity({ lastRequestTimeMs: NOW - 60 * MIN }) }), { action: 'keep', reason: 'RecentRequests', phase: 'Running', recheckAfterMs: 4 * MIN }],
    ['incomplete activity never suspends', input({ phase: 'Idle', activity: activity({ complete: false, lastRequestTimeMs: 0 }) }), { action: 'keep', reason: 'ActivityUnknown', phase: 'Idle' }],
    ['no activity at all never suspends', input({ activity: undefined }), { action: 'keep', reason: 'ActivityUnknown', phase: 'Running' }],
    ['a pod that is not ready is not suspended for idleness', input({ podReady: false }), { action: 'keep', reason: 'PodNotReady', phase: 'Running' }],
    ['a request time in the future counts as just now', input({ activity: activity({ lastRequestTimeMs: NOW + MIN }) }), { action: 'keep', reason: 'RecentRequests', phase: 'Running', recheckAfterMs: 5 * MIN }],
    // Suspended
    ['suspended by spec stays suspended despite a wake request', input({ phase: 'Suspended', spec: { suspend: true }, suspendedAtMs: NOW - MIN, activationRequestedAtMs: NOW }), { action: 'keep', reason: 'SuspendRequested', phase: 'Suspended' }],
    ['a wake request newer than the suspend restores', input({ phase: 'Suspended', suspendReason: 'IdleTimeout', suspendedAtMs: NOW - MIN, activationRequestedAtMs: NOW - 1 }), { action: 'restore', reason: 'ActivationRequested' }],
    ['a wake request from before the suspend is stale', input({ phase: 'Suspended', suspendReason: 'IdleTimeout', suspendedAtMs: NOW - MIN, activationRequestedAtMs: NOW - 2 * MIN }), { action: 'keep', reason: 'Idle', phase: 'Suspended' }],
    ['a wake request at the same instant as the suspend is stale', input({ phase: 'Suspended', suspendReason: 'IdleTimeout', suspendedAtMs: NOW - MIN, activationRequestedAtMs: NOW - MIN }), { action: 'keep', reason: 'Idle', phase: 'Suspended' }],
    ['clearing spec.suspend restores what the spec suspended', input({ phase: 'Suspended', suspendReason: 'SuspendRequested', suspendedAtMs: NOW - MIN }), { action: 'restore', reason: 'SuspendCleared' }],
    ['disabling scale-to-zero restores an idle-suspended workload', input({ phase: 'Suspended', suspendReason: 'IdleTimeout', suspendedAtMs: NOW - MIN, spec: { scaleToZeroEnabled: false } }), { action: 'restore', reason: 'ScaleToZeroDisabled' }],
    ['queued requests restore even without the annotation', input({ phase: 'Suspended', suspendReason: 'IdleTimeout', suspendedAtMs: NOW - MIN, activity: activity({ queued: 3 }) }), { action: 'restore', reason: 'RequestsWaiting' }],
    ['idle-suspended without demand stays suspended', input({ phase: 'Suspended', suspendReason: 'IdleTimeout', suspendedAtMs: NOW - MIN, activity: undefined }), { action: 'keep', reason: 'Idle', phase: 'Suspended' }],
    // In progress
    ['a checkpoint in progress is left alone, even if spec.suspend flips', input({ phase: 'Suspending', phaseSinceMs: NOW - MIN, spec: { suspend: false } }), { action: 'keep', reason: 'InProgress', phase: 'Suspending', recheckAfterMs: 9 * MIN }],
    ['a restore in progress is left alone', input({ phase: 'Restoring', phaseSinceMs: NOW - MIN, spec: { suspend: true } }), { action: 'keep', reason: 'InProgress', phase: 'Restoring', recheckAfterMs: 9 * MIN }],
    ['a checkpoint past the operation timeout fails', input({ phase: 'Suspending', phaseSinceMs: NOW - 10 * MIN }), { action: 'fail', reason: 'CheckpointTimedOut' }],
    ['a restore past the operation timeout fails', input({ phase: 'Restoring', phaseSinceMs: NOW - 11 * MIN }), { action: 'fail', reason: 'RestoreTimedOut' }],
    // Failed
    ['failed stays failed', input({ phase: 'Failed', activity: activity({ queued: 5 }) }), { action: 'keep', reason: 'Failed', phase: 'Failed' }],
  ])('%s', (_name, policyInput, expected) => {
    const decision = decideIdleAction(policyInput);
    expect(decision).toMatchObject(expected);
    if (expected.recheckAfterMs === undefined && decision.action === 'keep') expect(decision.recheckAfterMs).toBeUndefined();
    expect(decision.message.length).toBeGreaterThan(0);
  });
});
