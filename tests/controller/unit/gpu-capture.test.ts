import { describe, expect, it } from 'vitest';
import { gpuCaptureFromManifest } from '../../../src/controller/agent/grpc-node-agent.ts';
import { capturedGpuBytes } from '../../../src/controller/agent/node-agent.ts';

const GPU_A = 'GPU-aaaaaaaa-1111-2222-3333-444444444444';
const GPU_B = 'GPU-bbbbbbbb-1111-2222-3333-444444444444';
const H100 = 'NVIDIA H100 80GB HBM3';

/** The `gpu` record as the agent writes it into the manifest (src/agent/gpu/record.ts). */
const manifest = (gpu: unknown) => JSON.stringify({ id: 'ns.ckpt', ...(gpu === undefined ? {} : { gpu }) });

describe('gpuCaptureFromManifest', () => {
  it('a checkpoint without CUDA processes has no GPU state', () => {
    expect(gpuCaptureFromManifest(manifest(undefined))).toBeUndefined();
    expect(capturedGpuBytes(undefined)).toBe(0);
  });

  it('sums the bytes per GPU over the processes, counts processes once, keeps model and driver', () => {
    const gpu = gpuCaptureFromManifest(
      manifest({
        driverVersion: '580.159.04',
        cudaDriverApiVersion: 13000,
        gpus: [
          { uuid: GPU_A, name: H100, memoryTotalBytes: 85_520_809_984 },
          { uuid: GPU_B, name: H100, memoryTotalBytes: 85_520_809_984 },
        ],
        processes: [
          { pid: 10, gpuUuid: GPU_A, usedBytes: 16_000_000_000 },
          { pid: 11, gpuUuid: GPU_A, usedBytes: 1_000_000_000 },
          { pid: 11, gpuUuid: GPU_B, usedBytes: 2_000_000_000 },
          { pid: 12, gpuUuid: null, usedBytes: null },
        ],
      }),
    );
    expect(gpu).toEqual({
      driverVersion: '580.159.04',
      driverApiVersion: 13000,
      processes: 3,
      devices: [
        { uuid: GPU_A, model: H100, memoryTotalBytes: 85_520_809_984, capturedBytes: 17_000_000_000 },
        { uuid: GPU_B, model: H100, memoryTotalBytes: 85_520_809_984, capturedBytes: 2_000_000_000 },
      ],
    });
    expect(capturedGpuBytes(gpu)).toBe(19_000_000_000);
  });

  it('leaves out an unknown driver API version (libcuda was not loadable when listing)', () => {
    const gpu = gpuCaptureFromManifest(
      manifest({ driverVersion: '580.159.04', cudaDriverApiVersion: null, gpus: [{ uuid: GPU_A, name: H100, memoryTotalBytes: 1 }], processes: [{ pid: 1, gpuUuid: null, usedBytes: null }] }),
    );
    expect(gpu).toEqual({ driverVersion: '580.159.04', processes: 1, devices: [{ uuid: GPU_A, model: H100, memoryTotalBytes: 1, capturedBytes: 0 }] });
  });

  it('an unreadable record (agent version skew) is an error that names the field', () => {
    expect(() => gpuCaptureFromManifest(manifest({ driverVersion: '580', gpus: [], processes: [] }))).toThrow(/unreadable gpu record: \/(cudaDriverApiVersion|gpus)/);
  });
});
