import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../../../src/agent/client.ts';
import { parseAgentConfig } from '../../../src/agent/config.ts';
import { ContainerdClient } from '../../../src/agent/containerd/client.ts';
import { startAgent, type RunningAgent } from '../../../src/agent/start.ts';
import { createLogger } from '../../../src/lib/log.ts';
import { afterAll, beforeAll } from 'vitest';
import type { Containerd, ContainerdOptions } from '../../harness/containerd/index.ts';
import { useContainerd } from '../../harness/containerd/vitest.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface AgentDirs {
  base: string;
  socket: string;
  store: string;
  logs: string;
}

export async function agentDirs(containerd: Containerd, name: string): Promise<AgentDirs> {
  const base = path.join(containerd.dir, `agent-${name}`);
  await fs.mkdir(base, { recursive: true });
  return { base, socket: path.join(base, 'agent.sock'), store: path.join(base, 'store'), logs: path.join(base, 'logs') };
}

export function agentFlags(containerd: Containerd, dirs: AgentDirs): string[] {
  return [`--socket=${dirs.socket}`, `--containerd=${containerd.address}`, `--store=${dirs.store}`, `--log-dir=${dirs.logs}`, `--criu=${containerd.bin.criu}`, '--criu-timeout=2m'];
}

/** The agent in this process, against the harness's containerd. */
export async function startTestAgent(containerd: Containerd, dirs: AgentDirs): Promise<{ running: RunningAgent; client: AgentClient }> {
  const running = await startAgent(parseAgentConfig({}, agentFlags(containerd, dirs)), createLogger('agent-under-test'));
  return { running, client: new AgentClient({ socketPath: dirs.socket }) };
}

/** The agent as its own process (`src/agent/main.ts`), for restarts; resolves once it answers Health. */
export async function spawnAgentProcess(containerd: Containerd, dirs: AgentDirs): Promise<{ child: ChildProcess; client: AgentClient; output: () => string }> {
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/agent/main.ts'), ...agentFlags(containerd, dirs)], {
    cwd: REPO_ROOT,
    // The stack's PATH (for `criu --version`), but not containerd's TMPDIR, which the leak checks watch.
    env: { ...process.env, PATH: containerd.env.PATH, KYBERNATE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const client = new AgentClient({ socketPath: dirs.socket, timeoutMs: 2_000 });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`agent process exited with ${child.exitCode}: ${output}`);
    const health = await client.health().catch(() => undefined);
    if (health?.status === 'SERVING') return { child, client, output: () => output };
    if (Date.now() > deadline) throw new Error(`agent process did not become healthy: ${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export async function stopAgentProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

export function containerdClient(containerd: Containerd): ContainerdClient {
  return new ContainerdClient({ address: containerd.address });
}

export interface AgentFixture {
  containerd: Containerd;
  dirs: AgentDirs;
  agent: RunningAgent;
  client: AgentClient;
  ctrd: ContainerdClient;
  namespace: string;
  /** containerd's state dir (runc bundles), for removeTestContainer */
  stateDir: string;
  /** where a test container started by the test (not restored by the agent) logs */
  originalLog: (id: string) => string;
}

/** The harness's containerd with the test image, and an agent in this process, for the calling test file. */
export function useAgentStack(name: string, containerdOptions: ContainerdOptions = {}): () => AgentFixture {
  const stack = useContainerd(containerdOptions);
  let fixture: AgentFixture | undefined;
  beforeAll(async () => {
    const { containerd } = stack();
    const dirs = await agentDirs(containerd, name);
    const { running, client } = await startTestAgent(containerd, dirs);
    const ctrd = containerdClient(containerd);
    fixture = {
      containerd,
      dirs,
      agent: running,
      client,
      ctrd,
      namespace: containerd.namespace,
      stateDir: path.join(containerd.dir, 'state'),
      originalLog: (id) => path.join(dirs.base, `original-${id}.log`),
    };
  });
  afterAll(async () => {
    fixture?.client.close();
    fixture?.ctrd.close();
    await fixture?.agent.stop();
  });
  return () => {
    if (!fixture) throw new Error('the agent is not started yet: use the getter inside tests or hooks');
    return fixture;
  };
}
