import { errorMessage } from '../../lib/errors.ts';
import type { GpuAvailability } from '../cuda/availability.ts';
import { VERIFIED_DRIVER_API_VERSIONS } from '../cuda/driver.ts';
import type { GpuSupport } from './support.ts';

/**
 * What GetStatus says about the node's GPUs: usable with what the GPU steps would see now, or not usable
 * with why. The driver API versions this agent's checkpoint code supports go with both, so a client can
 * tell a node with an unsupported driver from one without GPUs.
 */
export type NodeGpuStatus = { supportedDriverApiVersions: readonly number[] } & (
  | { usable: true; availability: GpuAvailability }
  | { usable: false; error: string }
);

/**
 * Asks the same availability check the GPU steps use (NVML/nvidia-smi and libcuda are loaded only by that
 * call). Never rejects: a node without a GPU answers at once, since a missing kernel driver file ends the
 * check before any library is loaded.
 */
export async function nodeGpuStatus(gpu: GpuSupport): Promise<NodeGpuStatus> {
  const supportedDriverApiVersions = VERIFIED_DRIVER_API_VERSIONS;
  try {
    return { supportedDriverApiVersions, usable: true, availability: await gpu.availability() };
  } catch (err) {
    return { supportedDriverApiVersions, usable: false, error: errorMessage(err) };
  }
}
