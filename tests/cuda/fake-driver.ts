import type { CudaCheckpointApi, CudaProcessState, GpuUuidPair } from '../../src/agent/cuda/api.ts';
import type { GpuInfo } from '../../src/agent/cuda/availability.ts';
import { CudaDriverError, type CudaStep } from '../../src/agent/cuda/errors.ts';
import { systemGpuSupport, type GpuSupport } from '../../src/agent/gpu/support.ts';

export const TEST_GPU_UUID = 'GPU-00000000-0000-0000-0000-000000000001';

/**
 * The node's GPU support with a test double for the driver and one 16 GiB "Test GPU" with 8 GiB free
 * (`processes`: what NVML would list on it): the agent's GPU steps on a machine without a GPU.
 */
export function testGpuSupport(driver: CudaCheckpointApi, processes?: GpuInfo['processes']): GpuSupport {
  return {
    ...systemGpuSupport(),
    driver: async () => driver,
    availability: async () => ({
      driverVersion: 'test',
      cudaDriverApiVersion: 13000,
      source: 'nvml',
      gpus: [{ index: 0, uuid: TEST_GPU_UUID, name: 'Test GPU', memoryTotalBytes: 2 ** 34, memoryFreeBytes: 2 ** 33, memoryUsedBytes: 2 ** 33, ...(processes ? { processes } : {}) }],
    }),
  };
}

/**
 * TEST DOUBLE of the CUDA driver's checkpoint API (the real driver is not on CI machines): a state
 * machine per pid with the driver's documented transitions (illegal ones answer CUDA_ERROR_ILLEGAL_STATE),
 * a log of every call, and failures injected per step and pid.
 */
export class FakeCudaDriver implements CudaCheckpointApi {
  readonly driverApiVersion = 13000;
  readonly calls: string[] = [];
  readonly restorePairs = new Map<number, readonly GpuUuidPair[] | undefined>();
  private readonly states = new Map<number, CudaProcessState>();
  private readonly failures = new Map<string, string>();

  constructor(processes: Record<number, CudaProcessState>) {
    for (const [pid, state] of Object.entries(processes)) this.states.set(Number(pid), state);
  }

  /** The next `step` call for `pid` fails with `errorName`, leaving the state unchanged. */
  failNext(step: CudaStep, pid: number, errorName = 'CUDA_ERROR_INVALID_VALUE'): void {
    this.failures.set(`${step}:${pid}`, errorName);
  }

  state(pid: number): CudaProcessState | undefined {
    return this.states.get(pid);
  }

  private transition(step: CudaStep, pid: number, from: CudaProcessState, to: CudaProcessState): void {
    this.calls.push(`${step}:${pid}`);
    const injected = this.failures.get(`${step}:${pid}`);
    if (injected) {
      this.failures.delete(`${step}:${pid}`);
      throw new CudaDriverError(step, pid, 1, injected, 'injected by the test');
    }
    const state = this.states.get(pid);
    if (state === undefined) throw new CudaDriverError(step, pid, 3, 'CUDA_ERROR_NOT_INITIALIZED', 'not a CUDA process');
    if (state !== from) throw new CudaDriverError(step, pid, 401, 'CUDA_ERROR_ILLEGAL_STATE', `process is ${state}`);
    this.states.set(pid, to);
  }

  async lock(pid: number, _timeoutMs: number): Promise<void> {
    this.transition('lock', pid, 'running', 'locked');
  }

  async checkpoint(pid: number): Promise<void> {
    this.transition('checkpoint', pid, 'locked', 'checkpointed');
  }

  async restore(pid: number, gpuPairs?: readonly GpuUuidPair[]): Promise<void> {
    this.restorePairs.set(pid, gpuPairs);
    this.transition('restore', pid, 'checkpointed', 'locked');
  }

  async unlock(pid: number): Promise<void> {
    this.transition('unlock', pid, 'locked', 'running');
  }

  async getState(pid: number): Promise<CudaProcessState> {
    const state = this.states.get(pid);
    if (state === undefined) throw new CudaDriverError('get-state', pid, 3, 'CUDA_ERROR_NOT_INITIALIZED', 'not a CUDA process');
    return state;
  }

  /** The process's main thread: a real thread of it, so that the agent can let it run during a checkpoint. */
  async getRestoreThreadId(pid: number): Promise<number> {
    await this.getState(pid);
    return pid;
  }
}
