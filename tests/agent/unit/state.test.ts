import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/lib/errors.ts';
import { AlreadyExistsError } from '../../../src/agent/errors.ts';
import {
  canonicalJson,
  newOperation,
  recoverAfterRestart,
  resolveSubmission,
  transition,
} from '../../../src/agent/operations/state.ts';

const t = (ms: number): Date => new Date(Date.UTC(2026, 10, 27, 20, 0, 0, ms));
const fresh = () => newOperation({ id: 'op-1', kind: 'checkpoint', request: '{}', namespace: 'default', containerId: 'c1' }, t(0));

describe('operation state machine', () => {
  it('runs PENDING -> RUNNING -> steps -> SUCCEEDED with step durations', () => {
    let op = transition(fresh(), { type: 'start' }, t(1));
    op = transition(op, { type: 'step', name: 'pause' }, t(2), t(1));
    op = transition(op, { type: 'step', name: 'criu-dump' }, t(5), t(2));
    op = transition(op, { type: 'succeed', checkpointId: 'ck-1' }, t(45), t(5));
    expect(op.state).toBe('SUCCEEDED');
    expect(op.startedAt).toBe(t(1).toISOString());
    expect(op.checkpointId).toBe('ck-1');
    expect(op.steps).toEqual([
      { name: 'pause', ms: 3 },
      { name: 'criu-dump', ms: 40 },
    ]);
  });

  it('records the error of a failed operation, also one that never started', () => {
    const op = transition(fresh(), { type: 'fail', code: 'NotFound', message: 'no such container' }, t(1));
    expect(op).toMatchObject({ state: 'FAILED', error: { code: 'NotFound', message: 'no such container' } });
  });

  it('refuses events that do not fit the state', () => {
    expect(() => transition(fresh(), { type: 'step', name: 'x' }, t(1))).toThrow(InvalidInputError);
    const done = transition(transition(fresh(), { type: 'start' }, t(1)), { type: 'succeed' }, t(2));
    expect(() => transition(done, { type: 'fail', code: 'X', message: 'late' }, t(3))).toThrow(/not allowed in state SUCCEEDED/);
    expect(() => transition(done, { type: 'start' }, t(3))).toThrow(InvalidInputError);
  });

  it('rejects operation ids with path characters', () => {
    expect(() => newOperation({ id: '../x', kind: 'restore', request: '{}', namespace: 'n', containerId: 'c' }, t(0))).toThrow(InvalidInputError);
  });
});

describe('idempotency per operation id', () => {
  it('starts a new id, returns a known id with the same request, refuses another request', () => {
    const op = fresh();
    expect(resolveSubmission(undefined, 'checkpoint', '{}')).toBe('start');
    expect(resolveSubmission(op, 'checkpoint', '{}')).toBe('existing');
    expect(() => resolveSubmission(op, 'checkpoint', '{"leaveRunning":true}')).toThrow(AlreadyExistsError);
    expect(() => resolveSubmission(op, 'restore', '{}')).toThrow(AlreadyExistsError);
  });

  it('compares requests independent of key order', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: undefined } })).toBe(canonicalJson({ a: { d: [1, { x: 1, y: 2 }] }, b: 1 }));
  });
});

describe('recoverAfterRestart', () => {
  it('fails operations that were still running and keeps finished ones', () => {
    const running = transition(fresh(), { type: 'start' }, t(1));
    expect(recoverAfterRestart(running, t(9))).toMatchObject({ state: 'FAILED', error: { code: 'Aborted' } });
    const done = transition(running, { type: 'succeed' }, t(2));
    expect(recoverAfterRestart(done, t(9))).toBe(done);
  });
});
