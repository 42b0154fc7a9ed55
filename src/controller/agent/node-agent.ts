/**
 * What the controller needs from the node agents (proto/kybernate/agent/v1/agent.proto). The gRPC client
 * that implements it over mTLS belongs to the agent issue; reconcilers only see this interface.
 *
 * Calls are idempotent by `operationId` (the Kubernetes object's uid): after a controller restart the
 * same call returns the first call's outcome instead of acting twice.
 * Errors: UnavailableError means "agent unreachable or busy, retry later"; any other error is the
 * operation's final failure (e.g. CRIU refused to dump) and is reported in the object's status.
 */
import type { CheckpointGpuStatus, Storage } from '../../api/index.ts';

export interface ContainerRef {
  node: string;
  /** Pod namespace/name and container name, for logs and the agent's bookkeeping. */
  namespace: string;
  pod: string;
  container: string;
  /** containerd container id (the pod status' containerID without the `containerd://` prefix). */
  containerId: string;
}

export interface CheckpointOptions {
  operationId: string;
  /** Id of the stored checkpoint on the node ([a-z0-9][a-z0-9._-]*). */
  checkpointId: string;
  leaveRunning: boolean;
  storage: Storage;
  gpu: { enabled: boolean; lockTimeoutMs: number };
}

export interface ArtifactRef {
  node: string;
  checkpointId: string;
}

export interface CheckpointArtifact extends ArtifactRef {
  /** Where the images are (node path or shared-volume path). */
  location: string;
  sizeBytes: number;
  durationSeconds: number;
  gpuMemoryBytes: number;
  /** The GPU state the agent captured (its manifest's record); absent for a checkpoint without CUDA processes. */
  gpu?: CheckpointGpuStatus;
}

export interface RestoreTarget {
  node: string;
  namespace: string;
  pod: string;
  container: string;
  deviceMapping: { from: string; to: string }[];
}

export interface RestoreOutcome {
  containerId: string;
  durationSeconds: number;
  gpuMemoryBytes: number;
}

export interface AgentStatus {
  node: string;
  checkpointCount: number;
  runningOperations: number;
  /** The node's GPUs as its agent sees them; undefined when the agent does not report them. */
  gpu?: NodeGpuReport;
}

/** A GPU of a node with the memory free on it now. */
export interface NodeGpu {
  uuid: string;
  model: string;
  memoryTotalBytes: number;
  memoryFreeBytes: number;
}

/**
 * What a node's agent reports about its GPUs: usable (driver, the CUDA driver API versions its
 * checkpoint code supports, the GPUs), or not usable with the agent's error (no driver, no GPU).
 */
export type NodeGpuReport =
  | { usable: true; driverVersion: string; driverApiVersion: number | null; supportedDriverApiVersions: readonly number[]; gpus: readonly NodeGpu[] }
  | { usable: false; error: string };

export interface NodeAgent {
  checkpoint(container: ContainerRef, options: CheckpointOptions, signal: AbortSignal): Promise<CheckpointArtifact>;
  restore(artifact: ArtifactRef, target: RestoreTarget, operationId: string, signal: AbortSignal): Promise<RestoreOutcome>;
  /** Removes the stored checkpoint; a checkpoint that is already gone is not an error. */
  delete(artifact: ArtifactRef): Promise<void>;
  status(node: string): Promise<AgentStatus>;
}

/** GPU memory a checkpoint captured over all its GPUs (0 without GPU state). */
export function capturedGpuBytes(gpu: CheckpointGpuStatus | undefined): number {
  return gpu?.devices.reduce((sum, device) => sum + device.capturedBytes, 0) ?? 0;
}

/** The checkpoint id on the node for a KybernateCheckpoint: unique per namespace/name. */
export function checkpointIdFor(namespace: string, name: string): string {
  return `${namespace}.${name}`;
}
