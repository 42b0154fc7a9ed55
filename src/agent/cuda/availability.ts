import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import koffi from 'koffi';
import { errorMessage } from '../../lib/errors.ts';
import { readCudaDriverApiVersion } from './driver.ts';
import { GpuUnavailableError } from './errors.ts';

export interface GpuInfo {
  index: number;
  uuid: string;
  name: string;
  memoryTotalBytes: number;
  memoryFreeBytes: number;
  memoryUsedBytes: number;
  /** CUDA processes on this GPU with their memory (NVML only; a released process is not listed). */
  processes?: GpuProcess[];
}

export interface GpuProcess {
  pid: number;
  /** null where NVML cannot tell (e.g. inside some containers). */
  usedBytes: number | null;
}

export interface GpuAvailability {
  /** Kernel driver version, e.g. "580.159.04". */
  driverVersion: string;
  /** cuDriverGetVersion, e.g. 13000; null when libcuda could not be loaded (the GPUs are listed anyway). */
  cudaDriverApiVersion: number | null;
  /** Where the GPU list came from. */
  source: 'nvml' | 'nvidia-smi';
  gpus: GpuInfo[];
}

/** The IO the availability check needs; each one throws when its source is missing. */
export interface GpuProbes {
  readKernelDriverVersion(): Promise<string>;
  listGpusWithNvml(): GpuInfo[];
  listGpusWithNvidiaSmi(): Promise<GpuInfo[]>;
  readCudaDriverApiVersion(): number;
}

const KERNEL_DRIVER_VERSION_FILE = '/proc/driver/nvidia/version';

/** "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Thu ..." -> "580.159.04". */
export function parseKernelDriverVersion(text: string): string {
  const match = /Kernel Module.*?\s(\d+\.\d+(?:\.\d+)*)\s/.exec(text);
  if (!match) throw new GpuUnavailableError(`unrecognised ${KERNEL_DRIVER_VERSION_FILE}: "${text.slice(0, 120)}"`);
  return match[1]!;
}

export const NVIDIA_SMI_QUERY = ['--query-gpu=index,uuid,name,memory.total,memory.free,memory.used', '--format=csv,noheader,nounits'];

/** Parses `nvidia-smi` output for NVIDIA_SMI_QUERY (memory in MiB). */
export function parseNvidiaSmiCsv(text: string): GpuInfo[] {
  const mib = 1024 * 1024;
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const fields = line.split(',').map((field) => field.trim());
      const [index, uuid, name, total, free, used] = fields;
      const numbers = [index, total, free, used].map(Number);
      if (fields.length !== 6 || numbers.some((n) => !Number.isFinite(n)) || !uuid?.startsWith('GPU-')) {
        throw new GpuUnavailableError(`unrecognised nvidia-smi line: "${line}"`);
      }
      return {
        index: numbers[0]!,
        uuid,
        name: name!,
        memoryTotalBytes: numbers[1]! * mib,
        memoryFreeBytes: numbers[2]! * mib,
        memoryUsedBytes: numbers[3]! * mib,
      };
    });
}

/**
 * Answers "can this node run (and restore) GPU workloads?": kernel driver, CUDA driver API version and
 * the GPUs with their free memory. NVML is asked first; nvidia-smi is the fallback. Anything missing ends
 * in GpuUnavailableError with the reasons, never in a crash.
 */
export async function checkGpuAvailability(probes: GpuProbes = systemGpuProbes): Promise<GpuAvailability> {
  let driverVersion: string;
  try {
    driverVersion = await probes.readKernelDriverVersion();
  } catch (err) {
    throw new GpuUnavailableError(`no NVIDIA kernel driver on this node: ${errorMessage(err)}`, {}, { cause: err });
  }
  let source: GpuAvailability['source'] = 'nvml';
  let gpus: GpuInfo[];
  try {
    gpus = probes.listGpusWithNvml();
  } catch (nvmlErr) {
    try {
      source = 'nvidia-smi';
      gpus = await probes.listGpusWithNvidiaSmi();
    } catch (smiErr) {
      throw new GpuUnavailableError(
        `cannot list GPUs: NVML: ${errorMessage(nvmlErr)}; nvidia-smi: ${errorMessage(smiErr)}`,
        { driverVersion },
      );
    }
  }
  if (gpus.length === 0) throw new GpuUnavailableError('the NVIDIA driver is loaded but reports no GPU', { driverVersion });
  let cudaDriverApiVersion: number | null = null;
  try {
    cudaDriverApiVersion = probes.readCudaDriverApiVersion();
  } catch {
    // Listing GPUs does not need libcuda; checkpoint calls will report its absence themselves.
  }
  return { driverVersion, cudaDriverApiVersion, source, gpus };
}

