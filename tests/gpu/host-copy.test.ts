import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointContainer, type AgentContext } from '../../src/agent/checkpoint.ts';
import { ContainerdClient } from '../../src/agent/containerd/client.ts';
import { CorruptArtifactError, ContainerdError } from '../../src/agent/errors.ts';
import { totalBytes } from '../../src/agent/memory/maps.ts';
import { restoreCheckpoint } from '../../src/agent/restore.ts';
import { CheckpointStore } from '../../src/agent/store/store.ts';
import { NotFoundError } from '../../src/lib/errors.ts';
import { createLogger } from '../../src/lib/log.ts';
import { removeTestContainer, runTestContainer } from '../agent/helpers/containers.ts';
import { TEST_IMAGE_REF } from '../harness/containerd/index.ts';
import { useContainerd } from '../harness/containerd/vitest.ts';
import { testGpuSupport } from '../cuda/fake-driver.ts';
import { buildFakeGpuWorkload, fakeGpuCounter, FakeGpuDriver } from './fake-gpu/driver.ts';

/**
 * The host copy of GPU memory kept out of CRIU's image (src/agent/gpu/host-copy.ts), through the agent's
 * checkpoint and restore on the real stack (containerd, runc, CRIU). The GPU is a TEST DOUBLE: the fake
 * GPU workload (fake-gpu/workload.c) whose own "restore thread" does in the process what the CUDA driver
 * does there, so the agent really stops the other threads, finds the mapping the checkpoint created,
 * saves and frees it, and writes it back before the CUDA restore; the workload's checksum of its device
 * memory shows whether the bytes survived.
 */
const getContainerd = useContainerd();
const log = createLogger('host-copy-test');
const MIB = 1 << 20;
const DEVICE_MIB = 48;
/** small chunks and one worker: the 48 MiB host copy is two files (segments) of three chunks each */
const CHUNK_BYTES = 8 * MIB;
const SEGMENT_BYTES = 24 * MIB;

