import { existsSync } from 'node:fs';
import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import {
  CUcheckpointCheckpointArgs,
  CUcheckpointLockArgs,
  CUcheckpointRestoreArgs,
  CUcheckpointUnlockArgs,
  loadCudaDriver,
} from '../../src/agent/cuda/driver.ts';
import { GpuUnavailableError } from '../../src/agent/cuda/errors.ts';
import { gpuUuidBytes } from '../../src/agent/cuda/uuid.ts';

describe('CUDA 13.0 checkpoint argument layouts', () => {
  it('are 64 bytes each with the fields where the 13.0 headers put them', () => {
    for (const type of [CUcheckpointLockArgs, CUcheckpointCheckpointArgs, CUcheckpointUnlockArgs, CUcheckpointRestoreArgs]) {
      expect(koffi.sizeof(type)).toBe(64);
    }
    expect(koffi.offsetof(CUcheckpointLockArgs, 'timeoutMs')).toBe(0);
    expect(koffi.offsetof(CUcheckpointLockArgs, 'reserved1')).toBe(8);
    expect(koffi.offsetof(CUcheckpointRestoreArgs, 'gpuPairs')).toBe(0);
    expect(koffi.offsetof(CUcheckpointRestoreArgs, 'gpuPairsCount')).toBe(8);
    expect(koffi.offsetof(CUcheckpointRestoreArgs, 'reserved1')).toBe(56);
  });
});

describe('gpuUuidBytes', () => {
  it('turns the printed UUID into the 16 bytes of a CUuuid', () => {
    expect(Buffer.from(gpuUuidBytes('GPU-5bcf2da4-e82b-fd92-4745-4e4abc6fbe88')).toString('hex')).toBe('5bcf2da4e82bfd9247454e4abc6fbe88');
    expect(() => gpuUuidBytes('MIG-5bcf2da4')).toThrow(/invalid GPU UUID "MIG-5bcf2da4"/);
  });
});

describe('loadCudaDriver on this real machine', () => {
  it('answers GpuUnavailableError where libcuda is missing (and loads where it is present)', () => {
    const hasDriver = ['/usr/lib/x86_64-linux-gnu/libcuda.so.1', '/usr/lib64/libcuda.so.1'].some((path) => existsSync(path));
    if (hasDriver) expect(loadCudaDriver().driverApiVersion).toBeGreaterThan(0);
    else expect(() => loadCudaDriver()).toThrow(GpuUnavailableError);
  });
});