export const systemGpuProbes: GpuProbes = {
  async readKernelDriverVersion() {
    return parseKernelDriverVersion(await readFile(KERNEL_DRIVER_VERSION_FILE, 'utf8'));
  },
  listGpusWithNvml,
  async listGpusWithNvidiaSmi() {
    const { stdout } = await promisify(execFile)('nvidia-smi', NVIDIA_SMI_QUERY, { timeout: 10_000 });
    return parseNvidiaSmiCsv(stdout);
  },
  readCudaDriverApiVersion: () => readCudaDriverApiVersion(),
};

const NVML_SUCCESS = 0;
const NVML_PROCESS_INFO_BYTES = 24; // nvmlProcessInfo_t: pid u32, (pad), usedGpuMemory u64, gpuInstanceId u32, computeInstanceId u32
const NVML_VALUE_NOT_AVAILABLE = 0xffffffffffffffffn;
const NVML_MAX_PROCESSES = 256;

/** Decodes the nvmlProcessInfo_t array that nvmlDeviceGetComputeRunningProcesses_v3 filled. */
export function parseNvmlProcessInfos(buffer: Buffer, count: number): GpuProcess[] {
  return Array.from({ length: count }, (_, i) => {
    const used = buffer.readBigUInt64LE(i * NVML_PROCESS_INFO_BYTES + 8);
    return {
      pid: buffer.readUInt32LE(i * NVML_PROCESS_INFO_BYTES),
      usedBytes: used === NVML_VALUE_NOT_AVAILABLE ? null : Number(used),
    };
  });
}

// Named types the NVML prototypes below refer to.
koffi.struct('nvmlMemory_t', { total: 'uint64_t', free: 'uint64_t', used: 'uint64_t' });
koffi.pointer('nvmlDevice_t', koffi.opaque());

/** Lists GPUs through libnvidia-ml.so.1 (no CUDA context is created, so it works while GPUs are full). */
export function listGpusWithNvml(libraryPath = 'libnvidia-ml.so.1'): GpuInfo[] {
  const lib = koffi.load(libraryPath);
  const nvmlInit = lib.func('int nvmlInit_v2()');
  const nvmlShutdown = lib.func('int nvmlShutdown()');
  const nvmlErrorString = lib.func('const char *nvmlErrorString(int result)');
  const getCount = lib.func('int nvmlDeviceGetCount_v2(_Out_ unsigned int *count)');
  const getHandle = lib.func('int nvmlDeviceGetHandleByIndex_v2(unsigned int index, _Out_ nvmlDevice_t *device)');
  const getUuid = lib.func('int nvmlDeviceGetUUID(nvmlDevice_t device, _Out_ uint8_t *uuid, unsigned int length)');
  const getName = lib.func('int nvmlDeviceGetName(nvmlDevice_t device, _Out_ uint8_t *name, unsigned int length)');
  const getMemory = lib.func('int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, _Out_ nvmlMemory_t *memory)');
  const getProcesses = lib.func(
    'int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, _Inout_ unsigned int *count, void *infos)',
  );

  const check = (what: string, result: number): void => {
    if (result !== NVML_SUCCESS) throw new GpuUnavailableError(`NVML ${what} failed: ${nvmlErrorString(result)} (${result})`);
  };
  const readString = (fn: typeof getUuid, device: unknown, what: string): string => {
    const buffer = Buffer.alloc(96);
    check(what, fn(device, buffer, buffer.length) as number);
    return buffer.toString('utf8', 0, buffer.indexOf(0));
  };
  const readProcesses = (device: unknown): GpuProcess[] | undefined => {
    const infos = Buffer.alloc(NVML_MAX_PROCESSES * NVML_PROCESS_INFO_BYTES);
    const count = [NVML_MAX_PROCESSES];
    // Not supported everywhere (e.g. some vGPU/MIG setups): then the list is simply unknown.
    return (getProcesses(device, count, infos) as number) === NVML_SUCCESS ? parseNvmlProcessInfos(infos, count[0]!) : undefined;
  };

  check('init', nvmlInit() as number);
  try {
    const count = [0];
    check('device count', getCount(count) as number);
    const gpus: GpuInfo[] = [];
    for (let index = 0; index < count[0]!; index++) {
      const device: unknown[] = [null];
      check(`handle of GPU ${index}`, getHandle(index, device) as number);
      const memory: { total?: bigint | number; free?: bigint | number; used?: bigint | number } = {};
      check(`memory of GPU ${index}`, getMemory(device[0], memory) as number);
      gpus.push({
        index,
        uuid: readString(getUuid, device[0], `UUID of GPU ${index}`),
        name: readString(getName, device[0], `name of GPU ${index}`),
        memoryTotalBytes: Number(memory.total),
        memoryFreeBytes: Number(memory.free),
        memoryUsedBytes: Number(memory.used),
        processes: readProcesses(device[0]),
      });
    }
    return gpus;
  } finally {
    nvmlShutdown();
  }
}
