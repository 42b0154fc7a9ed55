import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { kubeBinary } from '../harness/kube/binaries.ts';
import { Daemon } from '../harness/kube/daemon.ts';
import { HarnessError } from '../harness/kube/errors.ts';
import { startEtcd } from '../harness/kube/control-plane.ts';
import { startOnFreePort } from '../harness/kube/ports.ts';
import { createLogger } from '../../src/lib/log.ts';

const log = createLogger('ports-test');
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function occupy(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** The harness's real etcd on `clientPort`; fails with etcd's own log tail when it cannot bind. */
async function startEtcdOn(clientPort: number): Promise<Daemon> {
  const rootDir = await mkdtemp(join(tmpdir(), 'kybernate-ports-test-'));
  cleanups.push(() => rm(rootDir, { recursive: true, force: true }));
  await mkdir(join(rootDir, 'logs'));
  const { daemon } = await startEtcd(kubeBinary('etcd'), rootDir, clientPort, 60_000, log);
  cleanups.push(() => daemon.stop(5_000));
  return daemon;
}

describe('startOnFreePort', () => {
  it('retries with another port when the daemon finds its port taken (a real etcd on an occupied port)', async () => {
    const tried: number[] = [];
    const daemon = await startOnFreePort(async (port) => {
      tried.push(port);
      if (tried.length === 1) {
        // Another process takes the port between our probe and the daemon's bind.
        const thief = await occupy(port);
        cleanups.push(() => new Promise((resolve) => thief.close(resolve)));
        thief.on('connection', (socket) => socket.destroy());
      }
      return startEtcdOn(port);
    });
    expect(tried).toHaveLength(2);
    expect(daemon.exited).toBe(false);
  });

  it('gives up after three taken ports, with the last error', async () => {
    let attempts = 0;
    const portTaken = () => new HarnessError('etcd exited', { logTail: 'listen tcp: bind: address already in use' });
    const failure = await startOnFreePort(async () => {
      attempts++;
      throw portTaken();
    }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(HarnessError);
    expect(attempts).toBe(3);
  });

  it('does not retry other failures', async () => {
    let attempts = 0;
    await expect(
      startOnFreePort(async () => {
        attempts++;
        throw new HarnessError('kube-apiserver exited', { logTail: 'unknown flag: --x' });
      }),
    ).rejects.toThrow('kube-apiserver exited');
    expect(attempts).toBe(1);
  });
});
