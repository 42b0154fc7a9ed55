import type { CudaCheckpointApi } from '../cuda/api.ts';
import { checkGpuAvailability, type GpuAvailability } from '../cuda/availability.ts';
import { loadCudaDriver } from '../cuda/driver.ts';

/** What the agent's GPU steps need from the node; tests pass their own (a fake driver, fixture dirs). */
export interface GpuSupport {
  /** The driver's checkpoint API; rejects with GpuUnavailableError on a node without a usable GPU/driver. */
  driver(): Promise<CudaCheckpointApi>;
  /** GPUs with free memory and per-process use; rejects with GpuUnavailableError as above. */
  availability(): Promise<GpuAvailability>;
  /** How long to wait for a process's running CUDA work before a checkpoint rolls back. */
  lockTimeoutMs: number;
  /** /proc, where the container's processes and the cgroup mounts are found. */
  procRoot: string;
  /**
   * Who writes the host copy of GPU memory that a CUDA checkpoint leaves in the processes: the agent,
   * beside the CRIU image on all cores ('agent', docs/gpu.md), or CRIU, within its image ('criu').
   */
  hostCopy: HostCopyWriter;
}

export type HostCopyWriter = 'agent' | 'criu';
export const HOST_COPY_WRITERS: readonly HostCopyWriter[] = ['agent', 'criu'];
export const DEFAULT_GPU_LOCK_TIMEOUT_MS = 10_000;

/**
 * The node's own driver, loaded on first use: a node without a GPU starts and serves the agent as
 * usual and answers only GPU requests with the error.
 */
export function systemGpuSupport({ lockTimeoutMs = DEFAULT_GPU_LOCK_TIMEOUT_MS, hostCopy = 'agent' }: { lockTimeoutMs?: number; hostCopy?: HostCopyWriter } = {}): GpuSupport {
  let driver: Promise<CudaCheckpointApi> | undefined;
  return {
    driver() {
      // A failed load is not cached: a driver installed later is picked up by the next request.
      driver ??= (async () => loadCudaDriver())().catch((err: unknown) => {
        driver = undefined;
        throw err;
      });
      return driver;
    },
    availability: () => checkGpuAvailability(),
    lockTimeoutMs,
    procRoot: '/proc',
    hostCopy,
  };
}

let nodeGpu: GpuSupport | undefined;

/** The context's GPU support, or the node's own (one per agent process) when the context names none. */
export function gpuSupportOf(ctx: { gpu?: GpuSupport }): GpuSupport {
  if (ctx.gpu) return ctx.gpu;
  nodeGpu ??= systemGpuSupport();
  return nodeGpu;
}
