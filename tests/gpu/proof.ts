/**
 * The process-level GPU proof: a PyTorch workload (workload.py) holding N GiB on the GPU and a GPU-side
 * counter, driven through src/agent/cuda: release in place + resume, then the plain sequence
 * (CUDA lock/checkpoint + criu dump; criu restore + CUDA restore/unlock), with cold starts as baselines.
 * Used by gpu.test.ts (vitest on a GPU machine) and run-proof.ts (tests/gpu/run.sh on the GPU machine).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { CudaCheckpointApi, GpuUuidPair } from '../../src/agent/cuda/api.ts';
import { listGpusWithNvml, type GpuInfo } from '../../src/agent/cuda/availability.ts';
import { nvidiaDeviceFds, readFdTargets } from '../../src/agent/cuda/processes.ts';
import { lockAndCheckpoint, releaseInPlace, restoreAndUnlock, resume } from '../../src/agent/cuda/sequences.ts';
import type { Logger } from '../../src/lib/log.ts';

export interface ProofConfig {
  gib: number;
  /** Holds the weights file, the workload's state and the CRIU images (needs ~2.2 x gib free). */
  workDir: string;
  python: string;
  workloadScript: string;
  /** criu 4.x command (a wrapper that sets its library path is fine). */
  criu: string;
  lockTimeoutMs: number;
  log: Logger;
}

/** One row of bench/results/gpu-<date>.json. Every *_s is seconds; all numbers here are process-level. */
export interface GpuProofResult {
  gib: number;
  level: 'process';
  gpu: string;
  /** Release in place (lock + CUDA checkpoint, no CRIU) and its resume (CUDA restore + unlock). */
  release_s: number;
  resume_s: number;
  /** The plain sequence: CUDA lock+checkpoint then criu dump; criu restore -d then CUDA restore+unlock. */
  checkpoint_s: number;
  restore_s: number;
  plain_restore_s: number;
  cuda_checkpoint_s: number;
  criu_dump_s: number;
  criu_restore_s: number;
  cuda_restore_s: number;
  image_bytes: number;
  /** New process, CUDA init, weights read from the file and copied to the GPU: page cache dropped / warm. */
  cold_start_s: number;
  cold_start_warm_cache_s: number;
  page_cache_dropped: boolean;
  counter_continued: boolean;
  checksum_ok: boolean;
  gpu_used_mib: { loaded: number; released: number; resumed: number; dumped: number; restored: number };
  /** NVML's per-process accounting of the workload: MiB, or null while it is not listed. */
  process_gpu_mib: { loaded: number | null; released: number | null };
  /** Transparent huge pages mode during the run (/sys/kernel/mm/transparent_hugepage/enabled). */
  thp: string;
  nvidia_fds_after_release: number;
  counter_frozen_while_released: boolean;
  /** Restore through the UUID pair list (identity mapping onto the same GPU): "ok" or the driver's error. */
  uuid_pair_restore: string;
  /** Filled by the agent's container sequence later; null in process-level rows. */
  agent_container_checkpoint_s: null;
  agent_container_restore_s: null;
}

export interface WorkloadStatus {
  pid: number;
  ready: boolean;
  counter: number;
  checksum: number;
  load_s: number;
}

export const seconds = (startMs: number): number => Math.round((performance.now() - startMs)) / 1000;

/**
 * Talks to a serving workload.py through its state files (status, checksum requests): the same for a
 * process this test spawned and for one in a container.
 */
export class WorkloadFiles {
  pid = 0;

  constructor(protected readonly stateDir: string) {}

  /** True once the process is known to have exited (waiting for it is then pointless). */
  protected hasExited(): boolean {
    return false;
  }

  async status(): Promise<WorkloadStatus | undefined> {
    try {
      return JSON.parse(await readFile(join(this.stateDir, 'status.json'), 'utf8')) as WorkloadStatus;
    } catch {
      return undefined;
    }
  }

