import { describe, expect, it } from 'vitest';
import { findCondition, isConditionTrue, setCondition, setConditions, toMicroTime } from '../../../src/controller/runtime/conditions.ts';

const t0 = new Date('2026-11-27T10:00:00.123Z');
const t1 = new Date('2026-11-27T10:05:00.000Z');

describe('setCondition', () => {
  it('adds a new condition with the transition time in whole seconds', () => {
    const list = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'PodNotReady', message: 'm', observedGeneration: 1 }, t0);
    expect(list).toEqual([{ type: 'Ready', status: 'False', reason: 'PodNotReady', message: 'm', observedGeneration: 1, lastTransitionTime: '2026-11-27T10:00:00Z' }]);
  });

  it('keeps lastTransitionTime when the status does not change, but takes reason and message', () => {
    const first = setCondition([], { type: 'Ready', status: 'False', reason: 'A', message: 'a' }, t0);
    const second = setCondition(first, { type: 'Ready', status: 'False', reason: 'B', message: 'b', observedGeneration: 2 }, t1);
    expect(second[0]).toMatchObject({ reason: 'B', message: 'b', observedGeneration: 2, lastTransitionTime: '2026-11-27T10:00:00Z' });
    expect(first[0]?.reason).toBe('A'); // input untouched
  });

  it('moves lastTransitionTime when the status changes and keeps the order of conditions', () => {
    const list = setConditions(
      [],
      [
        { type: 'Ready', status: 'False', reason: 'A', message: '' },
        { type: 'Suspended', status: 'False', reason: 'A', message: '' },
      ],
      t0,
    );
    const next = setCondition(list, { type: 'Ready', status: 'True', reason: 'PodReady', message: '' }, t1);
    expect(next.map((c) => c.type)).toEqual(['Ready', 'Suspended']);
    expect(findCondition(next, 'Ready')?.lastTransitionTime).toBe('2026-11-27T10:05:00Z');
    expect(isConditionTrue(next, 'Ready')).toBe(true);
    expect(isConditionTrue(next, 'Suspended')).toBe(false);
    expect(isConditionTrue(next, 'Missing')).toBe(false);
  });

  it('formats MicroTime with six fractional digits', () => {
    expect(toMicroTime(t0)).toBe('2026-11-27T10:00:00.123000Z');
  });
});
