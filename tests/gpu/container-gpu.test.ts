import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { GpuAvailability, GpuInfo } from '../../src/agent/cuda/availability.ts';
import { CudaSequenceError, GpuUnavailableError } from '../../src/agent/cuda/errors.ts';
import { cgroupDirOf, containerPids, parseCgroupMounts, parseProcCgroup } from '../../src/agent/gpu/cgroup.ts';
import { gpuPairsFor, gpuRecord, type GpuRecord } from '../../src/agent/gpu/record.ts';
import { systemGpuSupport, type GpuSupport } from '../../src/agent/gpu/support.ts';
import { checkpointTaskGpu, restoreTaskGpu, resumeTaskGpu, suspendTaskGpu } from '../../src/agent/gpu/task-gpu.ts';
import { FailedPreconditionError } from '../../src/agent/errors.ts';
import { InvalidInputError } from '../../src/lib/errors.ts';
import { createLogger } from '../../src/lib/log.ts';
import { FakeCudaDriver } from '../cuda/fake-driver.ts';

const log = createLogger('container-gpu-test');
const H100 = 'NVIDIA H100 80GB HBM3';
const GiB = 2 ** 30;

function gpu(uuid: string, freeGiB: number, processes?: GpuInfo['processes'], name = H100): GpuInfo {
  return { index: 0, uuid, name, memoryTotalBytes: 80 * GiB, memoryFreeBytes: freeGiB * GiB, memoryUsedBytes: (80 - freeGiB) * GiB, ...(processes ? { processes } : {}) };
}

function availability(gpus: GpuInfo[]): GpuAvailability {
  return { driverVersion: '580.159.04', cudaDriverApiVersion: 13000, source: 'nvml', gpus };
}

describe('gpuRecord', () => {
  it('records per process the GPUs NVML shows it on and its memory, and only those GPUs', () => {
    const record = gpuRecord(
      availability([gpu('GPU-a', 60, [{ pid: 10, usedBytes: 16 * GiB }]), gpu('GPU-b', 80, [{ pid: 99, usedBytes: GiB }])]),
      [10, 11],
    );
    expect(record.gpus.map((g) => g.uuid)).toEqual(['GPU-a']);
    expect(record.processes).toEqual([
      { pid: 10, gpuUuid: 'GPU-a', usedBytes: 16 * GiB },
      { pid: 11, gpuUuid: null, usedBytes: null },
    ]);
    expect(record).toMatchObject({ driverVersion: '580.159.04', cudaDriverApiVersion: 13000 });
  });

  it('records every GPU of the node when NVML lists none of the processes', () => {
    const record = gpuRecord(availability([gpu('GPU-a', 80), gpu('GPU-b', 80)]), [10]);
    expect(record.gpus.map((g) => g.uuid)).toEqual(['GPU-a', 'GPU-b']);
  });
});

describe('gpuPairsFor', () => {
  const record: GpuRecord = {
    driverVersion: '580.159.04',
    cudaDriverApiVersion: 13000,
    gpus: [{ uuid: 'GPU-old', name: H100, memoryTotalBytes: 80 * GiB }],
    processes: [{ pid: 10, gpuUuid: 'GPU-old', usedBytes: 16 * GiB }],
  };

  it('needs no mapping when the node has the recorded GPUs', () => {
    expect(gpuPairsFor(record, [gpu('GPU-old', 80)])).toBeUndefined();
  });

  it('maps onto the same model with the most free memory that has room, never another model', () => {
    const nodeGpus = [gpu('GPU-small', 10), gpu('GPU-other-model', 80, undefined, 'NVIDIA A100'), gpu('GPU-roomy', 70), gpu('GPU-fits', 20)];
    expect(gpuPairsFor(record, nodeGpus)).toEqual([{ oldUuid: 'GPU-old', newUuid: 'GPU-roomy' }]);
  });

  it('answers GpuUnavailable when no GPU of the model has room', () => {
    expect(() => gpuPairsFor(record, [gpu('GPU-small', 10), gpu('GPU-a100', 80, undefined, 'NVIDIA A100')])).toThrow(GpuUnavailableError);
  });

  it('checks requested pairs: every recorded GPU named, onto a GPU of this node of the same model', () => {
    const nodeGpus = [gpu('GPU-new', 80), gpu('GPU-a100', 80, undefined, 'NVIDIA A100')];
    expect(gpuPairsFor(record, nodeGpus, [{ oldUuid: 'GPU-old', newUuid: 'GPU-new' }])).toEqual([{ oldUuid: 'GPU-old', newUuid: 'GPU-new' }]);
    expect(() => gpuPairsFor(record, nodeGpus, [{ oldUuid: 'GPU-x', newUuid: 'GPU-new' }])).toThrow(/does not name the checkpointed GPU GPU-old/);
    expect(() => gpuPairsFor(record, nodeGpus, [{ oldUuid: 'GPU-old', newUuid: 'GPU-gone' }])).toThrow(InvalidInputError);
    expect(() => gpuPairsFor(record, nodeGpus, [{ oldUuid: 'GPU-old', newUuid: 'GPU-a100' }])).toThrow(/is a NVIDIA A100/);
  });
});

