import { execFile } from 'node:child_process';
import { readFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Cluster, KubeConfig, User } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { createLogger, type Logger } from '../../../src/lib/log.ts';
import { kubeBinary } from './binaries.ts';
import { ADMIN_USER, generateCertificates, type ControlPlaneCertificates } from './certs.ts';
import { Daemon } from './daemon.ts';
import { HarnessError } from './errors.ts';
import { apiServerArgs, etcdArgs } from './flags.ts';
import { freeLoopbackPort } from '../../support/wait.ts';
import { startOnFreePort } from './ports.ts';

const runFile = promisify(execFile);

export interface ControlPlaneOptions {
  /** Extra or replacing kube-apiserver flags, e.g. `['--feature-gates=Foo=true']`. */
  apiServerFlags?: string[];
  /** Parent of the control plane's temp dir (default: the OS temp dir). */
  baseDir?: string;
  /** Limit for etcd and kube-apiserver to become ready, each (default 60 s). */
  startTimeoutMs?: number;
  logger?: Logger;
}

/**
 * The parts of @kubernetes/client-node's `KubeConfig` that describe this control plane. A plain object,
 * not the class: client-node 2.x loads undici 8 at import time, which needs Node >= 22 (we run Node 20).
 */
export type KubeConfigView = Pick<KubeConfig, 'getCurrentContext' | 'getCurrentCluster' | 'getCurrentUser'>;

/** The admin user's TLS options, for `https.request`, an `https.Agent` or undici's `connect`. */
export interface AdminTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface StopOptions {
  /** Keep the temp dir (logs, certificates, kubeconfig, etcd data) for a post-mortem. */
  keepLogs?: boolean;
}

export interface ControlPlane {
  /** `https://127.0.0.1:<port>`; stays the same across `restartApiServer()`. */
  server: string;
  /** A kubeconfig for the admin user (group system:masters), certificates embedded. */
  kubeconfigPath: string;
  /** The same kubeconfig's current context as client-node's types (caData, certData, keyData, server). */
  kubeConfig: KubeConfigView;
  /** The admin user's CA, certificate and key, ready for a TLS client. */
  tls: AdminTls;
  /** etcd.log and kube-apiserver.log (appended across restarts). */
  logsDir: string;
  /** The temp dir holding everything of this control plane; removed by `stop()`. */
  rootDir: string;
  /** Stops kube-apiserver and starts it again on the same port with the same etcd; resolves once ready. */
  restartApiServer(): Promise<void>;
  /** Runs the cached kubectl against this control plane (needs kubectl built by setup). */
  kubectl(args: string[]): Promise<{ stdout: string; stderr: string }>;
  /** Stops both daemons and removes the temp dir unless `keepLogs`; safe to call twice. */
  stop(options?: StopOptions): Promise<void>;
}

const DEFAULT_START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;

