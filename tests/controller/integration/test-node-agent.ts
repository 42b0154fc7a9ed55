import { UnavailableError } from '../../../src/lib/errors.ts';
import type {
  AgentStatus,
  ArtifactRef,
  CheckpointArtifact,
  CheckpointOptions,
  ContainerRef,
  NodeAgent,
  RestoreOutcome,
  RestoreTarget,
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

  async checkpoint(container: ContainerRef, options: CheckpointOptions): Promise<CheckpointArtifact> {
    if (this.unavailable) throw new UnavailableError('test agent unavailable', { node: container.node });
    this.checkpoints.push({ container, options });
    const failure = this.failNext.checkpoint;
    if (failure) {
      this.failNext.checkpoint = undefined;
      throw new Error(failure);
    }
    return {
      node: container.node,
      checkpointId: options.checkpointId,
      location: `/var/lib/kybernate/checkpoints/${options.checkpointId}`,
      sizeBytes: 4096,
      durationSeconds: 0.25,
      gpuMemoryBytes: 0,
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
    return { containerId: `restored-${target.pod}`, durationSeconds: 0.3, gpuMemoryBytes: 0 };
  }

  async delete(artifact: ArtifactRef): Promise<void> {
    this.deletes.push(artifact);
  }

  async status(node: string): Promise<AgentStatus> {
    return { node, checkpointCount: this.checkpoints.length - this.deletes.length, runningOperations: 0 };
  }
}