/**
 * A container as the GPU steps see it, in files: a /proc with each process's cgroup, fds and maps, and a
 * cgroup v2 tree with cgroup.procs (the container's cgroup and a child cgroup of a worker).
 */
function containerFixture(processes: Record<number, { cuda: boolean; cgroup: string }>): { procRoot: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'kyb-gpu-container-'));
  const procRoot = join(dir, 'proc');
  const cgroupRoot = join(dir, 'cgroup');
  const members = new Map<string, number[]>();
  for (const [pidText, { cuda, cgroup }] of Object.entries(processes)) {
    const pid = Number(pidText);
    mkdirSync(join(procRoot, pidText, 'fd'), { recursive: true });
    writeFileSync(join(procRoot, pidText, 'cgroup'), `0::${cgroup}\n`);
    writeFileSync(join(procRoot, pidText, 'maps'), cuda ? '7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04\n' : '');
    symlinkSync(cuda ? '/dev/nvidia0' : '/dev/null', join(procRoot, pidText, 'fd', '3'));
    members.set(cgroup, [...(members.get(cgroup) ?? []), pid]);
  }
  for (const [cgroup, pids] of members) {
    mkdirSync(join(cgroupRoot, cgroup), { recursive: true });
    writeFileSync(join(cgroupRoot, cgroup, 'cgroup.procs'), pids.map((p) => `${p}\n`).join(''));
  }
  mkdirSync(join(procRoot, 'self'), { recursive: true });
  writeFileSync(join(procRoot, 'self', 'mountinfo'), `40 30 0:37 / ${cgroupRoot} rw,relatime - cgroup2 cgroup2 rw\n`);
  return { procRoot, dir };
}

function fakeSupport(driver: FakeCudaDriver, fixture: { procRoot: string }, gpus: GpuInfo[]): GpuSupport {
  return {
    driver: async () => driver,
    availability: async () => availability(gpus),
    lockTimeoutMs: 5_000,
    procRoot: fixture.procRoot,
    hostCopy: 'agent',
  };
}

describe('finding a container\'s cgroup', () => {
  const hybridMounts = parseCgroupMounts(
    [
      '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
      '40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n'),
  );

  it('reads the cgroup filesystems of mountinfo', () => {
    expect(hybridMounts).toEqual([
      { mountPoint: '/sys/fs/cgroup/pids', version: 1, controllers: ['rw', 'pids'] },
      { mountPoint: '/sys/fs/cgroup/unified', version: 2, controllers: [] },
    ]);
  });

  it('takes the unified cgroup where the process is placed there, else a v1 hierarchy (hybrid hosts)', () => {
    const v2 = parseProcCgroup('8:pids:/kybernate/ctr\n0::/kybernate/ctr\n');
    expect(cgroupDirOf(v2, hybridMounts)).toBe('/sys/fs/cgroup/unified/kybernate/ctr');
    const v1Only = parseProcCgroup('8:pids:/kybernate/ctr\n0::/\n');
    expect(cgroupDirOf(v1Only, hybridMounts)).toBe('/sys/fs/cgroup/pids/kybernate/ctr');
    expect(cgroupDirOf(parseProcCgroup('0::/x\n'), [])).toBeNull();
  });
});

