import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, type Logger } from '../../../src/lib/log.ts';
import { errorMessage } from '../../../src/lib/errors.ts';
import { Daemon } from '../kube/daemon.ts';
import { HarnessError } from '../kube/errors.ts';
import { criPluginToml, type CriPluginOptions } from './cri.ts';
import { execTool } from './exec.ts';
import { stackBinaries, type StackBinaries } from './stack.ts';

/** The namespace the harness uses unless told otherwise (the product's own containers; CRI's is `k8s.io`). */
export const DEFAULT_NAMESPACE = 'kybernate-test';

/** runc shim v2 keeps runc's state here per namespace whatever containerd's state dir is (no Options.root). */
const RUNC_ROOT = '/run/containerd/runc';

export interface ContainerdOptions {
  namespace?: string;
  /** containerd's log level (default `info`; `debug` shows every shim and CRIU call). */
  logLevel?: 'debug' | 'info' | 'warn';
  /** Enable containerd's CRI plugin (what the kubelet talks to) with this setup (cri.ts); off by default, it slows the start. */
  cri?: CriPluginOptions;
  startTimeoutMs?: number;
  logger?: Logger;
}

export interface CtrOptions {
  namespace?: string;
  timeoutMs?: number;
}

export interface StopOptions {
  /** Keep the logs folder (containerd.log) after stopping, e.g. because a test failed. */
  keepLogs?: boolean;
}

export interface Containerd {
  /** Path of containerd's gRPC unix socket (gRPC clients: `unix://${address}`). */
  address: string;
  namespace: string;
  /** containerd's process id. */
  pid: number;
  /** The instance's temp folder: root/, state/, run/ (XDG_RUNTIME_DIR), config.toml, the socket, logs/. */
  dir: string;
  /** containerd.log lives here; kept by `stop({ keepLogs: true })`. */
  logsDir: string;
  /**
   * The environment containerd runs with, for tools a test starts against this instance: PATH with the
   * stack first (containerd-shim-runc-v2, runc, criu), XDG_RUNTIME_DIR, CRIU_FAULT (see below),
   * CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE.
   */
  env: NodeJS.ProcessEnv;
  bin: StackBinaries;
  /** Runs `ctr --address <socket> --namespace <ns> ...args` and returns its stdout. */
  ctr(args: string[], options?: CtrOptions): Promise<string>;
  /** Deletes every task and container, stops containerd, kills leftover shims, unmounts and removes the files. */
  stop(options?: StopOptions): Promise<void>;
}

/**
 * Starts a private containerd: its own root, state, socket and XDG_RUNTIME_DIR under a temp folder, the
 * overlayfs snapshotter, CRI disabled. The runc shim finds runc and runc finds CRIU through PATH (the stack's
 * bin first), so plain clients need no runtime options. Resolves once the gRPC socket accepts connections.
 */
export async function startContainerd(options: ContainerdOptions = {}): Promise<Containerd> {
  const bin = stackBinaries();
  const log = (options.logger ?? createLogger('harness-containerd')).child({ harness: 'containerd' });
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  const dir = await mkdtemp(join(tmpdir(), 'kyb-ctrd-'));
  const logsDir = join(dir, 'logs');
  const address = join(dir, 'containerd.sock');
  const runtimeDir = join(dir, 'run');
  await Promise.all([logsDir, runtimeDir, join(dir, 'tmp')].map((path) => mkdir(path, { recursive: true })));
  const configPath = join(dir, 'config.toml');
  await writeFile(configPath, configToml(dir, address, options.logLevel ?? 'info', options.cri));

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${bin.binDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    XDG_RUNTIME_DIR: runtimeDir,
    TMPDIR: join(dir, 'tmp'),
    // CRIU_FAULT=130 (CRIU's FI_NO_BREAKPOINTS) makes CRIU stop the parasite by tracing syscalls instead of
    // with a hardware breakpoint: on this VM the breakpoint often never fires and `criu dump` hangs forever
    // after "new_sp=..." (docs/testing.md). containerd passes it on to the shim, runc and CRIU.
    CRIU_FAULT: '130',
    CONTAINERD_ADDRESS: address,
    CONTAINERD_NAMESPACE: namespace,
  };
  const overrides = ['PATH', 'XDG_RUNTIME_DIR', 'TMPDIR', 'CRIU_FAULT'].map((name) => `${name}=${env[name] ?? ''}`);
  const daemon = await Daemon.startReady(
    // Through env(1): the kube harness's Daemon passes this process's environment on as it is.
    {
      name: 'containerd',
      binary: '/usr/bin/env',
      args: [...overrides, bin.containerd, '--config', configPath],
      logFile: join(logsDir, 'containerd.log'),
    },
    log,
    () => socketAccepts(address),
    { timeoutMs: options.startTimeoutMs ?? 30_000, what: `serving on ${address}` },
  ).catch(async (err: unknown) => {
    // The logs stay for the error's reader; the rest of the folder goes.
    await removeAllBut(dir, 'logs');
    throw err;
  });
  const pid = daemon.pid;
  if (pid === undefined) throw new HarnessError(`containerd has no pid although it serves on ${address}`, { dir });
  log.info({ address, namespace, pid, dir }, 'containerd started');

  const ctr = (args: string[], ctrOptions: CtrOptions = {}): Promise<string> =>
    execTool(bin.ctr, ['--address', address, '--namespace', ctrOptions.namespace ?? namespace, ...args], {
      env,
      timeoutMs: ctrOptions.timeoutMs ?? 60_000,
    });

  let stopped: Promise<void> | undefined;
  const stop = (stopOptions: StopOptions = {}): Promise<void> => {
    stopped ??= (async () => {
      if (!daemon.exited) await deleteAllContainers(ctr, log);
      await daemon.stop(5_000);
      await killLeftovers(dir, address, bin, env, log);
      await unmountUnder(dir, log);
      if (stopOptions.keepLogs) await removeAllBut(dir, 'logs');
      else await rm(dir, { recursive: true, force: true });
      log.info({ address, keptLogs: Boolean(stopOptions.keepLogs) }, 'containerd stopped');
    })();
    return stopped;
  };

  return { address, namespace, pid, dir, logsDir, env, bin, ctr, stop };
}

