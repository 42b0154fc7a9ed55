import koffi from 'koffi';
import type { LibraryHandle } from 'koffi';
import { errorMessage } from '../../lib/errors.ts';
import type { CudaCheckpointApi, CudaProcessState, GpuUuidPair } from './api.ts';
import { CudaDriverError, GpuUnavailableError, UnsupportedCudaDriverError, type CudaStep } from './errors.ts';
import { gpuUuidBytes } from './uuid.ts';

/**
 * Driver API versions (cuDriverGetVersion) whose checkpoint argument structs match the layouts below.
 * 13000 (r580, CUDA 13.0) was checked against the 13.0 headers and on an H100 with driver 580.159.04.
 * CUDA 13.3 changed CUcheckpointRestoreArgs, so newer versions must be verified before they are added.
 */
export const VERIFIED_DRIVER_API_VERSIONS: readonly number[] = [13000];

const CUDA_SUCCESS = 0;
const STATES: readonly CudaProcessState[] = ['running', 'locked', 'checkpointed', 'failed'];

// CUDA 13.0 layouts: every argument struct is 64 bytes and its reserved fields must be zero.
const CUuuid = koffi.struct('CUuuid', { bytes: koffi.array('uint8_t', 16) });
const CUcheckpointGpuPair = koffi.struct('CUcheckpointGpuPair', { oldUuid: CUuuid, newUuid: CUuuid });
export const CUcheckpointLockArgs = koffi.struct('CUcheckpointLockArgs', {
  timeoutMs: 'uint32_t',
  reserved0: 'uint32_t',
  reserved1: koffi.array('uint64_t', 7),
});
export const CUcheckpointCheckpointArgs = koffi.struct('CUcheckpointCheckpointArgs', {
  reserved: koffi.array('uint64_t', 8),
});
export const CUcheckpointUnlockArgs = koffi.struct('CUcheckpointUnlockArgs', {
  reserved: koffi.array('uint64_t', 8),
});
export const CUcheckpointRestoreArgs = koffi.struct('CUcheckpointRestoreArgs', {
  gpuPairs: koffi.pointer(CUcheckpointGpuPair),
  gpuPairsCount: 'uint32_t',
  reserved: koffi.array('uint8_t', 52 - 8),
  reserved1: 'uint64_t',
});

type AsyncFn = ReturnType<LibraryHandle["func"]>;

function callAsync(fn: AsyncFn, ...args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, result: number) => (err ? reject(err) : resolve(result)));
  });
}

export interface LoadCudaDriverOptions {
  /** dlopen name or path of the driver library. */
  libraryPath?: string;
  /** Accept only these driver API versions (tests use this to exercise the refusal). */
  verifiedApiVersions?: readonly number[];
}

/** Reads the driver API version without initialising CUDA (works on a node whose GPUs are busy or absent). */
export function readCudaDriverApiVersion(libraryPath = 'libcuda.so.1'): number {
  return driverApiVersionOf(openLibrary(libraryPath));
}

function driverApiVersionOf(lib: LibraryHandle): number {
  const cuDriverGetVersion = lib.func('int cuDriverGetVersion(_Out_ int *version)');
  const version = [0];
  const result = cuDriverGetVersion(version) as number;
  if (result !== CUDA_SUCCESS) {
    throw new CudaDriverError('driver-version', undefined, result, `CUresult ${result}`, 'cuDriverGetVersion failed');
  }
  return version[0]!;
}

function openLibrary(libraryPath: string): LibraryHandle {
  try {
    return koffi.load(libraryPath);
  } catch (err) {
    throw new GpuUnavailableError(`cannot load the CUDA driver library ${libraryPath}: ${errorMessage(err)}`, {
      libraryPath,
    });
  }
}

/**
 * Binds libcuda's process checkpoint API. Refuses (UnsupportedCudaDriverError) a driver whose API version
 * is not in the verified list, because a wrong struct layout would pass garbage to the driver.
 */
