import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../agent/client.ts';
import { KybernateError } from '../../lib/errors.ts';
import type { AgentStatus, ArtifactRef, CheckpointArtifact, CheckpointOptions, ContainerRef, NodeAgent, RestoreOutcome, RestoreTarget } from './node-agent.ts';

/** containerd namespace of containers the kubelet creates. */
const KUBELET_CONTAINERD_NAMESPACE = 'k8s.io';

/**
 * NodeAgent over the agents' gRPC API (src/agent/client.ts), one mTLS client per node. Limits of the
 * current agent API, stated rather than hidden: it stores checkpoints in the node-local store only
 * (spec storage is not passed on), has no per-call GPU options, and restores a checkpoint standalone:
 * joining the target pod's sandbox (netns, cgroup) needs a node-side lookup the API does not offer yet.
 */
export class GrpcNodeAgent implements NodeAgent {
  private readonly clients = new Map<string, AgentClient>();

  /** `containerdNamespace`: where the kubelet's containers are (`k8s.io`); tests run their own. */
  constructor(
    private readonly connect: (node: string) => AgentClient,
    private readonly containerdNamespace = KUBELET_CONTAINERD_NAMESPACE,
  ) {}

  static mtls(addressTemplate: string, tlsDir: string): GrpcNodeAgent {
    const read = (file: string) => {
      try {
        return readFileSync(join(tlsDir, file));
      } catch (err) {
        throw new KybernateError('AgentTlsMissing', `mTLS material for the node agents is missing: ${join(tlsDir, file)} (KYBERNATE_AGENT_TLS_DIR)`, { tlsDir, file }, { cause: err });
      }
    };
    return new GrpcNodeAgent(
      (node) => new AgentClient({ address: addressTemplate.replaceAll('{node}', node), caPem: read('ca.crt'), certPem: read('tls.crt'), keyPem: read('tls.key') }),
    );
  }

  async checkpoint(container: ContainerRef, options: CheckpointOptions): Promise<CheckpointArtifact> {
    const client = this.client(container.node);
    const operation = await client.checkpointAndWait({
      operationId: options.operationId,
      namespace: this.containerdNamespace,
      containerId: container.containerId,
      leaveRunning: options.leaveRunning,
      checkpointId: options.checkpointId,
    });
    const [stored, status] = await Promise.all([client.getCheckpoint(operation.checkpoint_id), client.getStatus()]);
    return {
      node: container.node,
      checkpointId: stored.id,
      location: `${status.store_root}/${stored.id}`,
      sizeBytes: Number(stored.size_bytes),
      durationSeconds: stepSeconds(operation.steps),
      gpuMemoryBytes: 0,
    };
  }

  async restore(artifact: ArtifactRef, _target: RestoreTarget, operationId: string): Promise<RestoreOutcome> {
    const operation = await this.client(artifact.node).restoreAndWait({ operationId, checkpointId: artifact.checkpointId });
    return { containerId: operation.container_id, durationSeconds: stepSeconds(operation.steps), gpuMemoryBytes: 0 };
  }

  async delete(artifact: ArtifactRef): Promise<void> {
    try {
      await this.client(artifact.node).deleteCheckpoint(artifact.checkpointId);
    } catch (err) {
      if ((err as { code?: string }).code !== 'NotFound') throw err;
    }
  }

  async status(node: string): Promise<AgentStatus> {
    const status = await this.client(node).getStatus();
    return { node: status.node, checkpointCount: status.checkpoint_count, runningOperations: status.running_operations };
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }

  private client(node: string): AgentClient {
    let client = this.clients.get(node);
    if (!client) {
      client = this.connect(node);
      this.clients.set(node, client);
    }
    return client;
  }
}

function stepSeconds(steps: { duration_ms?: number }[]): number {
  return steps.reduce((sum, step) => sum + (step.duration_ms ?? 0), 0) / 1000;
}
