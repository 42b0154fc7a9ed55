import { describe, expect, it } from 'vitest';
import { CudaSequenceError } from '../../src/agent/cuda/errors.ts';
import { lockAndCheckpoint, restoreAndUnlock } from '../../src/agent/cuda/sequences.ts';
import { FakeCudaDriver } from './fake-driver.ts';

const lockTimeoutMs = 5_000;
const pairs = [{ oldUuid: 'GPU-5bcf2da4-e82b-fd92-4745-4e4abc6fbe88', newUuid: 'GPU-00000000-0000-0000-0000-000000000001' }];

function statesOf(driver: FakeCudaDriver, pids: number[]) {
  return pids.map((pid) => driver.state(pid));
}

describe('lockAndCheckpoint (with the FakeCudaDriver test double)', () => {
  it('locks every process before checkpointing any, and leaves all checkpointed', async () => {
    const driver = new FakeCudaDriver({ 10: 'running', 11: 'running', 12: 'running' });
    await expect(lockAndCheckpoint(driver, [10, 11, 12], { lockTimeoutMs })).resolves.toEqual(expect.arrayContaining([10, 11, 12]));
    const mutating = driver.calls.filter((call) => !call.startsWith('get-state'));
    expect(mutating.slice(0, 3)).toEqual(['lock:10', 'lock:11', 'lock:12']);
    expect(mutating.slice(3).sort()).toEqual(['checkpoint:10', 'checkpoint:11', 'checkpoint:12']);
    expect(statesOf(driver, [10, 11, 12])).toEqual(['checkpointed', 'checkpointed', 'checkpointed']);
  });

  it('unlocks the processes it locked when a later lock fails (e.g. the timeout), and says so', async () => {
    const driver = new FakeCudaDriver({ 10: 'running', 11: 'running', 12: 'running' });
    driver.failNext('lock', 11, 'CUDA_ERROR_TIMEOUT');
    const err = await lockAndCheckpoint(driver, [10, 11, 12], { lockTimeoutMs }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CudaSequenceError);
    expect((err as Error).message).toMatch(/lock of pid 11 failed: CUDA_ERROR_TIMEOUT.*all processes are running again/);
    expect(statesOf(driver, [10, 11, 12])).toEqual(['running', 'running', 'running']);
    expect(driver.calls).not.toContain('lock:12');
    expect(driver.calls).toContain('unlock:10');
  });

  it('restores and unlocks the processes already checkpointed when one checkpoint fails', async () => {
    const driver = new FakeCudaDriver({ 10: 'running', 11: 'running', 12: 'running' });
    driver.failNext('checkpoint', 12, 'CUDA_ERROR_OUT_OF_MEMORY');
    const err = await lockAndCheckpoint(driver, [10, 11, 12], { lockTimeoutMs }).catch((e: unknown) => e);
    expect((err as CudaSequenceError).rollbackFailures).toEqual([]);
    expect((err as Error).message).toMatch(/checkpoint of pid 12 failed: CUDA_ERROR_OUT_OF_MEMORY/);
    expect(statesOf(driver, [10, 11, 12])).toEqual(['running', 'running', 'running']);
    expect(driver.calls).toEqual(expect.arrayContaining(['restore:10', 'unlock:10', 'restore:11', 'unlock:11', 'unlock:12']));
  });

  it('runs beforeCheckpoint after every lock and before any checkpoint; beforeRollback runs before its failure is rolled back', async () => {
    const driver = new FakeCudaDriver({ 10: 'running', 11: 'running' });
    const seen: string[] = [];
    await lockAndCheckpoint(driver, [10, 11], { lockTimeoutMs: 1_000, beforeCheckpoint: async (pids) => void seen.push(`before checkpoint of ${pids.join(',')} after ${driver.calls.join(',')}`) });
    expect(seen).toEqual(['before checkpoint of 10,11 after lock:10,lock:11']);

    const failing = new FakeCudaDriver({ 10: 'running' });
    const events: string[] = [];
    const stopFailed = new Error('could not stop the threads');
    const err = await lockAndCheckpoint(failing, [10], {
      lockTimeoutMs: 1_000,
      beforeCheckpoint: async () => Promise.reject(stopFailed),
      beforeRollback: async () => void events.push(`let go with ${failing.state(10)}`),
    }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/could not stop the threads/);
    expect(events).toEqual(['let go with locked']);
    expect(failing.state(10)).toBe('running');
  });

  it('reports what it could not roll back instead of hiding it', async () => {
    const driver = new FakeCudaDriver({ 10: 'running', 11: 'running' });
    driver.failNext('checkpoint', 11);
    driver.failNext('restore', 10, 'CUDA_ERROR_ILLEGAL_STATE');
    const err = (await lockAndCheckpoint(driver, [10, 11], { lockTimeoutMs }).catch((e: unknown) => e)) as CudaSequenceError;
    expect(err.rollbackFailures.map((e) => e.message)).toEqual([expect.stringMatching(/restore of pid 10/)]);
    expect(err.message).toMatch(/rollback incomplete/);
    expect(statesOf(driver, [10, 11])).toEqual(['checkpointed', 'running']);
  });

  it('leaves already checkpointed processes alone and refuses locked ones without touching anything', async () => {
    const released = new FakeCudaDriver({ 10: 'checkpointed', 11: 'running' });
    await expect(lockAndCheckpoint(released, [10, 11], { lockTimeoutMs })).resolves.toEqual([11]);
    expect(released.calls).toEqual(['lock:11', 'checkpoint:11']);

    const lockedElsewhere = new FakeCudaDriver({ 10: 'running', 11: 'locked' });
    await expect(lockAndCheckpoint(lockedElsewhere, [10, 11], { lockTimeoutMs })).rejects.toThrow(/not running: 11=locked.*nothing was changed/);
    expect(lockedElsewhere.calls).toEqual([]);
  });

  it('fails for a pid the driver does not know, before changing anything', async () => {
    const driver = new FakeCudaDriver({ 10: 'running' });
    await expect(lockAndCheckpoint(driver, [10, 99], { lockTimeoutMs })).rejects.toThrow(/get-state of pid 99 failed: CUDA_ERROR_NOT_INITIALIZED/);
    expect(driver.calls).toEqual([]);
  });
});

