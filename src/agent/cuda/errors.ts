import { KybernateError } from '../../lib/errors.ts';

/** The step of the CUDA checkpoint protocol a driver call belonged to (names the failure in logs and errors). */
export type CudaStep =
  | 'init'
  | 'driver-version'
  | 'lock'
  | 'checkpoint'
  | 'restore'
  | 'unlock'
  | 'get-state'
  | 'get-restore-thread-id';

/** A CUDA driver call returned an error: carries the CUresult, its name (e.g. CUDA_ERROR_ILLEGAL_STATE), the pid and the step. */
export class CudaDriverError extends KybernateError {
  readonly step: CudaStep;
  readonly pid: number | undefined;
  readonly result: number;
  readonly errorName: string;

  constructor(step: CudaStep, pid: number | undefined, result: number, errorName: string, detail: string) {
    const target = pid === undefined ? '' : ` of pid ${pid}`;
    super('CudaDriverError', `CUDA ${step}${target} failed: ${errorName} (${result}): ${detail}`, {
      step,
      pid,
      result,
      errorName,
    });
    this.step = step;
    this.pid = pid;
    this.result = result;
    this.errorName = errorName;
  }
}

/** The installed driver's checkpoint structs have a layout we have not verified: calling it could corrupt the target. */
export class UnsupportedCudaDriverError extends KybernateError {
  constructor(driverApiVersion: number, verified: readonly number[]) {
    super(
      'UnsupportedCudaDriver',
      `CUDA driver API version ${driverApiVersion} is not supported: the checkpoint argument layouts are verified ` +
        `only for ${verified.join(', ')}; refusing to call the checkpoint API`,
      { driverApiVersion, verified },
    );
  }
}

/** This node has no usable NVIDIA GPU (no kernel driver, no libcuda/NVML, or no device). The agent keeps running. */
export class GpuUnavailableError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('GpuUnavailable', message, context, options);
  }
}

/**
 * A multi-process sequence (lock/checkpoint or restore/unlock) failed. `cause` is the first failure;
 * `rollbackFailures` lists what could not be undone, so the caller knows whether processes were left
 * in a CUDA state other than the one the sequence promises.
 */
export class CudaSequenceError extends KybernateError {
  readonly rollbackFailures: readonly Error[];

  constructor(
    sequence: string,
    pids: readonly number[],
    cause: Error,
    rollbackFailures: readonly Error[],
    outcome: string,
  ) {
    const rollback = rollbackFailures.length === 0 ? outcome : `rollback incomplete: ${rollbackFailures.map((e) => e.message).join('; ')}`;
    super('CudaSequenceFailed', `${sequence} of pids ${pids.join(',')} failed: ${cause.message} (${rollback})`, {
      sequence,
      pids,
      rollbackFailures: rollbackFailures.map((e) => e.message),
    }, { cause });
    this.rollbackFailures = rollbackFailures;
  }
}
