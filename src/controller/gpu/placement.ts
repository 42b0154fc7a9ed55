/**
 * The pure GPU preflight of a restore: can the target node take the GPU state a checkpoint captured?
 * Same model, enough free memory on distinct GPUs, a CUDA driver API version the node's agent supports,
 * and (when the restore names one) a device mapping whose targets exist. Decided before the agent's
 * Restore is called, so an incompatible node costs no CRIU restore.
 */
import type { CheckpointGpuStatus, ConditionInput } from '../../api/index.ts';
import type { NodeGpu, NodeGpuReport } from '../agent/node-agent.ts';

export interface DeviceMapping {
  from: string;
  to: string;
}

export interface GpuPlacementInput {
  node: string;
  /** What the checkpoint captured; undefined or no devices = no GPU state. */
  captured: CheckpointGpuStatus | undefined;
  /** The node agent's report; undefined = the agent does not report GPUs. */
  report: NodeGpuReport | undefined;
  /** The restore's gpu.deviceMapping; empty = the controller picks the GPUs. */
  deviceMapping: readonly DeviceMapping[];
}

/** Reasons of a False GpuReady condition: the restore waits (a GPU may free up, a driver may be fixed). */
export type GpuWaitReason = 'NoCompatibleGpu' | 'GpuUnavailable' | 'UnsupportedCudaDriver';

export type GpuPlacement =
  /** The checkpoint has no GPU state: nothing to check. */
  | { kind: 'not-needed' }
  /** The agent does not report its GPUs: the restore goes ahead and the agent's own check decides. */
  | { kind: 'unchecked'; reason: 'GpuNotReported'; message: string }
  | { kind: 'wait'; reason: GpuWaitReason; message: string }
  /** The restore's deviceMapping contradicts the checkpoint: it can never succeed (the spec is immutable). */
  | { kind: 'invalid'; reason: 'InvalidDeviceMapping'; message: string }
  /** Compatible; `deviceMapping` is what to pass to the agent (empty = restore onto the recorded GPUs). */
  | { kind: 'ready'; reason: 'CompatibleGpu'; message: string; deviceMapping: DeviceMapping[] };

/** Bounds of the GpuReady retry delay: it grows with the time already waited. */
export const GPU_RETRY_MIN_MS = 2_000;
export const GPU_RETRY_MAX_MS = 60_000;

export function decideGpuPlacement({ node, captured, report, deviceMapping }: GpuPlacementInput): GpuPlacement {
  if (!captured || captured.devices.length === 0) return { kind: 'not-needed' };
  const needs = captured.devices.map((d) => `${d.model} with ${formatBytes(d.capturedBytes)} free`).join(' and ');
  if (!report) {
    return { kind: 'unchecked', reason: 'GpuNotReported', message: `the agent on ${node} does not report its GPUs: restoring without a preflight (needs ${needs})` };
  }
  if (!report.usable) {
    return { kind: 'wait', reason: 'GpuUnavailable', message: `node ${node} cannot restore GPU state (needs ${needs}): ${report.error}` };
  }
  const apiVersion = report.driverApiVersion;
  if (apiVersion === null || !report.supportedDriverApiVersions.includes(apiVersion)) {
    return {
      kind: 'wait',
      reason: 'UnsupportedCudaDriver',
      message:
        `node ${node} has CUDA driver API version ${apiVersion ?? 'unknown'} (driver ${report.driverVersion}); its agent supports ` +
        `${report.supportedDriverApiVersions.join(', ') || 'none'} (the checkpoint was taken with ${captured.driverApiVersion ?? 'unknown'})`,
    };
  }
  return deviceMapping.length > 0 ? checkMapping(node, captured, report.gpus, deviceMapping) : pickGpus(node, captured, report.gpus);
}

