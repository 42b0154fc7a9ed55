import { InvalidInputError } from '../lib/errors.ts';
import { parseDuration } from '../lib/duration.ts';
import { DEFAULT_CONTAINERD_ADDRESS } from './containerd/client.ts';
import { HOST_COPY_WRITERS, type HostCopyWriter } from './gpu/support.ts';
import { DEFAULT_AGENT_SOCKET } from './server.ts';
import { DEFAULT_STORE_ROOT } from './store/store.ts';

export const DEFAULT_TASK_LOG_DIR = '/var/log/kybernate/tasks';

export interface AgentConfig {
  socketPath: string;
  containerdAddress: string;
  storeRoot: string;
  logDir: string;
  criuTimeoutMs: number;
  criuBinary: string;
  /** who writes the host copy of GPU memory at a GPU checkpoint: the agent beside the CRIU image, or CRIU (docs/gpu.md) */
  gpuHostCopy: HostCopyWriter;
  /** TCP listener for the controller; never without mutual TLS */
  tcp?: { address: string; caFile: string; certFile: string; keyFile: string };
}

/**
 * Configuration from flags (`--socket=...`) over environment variables (KYBERNATE_AGENT_SOCKET=...) over
 * defaults. See docs/agent.md for the list.
 */
export function parseAgentConfig(env: Record<string, string | undefined>, argv: string[]): AgentConfig {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (!match) throw new InvalidInputError(`unknown argument "${arg}": expected --name=value`, { arg });
    flags.set(match[1]!, match[2]!);
  }
  const known = ['socket', 'containerd', 'store', 'log-dir', 'criu-timeout', 'criu', 'gpu-host-copy', 'tcp', 'tls-ca', 'tls-cert', 'tls-key'];
  for (const name of flags.keys()) {
    if (!known.includes(name)) throw new InvalidInputError(`unknown flag --${name}; known: ${known.map((k) => `--${k}`).join(', ')}`, { flag: name });
  }
  const get = (flag: string, variable: string): string | undefined => flags.get(flag) ?? (env[variable] || undefined);

  const tcpAddress = get('tcp', 'KYBERNATE_AGENT_TCP');
  const caFile = get('tls-ca', 'KYBERNATE_AGENT_TLS_CA');
  const certFile = get('tls-cert', 'KYBERNATE_AGENT_TLS_CERT');
  const keyFile = get('tls-key', 'KYBERNATE_AGENT_TLS_KEY');
  if (tcpAddress && !(caFile && certFile && keyFile)) {
    throw new InvalidInputError('a TCP listener needs mutual TLS: set --tls-ca, --tls-cert and --tls-key (or KYBERNATE_AGENT_TLS_*)', { tcp: tcpAddress });
  }
  const gpuHostCopy = get('gpu-host-copy', 'KYBERNATE_GPU_HOST_COPY') ?? 'agent';
  if (!(HOST_COPY_WRITERS as readonly string[]).includes(gpuHostCopy)) {
    throw new InvalidInputError(`--gpu-host-copy must be one of ${HOST_COPY_WRITERS.join(', ')}, not "${gpuHostCopy}"`, { gpuHostCopy });
  }
  return {
    socketPath: get('socket', 'KYBERNATE_AGENT_SOCKET') ?? DEFAULT_AGENT_SOCKET,
    containerdAddress: get('containerd', 'KYBERNATE_CONTAINERD_ADDRESS') ?? DEFAULT_CONTAINERD_ADDRESS,
    storeRoot: get('store', 'KYBERNATE_CHECKPOINT_DIR') ?? DEFAULT_STORE_ROOT,
    logDir: get('log-dir', 'KYBERNATE_TASK_LOG_DIR') ?? DEFAULT_TASK_LOG_DIR,
    criuTimeoutMs: parseDuration(get('criu-timeout', 'KYBERNATE_CRIU_TIMEOUT') ?? '10m'),
    criuBinary: get('criu', 'KYBERNATE_CRIU') ?? 'criu',
    gpuHostCopy: gpuHostCopy as HostCopyWriter,
    ...(tcpAddress ? { tcp: { address: tcpAddress, caFile: caFile!, certFile: certFile!, keyFile: keyFile! } } : {}),
  };
}
