/**
 * What bounds release in place and resume (docs/gpu.md): per-step driver times over repeated cycles,
 * transparent huge pages off/on for the host copy of GPU memory, and two processes released together
 * (the sequences' concurrent checkpoint/restore) against one after the other.
 * Usage (GPU machine, via the bundle): node investigate.mjs --out FILE [--gib 16] [--pair-gib 8]
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { CudaCheckpointApi } from '../../src/agent/cuda/api.ts';
import { checkGpuAvailability } from '../../src/agent/cuda/availability.ts';
import { loadCudaDriver } from '../../src/agent/cuda/driver.ts';
import { lockAndCheckpoint, restoreAndUnlock } from '../../src/agent/cuda/sequences.ts';
import { createLogger } from '../../src/lib/log.ts';
import { ensureWeights, gpuUsedMib, timed, Workload, type ProofConfig } from './proof.ts';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'gpu-investigation.json' },
    gib: { type: 'string', default: '16' },
    'pair-gib': { type: 'string', default: '8' },
    cycles: { type: 'string', default: '3' },
    'work-dir': { type: 'string', default: '/var/tmp/kybernate-gpu' },
    workload: { type: 'string', default: 'tests/gpu/workload.py' },
  },
});
const log = createLogger('gpu-investigate');
const availability = await checkGpuAvailability();
const gpu = availability.gpus[0]!;
const driver = loadCudaDriver();
const THP = '/sys/kernel/mm/transparent_hugepage/enabled';

/** The driver API with every call's duration recorded, to split a sequence into its steps. */
function timedApi(api: CudaCheckpointApi, record: (step: string, s: number) => void): CudaCheckpointApi {
  const wrap = <A extends unknown[], R>(step: string, fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    const [value, s] = await timed(() => fn(...args));
    record(step, s);
    return value;
  };
  return {
    driverApiVersion: api.driverApiVersion,
    lock: wrap('lock', api.lock.bind(api)),
    checkpoint: wrap('checkpoint', api.checkpoint.bind(api)),
    restore: wrap('restore', api.restore.bind(api)),
    unlock: wrap('unlock', api.unlock.bind(api)),
    getState: api.getState.bind(api),
    getRestoreThreadId: api.getRestoreThreadId.bind(api),
  };
}

function config(gib: number): ProofConfig {
  return { gib, workDir: values['work-dir'], python: 'python3', workloadScript: values.workload, criu: 'criu', lockTimeoutMs: 10_000, log };
}

async function startWorkloads(gib: number, count: number): Promise<Workload[]> {
  const weights = join(values['work-dir'], `weights-${gib}g.bin`);
  await ensureWeights(config(gib), weights);
  const workloads = Array.from({ length: count }, (_, i) => new Workload(config(gib), join(values['work-dir'], `inv-${gib}g-${i}`)));
  await Promise.all(workloads.map((w) => w.start(weights)));
  return workloads;
}

/** Release + resume cycles of one process, each split into lock / checkpoint / restore / unlock. */
async function cycles(label: string, gib: number): Promise<Record<string, unknown>[]> {
  const [workload] = await startWorkloads(gib, 1);
  const rows: Record<string, unknown>[] = [];
  try {
    for (let cycle = 1; cycle <= Number(values.cycles); cycle++) {
      const steps: Record<string, number> = {};
      const api = timedApi(driver, (step, s) => (steps[`${step}_s`] = s));
      const [, releaseS] = await timed(() => lockAndCheckpoint(api, [workload!.pid], { lockTimeoutMs: 10_000, log }));
      const releasedMib = await gpuUsedMib(gpu.uuid);
      const [, resumeS] = await timed(() => restoreAndUnlock(api, [workload!.pid], { log }));
      const counter = (await workload!.status())!.counter;
      await workload!.waitFor((s) => s.counter > counter, 30_000, 'counting');
      rows.push({ experiment: label, gib, cycle, release_s: releaseS, resume_s: resumeS, gpu_used_mib_released: releasedMib, ...steps });
      log.info(rows.at(-1), 'cycle');
    }
    const checksumOk = (await workload!.checksum()) === (await workload!.status())!.checksum;
    rows.forEach((row) => (row.checksum_ok = checksumOk));
  } finally {
    await workload!.kill();
  }
  return rows;
}

/** Two processes released and resumed together (concurrent driver calls) and then one after the other. */
async function pair(gib: number): Promise<Record<string, unknown>[]> {
  const workloads = await startWorkloads(gib, 2);
  const pids = workloads.map((w) => w.pid);
  const rows: Record<string, unknown>[] = [];
  try {
    const [, releaseTogether] = await timed(() => lockAndCheckpoint(driver, pids, { lockTimeoutMs: 10_000, log }));
    const [, resumeTogether] = await timed(() => restoreAndUnlock(driver, pids, { log }));
    rows.push({ experiment: 'two processes, together', gib_each: gib, release_s: releaseTogether, resume_s: resumeTogether });
    let releaseApart = 0;
    let resumeApart = 0;
    for (const pid of pids) releaseApart += (await timed(() => lockAndCheckpoint(driver, [pid], { lockTimeoutMs: 10_000, log })))[1];
    for (const pid of pids) resumeApart += (await timed(() => restoreAndUnlock(driver, [pid], { log })))[1];
    rows.push({ experiment: 'two processes, one after the other', gib_each: gib, release_s: releaseApart, resume_s: resumeApart });
    for (const w of workloads) {
      const counter = (await w.status())!.counter;
      await w.waitFor((s) => s.counter > counter, 30_000, 'counting');
    }
    const checksumsOk = await Promise.all(workloads.map(async (w) => (await w.checksum()) === (await w.status())!.checksum));
    rows.forEach((row) => (row.checksum_ok = checksumsOk.every(Boolean)));
    log.info({ rows }, 'pair');
  } finally {
    await Promise.all(workloads.map((w) => w.kill()));
  }
  return rows;
}

const thpBefore = (await readFile(THP, 'utf8')).trim();
const thpMode = /\[(\w+)\]/.exec(thpBefore)?.[1] ?? 'madvise';
const rows: Record<string, unknown>[] = [];
const save = () => writeFile(values.out, JSON.stringify({ date: new Date().toISOString(), gpu: gpu.name, driver: availability.driverVersion, thp_default: thpBefore, rows }, null, 2) + '\n');
const gib = Number(values.gib);
try {
  rows.push(...(await cycles(`THP ${thpMode}`, gib)));
  await save();
  await writeFile(THP, 'always');
  try {
    rows.push(...(await cycles('THP always', gib)));
  } finally {
    await writeFile(THP, thpMode);
  }
  await save();
  rows.push(...(await pair(Number(values['pair-gib']))));
} catch (err) {
  rows.push({ error: (err as Error).message });
  process.exitCode = 1;
} finally {
  await save();
}
