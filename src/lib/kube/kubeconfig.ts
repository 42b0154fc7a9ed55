import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { parse } from 'yaml';
import { InvalidInputError } from '../errors.ts';

/**
 * Where the API server is and how to authenticate: read from a kubeconfig or the in-cluster service
 * account. (Our own loader: @kubernetes/client-node 2.x loads undici 8, which needs Node >= 22, and
 * this project runs on Node 20.)
 */
export interface KubeConnection {
  server: URL;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Bearer token, re-read on every call so that a rotated service-account token is picked up. */
  token?: () => string;
  insecureSkipTlsVerify: boolean;
  tlsServerName?: string;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** In a pod: the service account; otherwise $KUBECONFIG (first entry) or ~/.kube/config. */
export function loadKubeConnection(env: NodeJS.ProcessEnv): KubeConnection {
  if (env.KUBERNETES_SERVICE_HOST && !env.KUBECONFIG) return inClusterConnection(env);
  const path = env.KUBECONFIG?.split(':').find((p) => p !== '') ?? join(homedir(), '.kube', 'config');
  return kubeconfigConnection(path);
}

export function inClusterConnection(env: NodeJS.ProcessEnv, dir = SERVICE_ACCOUNT_DIR): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  const tokenPath = join(dir, 'token');
  return {
    server: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`),
    ca: readFileSync(join(dir, 'ca.crt')),
    token: () => readFileSync(tokenPath, 'utf8').trim(),
    insecureSkipTlsVerify: false,
  };
}

interface Named<T> {
  name: string;
  [key: string]: unknown;
  value?: T;
}

interface KubeconfigFile {
  'current-context'?: string;
  contexts?: (Named<never> & { context?: { cluster?: string; user?: string } })[];
  clusters?: (Named<never> & { cluster?: Record<string, unknown> })[];
  users?: (Named<never> & { user?: Record<string, unknown> })[];
}

/** The current context of a kubeconfig file; relative file references are relative to the file. */
export function kubeconfigConnection(path: string): KubeConnection {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidInputError(`kubeconfig ${path} cannot be read: ${(err as Error).message}`, { path }, { cause: err });
  }
  return parseKubeconfig(text, dirname(path), path);
}

export function parseKubeconfig(text: string, baseDir: string, source = 'kubeconfig'): KubeConnection {
  const config = (parse(text) ?? {}) as KubeconfigFile;
  const fail = (message: string) => new InvalidInputError(`${source}: ${message}`, { source });
  const contextName = config['current-context'];
  if (!contextName) throw fail('no current-context');
  const context = config.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw fail(`context "${contextName}" not found`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster || typeof cluster.server !== 'string') throw fail(`cluster "${context.cluster}" not found or has no server`);
  const user = config.users?.find((u) => u.name === context.user)?.user ?? {};
  if (user.exec || user['auth-provider']) throw fail(`user "${context.user}": exec and auth-provider credentials are not supported; use a token or client certificate`);

  const material = (section: Record<string, unknown>, field: string): Buffer | undefined => {
    const data = section[`${field}-data`];
    if (typeof data === 'string') return Buffer.from(data, 'base64');
    const file = section[field];
    if (typeof file === 'string') return readFileSync(isAbsolute(file) ? file : join(baseDir, file));
    return undefined;
  };
  const token = typeof user.token === 'string' ? user.token : undefined;
  const tokenFile = typeof user.tokenFile === 'string' ? user.tokenFile : undefined;
  return {
    server: new URL(cluster.server),
    ca: material(cluster, 'certificate-authority'),
    cert: material(user, 'client-certificate'),
    key: material(user, 'client-key'),
    token: token !== undefined ? () => token : tokenFile !== undefined ? () => readFileSync(tokenFile, 'utf8').trim() : undefined,
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    tlsServerName: typeof cluster['tls-server-name'] === 'string' ? cluster['tls-server-name'] : undefined,
  };
}
