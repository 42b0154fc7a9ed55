import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HarnessError, startControlPlane, type ControlPlane } from '../harness/kube/index.ts';
import { useControlPlane } from '../harness/kube/vitest.ts';
import { apiClient } from './api-client.ts';

/** Waits for a condition the API server brings about asynchronously (bounded; not a timing assertion). */
async function eventually(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Processes whose command line mentions `text` (our daemons carry their temp dir in their flags). */
function processesMentioning(text: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
      } catch {
        return false; // exited while we looked
      }
    })
    .map(Number);
}

describe('kube control plane harness', () => {
  const controlPlane = useControlPlane();
  let plane: ControlPlane;
  let api: ReturnType<typeof apiClient>;
  const namespace = 'harness-test';
  const configMaps = `/api/v1/namespaces/${namespace}/configmaps`;
  const createConfigMap = async (name: string) => {
    const created = await api.call('POST', configMaps, { metadata: { name }, data: { greeting: 'hello' } });
    expect(created.status).toBe(201);
  };

  beforeAll(() => {
    plane = controlPlane();
    api = apiClient(plane);
  });
  afterAll(async () => {
    await api?.close();
  });

  it('serves the API to the admin credentials: a namespace and a ConfigMap round-trip', async () => {
    expect(plane.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(plane.kubeConfig.getCurrentCluster()?.server).toBe(plane.server);
    expect(readFileSync(plane.kubeconfigPath, 'utf8')).toContain(plane.server);

    expect((await api.call('POST', '/api/v1/namespaces', { metadata: { name: namespace } })).status).toBe(201);
    await createConfigMap('first');
    const read = await api.call('GET', `${configMaps}/first`);
    expect(read.body.data).toEqual({ greeting: 'hello' });
  });

  it('a watch sees a ConfigMap created after it started', async () => {
    const list = await api.call('GET', configMaps);
    const watch = await api.watch(configMaps, list.body.metadata?.resourceVersion);
    try {
      await createConfigMap('watched');
      await eventually(() => watch.events.some((e) => e.type === 'ADDED' && e.name === 'watched'), 'ADDED watched');
    } finally {
      watch.abort();
    }
  });

  it('restartApiServer() ends open watches; resuming from the last resourceVersion (or re-listing on 410) misses nothing', async () => {
    const list = await api.call('GET', configMaps);
    const watch = await api.watch(configMaps, list.body.metadata?.resourceVersion);
    await createConfigMap('before-restart');
    await eventually(() => watch.events.some((e) => e.name === 'before-restart'), 'ADDED before-restart');
    const lastSeen = watch.events.at(-1)?.resourceVersion;

    await plane.restartApiServer();
    // The stopping server ends the watch stream cleanly; reconnecting is the client's (the informer's) job.
    await eventually(() => watch.ended() !== undefined, 'the watch to end');
    expect(watch.ended()?.err).toBeUndefined();

    // Written while no watch is open. A new watch from the last seen version either delivers it, or
    // (when the restarted server's watch cache starts at a newer revision, as seen so far) answers
    // 410 Expired, and then a fresh list has it: the informer contract the controller runtime relies on.
    await createConfigMap('after-restart');
    const resumed = await api.watch(configMaps, lastSeen);
    try {
      await eventually(() => resumed.events.length > 0, 'the resumed watch to answer');
      const [first] = resumed.events;
      if (first?.type === 'ERROR') {
        expect(first.status).toEqual({ code: 410, reason: 'Expired' });
        const relisted = await api.call('GET', configMaps);
        expect(relisted.body.items?.map((item) => item.metadata?.name)).toContain('after-restart');
      } else {
        expect(resumed.events.map((e) => `${e.type} ${e.name}`)).toEqual(['ADDED after-restart']);
      }
    } finally {
      resumed.abort();
    }
  });

  it('kubectl works with the written kubeconfig, including kubectl explain', async () => {
    const { stdout } = await plane.kubectl(['get', 'configmaps', '-n', namespace, '-o', 'name']);
    expect(stdout.split('\n')).toEqual(expect.arrayContaining(['configmap/first', 'configmap/after-restart']));
    const explained = await plane.kubectl(['explain', 'configmap.data']);
    expect(explained.stdout).toContain('FIELD: data');
  });
});

describe('kube control plane lifecycle', () => {
  it('stop() ends etcd and kube-apiserver and removes the temp dir; a second stop() is harmless', async () => {
    const plane = await startControlPlane();
    expect(processesMentioning(plane.rootDir)).toHaveLength(2);

    await plane.stop();
    expect(processesMentioning(plane.rootDir)).toEqual([]);
    expect(existsSync(plane.rootDir)).toBe(false);
    await plane.stop();
  });

  it('etcd and kube-apiserver die with the process that started them, even when it is SIGKILLed', async () => {
    // The harness's own CLI in one node process (no npx/tsx launcher in between), killed without warning.
    const cli = spawn(process.execPath, ['--import', 'tsx', 'tests/harness/kube/cli.ts', 'up'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    cli.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await eventually(() => /export KUBECONFIG=/.test(output), 'the CLI to print the kubeconfig', 120_000);
    const kubeconfig = /export KUBECONFIG=(.*)\n/.exec(output)?.[1];
    const rootDir = dirname(kubeconfig!);
    expect(processesMentioning(rootDir)).toHaveLength(2);

    cli.kill('SIGKILL');
    try {
      await eventually(() => processesMentioning(rootDir).length === 0, 'the daemons to die');
    } finally {
      await rm(rootDir, { recursive: true, force: true });
    }
  });

  it('a kube-apiserver that fails to start: the error carries its log, no process is left, the files are kept', async () => {
    const baseDir = await mkdtemp(join(tmpdir(), 'kybernate-harness-test-'));
    try {
      const failure = await startControlPlane({ baseDir, apiServerFlags: ['--no-such-flag'] }).catch((err) => err);
      expect(failure).toBeInstanceOf(HarnessError);
      expect(failure.message).toContain('kube-apiserver exited');
      expect(failure.message).toContain('unknown flag: --no-such-flag');
      const [rootDir] = readdirSync(baseDir);
      expect(processesMentioning(join(baseDir, rootDir!))).toEqual([]);
      expect(readFileSync(join(baseDir, rootDir!, 'logs', 'kube-apiserver.log'), 'utf8')).toContain('no-such-flag');
    } finally {
      await rm(baseDir, { recursive: true, force: true });
    }
  });

  it('missing binaries: the error says to run scripts/setup.sh', async () => {
    const emptyCache = await mkdtemp(join(tmpdir(), 'kybernate-empty-cache-'));
    const saved = process.env.KYBERNATE_CACHE;
    process.env.KYBERNATE_CACHE = emptyCache;
    try {
      await expect(startControlPlane()).rejects.toThrow(/etcd not found at .*run `bash scripts\/setup\.sh`/);
    } finally {
      if (saved === undefined) delete process.env.KYBERNATE_CACHE;
      else process.env.KYBERNATE_CACHE = saved;
      await rm(emptyCache, { recursive: true, force: true });
    }
  });
});