describe('GPU host copy beside the CRIU image (real containerd + CRIU, fake GPU workload)', () => {
  let client: ContainerdClient;
  let ctx: AgentContext;
  let store: CheckpointStore;
  let binary: string;
  let root: string;

  beforeAll(async () => {
    const { containerd } = getContainerd();
    client = new ContainerdClient({ address: containerd.address });
    root = path.join(containerd.dir, 'host-copy');
    await fs.mkdir(path.join(root, 'bin'), { recursive: true });
    binary = buildFakeGpuWorkload(path.join(root, 'bin'));
    store = new CheckpointStore(path.join(root, 'store'), { chunkBytes: CHUNK_BYTES, maxWorkers: 1 });
    await store.init();
    ctx = { containerd: client, store, log, nodeInfo: { node: 'test', kernel: 'test', criu: 'test', containerd: 'test' }, criuTimeoutMs: 120_000, logDir: path.join(root, 'logs') };
  });
  afterAll(() => client?.close());

  interface Workload {
    id: string;
    stateDir: string;
    driver: FakeGpuDriver;
    checksum: bigint;
  }

  async function startWorkload(id: string): Promise<Workload> {
    const { containerd } = getContainerd();
    const stateDir = path.join(root, id);
    await fs.rm(stateDir, { recursive: true, force: true });
    await fs.mkdir(stateDir, { recursive: true });
    await runTestContainer(client, {
      id,
      image: TEST_IMAGE_REF,
      args: [binary, stateDir, String(DEVICE_MIB)],
      namespace: containerd.namespace,
      logPath: path.join(root, 'logs', `${id}.log`),
      binds: [{ destination: path.dirname(binary), source: path.dirname(binary) }, { destination: stateDir, source: stateDir }],
    });
    await waitForCounting(stateDir);
    const driver = new FakeGpuDriver(stateDir);
    ctx.gpu = testGpuSupport(driver);
    return { id, stateDir, driver, checksum: await driver.checksum() };
  }

  async function waitForCounting(stateDir: string, after = 0): Promise<number> {
    for (let waited = 0; waited < 30_000; waited += 50) {
      const counter = await fakeGpuCounter(stateDir);
      if (counter > after + 3) return counter;
      await sleep(50);
    }
    throw new Error(`the fake GPU workload in ${stateDir} is not counting past ${after}`);
  }

  async function remove(id: string): Promise<void> {
    const { containerd } = getContainerd();
    await removeTestContainer(client, id, containerd.namespace, path.join(containerd.dir, 'state'));
  }

  /** Bytes of CRIU's page images in an artifact. */
  async function criuPageBytes(checkpointId: string): Promise<number> {
    const dir = path.join(store.artifactPath(checkpointId), 'criu');
    const pages = (await fs.readdir(dir)).filter((name) => name.startsWith('pages-'));
    return (await Promise.all(pages.map((name) => fs.stat(path.join(dir, name))))).reduce((sum, stat) => sum + stat.size, 0);
  }

  it('keeps the host copy out of the CRIU image and writes it back into the restored process before the CUDA restore', async () => {
    const { containerd } = getContainerd();
    const workload = await startWorkload('host-copy-restore');
    try {
      const steps: string[] = [];
      const manifest = await checkpointContainer(ctx, { namespace: containerd.namespace, containerId: workload.id, leaveRunning: false, gpu: true }, (step) => steps.push(step));
      expect(steps).toEqual(['inspect', 'gpu-checkpoint', 'host-copy', 'pause', 'capture', 'commit', 'stop']);
      const copies = manifest.gpu?.hostCopies ?? [];
      expect(copies.map((copy) => [copy.nsPid, copy.file])).toEqual([[1, 'host-copy/pid-1-0.img'], [1, 'host-copy/pid-1-1.img']]);
      expect(totalBytes(copies.flatMap((copy) => copy.ranges))).toBe(DEVICE_MIB * MIB);
      for (const copy of copies) {
        const file = manifest.files.find((entry) => entry.path === copy.file);
        expect(file).toMatchObject({ size: SEGMENT_BYTES, chunkBytes: CHUNK_BYTES });
        expect(file && 'chunkSha256' in file ? file.chunkSha256 : []).toHaveLength(SEGMENT_BYTES / CHUNK_BYTES);
      }
      // CRIU dumped the rest of the process only: far less than the device memory it held.
      expect(await criuPageBytes(manifest.id)).toBeLessThan(8 * MIB);
      expect((await client.getTask(workload.id, { namespace: containerd.namespace })).status).toBe('STOPPED');

      await remove(workload.id);
      const counterAtCheckpoint = await fakeGpuCounter(workload.stateDir);
      const restoreSteps: string[] = [];
      await restoreCheckpoint(ctx, { checkpointId: manifest.id, target: {} }, (step) => restoreSteps.push(step));
      expect(restoreSteps.slice(-3)).toEqual(['criu-restore', 'host-copy', 'gpu-restore']);
      expect(await workload.driver.getState(await initPid(workload.id))).toBe('running');
      await waitForCounting(workload.stateDir, counterAtCheckpoint);
      expect(await workload.driver.checksum()).toBe(workload.checksum);
    } finally {
      await remove(workload.id);
    }
  }, 120_000);

  it('leaveRunning: the host copy goes back into the running process before its CUDA restore', async () => {
    const { containerd } = getContainerd();
    const workload = await startWorkload('host-copy-leave-running');
    try {
      const manifest = await checkpointContainer(ctx, { namespace: containerd.namespace, containerId: workload.id, leaveRunning: true, gpu: true }, () => undefined);
      expect(manifest.gpu?.hostCopies).toHaveLength(2);
      expect((await client.getTask(workload.id, { namespace: containerd.namespace })).status).toBe('RUNNING');
      await waitForCounting(workload.stateDir, await fakeGpuCounter(workload.stateDir));
      expect(await workload.driver.checksum()).toBe(workload.checksum);
    } finally {
      await remove(workload.id);
    }
  }, 120_000);

  it('--gpu-host-copy=criu: no host copy is kept, CRIU dumps the device memory with the rest, and the restore brings it back', async () => {
    const { containerd } = getContainerd();
    const workload = await startWorkload('host-copy-criu');
    ctx.gpu = { ...ctx.gpu!, hostCopy: 'criu' };
    try {
      const steps: string[] = [];
      const manifest = await checkpointContainer(ctx, { namespace: containerd.namespace, containerId: workload.id, leaveRunning: false, gpu: true }, (step) => steps.push(step));
      expect(steps).toEqual(['inspect', 'gpu-checkpoint', 'pause', 'capture', 'commit', 'stop']);
      expect(manifest.gpu?.hostCopies).toBeUndefined();
      expect(manifest.files.filter((file) => file.path.startsWith('host-copy/'))).toEqual([]);
      expect(await criuPageBytes(manifest.id)).toBeGreaterThan(DEVICE_MIB * MIB);

      await remove(workload.id);
      const counterAtCheckpoint = await fakeGpuCounter(workload.stateDir);
      await restoreCheckpoint(ctx, { checkpointId: manifest.id, target: {} }, () => undefined);
      await waitForCounting(workload.stateDir, counterAtCheckpoint);
      expect(await workload.driver.checksum()).toBe(workload.checksum);
    } finally {
      await remove(workload.id);
    }
  }, 120_000);

  it('a CRIU failure after the host copy was freed puts it back: the workload runs on with its memory, nothing is stored', async () => {
    const { containerd } = getContainerd();
    const workload = await startWorkload('host-copy-rollback');
    // A connection to a peer outside the container: CRIU refuses to dump it (no external unix sockets allowed).
    const socketPath = path.join(workload.stateDir, 'peer.sock');
    const peer = net.createServer(() => undefined).listen(socketPath);
    try {
      await workload.driver.connect(socketPath);
      const stored = (await store.list()).length;
      const err = await checkpointContainer(ctx, { namespace: containerd.namespace, containerId: workload.id, leaveRunning: false, gpu: true }, () => undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ContainerdError);
      expect((await store.list()).length).toBe(stored);
      expect(await fs.readdir(path.join(store.root, 'staging'))).toEqual([]);
      expect((await client.getTask(workload.id, { namespace: containerd.namespace })).status).toBe('RUNNING');
      expect(await workload.driver.getState(await initPid(workload.id))).toBe('running');
      await waitForCounting(workload.stateDir, await fakeGpuCounter(workload.stateDir));
      expect(await workload.driver.checksum()).toBe(workload.checksum);
    } finally {
      peer.close();
      await remove(workload.id);
    }
  }, 120_000);

  it('a corrupt host copy fails the restore naming the file and chunk; no container is left, nothing runs CUDA-locked', async () => {
    const { containerd } = getContainerd();
    const workload = await startWorkload('host-copy-corrupt');
    let checkpointId = '';
    try {
      const manifest = await checkpointContainer(ctx, { namespace: containerd.namespace, containerId: workload.id, leaveRunning: false, gpu: true }, () => undefined);
      checkpointId = manifest.id;
      await remove(workload.id);
      const image = path.join(store.artifactPath(manifest.id), manifest.gpu!.hostCopies![1]!.file);
      const handle = await fs.open(image, 'r+');
      await handle.write(Buffer.from([0xff, 0x00, 0xff]), 0, 3, 2 * CHUNK_BYTES + 4096);
      await handle.close();

      const err = await restoreCheckpoint(ctx, { checkpointId: manifest.id, target: {} }, () => undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CorruptArtifactError);
      expect((err as Error).message).toMatch(/host-copy\/pid-1-1\.img: checksum of chunk 2 \(bytes 16777216-25165823\)/);
      await expect(client.getContainer(workload.id, { namespace: containerd.namespace })).rejects.toBeInstanceOf(NotFoundError);
    } finally {
      await remove(workload.id);
      if (checkpointId) await store.delete(checkpointId).catch(() => undefined);
    }
  }, 120_000);

  async function initPid(id: string): Promise<number> {
    const { containerd } = getContainerd();
    return (await client.getTask(id, { namespace: containerd.namespace })).pid;
  }
});
