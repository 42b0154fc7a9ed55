import fs from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { errorMessage, InvalidInputError, KybernateError } from '../lib/errors.ts';
import type { Logger } from '../lib/log.ts';
import type { Agent } from './agent.ts';
import {
  ERROR_CODE_METADATA,
  agentServiceDefinition,
  checkpointRequestFromMessage,
  checkpointToMessage,
  gpuReportToMessage,
  grpcStatusFor,
  operationToMessage,
  gpuPairsFromMessage,
  restoreRequestFromMessage,
  type CheckpointRequestMessage,
  type ResumeRequestMessage,
  type SuspendRequestMessage,
  type SuspendResponseMessage,
  type RestoreRequestMessage,
} from './api.ts';
import { resumeContainer, suspendContainer, type SuspendResult } from './gpu/suspend.ts';
import { isTerminal, type Operation } from './operations/state.ts';

const suspendResultToMessage = (result: SuspendResult): SuspendResponseMessage => ({ pids: result.pids, duration_ms: result.durationMs });

export const DEFAULT_AGENT_SOCKET = '/run/kybernate/agent.sock';

export interface ListenOptions {
  /** unix socket path (created 0600, root only) */
  socketPath?: string;
  /** host:port for the controller; only with mutual TLS */
  tcp?: { address: string; caPem: Buffer; certPem: Buffer; keyPem: Buffer };
}

function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const code = err instanceof KybernateError ? err.code : 'Internal';
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_METADATA, code);
  return { code: grpcStatusFor(code), details: errorMessage(err), metadata };
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;

function unary<Req, Res>(log: Logger, method: string, handler: (request: Req) => Promise<Res>): Unary<Req, Res> {
  return (call, callback) => {
    handler(call.request).then(
      (response) => callback(null, response),
      (err: unknown) => {
        if (!(err instanceof KybernateError)) log.error({ err, method }, 'agent API call failed unexpectedly');
        callback(toServiceError(err));
      },
    );
  };
}

/** The gRPC face of the agent: request/response mapping only, the use cases live in Agent. */
export function createAgentServer(agent: Agent, log: Logger): grpc.Server {
  const server = new grpc.Server();
  server.addService(agentServiceDefinition(), {
    Checkpoint: unary(log, 'Checkpoint', async (req: CheckpointRequestMessage) => operationToMessage(agent.checkpoint(checkpointRequestFromMessage(req)))),
    Restore: unary(log, 'Restore', async (req: RestoreRequestMessage) => operationToMessage(await agent.restore(restoreRequestFromMessage(req)))),
    GetOperation: unary(log, 'GetOperation', async (req: { id: string }) => operationToMessage(agent.operations.get(req.id))),
    ListOperations: unary(log, 'ListOperations', async () => ({ operations: agent.operations.list().map(operationToMessage) })),
    WatchOperation: (call: grpc.ServerWritableStream<{ id: string }, unknown>) => watchOperation(agent, call),
    GetCheckpoint: unary(log, 'GetCheckpoint', async (req: { id: string }) => checkpointToMessage(await agent.getCheckpoint(req.id))),
    ListCheckpoints: unary(log, 'ListCheckpoints', async () => {
      const entries = await agent.listCheckpoints();
      return {
        checkpoints: entries.flatMap((e) => (e.manifest ? [checkpointToMessage(e.manifest)] : [])),
        unreadable: Object.fromEntries(entries.flatMap((e) => (e.error ? [[e.id, e.error.message]] : []))),
      };
    }),
    DeleteCheckpoint: unary(log, 'DeleteCheckpoint', async (req: { id: string }) => {
      await agent.deleteCheckpoint(req.id);
      return {};
    }),
    ExportCheckpoint: unary(log, 'ExportCheckpoint', async (req: { id: string; archive_path: string }) => {
      if (!path.isAbsolute(req.archive_path)) throw new InvalidInputError(`archive_path must be absolute: "${req.archive_path}"`);
      return { size_bytes: (await agent.exportCheckpoint(req.id, req.archive_path)).bytes };
    }),
    ImportCheckpoint: unary(log, 'ImportCheckpoint', async (req: { archive_path: string }) => {
      if (!path.isAbsolute(req.archive_path)) throw new InvalidInputError(`archive_path must be absolute: "${req.archive_path}"`);
      return checkpointToMessage(await agent.importCheckpoint(req.archive_path));
    }),
    Suspend: unary(log, 'Suspend', async (req: SuspendRequestMessage) =>
      suspendResultToMessage(await suspendContainer(agent.ctx, { namespace: req.namespace, containerId: req.container_id })),
    ),
    Resume: unary(log, 'Resume', async (req: ResumeRequestMessage) =>
      suspendResultToMessage(await resumeContainer(agent.ctx, { namespace: req.namespace, containerId: req.container_id, gpuPairs: gpuPairsFromMessage(req.gpu_pairs) })),
    ),
    GetStatus: unary(log, 'GetStatus', async () => {
      const s = await agent.status();
      return {
        node: s.node,
        kernel_version: s.kernel,
        criu_version: s.criu,
        containerd_version: s.containerd,
        containerd_address: s.containerdAddress,
        containerd_reachable: s.containerdReachable,
        store_root: s.storeRoot,
        checkpoint_count: s.checkpointCount,
        running_operations: s.runningOperations,
        log_dir: s.logDir,
        transparent_hugepages: s.transparentHugePages,
        gpu: gpuReportToMessage(s.gpu),
      };
    }),
    Health: unary(log, 'Health', async () => {
      const h = await agent.health();
      return { status: h.serving ? 'SERVING' : 'NOT_SERVING', message: h.message };
    }),
  });
  return server;
}

function watchOperation(agent: Agent, call: grpc.ServerWritableStream<{ id: string }, unknown>): void {
  let op: Operation;
  try {
    op = agent.operations.get(call.request.id);
  } catch (err) {
    call.emit('error', toServiceError(err));
    return;
  }
  call.write(operationToMessage(op));
  if (isTerminal(op.state)) {
    call.end();
    return;
  }
  const onUpdate = (update: Operation): void => {
    if (update.id !== op.id) return;
    call.write(operationToMessage(update));
    if (isTerminal(update.state)) {
      agent.operations.off('update', onUpdate);
      call.end();
    }
  };
  agent.operations.on('update', onUpdate);
  call.on('cancelled', () => agent.operations.off('update', onUpdate));
}

/** Binds the server: the unix socket always (0600), TCP only with mutual TLS. Returns the bound TCP port, if any. */
export async function listen(server: grpc.Server, options: ListenOptions): Promise<{ socketPath?: string; tcpPort?: number }> {
  const bind = (address: string, credentials: grpc.ServerCredentials): Promise<number> =>
    new Promise((resolve, reject) => server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))));
  const result: { socketPath?: string; tcpPort?: number } = {};
  if (options.socketPath) {
    await fs.mkdir(path.dirname(options.socketPath), { recursive: true, mode: 0o755 });
    // A socket left by an earlier agent would make the bind fail.
    await fs.rm(options.socketPath, { force: true });
    await bind(`unix://${options.socketPath}`, grpc.ServerCredentials.createInsecure());
    await fs.chmod(options.socketPath, 0o600);
    result.socketPath = options.socketPath;
  }
  if (options.tcp) {
    const { address, caPem, certPem, keyPem } = options.tcp;
    result.tcpPort = await bind(address, grpc.ServerCredentials.createSsl(caPem, [{ cert_chain: certPem, private_key: keyPem }], true));
  }
  return result;
}