export function loadCudaDriver(options: LoadCudaDriverOptions = {}): CudaCheckpointApi {
  const libraryPath = options.libraryPath ?? 'libcuda.so.1';
  const verified = options.verifiedApiVersions ?? VERIFIED_DRIVER_API_VERSIONS;
  const lib = openLibrary(libraryPath);
  const driverApiVersion = driverApiVersionOf(lib);
  if (!verified.includes(driverApiVersion)) throw new UnsupportedCudaDriverError(driverApiVersion, verified);

  const bind = (prototype: string): AsyncFn => {
    try {
      return lib.func(prototype);
    } catch (err) {
      throw new GpuUnavailableError(`the CUDA driver ${libraryPath} lacks a checkpoint function: ${errorMessage(err)}`, {
        libraryPath,
        driverApiVersion,
      });
    }
  };
  const cuInit = bind('int cuInit(unsigned int flags)');
  const cuGetErrorName = bind('int cuGetErrorName(int error, _Out_ const char **name)');
  const cuGetErrorString = bind('int cuGetErrorString(int error, _Out_ const char **text)');
  const cuLock = bind('int cuCheckpointProcessLock(int pid, CUcheckpointLockArgs *args)');
  const cuCheckpoint = bind('int cuCheckpointProcessCheckpoint(int pid, CUcheckpointCheckpointArgs *args)');
  const cuRestore = bind('int cuCheckpointProcessRestore(int pid, CUcheckpointRestoreArgs *args)');
  const cuUnlock = bind('int cuCheckpointProcessUnlock(int pid, CUcheckpointUnlockArgs *args)');
  const cuGetState = bind('int cuCheckpointProcessGetState(int pid, _Out_ int *state)');
  const cuGetRestoreTid = bind('int cuCheckpointProcessGetRestoreThreadId(int pid, _Out_ int *tid)');

  const describe = (fn: AsyncFn, result: number): string | undefined => {
    const text: (string | null)[] = [null];
    return (fn(result, text) as number) === CUDA_SUCCESS ? (text[0] ?? undefined) : undefined;
  };
  const check = (step: CudaStep, pid: number | undefined, result: number): void => {
    if (result === CUDA_SUCCESS) return;
    const name = describe(cuGetErrorName, result) ?? `CUresult ${result}`;
    throw new CudaDriverError(step, pid, result, name, describe(cuGetErrorString, result) ?? 'unknown error');
  };

  check('init', undefined, cuInit(0) as number);

  const reserved = { u64x7: new Array<bigint>(7).fill(0n), u64x8: new Array<bigint>(8).fill(0n) };
  return {
    driverApiVersion,
    async lock(pid, timeoutMs) {
      const args = { timeoutMs, reserved0: 0, reserved1: reserved.u64x7 };
      check('lock', pid, await callAsync(cuLock, pid, args));
    },
    async checkpoint(pid) {
      check('checkpoint', pid, await callAsync(cuCheckpoint, pid, { reserved: reserved.u64x8 }));
    },
    async restore(pid, gpuPairs) {
      check('restore', pid, await restoreWithPairs(cuRestore, pid, gpuPairs ?? []));
    },
    async unlock(pid) {
      check('unlock', pid, await callAsync(cuUnlock, pid, { reserved: reserved.u64x8 }));
    },
    async getState(pid) {
      const state = [0];
      check('get-state', pid, await callAsync(cuGetState, pid, state));
      const name = STATES[state[0]!];
      if (!name) throw new CudaDriverError('get-state', pid, 0, 'CUDA_SUCCESS', `unknown CUprocessState ${state[0]}`);
      return name;
    },
    async getRestoreThreadId(pid) {
      const tid = [0];
      check('get-restore-thread-id', pid, await callAsync(cuGetRestoreTid, pid, tid));
      return tid[0]!;
    },
  };
}

async function restoreWithPairs(cuRestore: AsyncFn, pid: number, gpuPairs: readonly GpuUuidPair[]): Promise<number> {
  const common = { gpuPairsCount: gpuPairs.length, reserved: new Uint8Array(52 - 8), reserved1: 0n };
  if (gpuPairs.length === 0) return callAsync(cuRestore, pid, { ...common, gpuPairs: null });
  // The pair array must stay at a fixed address while the driver reads it on koffi's worker thread.
  const pairs = koffi.alloc(CUcheckpointGpuPair, gpuPairs.length);
  try {
    koffi.encode(
      pairs,
      CUcheckpointGpuPair,
      gpuPairs.map((pair) => ({ oldUuid: { bytes: gpuUuidBytes(pair.oldUuid) }, newUuid: { bytes: gpuUuidBytes(pair.newUuid) } })),
      gpuPairs.length,
    );
    return await callAsync(cuRestore, pid, { ...common, gpuPairs: pairs });
  } finally {
    koffi.free(pairs);
  }
}