function configToml(dir: string, address: string, logLevel: string, cri: CriPluginOptions | undefined): string {
  // Plugins that need hardware or CNI this tier lacks are disabled so they do not slow down or fail the start.
  const disabled = [
    ...(cri ? [] : ['io.containerd.grpc.v1.cri']),
    'io.containerd.snapshotter.v1.aufs',
    'io.containerd.snapshotter.v1.btrfs',
    'io.containerd.snapshotter.v1.devmapper',
    'io.containerd.snapshotter.v1.zfs',
    'io.containerd.tracing.processor.v1.otlp',
    'io.containerd.internal.v1.tracing',
  ];
  return [
    'version = 2',
    `root = ${JSON.stringify(join(dir, 'root'))}`,
    `state = ${JSON.stringify(join(dir, 'state'))}`,
    `disabled_plugins = ${JSON.stringify(disabled)}`,
    '[grpc]',
    `  address = ${JSON.stringify(address)}`,
    '[ttrpc]',
    `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
    '[debug]',
    `  level = ${JSON.stringify(logLevel)}`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${JSON.stringify(join(dir, 'opt'))}`,
    ...(cri ? criPluginToml(cri) : []),
    '',
  ].join('\n');
}

function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A hung shim (e.g. stuck in CRIU) must not stall stop(): after this, the leftovers are killed instead. */
const CLEANUP_TIMEOUT_MS = 10_000;

type Ctr = (args: string[], options?: CtrOptions) => Promise<string>;

/** Kills and deletes every task, then every container (and so its snapshot), in every namespace. */
async function deleteAllContainers(ctr: Ctr, log: Logger): Promise<void> {
  const lines = (text: string) => text.split('\n').map((line) => line.trim()).filter(Boolean);
  try {
    for (const namespace of lines(await ctr(['namespaces', 'list', '--quiet'], { timeoutMs: CLEANUP_TIMEOUT_MS }))) {
      for (const id of lines(await ctr(['containers', 'list', '--quiet'], { namespace, timeoutMs: CLEANUP_TIMEOUT_MS }))) {
        await ctr(['tasks', 'delete', '--force', id], { namespace, timeoutMs: CLEANUP_TIMEOUT_MS }).catch(() => undefined);
        await ctr(['containers', 'delete', id], { namespace, timeoutMs: CLEANUP_TIMEOUT_MS }).catch((err: unknown) =>
          log.warn({ namespace, container: id, err: errorMessage(err) }, 'could not delete container'),
        );
      }
    }
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'could not list containers to delete them');
  }
}

/**
 * After containerd is gone: a bundle still in state/ means a task nobody deleted (containerd was killed or a
 * delete failed). runc delete --force kills its processes and removes runc's state and cgroup; shims that
 * still serve this instance's address are killed last.
 */
async function killLeftovers(dir: string, address: string, bin: StackBinaries, env: NodeJS.ProcessEnv, log: Logger): Promise<void> {
  const tasksDir = join(dir, 'state', 'io.containerd.runtime.v2.task');
  for (const namespace of await readdir(tasksDir).catch(() => [])) {
    for (const id of await readdir(join(tasksDir, namespace)).catch(() => [])) {
      await execTool(bin.runc, ['--root', join(RUNC_ROOT, namespace), 'delete', '--force', id], { env, timeoutMs: 10_000 })
        .then(() => log.warn({ namespace, container: id }, 'deleted a leftover runc container'))
        .catch(() => undefined);
    }
  }
  for (const pid of await shimPids(address)) {
    try {
      process.kill(pid, 'SIGKILL');
      log.warn({ pid }, 'killed a leftover shim');
    } catch {
      // It exited on its own meanwhile.
    }
  }
}

/** Shims are started as `containerd-shim-runc-v2 -namespace <ns> -id <id> -address <containerd socket>`. */
async function shimPids(address: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const flag = args.indexOf('-address');
    if (args[0]?.endsWith('containerd-shim-runc-v2') && flag >= 0 && args[flag + 1] === address) pids.push(Number(entry));
  }
  return pids;
}

/** Lazily unmounts whatever is still mounted below `dir` (rootfs overlays of killed tasks), deepest first. */
async function unmountUnder(dir: string, log: Logger): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const mountPoints = mountinfo
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point !== undefined && point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mountPoints) {
    await execTool('umount', ['--lazy', point]).catch((err: unknown) =>
      log.warn({ mountPoint: point, err: errorMessage(err) }, 'could not unmount'),
    );
  }
}

async function removeAllBut(dir: string, keep: string): Promise<void> {
  for (const entry of await readdir(dir).catch(() => [])) {
    if (entry !== keep) await rm(join(dir, entry), { recursive: true, force: true });
  }
}
