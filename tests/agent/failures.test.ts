import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/agent/client.ts';
import { startAgent } from '../../src/agent/start.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { transparentHugePages } from '../../src/agent/node-info.ts';
import { createLogger } from '../../src/lib/log.ts';
import { TEST_IMAGE_REF, testImageArgs } from '../harness/containerd/index.ts';
import { agentDirs, useAgentStack, type AgentFixture } from './helpers/agent.ts';
import { removeTestContainer, runTestContainer } from './helpers/containers.ts';
import { httpGetInNamespace, leftovers, waitFor, waitForCounter } from './helpers/observe.ts';

const run = promisify(execFile);

const stack = useAgentStack('failures');
let t: AgentFixture;
beforeAll(() => {
  t = stack();
});


async function startCounter(id: string, hostPid = false): Promise<void> {
  await runTestContainer(t.ctrd, { id, image: TEST_IMAGE_REF, args: testImageArgs.counter(), namespace: t.namespace, logPath: t.originalLog(id), hostPid });
  await waitForCounter(t.originalLog(id), 2);
}

describe('checkpoint failures', () => {
  it('a missing container fails with NotFound and leaves nothing behind', async () => {
    const op = await t.client.waitForOperation((await t.client.checkpoint({ namespace: t.namespace, containerId: 'no-such-container', leaveRunning: true })).id);
    expect(op).toMatchObject({ state: 'FAILED', error_code: 'NotFound' });
    expect(op.error_message).toMatch(/no-such-container/);
    expect((await t.client.listCheckpoints()).checkpoints).toEqual([]);
    expect(await leftovers(t.containerd, t.dirs, [])).toEqual([]);
  });

  it('refuses bad requests before starting anything', async () => {
    await expect(t.client.checkpoint({ namespace: t.namespace, containerId: '', leaveRunning: true })).rejects.toMatchObject({ code: 'InvalidInput' });
    await expect(t.client.checkpoint({ namespace: t.namespace, containerId: 'x', leaveRunning: true, checkpointId: '../escape' })).rejects.toMatchObject({
      code: 'InvalidInput',
    });
  });

  it('serializes concurrent checkpoints of one container, and a repeated operation id starts nothing new', async () => {
    await startCounter('counter-concurrent');
    const request = { namespace: t.namespace, containerId: 'counter-concurrent', leaveRunning: true };
    const [first, second] = await Promise.all([
      t.client.checkpoint({ ...request, operationId: 'concurrent-1' }),
      t.client.checkpoint({ ...request, operationId: 'concurrent-2' }),
    ]);
    const again = await t.client.checkpoint({ ...request, operationId: 'concurrent-1' });
    expect(again.id).toBe(first.id);
    await expect(t.client.checkpoint({ ...request, leaveRunning: false, operationId: 'concurrent-1' })).rejects.toMatchObject({ code: 'AlreadyExists' });

    const [a, b] = await Promise.all([t.client.waitForOperation(first.id), t.client.waitForOperation(second.id)]);
    expect([a.state, b.state]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    expect(a.checkpoint_id).not.toBe(b.checkpoint_id);
    // One after the other: whichever started second started after the first had finished.
    const [earlier, later] = [a, b].sort((x, y) => x.started_at.localeCompare(y.started_at));
    expect(later!.started_at >= earlier!.updated_at).toBe(true);
    expect((await t.client.listCheckpoints()).checkpoints).toHaveLength(2);
    expect((await t.ctrd.getTask('counter-concurrent', { namespace: t.namespace })).status).toBe('RUNNING');
    await removeTestContainer(t.ctrd, 'counter-concurrent', t.namespace, t.stateDir);
  });

  it('a failing CRIU dump leaves the container running and unpaused, with no partial checkpoint', async () => {
    // CRIU refuses an established TCP connection unless told to dump it: a client holds one open to httpd.
    await runTestContainer(t.ctrd, { id: 'http-busy', image: TEST_IMAGE_REF, args: testImageArgs.http(8080), namespace: t.namespace, logPath: t.originalLog('http-busy') });
    const pid = (await t.ctrd.getTask('http-busy', { namespace: t.namespace })).pid;
    const netns = `/proc/${pid}/ns/net`;
    await waitFor('httpd', () => httpGetInNamespace(netns, 8080));
    const holder = spawn('nsenter', [`--net=${netns}`, process.execPath, '-e', HOLD_CONNECTION], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve) => holder.stdout!.once('data', resolve));
      const op = await t.client.waitForOperation((await t.client.checkpoint({ namespace: t.namespace, containerId: 'http-busy', leaveRunning: false })).id);
      expect(op.state).toBe('FAILED');
      expect(op.error_message).toMatch(/CRIU dump.log/);
      expect((await t.ctrd.getTask('http-busy', { namespace: t.namespace })).status).toBe('RUNNING');
      expect(await httpGetInNamespace(netns, 8080)).toMatch(/^kybernate-test http /);
    } finally {
      holder.kill();
    }
    expect((await t.client.listCheckpoints()).checkpoints.map((c) => c.container_id)).not.toContain('http-busy');
    await removeTestContainer(t.ctrd, 'http-busy', t.namespace, t.stateDir);
    expect(await leftovers(t.containerd, t.dirs, [])).toEqual([]);
  });
});

/** Connects to 127.0.0.1:8080, says so on stdout, and keeps the connection open until killed. */
const HOLD_CONNECTION = "const s = require('net').connect(8080, '127.0.0.1', () => { s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\n'); process.stdout.write('connected\\n'); }); setInterval(() => {}, 1000);";

