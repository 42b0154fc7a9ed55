import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CudaCheckpointApi } from '../../src/agent/cuda/api.ts';
import { loadCudaDriver } from '../../src/agent/cuda/driver.ts';
import { CudaDriverError, UnsupportedCudaDriverError } from '../../src/agent/cuda/errors.ts';

/**
 * The real koffi bindings against fake-libcuda.c, a TEST DOUBLE of libcuda.so.1 compiled here (no NVIDIA
 * driver on CI): it records the argument structs, so the marshalling of the 13.0 layouts is checked byte by byte.
 */
describe('koffi bindings against the fake libcuda (test double)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kyb-fake-libcuda-'));
  const libraryPath = join(dir, 'libcuda.so.1');
  let api: CudaCheckpointApi;
  let fake: {
    lastArgs(): Buffer;
    lastPairs(): { count: number; bytes: Buffer };
    lastPid(): number;
    initCalls(): number;
    setDriverVersion(version: number): void;
  };

  beforeAll(() => {
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', libraryPath, join(import.meta.dirname, 'fake-libcuda.c')]);
    const lib = koffi.load(libraryPath);
    const lastArgs = lib.func('void fake_last_args(_Out_ uint8_t *out)');
    const lastPairs = lib.func('unsigned int fake_last_pairs(_Out_ uint8_t *out)');
    const lastPid = lib.func('int fake_last_pid()');
    const initCalls = lib.func('int fake_init_calls()');
    const setDriverVersion = lib.func('void fake_set_driver_version(int version)');
    fake = {
      lastArgs: () => {
        const out = Buffer.alloc(64);
        lastArgs(out);
        return out;
      },
      lastPairs: () => {
        const bytes = Buffer.alloc(128);
        const count = lastPairs(bytes) as number;
        return { count, bytes };
      },
      lastPid: () => lastPid() as number,
      initCalls: () => initCalls() as number,
      setDriverVersion: (version) => setDriverVersion(version),
    };
    api = loadCudaDriver({ libraryPath });
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('initialises CUDA once and reports the driver API version', () => {
    expect(api.driverApiVersion).toBe(13000);
    expect(fake.initCalls()).toBe(1);
  });

  it('passes the lock timeout in the first 4 bytes and zeroes the rest of the 64-byte struct', async () => {
    await api.lock(4242, 0x01020304);
    expect(fake.lastPid()).toBe(4242);
    const expected = Buffer.alloc(64);
    expected.writeUInt32LE(0x01020304, 0);
    expect(fake.lastArgs()).toEqual(expected);
  });

  it('passes all-zero checkpoint and unlock structs', async () => {
    await api.checkpoint(4243);
    expect(fake.lastArgs()).toEqual(Buffer.alloc(64));
    await api.unlock(4244);
    expect(fake.lastPid()).toBe(4244);
    expect(fake.lastArgs()).toEqual(Buffer.alloc(64));
  });

  it('passes the GPU UUID pairs through a pointer with their count, reserved bytes zero', async () => {
    const pairs = [
      { oldUuid: 'GPU-5bcf2da4-e82b-fd92-4745-4e4abc6fbe88', newUuid: 'GPU-00112233-4455-6677-8899-aabbccddeeff' },
      { oldUuid: 'GPU-ffffffff-0000-0000-0000-000000000001', newUuid: 'GPU-ffffffff-0000-0000-0000-000000000002' },
    ];
    await api.restore(4245, pairs);
    const { count, bytes } = fake.lastPairs();
    expect(count).toBe(2);
    expect(bytes.subarray(0, 64).toString('hex')).toBe(
      '5bcf2da4e82bfd9247454e4abc6fbe88' + '00112233445566778899aabbccddeeff' +
        'ffffffff000000000000000000000001' + 'ffffffff000000000000000000000002',
    );
    expect(fake.lastArgs().subarray(12)).toEqual(Buffer.alloc(52));

    await api.restore(4246);
    expect(fake.lastPairs().count).toBe(0);
    expect(fake.lastArgs()).toEqual(Buffer.alloc(64));
  });

  it('reads states and restore thread ids, and names driver errors with the step and pid', async () => {
    await expect(api.getState(4247)).resolves.toBe('checkpointed');
    await expect(api.getState(666)).resolves.toBe('failed');
    await expect(api.getRestoreThreadId(4247)).resolves.toBe(4254);
    const err = await api.lock(666, 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CudaDriverError);
    expect(err).toMatchObject({ step: 'lock', pid: 666, result: 401, errorName: 'CUDA_ERROR_ILLEGAL_STATE' });
    expect((err as Error).message).toBe(
      'CUDA lock of pid 666 failed: CUDA_ERROR_ILLEGAL_STATE (401): operation not permitted when the target is in this state',
    );
  });

  it('refuses a driver API version whose layouts are not verified, before calling cuInit', () => {
    fake.setDriverVersion(13030);
    try {
      expect(() => loadCudaDriver({ libraryPath })).toThrow(UnsupportedCudaDriverError);
      expect(() => loadCudaDriver({ libraryPath })).toThrow(/version 13030 is not supported.*verified only for 13000/);
      expect(fake.initCalls()).toBe(1);
    } finally {
      fake.setDriverVersion(13000);
    }
  });
});
