import { describe, expect, it } from 'vitest';
import type { CheckpointGpuStatus } from '../../../src/api/index.ts';
import type { NodeGpu, NodeGpuReport } from '../../../src/controller/agent/node-agent.ts';
import { decideGpuPlacement, gpuReadyCondition, gpuRetryDelayMs, type DeviceMapping, type GpuPlacement } from '../../../src/controller/gpu/placement.ts';

const GiB = 2 ** 30;
const H100 = 'NVIDIA H100 80GB HBM3';
const A100 = 'NVIDIA A100-SXM4-40GB';
const uuid = (n: number) => `GPU-0000000${n}-1111-2222-3333-444444444444`;

const captured = (...devices: [number, number][]): CheckpointGpuStatus => ({
  driverVersion: '580.159.04',
  driverApiVersion: 13000,
  processes: devices.length,
  devices: devices.map(([n, gib]) => ({ uuid: uuid(n), model: H100, memoryTotalBytes: 80 * GiB, capturedBytes: gib * GiB })),
});
const gpu = (n: number, freeGib: number, model = H100): NodeGpu => ({ uuid: uuid(n), model, memoryTotalBytes: 80 * GiB, memoryFreeBytes: freeGib * GiB });
const usable = (gpus: NodeGpu[], driverApiVersion: number | null = 13000): NodeGpuReport => ({
  usable: true,
  driverVersion: '580.159.04',
  driverApiVersion,
  supportedDriverApiVersions: [13000],
  gpus,
});

describe('decideGpuPlacement', () => {
  it.each<[string, CheckpointGpuStatus | undefined, NodeGpuReport | undefined, DeviceMapping[], object]>([
    ['no GPU state in the checkpoint: nothing to check', undefined, undefined, [], { kind: 'not-needed' }],
    ['a GPU record without devices: nothing to check', { ...captured(), devices: [] }, undefined, [], { kind: 'not-needed' }],
    ['the agent reports no GPUs: go ahead unchecked', captured([1, 16]), undefined, [], { kind: 'unchecked', reason: 'GpuNotReported' }],
    ['node without GPU or driver: wait with the agent error', captured([1, 16]), { usable: false, error: 'no NVIDIA kernel driver on this node' }, [], {
      kind: 'wait',
      reason: 'GpuUnavailable',
      message: expect.stringContaining('node n1 cannot restore GPU state (needs NVIDIA H100 80GB HBM3 with 16.0 GiB free): no NVIDIA kernel driver on this node'),
    }],
    ['driver API version the agent does not support', captured([1, 16]), usable([gpu(1, 80)], 12080), [], {
      kind: 'wait',
      reason: 'UnsupportedCudaDriver',
      message: expect.stringContaining('CUDA driver API version 12080 (driver 580.159.04); its agent supports 13000'),
    }],
    ['driver API version unknown (libcuda missing)', captured([1, 16]), usable([gpu(1, 80)], null), [], { kind: 'wait', reason: 'UnsupportedCudaDriver' }],
    ['the same GPU has room: restore onto it, no mapping', captured([1, 16]), usable([gpu(2, 79), gpu(1, 70)]), [], { kind: 'ready', reason: 'CompatibleGpu', deviceMapping: [] }],
    ['the same GPU is too full: the free one of the same model', captured([1, 16]), usable([gpu(1, 8), gpu(2, 40)]), [], {
      kind: 'ready',
      deviceMapping: [{ from: uuid(1), to: uuid(2) }],
    }],
    ['another node: the same-model GPU with the most free memory', captured([1, 16]), usable([gpu(5, 20), gpu(6, 60), gpu(7, 79, A100)]), [], {
      kind: 'ready',
      deviceMapping: [{ from: uuid(1), to: uuid(6) }],
    }],
    ['too small everywhere', captured([1, 16]), usable([gpu(1, 10), gpu(2, 15.9)]), [], {
      kind: 'wait',
      reason: 'NoCompatibleGpu',
      message: expect.stringContaining(`node n1 has no free ${H100} with 16.0 GiB for the checkpointed GPU ${uuid(1)} (node has: ${uuid(1)} ${H100} 10.0 GiB free of 80.0 GiB`),
    }],
    ['another model only', captured([1, 16]), usable([gpu(3, 40, A100)]), [], { kind: 'wait', reason: 'NoCompatibleGpu', message: expect.stringContaining(`${A100} 40.0 GiB free`) }],
    ['a node with an empty GPU list', captured([1, 16]), usable([]), [], { kind: 'wait', reason: 'NoCompatibleGpu', message: expect.stringContaining('node has: no GPU') }],
    ['two GPUs onto two distinct GPUs (largest capture placed first)', captured([1, 10], [2, 30]), usable([gpu(3, 35), gpu(4, 31)]), [], {
      kind: 'ready',
      deviceMapping: [{ from: uuid(2), to: uuid(3) }, { from: uuid(1), to: uuid(4) }],
    }],
    ['two GPUs but one fits', captured([1, 10], [2, 30]), usable([gpu(3, 79)]), [], { kind: 'wait', reason: 'NoCompatibleGpu', message: expect.stringContaining(`checkpointed GPU ${uuid(1)}`) }],
    ['a mapping onto an existing same-model GPU with room', captured([1, 16]), usable([gpu(2, 20)]), [{ from: uuid(1), to: uuid(2) }], {
      kind: 'ready',
      deviceMapping: [{ from: uuid(1), to: uuid(2) }],
    }],
    ['a mapping target that does not exist on the node', captured([1, 16]), usable([gpu(2, 20)]), [{ from: uuid(1), to: uuid(9) }], {
      kind: 'wait',
      reason: 'NoCompatibleGpu',
      message: expect.stringContaining(`gpu.deviceMapping target ${uuid(9)} on node n1 does not exist there`),
    }],
    ['a mapping target of another model', captured([1, 16]), usable([gpu(2, 40, A100)]), [{ from: uuid(1), to: uuid(2) }], {
      kind: 'wait',
      message: expect.stringContaining(`${uuid(2)} on node n1 is a ${A100}`),
    }],
    ['a mapping target without room', captured([1, 16]), usable([gpu(2, 4)]), [{ from: uuid(1), to: uuid(2) }], { kind: 'wait', message: expect.stringContaining('has 4.0 GiB free') }],
    ['a mapping that leaves a checkpointed GPU out', captured([1, 10], [2, 10]), usable([gpu(3, 79)]), [{ from: uuid(1), to: uuid(3) }], {
      kind: 'invalid',
      reason: 'InvalidDeviceMapping',
      message: expect.stringContaining(`does not map the checkpointed GPU ${uuid(2)}`),
    }],
    ['a mapping of a GPU the checkpoint did not use', captured([1, 10]), usable([gpu(3, 79)]), [{ from: uuid(1), to: uuid(3) }, { from: uuid(8), to: uuid(4) }], {
      kind: 'invalid',
      message: expect.stringContaining(`maps ${uuid(8)}, which the checkpoint did not use`),
    }],
  ])('%s', (_name, checkpointGpu, report, deviceMapping, expected) => {
    expect(decideGpuPlacement({ node: 'n1', captured: checkpointGpu, report, deviceMapping })).toMatchObject(expected);
  });
});