describe('restoreAndUnlock (with the FakeCudaDriver test double)', () => {
  it('restores every process (with the UUID pairs) before unlocking any, and verifies they run', async () => {
    const driver = new FakeCudaDriver({ 10: 'checkpointed', 11: 'checkpointed' });
    await expect(restoreAndUnlock(driver, [10, 11], { gpuPairs: pairs })).resolves.toEqual(expect.arrayContaining([10, 11]));
    expect(driver.calls.slice(0, 2).sort()).toEqual(['restore:10', 'restore:11']);
    expect(driver.calls.slice(2)).toEqual(['unlock:10', 'unlock:11']);
    expect(driver.restorePairs.get(10)).toEqual(pairs);
    expect(statesOf(driver, [10, 11])).toEqual(['running', 'running']);
  });

  it('checkpoints the restored ones again when one restore fails, so the set stays released and can be retried', async () => {
    const driver = new FakeCudaDriver({ 10: 'checkpointed', 11: 'checkpointed' });
    driver.failNext('restore', 11, 'CUDA_ERROR_OUT_OF_MEMORY');
    await expect(restoreAndUnlock(driver, [10, 11])).rejects.toThrow(/CUDA_ERROR_OUT_OF_MEMORY.*all processes are checkpointed again/);
    expect(statesOf(driver, [10, 11])).toEqual(['checkpointed', 'checkpointed']);
    expect(driver.calls).not.toContain('unlock:10');

    await restoreAndUnlock(driver, [10, 11]);
    expect(statesOf(driver, [10, 11])).toEqual(['running', 'running']);
  });

  it('unlocks the others when one unlock fails, and a retry unlocks the rest', async () => {
    const driver = new FakeCudaDriver({ 10: 'checkpointed', 11: 'checkpointed' });
    driver.failNext('unlock', 10);
    await expect(restoreAndUnlock(driver, [10, 11])).rejects.toThrow(/unlock of pid 10 failed.*unlocked 11/);
    expect(statesOf(driver, [10, 11])).toEqual(['locked', 'running']);

    await expect(restoreAndUnlock(driver, [10, 11])).resolves.toEqual([]);
    expect(statesOf(driver, [10, 11])).toEqual(['running', 'running']);
  });

  it('waits for beforeUnlock after every restore; its failure is thrown as it is and leaves every process locked', async () => {
    const driver = new FakeCudaDriver({ 10: 'checkpointed', 11: 'checkpointed' });
    const corrupt = new Error('host copy chunk 3 differs');
    await expect(restoreAndUnlock(driver, [10, 11], { beforeUnlock: async () => Promise.reject(corrupt) })).rejects.toBe(corrupt);
    expect(statesOf(driver, [10, 11])).toEqual(['locked', 'locked']);
    expect(driver.calls.filter((call) => call.startsWith('unlock'))).toEqual([]);

    const order: string[] = [];
    const driverB = new FakeCudaDriver({ 12: 'checkpointed' });
    await restoreAndUnlock(driverB, [12], { beforeUnlock: async () => order.push(`gate after ${driverB.calls.join(',')}`) });
    expect(order).toEqual(['gate after restore:12']);
    expect(statesOf(driverB, [12])).toEqual(['running']);
  });

  it('refuses a set with a failed CUDA state without touching it', async () => {
    const driver = new FakeCudaDriver({ 10: 'checkpointed', 11: 'failed' });
    await expect(restoreAndUnlock(driver, [10, 11])).rejects.toThrow(/CUDA state failed in pids 11/);
    expect(driver.calls).toEqual([]);
  });
});
