// The containerd/CRIU tier's stack, proven with ctr alone: containerd 1.7 + runc + CRIU 4 run the test image
// and checkpoint/restore it on this kernel. The product path (the agent, over gRPC) is tested in tests/agent.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TEST_IMAGE_REF, testImageArgs } from '../harness/containerd/index.ts';
import { execTool } from '../harness/containerd/exec.ts';
import { useContainerd } from '../harness/containerd/vitest.ts';
import { freeLoopbackPort, numbersIn, waitFor } from './helpers.ts';

describe('containerd + runc + CRIU stack (ctr)', () => {
  const stack = useContainerd();
  const created: string[] = [];

  afterEach(async () => {
    const { containerd } = stack();
    for (const id of created.splice(0)) {
      await containerd.ctr(['tasks', 'delete', '--force', id]).catch(() => undefined);
      await containerd.ctr(['containers', 'delete', id]).catch(() => undefined);
    }
  });

  /** `ctr run -d` of the test image; the task's stdout and stderr go to `<logs>/<id>.log`. */
  async function runDetached(id: string, args: string[], extra: string[] = []): Promise<string> {
    const { containerd } = stack();
    const logFile = join(containerd.logsDir, `${id}.log`);
    created.push(id);
    await containerd.ctr(['run', '--detach', '--log-uri', `file://${logFile}`, ...extra, TEST_IMAGE_REF, id, ...args]);
    return logFile;
  }

  async function counterLog(logFile: string): Promise<number[]> {
    return numbersIn(await readFile(logFile, 'utf8').catch(() => ''));
  }

  it('imports the locally built test image under its fixed name', async () => {
    const { containerd, image } = stack();
    const listed = await containerd.ctr(['images', 'list']);
    expect(listed).toContain(TEST_IMAGE_REF);
    expect(listed).toContain(image.manifest.digest);
  });

  it('runs the counter: increasing numbers on stdout and in its file', async () => {
    const { containerd } = stack();
    const logFile = await runDetached('counter-run', testImageArgs.counter());
    const printed = await waitFor('five counter lines', async () => {
      const numbers = await counterLog(logFile);
      return numbers.length >= 5 ? numbers : undefined;
    });
    expect(printed.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    const inFile = numbersIn(await containerd.ctr(['tasks', 'exec', '--exec-id', 'read-counter', 'counter-run', 'cat', '/tmp/counter.log']));
    expect(inFile.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
  });

  it('serves HTTP on the port given by the args', async () => {
    const port = await freeLoopbackPort();
    await runDetached('http-run', testImageArgs.http(port), ['--net-host']);
    const body = await waitFor(`an HTTP answer on 127.0.0.1:${port}`, async () => {
      const response = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
      return response?.ok ? response.text() : undefined;
    });
    expect(body).toMatch(/^kybernate-test http [0-9a-f-]{36}\n$/);
  });

  it('checkpoints the counter with CRIU and restores it: the counter continues where the checkpoint was taken', async () => {
    const { containerd } = stack();
    const id = 'counter-cr';
    const checkpointRef = 'kybernate.test/checkpoint/counter-cr:1';
    const logFile = await runDetached(id, testImageArgs.counter());
    await waitFor('ten counter lines', async () => ((await counterLog(logFile)).length >= 10 ? true : undefined));

    // --task: CRIU dumps the task's memory (the task is paused meanwhile and resumed after); --rw: the
    // rootfs diff, which holds the counter file the process keeps open.
    await containerd.ctr(['containers', 'checkpoint', '--task', '--rw', id, checkpointRef], { timeoutMs: 120_000 });
    await containerd.ctr(['tasks', 'delete', '--force', id]);
    await containerd.ctr(['containers', 'delete', id]);

    // `ctr containers restore --live --rw` re-creates the container with the checkpointed rootfs diff and
    // starts the task from the CRIU image. It wires no stdio, so the counter file is what shows the state.
    created.push(id);
    await containerd.ctr(['containers', 'restore', '--live', '--rw', id, checkpointRef], { timeoutMs: 120_000 });
    expect(await containerd.ctr(['tasks', 'list'])).toMatch(new RegExp(`^${id}\\s+\\d+\\s+RUNNING`, 'm'));
    let reads = 0;
    const counterFile = async () =>
      numbersIn(await containerd.ctr(['tasks', 'exec', '--exec-id', `read-${++reads}`, id, 'cat', '/tmp/counter.log']));
    const atRestore = await counterFile();
    const later = await waitFor('the restored counter to append five more numbers', async () => {
      const numbers = await counterFile();
      return numbers.length >= atRestore.length + 5 ? numbers : undefined;
    });
    // Restored, not restarted: the file holds 1..N from the checkpoint (taken after >= 10 lines) and the same
    // process goes on with N+1, N+2, ... through the file descriptor CRIU gave back; a fresh start would
    // append 1, 2, ... again, a lost descriptor would append nothing.
    expect(atRestore.length).toBeGreaterThanOrEqual(10);
    expect(later).toEqual(later.map((_, index) => index + 1));
  });

  it('checkpoints the HTTP server in an existing network namespace and restores it there: same token on the same port', async () => {
    const { containerd } = stack();
    const id = 'http-cr';
    const checkpointRef = 'kybernate.test/checkpoint/http-cr:1';
    const port = 8080; // inside the namespace: no clash with the host
    // An existing namespace, as a pod sandbox has: runc joins it and marks it external in the checkpoint,
    // and the restore joins it again. (A namespace runc created itself comes back with lo down: docs/testing.md.)
    const netns = `kyb-harness-${process.pid}`;
    await execTool('ip', ['netns', 'add', netns]);
    try {
      await execTool('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
      await runDetached(id, testImageArgs.http(port), ['--with-ns', `network:/var/run/netns/${netns}`]);
      let gets = 0;
      // busybox wget in the task's namespaces, where the server listens.
      const get = () =>
        containerd
          .ctr(['tasks', 'exec', '--exec-id', `get-${++gets}`, id, 'wget', '-q', '-O', '-', `http://127.0.0.1:${port}/`])
          .catch(() => undefined);
      const before = await waitFor('httpd to answer in the namespace', get);
      expect(before).toMatch(/^kybernate-test http [0-9a-f-]{36}\n$/);

      await containerd.ctr(['containers', 'checkpoint', '--task', '--rw', id, checkpointRef], { timeoutMs: 120_000 });
      await containerd.ctr(['tasks', 'delete', '--force', id]);
      await containerd.ctr(['containers', 'delete', id]);
      await containerd.ctr(['containers', 'restore', '--live', '--rw', id, checkpointRef], { timeoutMs: 120_000 });

      // The listening socket came back with the process: the same token, so the same (restored) server.
      expect(await waitFor('the restored httpd to answer', get)).toBe(before);
    } finally {
      await containerd.ctr(['tasks', 'delete', '--force', id]).catch(() => undefined);
      await execTool('ip', ['netns', 'delete', netns]);
    }
  });
});
