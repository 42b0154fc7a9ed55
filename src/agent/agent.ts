import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import { errorMessage } from '../lib/errors.ts';
import { checkpointContainer, validateCheckpointRequest, type AgentContext, type CheckpointRequest } from './checkpoint.ts';
import { nodeGpuStatus, type NodeGpuStatus } from './gpu/report.ts';
import { gpuSupportOf } from './gpu/support.ts';
import { transparentHugePages } from './node-info.ts';
import type { OperationRegistry } from './operations/registry.ts';
import { canonicalJson, type Operation } from './operations/state.ts';
import { restoreCheckpoint, restoreDestination, validateRestoreRequest, type RestoreRequest } from './restore.ts';
import type { CheckpointManifest } from './store/manifest.ts';

export interface AgentStatusReport {
  node: string;
  kernel: string;
  criu: string;
  containerd: string;
  containerdAddress: string;
  containerdReachable: boolean;
  storeRoot: string;
  checkpointCount: number;
  runningOperations: number;
  logDir: string;
  /** the node's transparent huge pages mode: `always` makes GPU checkpoint/restore ~1.5-2x faster (docs/gpu.md) */
  transparentHugePages: string;
  gpu: NodeGpuStatus;
}

/**
 * The agent's use cases, independent of the transport: long operations go through the registry
 * (idempotent per id, serialized per container), the rest answers from the store directly.
 */
export class Agent {
  constructor(
    readonly ctx: AgentContext,
    readonly operations: OperationRegistry,
  ) {}

  /** Prepares the store (removing what an interrupted run left) and reloads the recorded operations. */
  async init(): Promise<void> {
    const leftovers = await this.ctx.store.init();
    if (leftovers.length > 0) this.ctx.log.warn({ leftovers }, 'removed partial checkpoints and work dirs of an earlier run');
    await this.operations.load();
  }

  checkpoint(request: CheckpointRequest & { operationId?: string }): Operation {
    const { operationId, ...checkpoint } = request;
    validateCheckpointRequest(checkpoint);
    return this.operations.submit({
      id: operationId || randomUUID(),
      kind: 'checkpoint',
      request: canonicalJson(checkpoint),
      namespace: checkpoint.namespace,
      containerId: checkpoint.containerId,
      run: async (step) => ({ checkpointId: (await checkpointContainer(this.ctx, checkpoint, step)).id }),
    });
  }

  async restore(request: RestoreRequest & { operationId?: string }): Promise<Operation> {
    const { operationId, ...restore } = request;
    validateRestoreRequest(restore);
    const manifest = await this.ctx.store.get(restore.checkpointId);
    const destination = restoreDestination(restore, manifest);
    return this.operations.submit({
      id: operationId || randomUUID(),
      kind: 'restore',
      request: canonicalJson(restore),
      ...destination,
      run: async (step) => {
        const result = await restoreCheckpoint(this.ctx, restore, step);
        return { checkpointId: restore.checkpointId, pid: result.pid };
      },
    });
  }

  getCheckpoint(id: string): Promise<CheckpointManifest> {
    return this.ctx.store.get(id);
  }

  listCheckpoints(): ReturnType<AgentContext['store']['list']> {
    return this.ctx.store.list();
  }

  deleteCheckpoint(id: string): Promise<void> {
    return this.ctx.store.delete(id);
  }

  exportCheckpoint(id: string, archivePath: string): Promise<{ bytes: number }> {
    return this.ctx.store.export(id, archivePath);
  }

  importCheckpoint(archivePath: string): Promise<CheckpointManifest> {
    return this.ctx.store.import(archivePath);
  }

  async status(): Promise<AgentStatusReport> {
    // Asked beside containerd and the store; it never rejects.
    const gpu = nodeGpuStatus(gpuSupportOf(this.ctx));
    const reachable = await this.ctx.containerd.version(2_000).then(() => true, () => false);
    const checkpoints = await this.ctx.store.list();
    const info = this.ctx.nodeInfo;
    return {
      node: info.node,
      kernel: info.kernel,
      criu: info.criu,
      containerd: info.containerd,
      containerdAddress: this.ctx.containerd.address,
      containerdReachable: reachable,
      storeRoot: this.ctx.store.root,
      checkpointCount: checkpoints.length,
      runningOperations: this.operations.list().filter((op) => op.state === 'PENDING' || op.state === 'RUNNING').length,
      logDir: this.ctx.logDir,
      transparentHugePages: await transparentHugePages(),
      gpu: await gpu,
    };
  }

  /** Serving = containerd answers and the store accepts writes. */
  async health(): Promise<{ serving: boolean; message: string }> {
    try {
      await this.ctx.containerd.version(2_000);
    } catch (err) {
      return { serving: false, message: errorMessage(err) };
    }
    try {
      const dir = await this.ctx.store.createWorkDir('health');
      await fs.rm(dir, { recursive: true, force: true });
    } catch (err) {
      return { serving: false, message: `checkpoint store ${this.ctx.store.root} is not writable: ${errorMessage(err)}` };
    }
    return { serving: true, message: 'ok' };
  }
}
