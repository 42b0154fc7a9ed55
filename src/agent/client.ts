import * as grpc from '@grpc/grpc-js';
import { KybernateError } from '../lib/errors.ts';
import {
  ERROR_CODE_METADATA,
  agentClientConstructor,
  type AgentStatusMessage,
  type CheckpointMessage,
  type OperationMessage,
  type SuspendResponseMessage,
} from './api.ts';
import type { GpuUuidPair } from './cuda/api.ts';
import type { OciDevice, OciMount } from './spec.ts';

/** A failed agent call, with the agent's error code (NotFound, CorruptArtifact, ...) and message. */
export class AgentCallError extends KybernateError {}

/** An operation that ended FAILED; `code` is the operation's error code. */
export class AgentOperationError extends KybernateError {
  readonly operation: OperationMessage;
  constructor(operation: OperationMessage) {
    super(operation.error_code || 'Internal', `${operation.kind} operation ${operation.id} failed: ${operation.error_message}`, {
      operation: operation.id,
      namespace: operation.namespace,
      container: operation.container_id,
    });
    this.operation = operation;
  }
}

export type AgentClientOptions =
  | { socketPath: string; timeoutMs?: number }
  | { address: string; caPem: Buffer; certPem: Buffer; keyPem: Buffer; serverName?: string; timeoutMs?: number };

export interface ClientCheckpointRequest {
  operationId?: string;
  namespace: string;
  containerId: string;
  leaveRunning: boolean;
  checkpointId?: string;
  /** checkpoint the container's CUDA state too (GPU nodes only) */
  gpu?: boolean;
}

export interface ClientRestoreRequest {
  operationId?: string;
  checkpointId: string;
  namespace?: string;
  containerId?: string;
  target?: { netnsPath?: string; cgroupParent?: string; mounts?: OciMount[]; devices?: OciDevice[] };
  gpuPairs?: GpuUuidPair[];
}

const gpuPairsToMessage = (pairs: GpuUuidPair[] | undefined): { old_uuid: string; new_uuid: string }[] =>
  (pairs ?? []).map((pair) => ({ old_uuid: pair.oldUuid, new_uuid: pair.newUuid }));

type Callback<T> = (err: grpc.ServiceError | null, response: T) => void;
type UnaryFn = (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: Callback<unknown>) => void;

/** Typed client of the agent API (used by the controller, the tests and the benchmark). */
export class AgentClient {
  private readonly client: grpc.Client & Record<string, unknown>;
  private readonly timeoutMs: number;

