import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_ROOT } from './containerd/protos.ts';
import type { Operation } from './operations/state.ts';
import type { OciDevice } from './spec.ts';
import type { RestoreRequest } from './restore.ts';
import type { CheckpointRequest } from './checkpoint.ts';
import type { GpuUuidPair } from './cuda/api.ts';
import type { CheckpointManifest } from './store/manifest.ts';
import type { NodeGpuStatus } from './gpu/report.ts';

/** The wire shapes of agent.proto (field names as in the .proto file). */
export interface CheckpointRequestMessage {
  operation_id: string;
  namespace: string;
  container_id: string;
  leave_running: boolean;
  checkpoint_id: string;
  gpu: boolean;
}

export interface GpuUuidPairMessage {
  old_uuid: string;
  new_uuid: string;
}

export interface SuspendRequestMessage {
  namespace: string;
  container_id: string;
}

export interface ResumeRequestMessage extends SuspendRequestMessage {
  gpu_pairs: GpuUuidPairMessage[];
}

export interface SuspendResponseMessage {
  pids: number[];
  duration_ms: number;
}

export interface MountMessage {
  destination: string;
  source: string;
  type: string;
  options: string[];
}

export interface DeviceMessage {
  path: string;
  type: string;
  major: number;
  minor: number;
  file_mode: number;
  uid: number;
  gid: number;
}

export interface RestoreRequestMessage {
  operation_id: string;
  checkpoint_id: string;
  namespace: string;
  container_id: string;
  target: { netns_path: string; cgroup_parent: string; mounts: MountMessage[]; devices: DeviceMessage[] } | null;
  gpu_pairs: GpuUuidPairMessage[];
}

export interface OperationMessage {
  id: string;
  kind: string;
  state: 'OPERATION_STATE_UNSPECIFIED' | Operation['state'];
  namespace: string;
  container_id: string;
  steps: { name: string; duration_ms?: number }[];
  checkpoint_id: string;
  pid: number;
  error_code: string;
  error_message: string;
  created_at: string;
  updated_at: string;
  started_at: string;
}

export interface CheckpointMessage {
  id: string;
  namespace: string;
  container_id: string;
  image_ref: string;
  image_digest: string;
  created_at: string;
  size_bytes: number;
  leave_running: boolean;
  node: string;
  kernel_version: string;
  criu_version: string;
  containerd_version: string;
  network_namespace: string;
  timings_ms: Record<string, number>;
  manifest_json: string;
}

export interface AgentStatusMessage {
  node: string;
  kernel_version: string;
  criu_version: string;
  containerd_version: string;
  containerd_address: string;
  containerd_reachable: boolean;
  store_root: string;
  checkpoint_count: number;
  running_operations: number;
  log_dir: string;
  transparent_hugepages: string;
  /** null from an agent older than the field (not the same as a node without GPUs: usable false). */
  gpu: GpuReportMessage | null;
}

export interface GpuDeviceMessage {
  uuid: string;
  model: string;
  memory_total_bytes: number;
  memory_free_bytes: number;
}

export interface GpuReportMessage {
  usable: boolean;
  error: string;
  driver_version: string;
  /** absent when libcuda cannot be loaded */
  cuda_driver_api_version?: number;
  supported_cuda_driver_api_versions: number[];
  gpus: GpuDeviceMessage[];
}

/** Carries the KybernateError code across gRPC, so that clients get the same typed codes as the agent. */
export const ERROR_CODE_METADATA = 'kybernate-error-code';

let agentService: grpc.ServiceClientConstructor | undefined;

