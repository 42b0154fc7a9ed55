import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import type { GpuReportMessage } from '../../agent/api.ts';
import { AgentClient } from '../../agent/client.ts';
import { GpuRecordSchema } from '../../agent/gpu/record.ts';
import type { CheckpointGpuStatus } from '../../api/index.ts';
import { KybernateError } from '../../lib/errors.ts';
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
} from './node-agent.ts';

/** containerd namespace of containers the kubelet creates. */
const KUBELET_CONTAINERD_NAMESPACE = 'k8s.io';

/**
 * NodeAgent over the agents' gRPC API (src/agent/client.ts), one mTLS client per node. Limits of the
 * current agent API, stated rather than hidden: it stores checkpoints in the node-local store only
 * (spec storage is not passed on), takes no per-call GPU lock timeout (the agent's own applies), and
 * restores a checkpoint standalone: joining the target pod's sandbox (netns, cgroup) needs a node-side
 * lookup the API does not offer yet.
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
      gpu: options.gpu.enabled,
    });
    const [stored, status] = await Promise.all([client.getCheckpoint(operation.checkpoint_id), client.getStatus()]);
    const gpu = gpuCaptureFromManifest(stored.manifest_json);
    return {
      node: container.node,
      checkpointId: stored.id,
      location: `${status.store_root}/${stored.id}`,
      sizeBytes: Number(stored.size_bytes),
      durationSeconds: stepSeconds(operation.steps),
      gpuMemoryBytes: capturedGpuBytes(gpu),
      ...(gpu ? { gpu } : {}),
    };
  }

  async restore(artifact: ArtifactRef, target: RestoreTarget, operationId: string): Promise<RestoreOutcome> {
    const client = this.client(artifact.node);
    const gpuPairs = target.deviceMapping.map((pair) => ({ oldUuid: pair.from, newUuid: pair.to }));
    const operation = await client.restoreAndWait({ operationId, checkpointId: artifact.checkpointId, ...(gpuPairs.length ? { gpuPairs } : {}) });
    // The restore brought back exactly what the checkpoint captured onto the GPUs.
    const stored = await client.getCheckpoint(artifact.checkpointId);
    return { containerId: operation.container_id, durationSeconds: stepSeconds(operation.steps), gpuMemoryBytes: capturedGpuBytes(gpuCaptureFromManifest(stored.manifest_json)) };
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
    const gpu = nodeGpuReportFromMessage(status.gpu);
    return { node: status.node, checkpointCount: status.checkpoint_count, runningOperations: status.running_operations, ...(gpu ? { gpu } : {}) };
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

/**
 * The GPU state a checkpoint holds, from its manifest's `gpu` record (src/agent/gpu/record.ts): per GPU
 * the bytes NVML showed the checkpointed processes holding (rows NVML could not attribute count 0, as
 * in the agent's own placement). Undefined for a checkpoint without CUDA processes.
 */
export function gpuCaptureFromManifest(manifestJson: string): CheckpointGpuStatus | undefined {
  const record = (JSON.parse(manifestJson) as { gpu?: unknown }).gpu;
  if (record === undefined) return undefined;
  if (!Value.Check(GpuRecordSchema, record)) {
    const first = [...Value.Errors(GpuRecordSchema, record)][0];
    throw new KybernateError('InvalidAgentResponse', `the agent's checkpoint manifest has an unreadable gpu record: ${first?.path} ${first?.message}`, { path: first?.path });
  }
  const captured = new Map<string, number>();
  for (const row of record.processes) if (row.gpuUuid) captured.set(row.gpuUuid, (captured.get(row.gpuUuid) ?? 0) + (row.usedBytes ?? 0));
  return {
    driverVersion: record.driverVersion,
    ...(record.cudaDriverApiVersion === null ? {} : { driverApiVersion: record.cudaDriverApiVersion }),
    processes: new Set(record.processes.map((row) => row.pid)).size,
    devices: record.gpus.map((gpu) => ({ uuid: gpu.uuid, model: gpu.name, memoryTotalBytes: gpu.memoryTotalBytes, capturedBytes: captured.get(gpu.uuid) ?? 0 })),
  };
}

/**
 * The agent's GetStatus GPU report as the GPU preflight reads it; undefined from an agent older than the
 * report (the preflight then leaves the decision to the agent's own check).
 */
export function nodeGpuReportFromMessage(report: GpuReportMessage | null | undefined): NodeGpuReport | undefined {
  if (!report) return undefined;
  if (!report.usable) return { usable: false, error: report.error || 'the agent reports no usable GPU and no reason' };
  return {
    usable: true,
    driverVersion: report.driver_version,
    driverApiVersion: report.cuda_driver_api_version ?? null,
    supportedDriverApiVersions: report.supported_cuda_driver_api_versions,
    gpus: report.gpus.map((gpu) => ({ uuid: gpu.uuid, model: gpu.model, memoryTotalBytes: gpu.memory_total_bytes, memoryFreeBytes: gpu.memory_free_bytes })),
  };
}

function stepSeconds(steps: { duration_ms?: number }[]): number {
  return steps.reduce((sum, step) => sum + (step.duration_ms ?? 0), 0) / 1000;
}
