/** The CUDA driver's view of a process (CUprocessState). */
export type CudaProcessState = 'running' | 'locked' | 'checkpointed' | 'failed';

/** Restore onto another GPU of the same chip type: the checkpointed GPU's UUID and the one to restore onto. */
export interface GpuUuidPair {
  /** "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" as NVML and nvidia-smi print it. */
  oldUuid: string;
  newUuid: string;
}

/**
 * The CUDA driver's process checkpoint API (cuCheckpointProcess*), called from outside the target
 * process by pid. The real implementation is `loadCudaDriver()`; the sequences only see this interface.
 * Every method rejects with `CudaDriverError` naming the step and pid.
 */
export interface CudaCheckpointApi {
  readonly driverApiVersion: number;
  /** RUNNING -> LOCKED; blocks further CUDA calls of the process. After `timeoutMs` (0 = none) the process stays RUNNING. */
  lock(pid: number, timeoutMs: number): Promise<void>;
  /** LOCKED -> CHECKPOINTED: GPU memory copied to the process's host memory, GPU resources released. */
  checkpoint(pid: number): Promise<void>;
  /** CHECKPOINTED -> LOCKED; `gpuPairs` must name every checkpointed GPU when given. */
  restore(pid: number, gpuPairs?: readonly GpuUuidPair[]): Promise<void>;
  /** LOCKED -> RUNNING. */
  unlock(pid: number): Promise<void>;
  getState(pid: number): Promise<CudaProcessState>;
  getRestoreThreadId(pid: number): Promise<number>;
}
