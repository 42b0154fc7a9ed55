import { describe, expect, it } from 'vitest';
import type { WorkloadActivity } from '../../src/activator/activity.ts';
import { mergeWorkerActivity } from '../../src/activator/cluster/merge-activity.ts';

function activity(name: string, fields: Partial<WorkloadActivity>): WorkloadActivity {
  return { namespace: 'default', name, phase: 'Running', inFlight: 0, queued: 0, lastRequestTime: null, requestRate: 0, readyEndpoints: 1, ...fields };
}

describe('mergeWorkerActivity', () => {
  it('adds counts and rates, keeps the latest request time', () => {
    const merged = mergeWorkerActivity([
      [activity('a', { inFlight: 2, queued: 1, requestRate: 0.5, lastRequestTime: '2026-11-27T10:00:00.000Z' })],
      [activity('a', { inFlight: 3, queued: 0, requestRate: 1.5, lastRequestTime: '2026-11-27T10:00:05.000Z' })],
    ]);
    expect(merged).toEqual([activity('a', { inFlight: 5, queued: 1, requestRate: 2, lastRequestTime: '2026-11-27T10:00:05.000Z' })]);
  });

  it('keeps a request time when only one worker saw a request', () => {
    const merged = mergeWorkerActivity([[activity('a', { lastRequestTime: null })], [activity('a', { lastRequestTime: '2026-11-27T10:00:00.000Z' })]]);
    expect(merged[0]!.lastRequestTime).toBe('2026-11-27T10:00:00.000Z');
  });

  it('keeps workloads one worker does not know yet, in first-seen order', () => {
    const merged = mergeWorkerActivity([[activity('a', {}), activity('b', { inFlight: 1 })], [activity('c', { queued: 4 })]]);
    expect(merged.map((workload) => workload.name)).toEqual(['a', 'b', 'c']);
    expect(merged[2]!.queued).toBe(4);
  });

  it('tells workloads apart by namespace', () => {
    const merged = mergeWorkerActivity([[activity('a', { inFlight: 1 })], [{ ...activity('a', { inFlight: 1 }), namespace: 'other' }]]);
    expect(merged).toHaveLength(2);
  });

  it('is empty without reports', () => {
    expect(mergeWorkerActivity([])).toEqual([]);
  });
});
