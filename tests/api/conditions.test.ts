import { describe, expect, it } from 'vitest';
import {
  buildCondition,
  findCondition,
  isConditionTrue,
  removeCondition,
  sameCondition,
  setCondition,
  toKubeTime,
  WorkloadConditionType,
  type Condition,
} from '../../src/api/index.ts';
import { InvalidInputError } from '../../src/lib/errors.ts';

const T0 = new Date('2026-11-27T10:00:00.123Z');
const T1 = new Date('2026-11-27T10:05:00.000Z');

const ready = (status: 'True' | 'False', reason = 'PodReady', observedGeneration = 1): Condition =>
  buildCondition({ type: WorkloadConditionType.Ready, status, reason, message: 'pod counter-0 is ready', observedGeneration }, T0);

describe('conditions', () => {
  it('builds a condition in metav1.Condition shape with whole-second time', () => {
    expect(ready('True')).toEqual({
      type: 'Ready',
      status: 'True',
      reason: 'PodReady',
      message: 'pod counter-0 is ready',
      observedGeneration: 1,
      lastTransitionTime: '2026-11-27T10:00:00Z',
    });
    expect(toKubeTime(T1)).toBe('2026-11-27T10:05:00Z');
  });

  it('rejects a reason the API server would refuse, naming it', () => {
    const build = () => buildCondition({ type: 'Ready', status: 'True', reason: 'pod not ready' }, T0);
    expect(build).toThrow(InvalidInputError);
    expect(build).toThrow('reason "pod not ready"');
  });

  it('adds a missing condition at the end', () => {
    const suspended = buildCondition({ type: 'Suspended', status: 'False', reason: 'Active' }, T0);
    const update = setCondition([suspended], { type: 'Ready', status: 'True', reason: 'PodReady' }, T1);
    expect(update.changed).toBe(true);
    expect(update.conditions.map((c) => c.type)).toEqual(['Suspended', 'Ready']);
    expect(update.conditions[1]?.lastTransitionTime).toBe('2026-11-27T10:05:00Z');
  });

  it('reports no change and keeps the time when the same state is set again', () => {
    const current = [ready('True')];
    const update = setCondition(current, { type: 'Ready', status: 'True', reason: 'PodReady', message: 'pod counter-0 is ready', observedGeneration: 1 }, T1);
    expect(update).toEqual({ conditions: current, changed: false });
  });

  it('keeps lastTransitionTime when only reason, message or generation change', () => {
    const update = setCondition([ready('True')], { type: 'Ready', status: 'True', reason: 'Restored', observedGeneration: 2 }, T1);
    expect(update.changed).toBe(true);
    expect(update.conditions).toEqual([
      { type: 'Ready', status: 'True', reason: 'Restored', message: '', observedGeneration: 2, lastTransitionTime: '2026-11-27T10:00:00Z' },
    ]);
  });

  it('moves lastTransitionTime when the status changes, without touching the input list', () => {
    const current = [ready('True')];
    const update = setCondition(current, { type: 'Ready', status: 'False', reason: 'Suspended' }, T1);
    expect(update.conditions[0]).toMatchObject({ status: 'False', reason: 'Suspended', lastTransitionTime: '2026-11-27T10:05:00Z' });
    expect(current[0]?.status).toBe('True');
  });

  it('finds, tests and removes conditions', () => {
    const conditions = [ready('True'), buildCondition({ type: 'Suspended', status: 'False', reason: 'Active' }, T0)];
    expect(findCondition(conditions, 'Suspended')?.reason).toBe('Active');
    expect(findCondition(undefined, 'Ready')).toBeUndefined();
    expect(isConditionTrue(conditions, 'Ready')).toBe(true);
    expect(isConditionTrue(conditions, 'Suspended')).toBe(false);
    expect(isConditionTrue(conditions, 'CheckpointAvailable')).toBe(false);
    expect(removeCondition(conditions, 'Ready')).toEqual({ conditions: [conditions[1]], changed: true });
    expect(removeCondition(conditions, 'CheckpointAvailable').changed).toBe(false);
  });

  it('compares conditions ignoring only the transition time', () => {
    const a = ready('True');
    expect(sameCondition(a, { ...a, lastTransitionTime: toKubeTime(T1) })).toBe(true);
    expect(sameCondition(a, { ...a, message: 'other' })).toBe(false);
    expect(sameCondition(a, { ...a, observedGeneration: 2 })).toBe(false);
  });
});
