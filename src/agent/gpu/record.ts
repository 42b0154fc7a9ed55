import { Type, type Static } from '@sinclair/typebox';
import type { GpuUuidPair } from '../cuda/api.ts';
import type { GpuAvailability, GpuInfo } from '../cuda/availability.ts';
import { GpuUnavailableError } from '../cuda/errors.ts';
import { InvalidInputError } from '../../lib/errors.ts';

/**
 * The host copy of one CUDA process's GPU memory, kept beside the CRIU image (src/agent/gpu/host-copy.ts):
 * the process by its namespace pid (CRIU restores it), the image file and the address ranges it holds, in
 * file order.
 */
export const HostCopySchema = Type.Object({
  nsPid: Type.Integer({ minimum: 1 }),
  file: Type.String({ minLength: 1 }),
  ranges: Type.Array(Type.Object({ start: Type.Integer({ minimum: 0 }), length: Type.Integer({ minimum: 1 }) }), { minItems: 1 }),
});

/** What a GPU checkpoint recorded in the artifact manifest: the GPUs the workload used and its processes' memory. */
export const GpuRecordSchema = Type.Object({
  driverVersion: Type.String(),
  cudaDriverApiVersion: Type.Union([Type.Integer(), Type.Null()]),
  gpus: Type.Array(Type.Object({ uuid: Type.String({ pattern: '^GPU-' }), name: Type.String(), memoryTotalBytes: Type.Integer({ minimum: 0 }) }), { minItems: 1 }),
  /** One row per CUDA process and GPU (NVML's view); gpuUuid/usedBytes null where NVML could not tell. */
  processes: Type.Array(
    Type.Object({ pid: Type.Integer({ minimum: 1 }), gpuUuid: Type.Union([Type.String(), Type.Null()]), usedBytes: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]) }),
    { minItems: 1 },
  ),
  /** present when the agent kept the host copy of GPU memory out of CRIU's image (schema v3) */
  hostCopies: Type.Optional(Type.Array(HostCopySchema, { minItems: 1 })),
});

export type GpuRecord = Static<typeof GpuRecordSchema>;

/**
 * The record of a GPU checkpoint, taken before the CUDA checkpoint (afterwards NVML no longer lists the
 * processes). The GPUs are those NVML shows the processes on; where it shows none of them (some
 * container setups), every GPU of the node is recorded, since any may hold their state.
 */
export function gpuRecord(availability: GpuAvailability, cudaPids: readonly number[]): GpuRecord {
  const processes: GpuRecord['processes'] = [];
  const used = new Set<string>();
  for (const pid of cudaPids) {
    const seen = availability.gpus.flatMap((gpu) => (gpu.processes ?? []).filter((p) => p.pid === pid).map((p) => ({ gpu, usedBytes: p.usedBytes })));
    for (const { gpu } of seen) used.add(gpu.uuid);
    if (seen.length === 0) processes.push({ pid, gpuUuid: null, usedBytes: null });
    else processes.push(...seen.map(({ gpu, usedBytes }) => ({ pid, gpuUuid: gpu.uuid, usedBytes })));
  }
  const gpus = availability.gpus.filter((gpu) => used.size === 0 || used.has(gpu.uuid));
  return {
    driverVersion: availability.driverVersion,
    cudaDriverApiVersion: availability.cudaDriverApiVersion,
    gpus: gpus.map((gpu) => ({ uuid: gpu.uuid, name: gpu.name, memoryTotalBytes: gpu.memoryTotalBytes })),
    processes,
  };
}

/** Bytes the checkpointed processes held on each recorded GPU (unknown rows count as 0). */
function recordedUseByGpu(record: GpuRecord): Map<string, number> {
  const use = new Map<string, number>();
  for (const row of record.processes) if (row.gpuUuid) use.set(row.gpuUuid, (use.get(row.gpuUuid) ?? 0) + (row.usedBytes ?? 0));
  return use;
}

/**
 * Which GPUs a restore puts the checkpointed state on. `requested` pairs (from the caller) must name every
 * recorded GPU and a GPU of this node. Without them: the same GPUs when this node has them all, else
 * each recorded GPU is mapped onto a distinct GPU of the same model with room for what it held (most free
 * memory first). Returns undefined for "no mapping" (restore onto the recorded GPUs).
 */
export function gpuPairsFor(record: GpuRecord, nodeGpus: readonly GpuInfo[], requested: readonly GpuUuidPair[] = []): GpuUuidPair[] | undefined {
  const byUuid = new Map(nodeGpus.map((gpu) => [gpu.uuid, gpu]));
  if (requested.length > 0) {
    for (const recorded of record.gpus) {
      const pair = requested.find((p) => p.oldUuid === recorded.uuid);
      if (!pair) throw new InvalidInputError(`gpu_pairs does not name the checkpointed GPU ${recorded.uuid}`, { gpu: recorded.uuid });
      const target = byUuid.get(pair.newUuid);
      if (!target) throw new InvalidInputError(`gpu_pairs names GPU ${pair.newUuid}, which this node does not have`, { gpu: pair.newUuid });
      if (target.name !== recorded.name) {
        throw new InvalidInputError(`GPU ${pair.newUuid} is a ${target.name}, the checkpoint needs a ${recorded.name}`, { gpu: pair.newUuid });
      }
    }
    return [...requested];
  }
  if (record.gpus.every((gpu) => byUuid.has(gpu.uuid))) return undefined;
  const use = recordedUseByGpu(record);
  const free = [...nodeGpus].sort((a, b) => b.memoryFreeBytes - a.memoryFreeBytes);
  return record.gpus.map((recorded) => {
    const index = free.findIndex((gpu) => gpu.name === recorded.name && gpu.memoryFreeBytes >= (use.get(recorded.uuid) ?? 0));
    if (index < 0) {
      throw new GpuUnavailableError(`no free ${recorded.name} on this node for the checkpointed GPU ${recorded.uuid}`, {
        needBytes: use.get(recorded.uuid) ?? 0,
        gpus: nodeGpus.map((gpu) => `${gpu.uuid} ${gpu.name} free ${gpu.memoryFreeBytes}`),
      });
    }
    const [target] = free.splice(index, 1);
    return { oldUuid: recorded.uuid, newUuid: target!.uuid };
  });
}