/** The Agent service of agent.proto: client constructor, and its `service` definition for the server. */
export function agentClientConstructor(): grpc.ServiceClientConstructor {
  if (!agentService) {
    const definition = protoLoader.loadSync(path.join(PROTO_ROOT, 'kybernate/agent/v1/agent.proto'), {
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as { kybernate: { agent: { v1: { Agent: grpc.ServiceClientConstructor } } } };
    agentService = loaded.kybernate.agent.v1.Agent;
  }
  return agentService;
}

export function agentServiceDefinition(): grpc.ServiceDefinition {
  return agentClientConstructor().service;
}

/** Which gRPC status a Kybernate error code travels as; codes not listed are INTERNAL. */
const GRPC_STATUS_BY_CODE: Record<string, grpc.status> = {
  NotFound: grpc.status.NOT_FOUND,
  InvalidInput: grpc.status.INVALID_ARGUMENT,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  FailedPrecondition: grpc.status.FAILED_PRECONDITION,
  BaseImageMissing: grpc.status.FAILED_PRECONDITION,
  PidCollision: grpc.status.FAILED_PRECONDITION,
  CorruptArtifact: grpc.status.DATA_LOSS,
  GpuStateLost: grpc.status.DATA_LOSS,
  GpuUnavailable: grpc.status.FAILED_PRECONDITION,
  UnsupportedCudaDriver: grpc.status.FAILED_PRECONDITION,
  Unavailable: grpc.status.UNAVAILABLE,
  DeadlineExceeded: grpc.status.DEADLINE_EXCEEDED,
};

export function grpcStatusFor(code: string): grpc.status {
  return GRPC_STATUS_BY_CODE[code] ?? grpc.status.INTERNAL;
}

export function checkpointRequestFromMessage(message: CheckpointRequestMessage): CheckpointRequest & { operationId: string } {
  return {
    operationId: message.operation_id,
    namespace: message.namespace,
    containerId: message.container_id,
    leaveRunning: message.leave_running,
    ...(message.checkpoint_id ? { checkpointId: message.checkpoint_id } : {}),
    ...(message.gpu ? { gpu: true } : {}),
  };
}

export function gpuPairsFromMessage(pairs: readonly GpuUuidPairMessage[] | undefined): GpuUuidPair[] {
  return (pairs ?? []).map((pair) => ({ oldUuid: pair.old_uuid, newUuid: pair.new_uuid }));
}

export function restoreRequestFromMessage(message: RestoreRequestMessage): RestoreRequest & { operationId: string } {
  const target = message.target;
  return {
    operationId: message.operation_id,
    checkpointId: message.checkpoint_id,
    ...(message.namespace ? { namespace: message.namespace } : {}),
    ...(message.container_id ? { containerId: message.container_id } : {}),
    target: {
      ...(target?.netns_path ? { netnsPath: target.netns_path } : {}),
      ...(target?.cgroup_parent ? { cgroupParent: target.cgroup_parent } : {}),
      ...(target?.mounts.length ? { mounts: target.mounts.map((m) => ({ destination: m.destination, source: m.source, type: m.type || 'bind', options: m.options })) } : {}),
      ...(target?.devices.length
        ? {
            devices: target.devices.map(
              (d): OciDevice => ({ path: d.path, type: d.type as OciDevice['type'], major: d.major, minor: d.minor, fileMode: d.file_mode || 0o666, uid: d.uid, gid: d.gid }),
            ),
          }
        : {}),
    },
    ...(message.gpu_pairs?.length ? { gpuPairs: gpuPairsFromMessage(message.gpu_pairs) } : {}),
  };
}

export function operationToMessage(op: Operation): OperationMessage {
  return {
    id: op.id,
    kind: op.kind,
    state: op.state,
    namespace: op.namespace,
    container_id: op.containerId,
    steps: op.steps.map((s) => (s.ms === undefined ? { name: s.name } : { name: s.name, duration_ms: s.ms })),
    checkpoint_id: op.checkpointId ?? '',
    pid: op.pid ?? 0,
    error_code: op.error?.code ?? '',
    error_message: op.error?.message ?? '',
    created_at: op.createdAt,
    updated_at: op.updatedAt,
    started_at: op.startedAt ?? '',
  };
}

export function checkpointToMessage(manifest: CheckpointManifest): CheckpointMessage {
  return {
    id: manifest.id,
    namespace: manifest.source.namespace,
    container_id: manifest.source.containerId,
    image_ref: manifest.source.image.ref,
    image_digest: manifest.source.image.digest,
    created_at: manifest.createdAt,
    size_bytes: manifest.files.reduce((sum, file) => sum + file.size, 0),
    leave_running: manifest.leaveRunning,
    node: manifest.node,
    kernel_version: manifest.versions.kernel,
    criu_version: manifest.versions.criu,
    containerd_version: manifest.versions.containerd,
    network_namespace: manifest.source.networkNamespace,
    timings_ms: manifest.timings,
    manifest_json: JSON.stringify(manifest),
  };
}

export function gpuReportToMessage(status: NodeGpuStatus): GpuReportMessage {
  const supported = [...status.supportedDriverApiVersions];
  if (!status.usable) return { usable: false, error: status.error, driver_version: '', supported_cuda_driver_api_versions: supported, gpus: [] };
  const { driverVersion, cudaDriverApiVersion, gpus } = status.availability;
  return {
    usable: true,
    error: '',
    driver_version: driverVersion,
    ...(cudaDriverApiVersion === null ? {} : { cuda_driver_api_version: cudaDriverApiVersion }),
    supported_cuda_driver_api_versions: supported,
    gpus: gpus.map((gpu) => ({ uuid: gpu.uuid, model: gpu.name, memory_total_bytes: gpu.memoryTotalBytes, memory_free_bytes: gpu.memoryFreeBytes })),
  };
}