describe('restore failures', () => {
  let checkpointId: string;

  beforeAll(async () => {
    await startCounter('counter-source');
    checkpointId = (await t.client.checkpointAndWait({ namespace: t.namespace, containerId: 'counter-source', leaveRunning: false })).checkpoint_id;
    await removeTestContainer(t.ctrd, 'counter-source', t.namespace, t.stateDir);
  });

  async function restoreFails(request: Parameters<AgentClient['restore']>[0]): Promise<{ code: string; message: string }> {
    const op = await t.client.waitForOperation((await t.client.restore(request)).id);
    expect(op.state).toBe('FAILED');
    return { code: op.error_code, message: op.error_message };
  }

  it('rejects a corrupted artifact before CRIU runs, naming the damaged file', async () => {
    const criuDir = path.join(t.dirs.store, 'artifacts', checkpointId, 'criu');
    const pages = (await fs.readdir(criuDir)).find((name) => name.startsWith('pages-'))!;
    const file = path.join(criuDir, pages);
    const original = await fs.readFile(file);
    const damaged = Buffer.from(original);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    await fs.writeFile(file, damaged);
    try {
      const failure = await restoreFails({ checkpointId, containerId: 'from-corrupt' });
      expect(failure.code).toBe('CorruptArtifact');
      expect(failure.message).toContain(`criu/${pages}: checksum`);
      await fs.truncate(file, 100);
      expect((await restoreFails({ checkpointId, containerId: 'from-truncated' })).message).toContain(`criu/${pages}: size 100`);
    } finally {
      await fs.writeFile(file, original);
    }
    const manifestPath = path.join(t.dirs.store, 'artifacts', checkpointId, 'manifest.json');
    const manifest = await fs.readFile(manifestPath, 'utf8');
    await fs.writeFile(manifestPath, JSON.stringify({ ...JSON.parse(manifest), kind: 'someone-else/checkpoint' }));
    try {
      await expect(t.client.restore({ checkpointId, containerId: 'from-foreign' })).rejects.toMatchObject({ code: 'CorruptArtifact' });
    } finally {
      await fs.writeFile(manifestPath, manifest);
    }
    expect(await leftovers(t.containerd, t.dirs, [])).toEqual([]);
  });

  it('names a missing base image and an occupied container id, creating nothing', async () => {
    const other = await restoreFails({ checkpointId, namespace: 'kybernate-empty', containerId: 'no-image' });
    expect(other.code).toBe('BaseImageMissing');
    expect(other.message).toContain(TEST_IMAGE_REF);

    await startCounter('occupied');
    expect((await restoreFails({ checkpointId, containerId: 'occupied' })).code).toBe('AlreadyExists');
    await removeTestContainer(t.ctrd, 'occupied', t.namespace, t.stateDir);
    expect(await leftovers(t.containerd, t.dirs, [])).toEqual([]);
  });

  it('reports a pid collision in a shared pid namespace and removes the half-made container', async () => {
    await startCounter('host-pid', true);
    const hostPidCheckpoint = (await t.client.checkpointAndWait({ namespace: t.namespace, containerId: 'host-pid', leaveRunning: true })).checkpoint_id;
    // The original still runs with the checkpointed pids in the host's pid namespace.
    const failure = await restoreFails({ checkpointId: hostPidCheckpoint, containerId: 'host-pid-copy' });
    expect(failure.code).toBe('PidCollision');
    await removeTestContainer(t.ctrd, 'host-pid', t.namespace, t.stateDir);
    expect(await leftovers(t.containerd, t.dirs, [])).toEqual([]);
  });

  it('says containerd is unavailable when it is down, and reports NOT_SERVING', async () => {
    const { containerd } = stack();
    const downDirs = await agentDirs(containerd, 'down');
    const flags = [`--socket=${downDirs.socket}`, `--containerd=${path.join(downDirs.base, 'no-containerd.sock')}`, `--store=${downDirs.store}`, `--log-dir=${downDirs.logs}`];
    const down = await startAgent(parseAgentConfig({}, flags), createLogger('agent-down'));
    const downClient = new AgentClient({ socketPath: downDirs.socket });
    try {
      expect((await downClient.health()).status).toBe('NOT_SERVING');
      const op = await downClient.waitForOperation((await downClient.checkpoint({ namespace: t.namespace, containerId: 'any', leaveRunning: true })).id);
      expect(op).toMatchObject({ state: 'FAILED', error_code: 'Unavailable' });
    } finally {
      downClient.close();
      await down.stop();
    }
  });
});

describe('agent API', () => {
  it('reports status and health', async () => {
    const status = await t.client.getStatus();
    expect(status).toMatchObject({ containerd_reachable: true, store_root: t.dirs.store, log_dir: t.dirs.logs });
    expect(status.criu_version).toMatch(/^\d+\.\d+/);
    expect(status.transparent_hugepages).toBe(await transparentHugePages());
    expect(status.transparent_hugepages).toMatch(/^(always|madvise|never)$/);
    expect((await t.client.health()).status).toBe('SERVING');
    const { stdout } = await run(t.containerd.bin.criu, ['--version']);
    expect(stdout).toContain(status.criu_version);
  });

  it('answers NotFound for unknown checkpoints and operations', async () => {
    await expect(t.client.getCheckpoint('nope')).rejects.toMatchObject({ code: 'NotFound' });
    await expect(t.client.deleteCheckpoint('nope')).rejects.toMatchObject({ code: 'NotFound' });
    await expect(t.client.getOperation('nope')).rejects.toMatchObject({ code: 'NotFound' });
    await expect(t.client.restore({ checkpointId: 'nope' })).rejects.toMatchObject({ code: 'NotFound' });
  });
});
