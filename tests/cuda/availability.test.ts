import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  checkGpuAvailability,
  parseKernelDriverVersion,
  parseNvidiaSmiCsv,
  parseNvmlProcessInfos,
  type GpuInfo,
  type GpuProbes,
} from '../../src/agent/cuda/availability.ts';
import { GpuUnavailableError } from '../../src/agent/cuda/errors.ts';

const h100: GpuInfo = {
  index: 0,
  uuid: 'GPU-5bcf2da4-e82b-fd92-4745-4e4abc6fbe88',
  name: 'NVIDIA H100 80GB HBM3',
  memoryTotalBytes: 81559 * 2 ** 20,
  memoryFreeBytes: 81076 * 2 ** 20,
  memoryUsedBytes: 483 * 2 ** 20,
};

/** TEST DOUBLE of the node's GPU sources (kernel driver file, NVML, nvidia-smi, libcuda); this machine has none. */
function probes(overrides: Partial<GpuProbes>): GpuProbes {
  const missing = (what: string) => () => {
    throw new Error(`${what} missing`);
  };
  return {
    readKernelDriverVersion: async () => '580.159.04',
    listGpusWithNvml: missing('libnvidia-ml.so.1'),
    listGpusWithNvidiaSmi: async () => missing('nvidia-smi')(),
    readCudaDriverApiVersion: missing('libcuda.so.1'),
    ...overrides,
  };
}

describe('parsers', () => {
  it('reads the kernel driver version of the proprietary and the open kernel module', () => {
    expect(parseKernelDriverVersion('NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 ...')).toBe('550.54.15');
    // As read on the H100 machine on 2026-11-27:
    expect(
      parseKernelDriverVersion('NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \nGCC version: ...'),
    ).toBe('580.159.04');
    expect(() => parseKernelDriverVersion('garbage')).toThrow(GpuUnavailableError);
  });

  it('reads nvidia-smi CSV and rejects lines it does not understand', () => {
    const csv = '0, GPU-5bcf2da4-e82b-fd92-4745-4e4abc6fbe88, NVIDIA H100 80GB HBM3, 81559, 81076, 483\n';
    expect(parseNvidiaSmiCsv(csv)).toEqual([h100]);
    expect(parseNvidiaSmiCsv('')).toEqual([]);
    expect(() => parseNvidiaSmiCsv('0, GPU-x, H100, [N/A], 1, 2')).toThrow(/unrecognised nvidia-smi line/);
  });
});

describe('parseNvmlProcessInfos', () => {
  it('decodes pid and used memory of each nvmlProcessInfo_t, "not available" as null', () => {
    const infos = Buffer.alloc(3 * 24);
    infos.writeUInt32LE(743, 0);
    infos.writeBigUInt64LE(17_514n * 2n ** 20n, 8);
    infos.writeUInt32LE(744, 24);
    infos.writeBigUInt64LE(0xffffffffffffffffn, 32);
    expect(parseNvmlProcessInfos(infos, 2)).toEqual([
      { pid: 743, usedBytes: 17_514 * 2 ** 20 },
      { pid: 744, usedBytes: null },
    ]);
  });
});

describe('checkGpuAvailability', () => {
  it('lists GPUs through NVML with the CUDA driver API version', async () => {
    const result = await checkGpuAvailability(probes({ listGpusWithNvml: () => [h100], readCudaDriverApiVersion: () => 13000 }));
    expect(result).toEqual({ driverVersion: '580.159.04', cudaDriverApiVersion: 13000, source: 'nvml', gpus: [h100] });
  });

  it('falls back to nvidia-smi when NVML cannot be used, and lists GPUs even without libcuda', async () => {
    const result = await checkGpuAvailability(probes({ listGpusWithNvidiaSmi: async () => [h100] }));
    expect(result).toMatchObject({ source: 'nvidia-smi', cudaDriverApiVersion: null, gpus: [h100] });
  });

  it('answers GpuUnavailableError with the reasons when there is no driver, no GPU list or no GPU', async () => {
    const noDriver = probes({ readKernelDriverVersion: async () => { throw new Error('ENOENT /proc/driver/nvidia/version'); } });
    await expect(checkGpuAvailability(noDriver)).rejects.toThrow(/no NVIDIA kernel driver on this node: ENOENT/);
    await expect(checkGpuAvailability(probes({}))).rejects.toThrow(/NVML: libnvidia-ml.so.1 missing; nvidia-smi: nvidia-smi missing/);
    await expect(checkGpuAvailability(probes({ listGpusWithNvml: () => [] }))).rejects.toThrow(/reports no GPU/);
  });

  it('on this real machine: resolves with GPUs where an NVIDIA driver is loaded, else GpuUnavailableError', async () => {
    if (existsSync('/proc/driver/nvidia/version')) {
      const result = await checkGpuAvailability();
      expect(result.gpus.length).toBeGreaterThan(0);
    } else {
      await expect(checkGpuAvailability()).rejects.toBeInstanceOf(GpuUnavailableError);
    }
  });
});