describe('the container GPU steps (FakeCudaDriver test double, /proc and cgroup fixtures)', () => {
  // 100: the container's init (a shell, no CUDA); 101: the model server; 102: a worker in a child cgroup.
  const fixture = containerFixture({
    100: { cuda: false, cgroup: '/kybernate/ctr' },
    101: { cuda: true, cgroup: '/kybernate/ctr' },
    102: { cuda: true, cgroup: '/kybernate/ctr/workers' },
    200: { cuda: true, cgroup: '/other' },
  });
  afterAll(() => rmSync(fixture.dir, { recursive: true, force: true }));
  const nodeGpus = [gpu('GPU-a', 50, [{ pid: 101, usedBytes: 16 * GiB }, { pid: 102, usedBytes: 2 * GiB }])];

  it('finds every process of the container cgroup tree, not only pid 1, and none of other containers', async () => {
    await expect(containerPids(100, fixture.procRoot)).resolves.toEqual([100, 101, 102]);
  });

  it('checkpoint: locks then checkpoints every CUDA process of the container and records GPU and memory per process', async () => {
    const driver = new FakeCudaDriver({ 101: 'running', 102: 'running', 200: 'running' });
    const task = await checkpointTaskGpu(fakeSupport(driver, fixture, nodeGpus), 100, log);
    expect(task.cudaPids).toEqual([101, 102]);
    expect([driver.state(101), driver.state(102), driver.state(200)]).toEqual(['checkpointed', 'checkpointed', 'running']);
    const mutating = driver.calls.filter((c) => !c.startsWith('get-state'));
    expect(mutating.slice(0, 2)).toEqual(['lock:101', 'lock:102']);
    expect(task.record.processes).toEqual([
      { pid: 101, gpuUuid: 'GPU-a', usedBytes: 16 * GiB },
      { pid: 102, gpuUuid: 'GPU-a', usedBytes: 2 * GiB },
    ]);
  });

  it('checkpoint: a failure in one process leaves every process of the container running', async () => {
    const driver = new FakeCudaDriver({ 101: 'running', 102: 'running' });
    driver.failNext('checkpoint', 102, 'CUDA_ERROR_OUT_OF_MEMORY');
    await expect(checkpointTaskGpu(fakeSupport(driver, fixture, nodeGpus), 100, log)).rejects.toBeInstanceOf(CudaSequenceError);
    expect([driver.state(101), driver.state(102)]).toEqual(['running', 'running']);
  });

  it('checkpoint of a container without a CUDA process fails clearly and changes nothing', async () => {
    const driver = new FakeCudaDriver({});
    const err = await checkpointTaskGpu(fakeSupport(driver, fixture, nodeGpus), 100, log).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/no CUDA process among the container's pids 100,101,102/);
  });

  it('restore: restores onto a same-model GPU when the recorded one is not on this node, unlocks, all running', async () => {
    const driver = new FakeCudaDriver({ 101: 'checkpointed', 102: 'checkpointed' });
    const record: GpuRecord = { ...gpuRecord(availability(nodeGpus), [101, 102]) };
    const otherNode = [gpu('GPU-b', 80)];
    const restored = await restoreTaskGpu(fakeSupport(driver, fixture, otherNode), 100, record, [], log);
    expect(restored.gpuPairs).toEqual([{ oldUuid: 'GPU-a', newUuid: 'GPU-b' }]);
    expect(driver.restorePairs.get(101)).toEqual([{ oldUuid: 'GPU-a', newUuid: 'GPU-b' }]);
    expect([driver.state(101), driver.state(102)]).toEqual(['running', 'running']);
  });

  it('suspend + resume: release in place of the whole container and back, found again from the cgroup', async () => {
    const driver = new FakeCudaDriver({ 101: 'running', 102: 'running' });
    const support = fakeSupport(driver, fixture, nodeGpus);
    await expect(suspendTaskGpu(support, 100, log)).resolves.toEqual([101, 102]);
    expect([driver.state(101), driver.state(102)]).toEqual(['checkpointed', 'checkpointed']);
    await expect(resumeTaskGpu(support, 100, [], log)).resolves.toEqual([101, 102]);
    expect([driver.state(101), driver.state(102)]).toEqual(['running', 'running']);
  });
});

describe.skipIf(existsSync('/proc/driver/nvidia/version'))('a node without a GPU', () => {
  it('answers GPU requests with GpuUnavailable from the node support (and nothing else breaks)', async () => {
    const support = systemGpuSupport();
    await expect(support.availability()).rejects.toBeInstanceOf(GpuUnavailableError);
    await expect(support.driver()).rejects.toBeInstanceOf(GpuUnavailableError);
  });
});
