/**
 * Entry of tests/gpu/run.sh: the GPU proof for each size, as JSON rows (bench/results/gpu-<date>.json).
 * Exits 1 when a size failed or a check (counter continued, checksum) did not hold.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { checkGpuAvailability } from '../../src/agent/cuda/availability.ts';
import { loadCudaDriver } from '../../src/agent/cuda/driver.ts';
import { errorMessage } from '../../src/lib/errors.ts';
import { createLogger } from '../../src/lib/log.ts';
import { GpuProofFailure, runGpuProof } from './proof.ts';

const { values } = parseArgs({
  options: {
    gib: { type: 'string', default: '2,16' },
    out: { type: 'string', default: 'gpu-results.json' },
    'work-dir': { type: 'string', default: '/var/tmp/kybernate-gpu' },
    criu: { type: 'string', default: 'criu' },
    python: { type: 'string', default: 'python3' },
    workload: { type: 'string', default: 'tests/gpu/workload.py' },
    'lock-timeout-ms': { type: 'string', default: '10000' },
    /** Transparent huge pages mode for the run (always|madvise|never); the machine's own when absent. */
    thp: { type: 'string' },
  },
});

const log = createLogger('gpu-proof');
const availability = await checkGpuAvailability();
log.info({ availability }, 'GPU availability');
const gpu = availability.gpus[0]!;
const api = loadCudaDriver();
const machine = {
  date: new Date().toISOString(),
  driver: availability.driverVersion,
  cuda_driver_api: api.driverApiVersion,
  gpu_uuid: gpu.uuid,
};

async function proveEachSize(): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for (const gib of values.gib.split(',').map(Number)) {
    try {
      const result = await runGpuProof(api, gpu, {
        gib,
        workDir: values['work-dir'],
        python: values.python,
        workloadScript: values.workload,
        criu: values.criu,
        lockTimeoutMs: Number(values['lock-timeout-ms']),
        log,
      });
      rows.push({ ...result, ...machine });
    } catch (err) {
      log.error({ gib, err }, 'GPU proof failed');
      const partial = err instanceof GpuProofFailure ? err.partial : {};
      rows.push({ gib, level: 'process', ...partial, error: errorMessage(err), ...machine });
    }
    await writeFile(values.out, JSON.stringify(rows, null, 2) + '\n');
  }
  return rows;
}

// A machine-wide setting: changed only once the GPU checks passed, and always put back.
const THP = '/sys/kernel/mm/transparent_hugepage/enabled';
const thpBefore = /\[(\w+)\]/.exec(await readFile(THP, 'utf8').catch(() => ''))?.[1];
if (values.thp) await writeFile(THP, values.thp);
let rows: Record<string, unknown>[];
try {
  rows = await proveEachSize();
} finally {
  if (values.thp && thpBefore) await writeFile(THP, thpBefore);
}
const ok = rows.every((row) => row.counter_continued === true && row.checksum_ok === true);
log.info({ ok, out: values.out }, 'GPU proof finished');
process.exitCode = ok ? 0 : 1;
