import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/lib/errors.ts';
import { findCudaCandidates, findCudaProcesses, mayHoldCudaState, nvidiaDeviceFds } from '../../src/agent/cuda/processes.ts';
import { releaseInPlace, resume } from '../../src/agent/cuda/sequences.ts';
import { FakeCudaDriver } from './fake-driver.ts';

describe('mayHoldCudaState', () => {
  it('is true for an open /dev/nvidia* device or a mapped libcuda, false otherwise', () => {
    expect(mayHoldCudaState(['/dev/null', '/dev/nvidia0'], '')).toBe(true);
    expect(mayHoldCudaState(['/dev/nvidiactl'], '')).toBe(true);
    const maps = '7f00-7f10 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04\n';
    expect(mayHoldCudaState([], maps)).toBe(true);
    expect(mayHoldCudaState(['/dev/null'], '7f00-7f10 r-xp 0 08:01 1 /usr/lib/libcudart.so.13\n')).toBe(false);
    expect(nvidiaDeviceFds(['/dev/nvidia0', 'pipe:[1]', '/dev/nvidia-uvm'])).toEqual(['/dev/nvidia0', '/dev/nvidia-uvm']);
  });
});

/**
 * Real processes and the real /proc: one maps a library file named libcuda.so.1 (a copy of libm loaded
 * with LD_PRELOAD, since this machine has no NVIDIA driver), one does not.
 */
describe('finding CUDA processes in /proc', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kyb-cuda-procs-'));
  let withLibcuda: ChildProcess;
  let plain: ChildProcess;

  beforeAll(async () => {
    const libm = ['/lib/x86_64-linux-gnu/libm.so.6', '/usr/lib/x86_64-linux-gnu/libm.so.6', '/lib/aarch64-linux-gnu/libm.so.6', '/lib64/libm.so.6']
      .find((path) => existsSync(path));
    if (!libm) throw new Error('no libm.so.6 found to stand in for libcuda.so.1');
    copyFileSync(libm, join(dir, 'libcuda.so.1'));
    withLibcuda = spawn('sleep', ['300'], { env: { ...process.env, LD_PRELOAD: join(dir, 'libcuda.so.1') }, stdio: 'ignore' });
    plain = spawn('sleep', ['300'], { stdio: 'ignore' });
    // Wait until both have exec'd (before that /proc shows the forked node's maps).
    const execd = (pid: number) => readlinkSync(`/proc/${pid}/exe`).endsWith('/sleep');
    const loaded = () => readFileSync(`/proc/${withLibcuda.pid}/maps`, 'utf8').includes('libcuda.so.1');
    for (let i = 0; i < 250 && !(execd(plain.pid!) && execd(withLibcuda.pid!) && loaded()); i++) await sleep(20);
  });

  afterAll(() => {
    withLibcuda.kill('SIGKILL');
    plain.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('picks the process that maps libcuda and skips the others and pids that are gone', async () => {
    const gonePid = 2 ** 22 + 1; // above pid_max's ceiling: never a live process
    await expect(findCudaCandidates([plain.pid!, withLibcuda.pid!, gonePid])).resolves.toEqual([withLibcuda.pid!]);
  });

  it('keeps only candidates the driver knows (FakeCudaDriver test double), then releases and resumes them', async () => {
    const driver = new FakeCudaDriver({ [withLibcuda.pid!]: 'running' });
    await expect(findCudaProcesses(driver, [plain.pid!, withLibcuda.pid!])).resolves.toEqual([withLibcuda.pid!]);

    const released = await releaseInPlace(driver, [plain.pid!, withLibcuda.pid!], { lockTimeoutMs: 1_000 });
    expect(released.cudaPids).toEqual([withLibcuda.pid!]);
    expect(driver.state(withLibcuda.pid!)).toBe('checkpointed');
    await resume(driver, released);
    expect(driver.state(withLibcuda.pid!)).toBe('running');
  });

  it('says so when none of the pids is a CUDA process', async () => {
    const driver = new FakeCudaDriver({});
    await expect(releaseInPlace(driver, [plain.pid!, withLibcuda.pid!], { lockTimeoutMs: 1_000 })).rejects.toBeInstanceOf(NotFoundError);
  });
});
