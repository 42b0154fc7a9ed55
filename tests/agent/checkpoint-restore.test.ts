import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { SANDBOX_ID_ANNOTATION, SANDBOX_KIND, SANDBOX_KIND_LABEL } from '../../src/agent/spec.ts';
import { TEST_IMAGE_REF, testImageArgs } from '../harness/containerd/index.ts';
import { agentDirs, spawnAgentProcess, stopAgentProcess, useAgentStack, type AgentFixture } from './helpers/agent.ts';
import { removeTestContainer, runTestContainer } from './helpers/containers.ts';
import { counterValues, createNetns, httpGetInNamespace, isConsecutive, leftovers, waitFor, waitForCounter } from './helpers/observe.ts';

const stack = useAgentStack('main');
let t: AgentFixture;
beforeAll(() => {
  t = stack();
});

const restoredLog = (id: string): string => path.join(t.dirs.logs, t.namespace, `${id}.log`);

async function startCounter(id: string): Promise<number[]> {
  await runTestContainer(t.ctrd, { id, image: TEST_IMAGE_REF, args: testImageArgs.counter(), namespace: t.namespace, logPath: t.originalLog(id) });
  return waitForCounter(t.originalLog(id), 3);
}

async function checkpoint(containerId: string, leaveRunning: boolean): Promise<string> {
  const op = await t.client.checkpointAndWait({ namespace: t.namespace, containerId, leaveRunning });
  return op.checkpoint_id;
}

