import { describe, expect, it } from 'vitest';
import { decideLease, mustStepDown, releasedLease, type LeaseSpec } from '../../../src/controller/runtime/leader-decision.ts';

const format = (ms: number) => `t${ms}`;
const base = { identity: 'me', leaseDurationMs: 15_000, formatTime: format };

describe('decideLease', () => {
  it('creates the lease with 0 transitions when none exists', () => {
    expect(decideLease({ ...base, current: undefined, observation: undefined, nowMs: 100 })).toEqual({
      action: 'acquire',
      spec: { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: 't100', renewTime: 't100', leaseTransitions: 0 },
    });
  });

  it('renews its own lease, keeping acquireTime and transitions', () => {
    const current: LeaseSpec = { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: 't1', renewTime: 't5', leaseTransitions: 3 };
    expect(decideLease({ ...base, current, observation: undefined, nowMs: 200 })).toEqual({
      action: 'renew',
      spec: { ...current, renewTime: 't200' },
    });
  });

  it('waits while another holder may still be alive, counting from when it saw the lease change', () => {
    const current: LeaseSpec = { holderIdentity: 'other', leaseDurationSeconds: 10, renewTime: 'tX', leaseTransitions: 1 };
    const observation = { spec: current, observedAtMs: 1_000 };
    expect(decideLease({ ...base, current, observation, nowMs: 4_000 })).toEqual({ action: 'wait', holder: 'other', expiresInMs: 7_000 });
    // The holder's own duration counts, not ours (15 s).
    expect(decideLease({ ...base, current, observation, nowMs: 11_000 }).action).toBe('acquire');
  });

  it('restarts the expiry clock when the holder renewed since the last observation', () => {
    const old: LeaseSpec = { holderIdentity: 'other', leaseDurationSeconds: 10, renewTime: 't1', leaseTransitions: 1 };
    const renewed: LeaseSpec = { ...old, renewTime: 't2' };
    const decision = decideLease({ ...base, current: renewed, observation: { spec: old, observedAtMs: 0 }, nowMs: 20_000 });
    expect(decision).toEqual({ action: 'wait', holder: 'other', expiresInMs: 10_000 });
  });

  it('takes over an expired or released lease and counts a transition', () => {
    const released = releasedLease({ holderIdentity: 'other', leaseDurationSeconds: 10, leaseTransitions: 4, acquireTime: 't1' }, 50, format);
    expect(released).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1, renewTime: 't50' });
    const decision = decideLease({ ...base, current: released, observation: undefined, nowMs: 60 });
    expect(decision).toMatchObject({ action: 'acquire', spec: { holderIdentity: 'me', leaseTransitions: 5, acquireTime: 't60' } });
  });
});

describe('mustStepDown', () => {
  it.each([
    [0, 9_999, false],
    [0, 10_000, true],
    [5_000, 12_000, false],
  ])('last renew at %d, now %d (deadline 10 s) -> %s', (renewedAt, now, expected) => {
    expect(mustStepDown(renewedAt, 10_000, now)).toBe(expected);
  });
});
