import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/log.ts';
import { Agent } from './agent.ts';
import type { AgentConfig } from './config.ts';
import { ContainerdClient } from './containerd/client.ts';
import { systemGpuSupport } from './gpu/support.ts';
import { criuVersion, hasNvidiaDriver, nodeName, thpWarning, transparentHugePages } from './node-info.ts';
import { OperationRegistry } from './operations/registry.ts';
import { createAgentServer, listen } from './server.ts';
import { CheckpointStore } from './store/store.ts';

export interface RunningAgent {
  agent: Agent;
  server: grpc.Server;
  socketPath: string;
  tcpPort?: number;
  /** Stops accepting calls, lets running operations finish, closes the containerd connection. */
  stop(): Promise<void>;
}

/** Builds the agent from its configuration and starts serving. */
export async function startAgent(config: AgentConfig, log: Logger): Promise<RunningAgent> {
  const containerd = new ContainerdClient({ address: config.containerdAddress });
  const containerdVersion = await containerd.version(5_000).then(
    (v) => v.version,
    (err: unknown) => {
      log.warn({ err: errorMessage(err), address: config.containerdAddress }, 'containerd is not reachable yet');
      return 'unknown';
    },
  );
  const store = new CheckpointStore(config.storeRoot);
  const nodeInfo = { node: nodeName(), kernel: os.release(), criu: await criuVersion(config.criuBinary), containerd: containerdVersion };
  const operations = new OperationRegistry(path.join(config.storeRoot, 'operations'), log);
  const gpu = systemGpuSupport({ hostCopy: config.gpuHostCopy });
  const agent = new Agent({ containerd, store, log, nodeInfo, criuTimeoutMs: config.criuTimeoutMs, logDir: config.logDir, gpu }, operations);
  await agent.init();

  const server = createAgentServer(agent, log);
  const tcp = config.tcp
    ? {
        address: config.tcp.address,
        caPem: await fs.readFile(config.tcp.caFile),
        certPem: await fs.readFile(config.tcp.certFile),
        keyPem: await fs.readFile(config.tcp.keyFile),
      }
    : undefined;
  const bound = await listen(server, { socketPath: config.socketPath, ...(tcp ? { tcp } : {}) });
  const thp = await transparentHugePages();
  log.info({ socket: config.socketPath, tcpPort: bound.tcpPort, store: config.storeRoot, ...nodeInfo, transparentHugePages: thp, gpuHostCopy: config.gpuHostCopy }, 'agent serving');
  const warning = thpWarning(thp, hasNvidiaDriver());
  if (warning) log.warn({ transparentHugePages: thp }, warning);
  return {
    agent,
    server,
    socketPath: config.socketPath,
    ...(bound.tcpPort ? { tcpPort: bound.tcpPort } : {}),
    async stop() {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await operations.drain();
      containerd.close();
    },
  };
}