describe('counter: checkpoint, kill, restore continues where it stopped', () => {
  it('leaveRunning=false: the task stops at the checkpoint and the restored one prints the next number', async () => {
    await startCounter('counter-stop');
    const checkpointId = await checkpoint('counter-stop', false);
    // The task was frozen for the dump and killed while frozen: its last number is the checkpointed state.
    expect((await t.ctrd.getTask('counter-stop', { namespace: t.namespace })).status).toBe('STOPPED');
    const before = await counterValues(t.originalLog('counter-stop'));
    await removeTestContainer(t.ctrd, 'counter-stop', t.namespace, t.stateDir);

    const restore = await t.client.restoreAndWait({ checkpointId });
    expect(restore).toMatchObject({ state: 'SUCCEEDED', container_id: 'counter-stop', checkpoint_id: checkpointId });
    expect(restore.pid).toBeGreaterThan(0);
    const after = await waitForCounter(restoredLog('counter-stop'), 3);
    expect(after[0]).toBe(before.at(-1)! + 1);
    expect(isConsecutive(after)).toBe(true);
    await removeTestContainer(t.ctrd, 'counter-stop', t.namespace, t.stateDir);
  });

  it('leaveRunning=true: the original keeps counting and a copy continues from the checkpoint', async () => {
    const before = await startCounter('counter-live');
    const checkpointId = await checkpoint('counter-live', true);
    const originalAfter = await waitForCounter(t.originalLog('counter-live'), 2, (await counterValues(t.originalLog('counter-live'))).length);
    expect(isConsecutive(originalAfter)).toBe(true);

    await t.client.restoreAndWait({ checkpointId, containerId: 'counter-live-copy' });
    const copy = await waitForCounter(restoredLog('counter-live-copy'), 3);
    expect(copy[0]).toBeGreaterThan(before.at(-1)!);
    expect(copy[0]).toBeLessThanOrEqual(originalAfter.at(-1)! + 1);
    expect(isConsecutive(copy)).toBe(true);
    await removeTestContainer(t.ctrd, 'counter-live', t.namespace, t.stateDir);
    await removeTestContainer(t.ctrd, 'counter-live-copy', t.namespace, t.stateDir);
  });

  it('twice in a row: a restored container is checkpointed and restored again', async () => {
    await startCounter('counter-twice');
    const first = await checkpoint('counter-twice', false);
    await removeTestContainer(t.ctrd, 'counter-twice', t.namespace, t.stateDir);
    await t.client.restoreAndWait({ checkpointId: first });
    await waitForCounter(restoredLog('counter-twice'), 3);

    const second = await checkpoint('counter-twice', false);
    expect(second).not.toBe(first);
    const beforeSecond = await counterValues(restoredLog('counter-twice'));
    await removeTestContainer(t.ctrd, 'counter-twice', t.namespace, t.stateDir);
    await t.client.restoreAndWait({ checkpointId: second });
    // The same log file: the second restore appends after the first restored task's last number.
    const all = await waitForCounter(restoredLog('counter-twice'), 3, beforeSecond.length);
    expect(isConsecutive(all)).toBe(true);
    await removeTestContainer(t.ctrd, 'counter-twice', t.namespace, t.stateDir);
  });

  it('twice from the same artifact: both copies continue from the same number', async () => {
    await startCounter('counter-src');
    const checkpointId = await checkpoint('counter-src', false);
    const last = (await counterValues(t.originalLog('counter-src'))).at(-1)!;
    await t.client.restoreAndWait({ checkpointId, containerId: 'counter-a' });
    await t.client.restoreAndWait({ checkpointId, containerId: 'counter-b' });
    const a = await waitForCounter(restoredLog('counter-a'), 2);
    const b = await waitForCounter(restoredLog('counter-b'), 2);
    expect([a[0], b[0]]).toEqual([last + 1, last + 1]);
    // The artifact is unchanged by the restores (CRIU wrote its stats into the restore's own link dir).
    await expect(t.agent.agent.ctx.store.verify(checkpointId)).resolves.toMatchObject({ id: checkpointId });
    for (const id of ['counter-src', 'counter-a', 'counter-b']) await removeTestContainer(t.ctrd, id, t.namespace, t.stateDir);
  });

  it('after an agent restart: a checkpoint taken by one agent process is restored by the next', async () => {
    const { containerd } = stack();
    const procDirs = await agentDirs(containerd, 'process');
    await runTestContainer(t.ctrd, { id: 'counter-restart', image: TEST_IMAGE_REF, args: testImageArgs.counter(), namespace: t.namespace, logPath: t.originalLog('counter-restart') });
    await waitForCounter(t.originalLog('counter-restart'), 3);

    const first = await spawnAgentProcess(containerd, procDirs);
    const op = await first.client.checkpointAndWait({ namespace: t.namespace, containerId: 'counter-restart', leaveRunning: false, operationId: 'restart-checkpoint' });
    first.client.close();
    await stopAgentProcess(first.child);
    const last = (await counterValues(t.originalLog('counter-restart'))).at(-1)!;
    await removeTestContainer(t.ctrd, 'counter-restart', t.namespace, t.stateDir);

    const second = await spawnAgentProcess(containerd, procDirs);
    try {
      // The operation record and the artifact both outlived the first process.
      expect(await second.client.getOperation('restart-checkpoint')).toMatchObject({ state: 'SUCCEEDED', checkpoint_id: op.checkpoint_id });
      expect((await second.client.listCheckpoints()).checkpoints.map((c) => c.id)).toEqual([op.checkpoint_id]);
      await second.client.restoreAndWait({ checkpointId: op.checkpoint_id });
      const after = await waitForCounter(path.join(procDirs.logs, t.namespace, 'counter-restart.log'), 3);
      expect(after[0]).toBe(last + 1);
    } finally {
      second.client.close();
      await stopAgentProcess(second.child);
      await removeTestContainer(t.ctrd, 'counter-restart', t.namespace, t.stateDir);
    }
  });

  it('an exported archive imported after the artifact was deleted restores the same state', async () => {
    await startCounter('counter-export');
    const checkpointId = await checkpoint('counter-export', false);
    const last = (await counterValues(t.originalLog('counter-export'))).at(-1)!;
    await removeTestContainer(t.ctrd, 'counter-export', t.namespace, t.stateDir);
    const archive = path.join(t.dirs.base, `${checkpointId}.tar`);
    expect(await t.client.exportCheckpoint(checkpointId, archive)).toBeGreaterThan(0);
    await t.client.deleteCheckpoint(checkpointId);
    await expect(t.client.getCheckpoint(checkpointId)).rejects.toMatchObject({ code: 'NotFound' });
    expect((await t.client.importCheckpoint(archive)).id).toBe(checkpointId);
    await t.client.restoreAndWait({ checkpointId });
    expect((await waitForCounter(restoredLog('counter-export'), 2))[0]).toBe(last + 1);
    await removeTestContainer(t.ctrd, 'counter-export', t.namespace, t.stateDir);
  });

  it('restores with a volume mount whose host source moved (target mounts replace the source)', async () => {
    const volumeA = path.join(t.dirs.base, 'volume-a');
    const volumeB = path.join(t.dirs.base, 'volume-b');
    await fs.mkdir(volumeA, { recursive: true });
    await fs.mkdir(volumeB, { recursive: true });
    await runTestContainer(t.ctrd, {
      id: 'counter-volume',
      image: TEST_IMAGE_REF,
      args: testImageArgs.counter('/data/numbers'),
      namespace: t.namespace,
      logPath: t.originalLog('counter-volume'),
      binds: [{ destination: '/data', source: volumeA }],
    });
    await waitForCounter(t.originalLog('counter-volume'), 3);
    const checkpointId = await checkpoint('counter-volume', false);
    await removeTestContainer(t.ctrd, 'counter-volume', t.namespace, t.stateDir);
    // Volume contents are the operator's to move; CRIU reopens the file by path and checks its size.
    await fs.copyFile(path.join(volumeA, 'numbers'), path.join(volumeB, 'numbers'));
    const before = await counterValues(path.join(volumeA, 'numbers'));
    const last = before.at(-1)!;

    await t.client.restoreAndWait({ checkpointId, containerId: 'counter-volume-moved', target: { mounts: [{ destination: '/data', source: volumeB }] } });
    const moved = await waitForCounter(path.join(volumeB, 'numbers'), 2, before.length);
    // The restored task appends to the file in the new source, right after the number it had written.
    expect(moved[before.length]).toBe(last + 1);
    expect(isConsecutive(moved)).toBe(true);
    expect((await counterValues(path.join(volumeA, 'numbers'))).at(-1)).toBe(last);
    await removeTestContainer(t.ctrd, 'counter-volume-moved', t.namespace, t.stateDir);
  });

  it('leaves no lease, snapshot, bundle, mount or temp dir behind', async () => {
    expect(await leftovers(t.containerd, t.dirs, [])).toEqual([]);
  });
});