  async waitFor(predicate: (status: WorkloadStatus) => boolean, timeoutMs: number, what: string): Promise<WorkloadStatus> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const status = await this.status();
      if (status && predicate(status)) return status;
      if (this.hasExited()) break;
      await sleep(20);
    }
    const log = await readFile(join(this.stateDir, 'workload.log'), 'utf8').catch(() => '');
    throw new Error(`workload pid ${this.pid} not ${what} within ${timeoutMs} ms; log: ${log.slice(-2000)}`);
  }

  async checksum(timeoutMs = 60_000): Promise<number> {
    const nonce = String(Math.random());
    const reply = join(this.stateDir, 'checksum.reply');
    await rm(reply, { force: true });
    await writeFile(join(this.stateDir, 'checksum.request'), nonce);
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const text = await readFile(reply, 'utf8').catch(() => '');
      if (text) {
        const parsed = JSON.parse(text) as { nonce: string; checksum: number };
        if (parsed.nonce === nonce) return parsed.checksum;
      }
      await sleep(20);
    }
    throw new Error(`workload pid ${this.pid} did not answer a checksum request within ${timeoutMs} ms`);
  }
}

/** A workload.py process serving from `stateDir`; survives CRIU because it talks through files. */
export class Workload extends WorkloadFiles {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly cfg: ProofConfig, stateDir: string) {
    super(stateDir);
  }

  protected override hasExited(): boolean {
    return this.child !== undefined && this.child.exitCode !== null;
  }

  /** Starts it and resolves once its data is on the GPU; returns seconds from spawn to ready. */
  async start(weights: string): Promise<number> {
    await rm(this.stateDir, { recursive: true, force: true });
    await mkdir(this.stateDir, { recursive: true });
    const logFd = openSync(join(this.stateDir, 'workload.log'), 'a');
    const started = performance.now();
    // Own session, stdin /dev/null, output to a file: nothing ties it to this process, so CRIU can dump it alone.
    const child = spawn(this.cfg.python, [this.cfg.workloadScript, 'serve', weights, this.stateDir], {
      detached: true,
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    this.child = child;
    this.pid = child.pid ?? 0;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await this.waitFor((status) => status.ready, 600_000, 'ready');
    return seconds(started);
  }

  /** Waits until the spawned child has exited and been reaped (CRIU needs its pid free). */
  async reaped(): Promise<void> {
    await this.exited;
  }

  /** Kills it whether it is our child or a process criu restored (then init reaps it). */
  async kill(): Promise<void> {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      return;
    }
    await this.exited;
    for (let i = 0; i < 500 && existsSync(`/proc/${this.pid}`); i++) await sleep(10);
  }

  forgetChild(): void {
    // After criu restore the process is no longer our child: do not wait for our (old) child's exit.
    this.child = undefined;
    this.exited = Promise.resolve();
  }
}

export async function gpuUsedMib(uuid: string): Promise<number> {
  const gpu = listGpusWithNvml().find((g) => g.uuid === uuid);
  return gpu ? Math.round(gpu.memoryUsedBytes / 2 ** 20) : -1;
}

/** The GPU memory NVML accounts to `pid`; null when the process is not listed (released) or NVML cannot tell. */
function processMib(uuid: string, pid: number): number | null {
  const used = listGpusWithNvml().find((g) => g.uuid === uuid)?.processes?.find((p) => p.pid === pid)?.usedBytes;
  return used === undefined || used === null ? null : Math.round(used / 2 ** 20);
}