  constructor(options: AgentClientOptions) {
    const Ctor = agentClientConstructor();
    this.timeoutMs = options.timeoutMs ?? 30_000;
    if ('socketPath' in options) {
      this.client = new Ctor(`unix://${options.socketPath}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, unknown>;
    } else {
      const credentials = grpc.credentials.createSsl(options.caPem, options.keyPem, options.certPem);
      const channelOptions = options.serverName ? { 'grpc.ssl_target_name_override': options.serverName } : {};
      this.client = new Ctor(options.address, credentials, channelOptions) as unknown as grpc.Client & Record<string, unknown>;
    }
  }

  close(): void {
    this.client.close();
  }

  private call<T>(method: string, request: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const fn = this.client[method] as UnaryFn;
    return new Promise<T>((resolve, reject) => {
      fn.call(this.client, request, new grpc.Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (err, response) => {
        if (err) reject(callError(method, err));
        else resolve(response as T);
      });
    });
  }

  checkpoint(request: ClientCheckpointRequest): Promise<OperationMessage> {
    return this.call('Checkpoint', {
      operation_id: request.operationId ?? '',
      namespace: request.namespace,
      container_id: request.containerId,
      leave_running: request.leaveRunning,
      checkpoint_id: request.checkpointId ?? '',
      gpu: request.gpu ?? false,
    });
  }

  /** Release in place of the container's GPU state; resolves when the GPU is free. */
  suspend(namespace: string, containerId: string, timeoutMs?: number): Promise<SuspendResponseMessage> {
    return this.call('Suspend', { namespace, container_id: containerId }, timeoutMs);
  }

  resume(namespace: string, containerId: string, gpuPairs?: GpuUuidPair[], timeoutMs?: number): Promise<SuspendResponseMessage> {
    return this.call('Resume', { namespace, container_id: containerId, gpu_pairs: gpuPairsToMessage(gpuPairs) }, timeoutMs);
  }

  restore(request: ClientRestoreRequest): Promise<OperationMessage> {
    const target = request.target ?? {};
    return this.call('Restore', {
      operation_id: request.operationId ?? '',
      checkpoint_id: request.checkpointId,
      namespace: request.namespace ?? '',
      container_id: request.containerId ?? '',
      target: {
        netns_path: target.netnsPath ?? '',
        cgroup_parent: target.cgroupParent ?? '',
        mounts: (target.mounts ?? []).map((m) => ({ destination: m.destination, source: m.source ?? '', type: m.type ?? '', options: m.options ?? [] })),
        devices: (target.devices ?? []).map((d) => ({ path: d.path, type: d.type, major: d.major, minor: d.minor, file_mode: d.fileMode ?? 0, uid: d.uid ?? 0, gid: d.gid ?? 0 })),
      },
      gpu_pairs: gpuPairsToMessage(request.gpuPairs),
    });
  }

  getOperation(id: string): Promise<OperationMessage> {
    return this.call('GetOperation', { id });
  }

  async listOperations(): Promise<OperationMessage[]> {
    return (await this.call<{ operations: OperationMessage[] }>('ListOperations', {})).operations;
  }

  /** Follows an operation until it is SUCCEEDED or FAILED; resolves with its last state either way. */
  waitForOperation(id: string, onUpdate?: (op: OperationMessage) => void, timeoutMs = 15 * 60_000): Promise<OperationMessage> {
    const fn = this.client.WatchOperation as (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<OperationMessage>;
    const stream = fn.call(this.client, { id }, new grpc.Metadata(), { deadline: new Date(Date.now() + timeoutMs) });
    return new Promise((resolve, reject) => {
      let last: OperationMessage | undefined;
      stream.on('data', (op: OperationMessage) => {
        last = op;
        onUpdate?.(op);
      });
      stream.on('error', (err: grpc.ServiceError) => reject(callError('WatchOperation', err)));
      stream.on('end', () => (last && (last.state === 'SUCCEEDED' || last.state === 'FAILED') ? resolve(last) : reject(new AgentCallError('Internal', `operation ${id} stream ended early`))));
    });
  }

  /** Checkpoint and wait; throws AgentOperationError when it failed. */
  async checkpointAndWait(request: ClientCheckpointRequest): Promise<OperationMessage> {
    return succeeded(await this.waitForOperation((await this.checkpoint(request)).id));
  }

  async restoreAndWait(request: ClientRestoreRequest): Promise<OperationMessage> {
    return succeeded(await this.waitForOperation((await this.restore(request)).id));
  }

  getCheckpoint(id: string): Promise<CheckpointMessage> {
    return this.call('GetCheckpoint', { id });
  }

  listCheckpoints(): Promise<{ checkpoints: CheckpointMessage[]; unreadable: Record<string, string> }> {
    return this.call('ListCheckpoints', {});
  }

  async deleteCheckpoint(id: string): Promise<void> {
    await this.call('DeleteCheckpoint', { id });
  }

  async exportCheckpoint(id: string, archivePath: string): Promise<number> {
    return (await this.call<{ size_bytes: number }>('ExportCheckpoint', { id, archive_path: archivePath }, 10 * 60_000)).size_bytes;
  }

  importCheckpoint(archivePath: string): Promise<CheckpointMessage> {
    return this.call('ImportCheckpoint', { archive_path: archivePath }, 10 * 60_000);
  }

  getStatus(): Promise<AgentStatusMessage> {
    return this.call('GetStatus', {});
  }

  health(): Promise<{ status: 'UNKNOWN' | 'SERVING' | 'NOT_SERVING'; message: string }> {
    return this.call('Health', {});
  }
}

function succeeded(op: OperationMessage): OperationMessage {
  if (op.state !== 'SUCCEEDED') throw new AgentOperationError(op);
  return op;
}

function callError(method: string, err: grpc.ServiceError): AgentCallError {
  const code = String(err.metadata?.get(ERROR_CODE_METADATA)[0] ?? (err.code === grpc.status.UNAVAILABLE ? 'Unavailable' : 'Internal'));
  return new AgentCallError(code, `agent ${method}: ${err.details || err.message}`, { method, grpcCode: grpc.status[err.code] }, { cause: err });
}