/** A pod's sandbox container as CRI makes it (its label, the pod's netns), sleeping. */
async function startSandbox(id: string, netnsPath: string): Promise<void> {
  const labels = { [SANDBOX_KIND_LABEL]: SANDBOX_KIND };
  await runTestContainer(t.ctrd, { id, image: TEST_IMAGE_REF, args: ['/bin/sleep', '100000'], namespace: t.namespace, netnsPath, labels, logPath: t.originalLog(id) });
}

/** The runc shim that serves a task (containerd writes its socket address into the task's bundle). */
async function shimAddress(id: string): Promise<string> {
  return fs.readFile(path.join(t.stateDir, 'io.containerd.runtime.v2.task', t.namespace, id, 'address'), 'utf8');
}

describe('HTTP server restored into another network namespace', () => {
  // Linux 6.16+ needs CRIU >= 4.2, or the stack's 4.1.1 with scripts/containerd's sockopt patch (criu#2705).
  it('answers on the same port with the same state in the target pod\'s shim, and a standalone restore of it is refused', async () => {
    const { containerd } = stack();
    const suffix = randomBytes(3).toString('hex');
    const podA = await createNetns(`kyb-a-${suffix}`);
    const podB = await createNetns(`kyb-b-${suffix}`);
    try {
      await startSandbox('sandbox-a', podA.path);
      await startSandbox('sandbox-b', podB.path);
      await runTestContainer(t.ctrd, {
        id: 'http',
        image: TEST_IMAGE_REF,
        args: testImageArgs.http(8080),
        namespace: t.namespace,
        netnsPath: podA.path,
        annotations: { [SANDBOX_ID_ANNOTATION]: 'sandbox-a' },
        logPath: t.originalLog('http'),
      });
      expect(await shimAddress('http')).toBe(await shimAddress('sandbox-a'));
      const token = await waitFor('httpd in netns A', () => httpGetInNamespace(podA.path, 8080));
      expect(token).toMatch(/^kybernate-test http /);

      const checkpointId = await checkpoint('http', false);
      expect(await httpGetInNamespace(podA.path, 8080)).toBeUndefined();
      await removeTestContainer(t.ctrd, 'http', t.namespace, t.stateDir);
      expect((await t.client.getCheckpoint(checkpointId)).network_namespace).toBe('path');

      const standalone = await t.client.restore({ checkpointId, containerId: 'http-standalone' });
      await expect(t.client.restoreAndWait({ checkpointId, containerId: 'http-standalone', operationId: standalone.id })).rejects.toMatchObject({
        code: 'FailedPrecondition',
      });

      await t.client.restoreAndWait({ checkpointId, containerId: 'http-restored', target: { netnsPath: podB.path, cgroupParent: '/kybernate-test-pod' } });
      // Same token: the restored process, not a new start (a new httpd would make a new token).
      expect(await waitFor('httpd in netns B', () => httpGetInNamespace(podB.path, 8080))).toBe(token);
      expect(await httpGetInNamespace(podA.path, 8080)).toBeUndefined();
      const cgroup = await fs.readFile(`/proc/${(await t.ctrd.getTask('http-restored', { namespace: t.namespace })).pid}/cgroup`, 'utf8');
      expect(cgroup).toContain('/kybernate-test-pod/http-restored');
      // The target pod's sandbox shim serves the restored task (no shim of its own, not the source pod's).
      expect(await shimAddress('http-restored')).toBe(await shimAddress('sandbox-b'));
      await removeTestContainer(t.ctrd, 'http-restored', t.namespace, t.stateDir);
      for (const sandbox of ['sandbox-a', 'sandbox-b']) await removeTestContainer(t.ctrd, sandbox, t.namespace, t.stateDir);
      expect(await leftovers(containerd, t.dirs, [])).toEqual([]);
    } finally {
      for (const id of ['http', 'http-restored', 'sandbox-a', 'sandbox-b']) await removeTestContainer(t.ctrd, id, t.namespace, t.stateDir);
      await podA.remove();
      await podB.remove();
    }
  });
});