/** The user's mapping: every captured GPU mapped, onto a GPU of the node of the same model with room. */
function checkMapping(node: string, captured: CheckpointGpuStatus, gpus: readonly NodeGpu[], mapping: readonly DeviceMapping[]): GpuPlacement {
  const capturedUuids = new Set(captured.devices.map((d) => d.uuid));
  const stray = mapping.find((m) => !capturedUuids.has(m.from));
  if (stray) return { kind: 'invalid', reason: 'InvalidDeviceMapping', message: `gpu.deviceMapping maps ${stray.from}, which the checkpoint did not use (it used ${[...capturedUuids].join(', ')})` };
  for (const device of captured.devices) {
    const pair = mapping.find((m) => m.from === device.uuid);
    if (!pair) return { kind: 'invalid', reason: 'InvalidDeviceMapping', message: `gpu.deviceMapping does not map the checkpointed GPU ${device.uuid} (${device.model})` };
    const target = gpus.find((gpu) => gpu.uuid === pair.to);
    const problem = !target
      ? 'does not exist there'
      : target.model !== device.model
        ? `is a ${target.model}`
        : target.memoryFreeBytes < device.capturedBytes
          ? `has ${formatBytes(target.memoryFreeBytes)} free`
          : undefined;
    if (problem) {
      return {
        kind: 'wait',
        reason: 'NoCompatibleGpu',
        message: `gpu.deviceMapping target ${pair.to} on node ${node} ${problem}; the checkpoint needs a ${device.model} with ${formatBytes(device.capturedBytes)} free (node has: ${describeGpus(gpus)})`,
      };
    }
  }
  return { kind: 'ready', reason: 'CompatibleGpu', message: `restoring onto ${mapping.map((m) => `${m.to} (for ${m.from})`).join(', ')} on ${node}`, deviceMapping: [...mapping] };
}

/**
 * Each captured GPU onto a distinct GPU of the node of the same model with room for what it held: the
 * same GPU when it has room, else the one with the most free memory. Largest captures are placed first.
 */
function pickGpus(node: string, captured: CheckpointGpuStatus, gpus: readonly NodeGpu[]): GpuPlacement {
  const taken = new Set<string>();
  const pairs: DeviceMapping[] = [];
  for (const device of [...captured.devices].sort((a, b) => b.capturedBytes - a.capturedBytes)) {
    const fits = gpus.filter((gpu) => !taken.has(gpu.uuid) && gpu.model === device.model && gpu.memoryFreeBytes >= device.capturedBytes);
    const target = fits.find((gpu) => gpu.uuid === device.uuid) ?? [...fits].sort((a, b) => b.memoryFreeBytes - a.memoryFreeBytes)[0];
    if (!target) {
      return {
        kind: 'wait',
        reason: 'NoCompatibleGpu',
        message: `node ${node} has no free ${device.model} with ${formatBytes(device.capturedBytes)} for the checkpointed GPU ${device.uuid} (node has: ${describeGpus(gpus)})`,
      };
    }
    taken.add(target.uuid);
    pairs.push({ from: device.uuid, to: target.uuid });
  }
  const sameGpus = pairs.every((pair) => pair.from === pair.to);
  return {
    kind: 'ready',
    reason: 'CompatibleGpu',
    message: sameGpus ? `the checkpointed GPUs are free on ${node}` : `restoring onto ${pairs.map((p) => `${p.to} (for ${p.from})`).join(', ')} on ${node}`,
    // The agent restores onto the recorded GPUs without a mapping; with one it must name every recorded GPU.
    deviceMapping: sameGpus ? [] : pairs,
  };
}

/**
 * How long a restore waiting for a GPU waits before asking again: as long as it has waited so far
 * (so the checks thin out exponentially), within GPU_RETRY_MIN_MS..GPU_RETRY_MAX_MS.
 */
export function gpuRetryDelayMs(waitingSinceMs: number | undefined, nowMs: number): number {
  const waited = waitingSinceMs === undefined ? 0 : nowMs - waitingSinceMs;
  return Math.min(GPU_RETRY_MAX_MS, Math.max(GPU_RETRY_MIN_MS, waited));
}

function describeGpus(gpus: readonly NodeGpu[]): string {
  if (gpus.length === 0) return 'no GPU';
  return gpus.map((gpu) => `${gpu.uuid} ${gpu.model} ${formatBytes(gpu.memoryFreeBytes)} free of ${formatBytes(gpu.memoryTotalBytes)}`).join(', ');
}

function formatBytes(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** The GpuReady condition that reports a placement decision; undefined when the checkpoint has no GPU state. */
export function gpuReadyCondition(placement: GpuPlacement): ConditionInput | undefined {
  switch (placement.kind) {
    case 'not-needed':
      return undefined;
    case 'ready':
      return { type: 'GpuReady', status: 'True', reason: placement.reason, message: placement.message };
    case 'unchecked':
      return { type: 'GpuReady', status: 'Unknown', reason: placement.reason, message: placement.message };
    case 'wait':
    case 'invalid':
      return { type: 'GpuReady', status: 'False', reason: placement.reason, message: placement.message };
  }
}