export async function run(command: string, args: readonly string[], log: Logger): Promise<number> {
  const started = performance.now();
  try {
    await promisify(execFile)(command, [...args], { maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    log.error({ command, args, stderr: e.stderr }, 'command failed');
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message}`, { cause: err });
  }
  return seconds(started);
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size;
  return total;
}

/** Drops the page cache so the next read comes from disk; false where the kernel does not allow it. */
export async function dropPageCache(log: Logger): Promise<boolean> {
  try {
    await promisify(execFile)('sync');
    await writeFile('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch (err) {
    log.warn({ err }, 'cannot drop the page cache: cold start measured with a warm cache');
    return false;
  }
}

/** A proof that stopped part-way: `partial` holds what was measured before the failure. */
export class GpuProofFailure extends Error {
  constructor(message: string, readonly partial: Partial<GpuProofResult>, options?: ErrorOptions) {
    super(message, options);
  }
}

export async function timed<T>(action: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await action();
  return [value, seconds(started)];
}

/** Writes the workload's N GiB weights file unless it is already there. */
export async function ensureWeights(cfg: ProofConfig, weights: string): Promise<void> {
  if (existsSync(weights) && (await stat(weights)).size === cfg.gib * 2 ** 30) return;
  const writeS = await run(cfg.python, [cfg.workloadScript, 'make-weights', weights, String(cfg.gib)], cfg.log);
  cfg.log.info({ gib: cfg.gib, writeS }, 'weights file written');
}

export async function runGpuProof(api: CudaCheckpointApi, gpu: GpuInfo, cfg: ProofConfig): Promise<GpuProofResult> {
  const log = cfg.log.child({ gib: cfg.gib });
  await mkdir(cfg.workDir, { recursive: true });
  const weights = join(cfg.workDir, `weights-${cfg.gib}g.bin`);
  await ensureWeights(cfg, weights);

  // Cold start baselines: warm page cache first (file just written), then with the page cache dropped.
  const warm = new Workload(cfg, join(cfg.workDir, 'state-warm'));
  const coldStartWarmS = await warm.start(weights);
  await warm.kill();
  const pageCacheDropped = await dropPageCache(log);
  const workload = new Workload(cfg, join(cfg.workDir, 'state'));
  const coldStartS = await workload.start(weights);
  const pid = workload.pid;
  const initial = (await workload.status())!;
  log.info({ pid, coldStartS, coldStartWarmS, loadS: initial.load_s }, 'workload ready');
  const used = { loaded: await gpuUsedMib(gpu.uuid), released: 0, resumed: 0, dumped: 0, restored: 0 };
  const processGpuMib = { loaded: processMib(gpu.uuid, pid), released: null as number | null };
  const thp = /\[(\w+)\]/.exec(await readFile('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').catch(() => ''))?.[1] ?? 'unknown';
  const partial: Partial<GpuProofResult> = {
    gib: cfg.gib,
    level: 'process',
    gpu: gpu.name,
    cold_start_s: coldStartS,
    cold_start_warm_cache_s: coldStartWarmS,
    page_cache_dropped: pageCacheDropped,
    gpu_used_mib: used,
    process_gpu_mib: processGpuMib,
    thp,
  };

  try {
    // Release in place, then resume.
    const [released, releaseS] = await timed(() => releaseInPlace(api, [pid], { lockTimeoutMs: cfg.lockTimeoutMs, log }));
    used.released = await gpuUsedMib(gpu.uuid);
    processGpuMib.released = processMib(gpu.uuid, pid);
    const nvidiaFds = nvidiaDeviceFds((await readFdTargets(pid)) ?? []).length;
    const frozenAt = (await workload.status())!.counter;
    await sleep(500);
    const counterFrozen = (await workload.status())!.counter === frozenAt;
    const [, resumeS] = await timed(() => resume(api, released, { log }));
    const afterResume = await workload.waitFor((s) => s.counter > frozenAt + 5, 30_000, 'counting after resume');
    used.resumed = await gpuUsedMib(gpu.uuid);
    const checksumAfterResume = await workload.checksum();
    log.info({ releaseS, resumeS, frozenAt, afterResume: afterResume.counter }, 'release in place + resume done');
    Object.assign(partial, { release_s: releaseS, resume_s: resumeS, nvidia_fds_after_release: nvidiaFds });

    // The plain sequence: CUDA checkpoint + criu dump, then criu restore + CUDA restore.
    const imagesDir = join(cfg.workDir, 'criu-images');
    await rm(imagesDir, { recursive: true, force: true });
    await mkdir(imagesDir, { recursive: true });
    const beforeDump = (await workload.status())!.counter;
    const [, cudaCheckpointS] = await timed(() => lockAndCheckpoint(api, [pid], { lockTimeoutMs: cfg.lockTimeoutMs, log }));
    const criuFlags = ['--shell-job', '--images-dir', imagesDir];
    const criuDumpS = await run(cfg.criu, ['dump', '--tree', String(pid), ...criuFlags, '-o', 'dump.log', '-v4'], log);
    await workload.reaped();
    used.dumped = await gpuUsedMib(gpu.uuid);
    const imageBytes = await directoryBytes(imagesDir);
    Object.assign(partial, { cuda_checkpoint_s: cudaCheckpointS, criu_dump_s: criuDumpS, image_bytes: imageBytes });
    const criuRestoreS = await run(cfg.criu, ['restore', '--restore-detached', ...criuFlags, '-o', 'restore.log', '-v4'], log);
    workload.forgetChild();
    const identity: GpuUuidPair[] = [{ oldUuid: gpu.uuid, newUuid: gpu.uuid }];
    let uuidPairRestore = 'ok';
    let [, cudaRestoreS] = await timed(() => restoreAndUnlock(api, [pid], { gpuPairs: identity, log })).catch(
      (err: Error) => {
        uuidPairRestore = err.message;
        return [undefined, Number.NaN] as const;
      },
    );
    if (Number.isNaN(cudaRestoreS)) [, cudaRestoreS] = await timed(() => restoreAndUnlock(api, [pid], { log }));
    const afterRestore = await workload.waitFor((s) => s.counter > beforeDump + 5, 30_000, 'counting after criu restore');
    used.restored = await gpuUsedMib(gpu.uuid);
    const checksumAfterRestore = await workload.checksum();
    log.info({ cudaCheckpointS, criuDumpS, criuRestoreS, cudaRestoreS, imageBytes }, 'plain sequence done');
    await rm(imagesDir, { recursive: true, force: true });

    const checkpointS = Math.round((cudaCheckpointS + criuDumpS) * 1000) / 1000;
    const restoreS = Math.round((criuRestoreS + cudaRestoreS) * 1000) / 1000;
    return {
      gib: cfg.gib,
      level: 'process',
      gpu: gpu.name,
      release_s: releaseS,
      resume_s: resumeS,
      checkpoint_s: checkpointS,
      restore_s: restoreS,
      plain_restore_s: restoreS,
      cuda_checkpoint_s: cudaCheckpointS,
      criu_dump_s: criuDumpS,
      criu_restore_s: criuRestoreS,
      cuda_restore_s: cudaRestoreS,
      image_bytes: imageBytes,
      cold_start_s: coldStartS,
      cold_start_warm_cache_s: coldStartWarmS,
      page_cache_dropped: pageCacheDropped,
      counter_continued: afterResume.counter > frozenAt && afterRestore.counter > beforeDump,
      checksum_ok: checksumAfterResume === initial.checksum && checksumAfterRestore === initial.checksum,
      gpu_used_mib: used,
      process_gpu_mib: processGpuMib,
      thp,
      nvidia_fds_after_release: nvidiaFds,
      counter_frozen_while_released: counterFrozen,
      uuid_pair_restore: uuidPairRestore,
      agent_container_checkpoint_s: null,
      agent_container_restore_s: null,
    };
  } catch (err) {
    throw new GpuProofFailure(`GPU proof (${cfg.gib} GiB) failed: ${(err as Error).message}`, partial, { cause: err });
  } finally {
    await workload.kill();
  }
}
