import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkGpuAvailability } from '../../src/agent/cuda/availability.ts';
import { loadCudaDriver } from '../../src/agent/cuda/driver.ts';
import { createLogger } from '../../src/lib/log.ts';
import { runGpuProof } from './proof.ts';

const gpu = existsSync('/proc/driver/nvidia/version');
const title = gpu
  ? 'GPU proof on this NVIDIA GPU (needs python3 with PyTorch and criu 4.x: KYBERNATE_CRIU)'
  : 'GPU proof (skipped: no NVIDIA driver on this machine; tests/gpu/run.sh runs it on a GPU machine)';

describe.skipIf(!gpu)(title, () => {
  it('release in place + resume and the plain CRIU sequence keep the GPU counter and data (2 GiB)', async () => {
    const availability = await checkGpuAvailability();
    const result = await runGpuProof(loadCudaDriver(), availability.gpus[0]!, {
      gib: 2,
      workDir: process.env.KYBERNATE_GPU_WORK_DIR ?? '/var/tmp/kybernate-gpu',
      python: process.env.KYBERNATE_PYTHON ?? 'python3',
      workloadScript: join(import.meta.dirname, 'workload.py'),
      criu: process.env.KYBERNATE_CRIU ?? 'criu',
      lockTimeoutMs: 10_000,
      log: createLogger('gpu-test'),
    });
    expect(result).toMatchObject({
      counter_continued: true,
      checksum_ok: true,
      counter_frozen_while_released: true,
      nvidia_fds_after_release: 0,
      uuid_pair_restore: 'ok',
    });
    expect(result.gpu_used_mib.released).toBeLessThan(result.gpu_used_mib.loaded - 1024);
  }, 600_000);
});