/** Starts etcd and kube-apiserver on free loopback ports in a fresh temp dir (like kubebuilder's envtest). */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = options.logger ?? createLogger('kube-harness');
  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const binaries = { etcd: kubeBinary('etcd'), apiServer: kubeBinary('kube-apiserver') };

  const rootDir = await mkdtemp(join(options.baseDir ?? tmpdir(), 'kybernate-kube-'));
  const logsDir = join(rootDir, 'logs');
  const certDir = join(rootDir, 'pki');
  await Promise.all([mkdir(logsDir), mkdir(certDir)]);
  const plog = log.child({ controlPlane: rootDir });

  let etcd: Daemon | undefined;
  let apiServer: Daemon | undefined;
  const stopDaemons = async () => {
    await apiServer?.stop(STOP_GRACE_MS);
    await etcd?.stop(STOP_GRACE_MS);
  };

  try {
    const certs = await generateCertificates(certDir);
    const started = await startOnFreePort((clientPort) => startEtcd(binaries.etcd, rootDir, clientPort, timeoutMs, plog));
    etcd = started.daemon;
    const etcdUrl = started.url;

    const apiServerSpec = (port: number) => ({
      name: 'kube-apiserver',
      binary: binaries.apiServer,
      args: apiServerArgs({ port, etcdUrl, certs, certDir }, options.apiServerFlags),
      logFile: join(logsDir, 'kube-apiserver.log'),
    });
    const tls = await loadAdminTls(certs);
    const launchApiServer = (port: number) => {
      const server = `https://127.0.0.1:${port}`;
      return Daemon.startReady(apiServerSpec(port), plog, () => apiServerReady(server, tls), {
        timeoutMs,
        what: `ready at ${server}/readyz`,
      });
    };
    const port = await startOnFreePort(async (candidate) => {
      apiServer = await launchApiServer(candidate);
      return candidate;
    });
    const server = `https://127.0.0.1:${port}`;
    const kubeconfigPath = join(rootDir, 'kubeconfig');
    const kubeConfig = await writeKubeconfig(kubeconfigPath, server, tls);
    plog.info({ server, kubeconfigPath, etcdPid: etcd.pid, apiServerPid: apiServer?.pid }, 'control plane ready');

    let stopped = false;
    return {
      server,
      kubeconfigPath,
      kubeConfig,
      tls,
      logsDir,
      rootDir,
      async restartApiServer() {
        if (stopped) throw new HarnessError('restartApiServer() after stop()', { rootDir });
        await apiServer?.stop(STOP_GRACE_MS);
        apiServer = await launchApiServer(port);
        plog.info({ server, apiServerPid: apiServer.pid }, 'kube-apiserver restarted');
      },
      async kubectl(args) {
        const kubectl = kubeBinary('kubectl');
        return runFile(kubectl, ['--kubeconfig', kubeconfigPath, ...args], { maxBuffer: 64 * 1024 * 1024 });
      },
      async stop(stopOptions = {}) {
        if (stopped) return;
        stopped = true;
        await stopDaemons();
        if (stopOptions.keepLogs) {
          plog.warn({ logsDir }, 'control plane stopped, logs kept');
        } else {
          await rm(rootDir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    // Nothing half-started stays behind; the logs stay for the error's reader.
    await stopDaemons();
    if (err instanceof HarnessError) {
      err.context.rootDir = rootDir;
      err.message += `\n(control plane files kept in ${rootDir})`;
    }
    throw err;
  }
}

/** etcd on `clientPort` (and a free peer port), data and log in `rootDir`; resolves once healthy. */
export async function startEtcd(binary: string, rootDir: string, clientPort: number, timeoutMs: number, log: Logger) {
  const spec = {
    name: 'etcd',
    binary,
    args: etcdArgs({ dataDir: join(rootDir, 'etcd'), clientPort, peerPort: await freeLoopbackPort() }),
    logFile: join(rootDir, 'logs', 'etcd.log'),
  };
  const url = `http://127.0.0.1:${clientPort}`;
  const daemon = await Daemon.startReady(spec, log, () => etcdHealthy(url), { timeoutMs, what: `healthy at ${url}` });
  return { daemon, url };
}

async function etcdHealthy(url: string): Promise<boolean> {
  const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
  const body = (await response.json()) as { health?: string };
  return response.ok && body.health === 'true';
}

async function loadAdminTls(certs: ControlPlaneCertificates): Promise<AdminTls> {
  const [ca, cert, key] = await Promise.all([certs.caCert, certs.adminCert, certs.adminKey].map((f) => readFile(f)));
  return { ca: ca!, cert: cert!, key: key! };
}

async function apiServerReady(server: string, tls: AdminTls): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${server}/readyz`, { ...tls, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
    req.end();
  });
}

const CONTEXT = 'kybernate-test';

async function writeKubeconfig(path: string, server: string, tls: AdminTls): Promise<KubeConfigView> {
  const cluster: Cluster = { name: CONTEXT, server, caData: tls.ca.toString('base64'), skipTLSVerify: false };
  const user: User = { name: ADMIN_USER, certData: tls.cert.toString('base64'), keyData: tls.key.toString('base64') };
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster.name, cluster: { server, 'certificate-authority-data': cluster.caData } }],
    users: [{ name: user.name, user: { 'client-certificate-data': user.certData, 'client-key-data': user.keyData } }],
    contexts: [{ name: CONTEXT, context: { cluster: cluster.name, user: user.name } }],
    'current-context': CONTEXT,
  };
  await writeFile(path, stringify(config), { mode: 0o600 });
  return { getCurrentContext: () => CONTEXT, getCurrentCluster: () => cluster, getCurrentUser: () => user };
}