describe('gpuReadyCondition', () => {
  it.each<[GpuPlacement, object | undefined]>([
    [{ kind: 'not-needed' }, undefined],
    [{ kind: 'ready', reason: 'CompatibleGpu', message: 'm', deviceMapping: [] }, { type: 'GpuReady', status: 'True', reason: 'CompatibleGpu', message: 'm' }],
    [{ kind: 'unchecked', reason: 'GpuNotReported', message: 'm' }, { type: 'GpuReady', status: 'Unknown', reason: 'GpuNotReported' }],
    [{ kind: 'wait', reason: 'NoCompatibleGpu', message: 'm' }, { type: 'GpuReady', status: 'False', reason: 'NoCompatibleGpu' }],
    [{ kind: 'invalid', reason: 'InvalidDeviceMapping', message: 'm' }, { type: 'GpuReady', status: 'False', reason: 'InvalidDeviceMapping' }],
  ])('%j -> %j', (placement, condition) => {
    if (condition === undefined) expect(gpuReadyCondition(placement)).toBeUndefined();
    else expect(gpuReadyCondition(placement)).toMatchObject(condition);
  });
});

describe('gpuRetryDelayMs', () => {
  it.each([
    ['first wait', undefined, 2_000],
    ['waited 1 s: the minimum', 1_000, 2_000],
    ['waited 10 s: as long again', 10_000, 10_000],
    ['waited 10 min: the maximum', 600_000, 60_000],
  ])('%s', (_name, waitedMs, delay) => {
    const now = 1_000_000_000;
    expect(gpuRetryDelayMs(waitedMs === undefined ? undefined : now - waitedMs, now)).toBe(delay);
  });
});
