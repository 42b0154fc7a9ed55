import { UnavailableError } from '../../../src/lib/errors.ts';
import type { CheckpointGpuStatus } from '../../../src/api/index.ts';
import {
  capturedGpuBytes,
  type AgentStatus,
  type ArtifactRef,
  type CheckpointArtifact,
  type CheckpointOptions,
  type ContainerRef,
  type NodeAgent,
  type NodeGpuReport,
  type RestoreOutcome,
  type RestoreTarget,
} from '../../../src/controller/agent/node-agent.ts';

/**
 * TEST DOUBLE of the node agent (the real one is src/agent, reached over gRPC; its own issue tests it
 * against containerd + CRIU). In-process, it records every call and answers like an agent that
 * succeeded, so the API-side tests can check what the controller writes. `failNext` makes the next
 * call fail the way the real agent reports a failed operation; `unavailable` the way an unreachable one does.
 */
export class InProcessTestNodeAgent implements NodeAgent {
  readonly checkpoints: { container: ContainerRef; options: CheckpointOptions }[] = [];
  readonly restores: { artifact: ArtifactRef; target: RestoreTarget; operationId: string }[] = [];
  readonly deletes: ArtifactRef[] = [];
  failNext: { checkpoint?: string; restore?: string } = {};
  unavailable = false;
  /**
   * NAMED STAND-IN for the GPU side (this machine has no GPU): what a checkpoint with gpu.enabled
   * "captured" (the real agent reads it from NVML into its manifest), and each node's GPU report
   * (the real agent's GetStatus does not report GPUs yet). A node without an entry reports none.
   */
  gpuCapture: CheckpointGpuStatus | undefined;
  readonly gpuReports = new Map<string, NodeGpuReport>();
  private readonly capturedGpu = new Map<string, CheckpointGpuStatus>();

  async checkpoint(container: ContainerRef, options: CheckpointOptions): Promise<CheckpointArtifact> {
    if (this.unavailable) throw new UnavailableError('test agent unavailable', { node: container.node });
    this.checkpoints.push({ container, options });
    const failure = this.failNext.checkpoint;
    if (failure) {
      this.failNext.checkpoint = undefined;
      throw new Error(failure);
    }
    const gpu = options.gpu.enabled ? this.gpuCapture : undefined;
    if (gpu) this.capturedGpu.set(options.checkpointId, gpu);
    return {
      node: container.node,
      checkpointId: options.checkpointId,
      location: `/var/lib/kybernate/checkpoints/${options.checkpointId}`,
      sizeBytes: 4096,
      durationSeconds: 0.25,
      gpuMemoryBytes: capturedGpuBytes(gpu),
      ...(gpu ? { gpu } : {}),
    };
  }

  async restore(artifact: ArtifactRef, target: RestoreTarget, operationId: string): Promise<RestoreOutcome> {
    if (this.unavailable) throw new UnavailableError('test agent unavailable', { node: target.node });
    this.restores.push({ artifact, target, operationId });
    const failure = this.failNext.restore;
    if (failure) {
      this.failNext.restore = undefined;
      throw new Error(failure);
    }
    return { containerId: `restored-${target.pod}`, durationSeconds: 0.3, gpuMemoryBytes: capturedGpuBytes(this.capturedGpu.get(artifact.checkpointId)) };
  }

  async delete(artifact: ArtifactRef): Promise<void> {
    this.deletes.push(artifact);
  }

  async status(node: string): Promise<AgentStatus> {
    const gpu = this.gpuReports.get(node);
    return { node, checkpointCount: this.checkpoints.length - this.deletes.length, runningOperations: 0, ...(gpu ? { gpu } : {}) };
  }
}

