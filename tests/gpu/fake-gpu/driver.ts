import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CudaCheckpointApi, CudaProcessState, GpuUuidPair } from '../../../src/agent/cuda/api.ts';
import { CudaDriverError, type CudaStep } from '../../../src/agent/cuda/errors.ts';
import { namespacePid } from '../../../src/agent/gpu/host-copy.ts';

const SOURCE = path.join(import.meta.dirname, 'workload.c');
const ERROR_NAMES: Record<number, string> = { 2: 'CUDA_ERROR_OUT_OF_MEMORY', 401: 'CUDA_ERROR_ILLEGAL_STATE', 999: 'CUDA_ERROR_UNKNOWN' };
const REPLY_TIMEOUT_MS = 30_000;

/** Builds the fake GPU workload (statically: it runs in the busybox test image) into `dir` once. */
export function buildFakeGpuWorkload(dir: string): string {
  const binary = path.join(dir, 'fake-gpu-workload');
  if (!existsSync(binary)) execFileSync('cc', ['-static', '-O2', '-pthread', '-o', binary, SOURCE]);
  return binary;
}

/**
 * TEST DOUBLE of the CUDA driver's checkpoint API (no GPU on CI machines) for one fake GPU workload
 * (workload.c): every call is a request that the workload's restore thread carries out inside the process,
 * as the real driver does, so a checkpoint really moves its "device memory" into a new anonymous mapping
 * (the host copy) and a restore reads it back from there. The state lives in the process and survives
 * CRIU; the pid argument is only checked for being alive.
 */
export class FakeGpuDriver implements CudaCheckpointApi {
  readonly driverApiVersion = 13000;
  readonly calls: string[] = [];
  readonly restorePairs: (readonly GpuUuidPair[] | undefined)[] = [];
  private readonly stateDir: string;
  private seq = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(stateDir: string) {
    this.stateDir = stateDir;
  }

  /** One request at a time: the workload's thread reads one request file. */
  private request(op: string, arg = ''): Promise<{ result: number; state: CudaProcessState; value: bigint }> {
    const next = this.queue.then(() => this.send(op, arg));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async send(op: string, arg: string): Promise<{ result: number; state: CudaProcessState; value: bigint }> {
    const seq = ++this.seq + Date.now() * 1000;
    const tmp = path.join(this.stateDir, '.request.tmp');
    await fs.writeFile(tmp, `${seq} ${op} ${arg}\n`);
    await fs.rename(tmp, path.join(this.stateDir, 'request'));
    const deadline = Date.now() + REPLY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const reply = await fs.readFile(path.join(this.stateDir, 'reply'), 'utf8').catch(() => '');
      const [replySeq, result, state, value] = reply.trim().split(' ');
      if (Number(replySeq) === seq) return { result: Number(result), state: state as CudaProcessState, value: BigInt(value ?? '0') };
      await sleep(2);
    }
    throw new Error(`fake GPU workload in ${this.stateDir} did not answer "${op}" within ${REPLY_TIMEOUT_MS} ms`);
  }

  private async step(step: CudaStep, pid: number, op: string): Promise<void> {
    this.calls.push(`${step}:${pid}`);
    await fs.access(`/proc/${pid}`).catch(() => {
      throw new CudaDriverError(step, pid, 3, 'CUDA_ERROR_NOT_INITIALIZED', 'no such process');
    });
    const { result } = await this.request(op);
    if (result !== 0) throw new CudaDriverError(step, pid, result, ERROR_NAMES[result] ?? `CUresult ${result}`, 'fake GPU workload refused');
  }

  lock(pid: number): Promise<void> {
    return this.step('lock', pid, 'lock');
  }

  checkpoint(pid: number): Promise<void> {
    return this.step('checkpoint', pid, 'checkpoint');
  }

  restore(pid: number, gpuPairs?: readonly GpuUuidPair[]): Promise<void> {
    this.restorePairs.push(gpuPairs);
    return this.step('restore', pid, 'restore');
  }

  unlock(pid: number): Promise<void> {
    return this.step('unlock', pid, 'unlock');
  }

  async getState(pid: number): Promise<CudaProcessState> {
    await fs.access(`/proc/${pid}`).catch(() => {
      throw new CudaDriverError('get-state', pid, 3, 'CUDA_ERROR_NOT_INITIALIZED', 'no such process');
    });
    return (await this.request('state')).state;
  }

  /** The host tid of the workload's restore thread (it writes its tid in its own pid namespace). */
  async getRestoreThreadId(pid: number): Promise<number> {
    const nsTid = Number((await fs.readFile(path.join(this.stateDir, 'tid'), 'utf8')).trim());
    for (const tid of (await fs.readdir(`/proc/${pid}/task`)).map(Number)) {
      // /proc/<tid> is there for every thread, if not listed: its NSpid is the thread's id in its namespace.
      if ((await namespacePid('/proc', tid).catch(() => 0)) === nsTid) return tid;
    }
    throw new CudaDriverError('get-restore-thread-id', pid, 999, 'CUDA_ERROR_UNKNOWN', `no thread with namespace tid ${nsTid}`);
  }

  /** FNV-1a of the workload's device memory (fails while it is checkpointed). */
  async checksum(): Promise<bigint> {
    const { result, value } = await this.request('checksum');
    if (result !== 0) throw new Error(`fake GPU workload has no device memory to checksum (${result})`);
    return value;
  }

  /** Makes the workload connect to a unix socket outside its container: an external peer CRIU refuses to dump. */
  async connect(socketPath: string): Promise<void> {
    const { result } = await this.request('connect', socketPath);
    if (result !== 0) throw new Error(`fake GPU workload could not connect to ${socketPath}`);
  }
}

/** The workload's step counter (it stands still while the process is locked or stopped). */
export async function fakeGpuCounter(stateDir: string): Promise<number> {
  return Number((await fs.readFile(path.join(stateDir, 'counter'), 'utf8').catch(() => '0')).trim());
}
