import type { V1Pod } from '@kubernetes/client-node';
import { findCondition, type ConditionInput, type KybernateCheckpoint, type KybernateRestore, type KybernateRestoreStatus } from '../../api/index.ts';
import { checkpointIdFor } from '../agent/node-agent.ts';
import { getOptional } from '../../lib/kube/client.ts';
import { PODS, RESTORES } from '../../lib/kube/resources.ts';
import type { IndexedCache } from '../../lib/kube/cache.ts';
import type { ReconcileRequest, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { ReconcilerDeps } from './deps.ts';
import { failureMessage, isTransient, OperationRecorder } from './operation-status.ts';
import { resolveContainer, WAIT_FOR_POD_MS } from './pods.ts';
import { decideGpuPlacement, gpuReadyCondition, gpuRetryDelayMs, type GpuPlacement } from '../gpu/placement.ts';
import { parseKubeTime } from '../runtime/time.ts';

/** Index of the restores cache: `namespace/checkpointRef`, so a checkpoint's change wakes its restores. */
export const RESTORES_BY_CHECKPOINT = 'checkpoint';
export const restoreCheckpointIndex = (restore: KybernateRestore): string[] => [`${restore.metadata?.namespace}/${restore.spec.checkpointRef}`];


/**
 * KybernateRestore: the checkpoint must exist and be Completed, the target node must be able to read
 * its images, the target pod must exist (the workload controller creates it from its template; a
 * standalone restore needs a pod created by the user), and for a checkpoint with GPU state the node
 * must have a compatible free GPU (condition GpuReady; the restore waits in Pending while it has not).
 * Then the node agent restores into it. Pending -> Running -> Completed | Failed.
 */
export class RestoreReconciler implements Reconciler {
  private readonly recorder: OperationRecorder<KybernateRestoreStatus, KybernateRestore>;

  constructor(
    private readonly deps: ReconcilerDeps,
    private readonly restores: IndexedCache<KybernateRestore>,
    private readonly checkpoints: IndexedCache<KybernateCheckpoint>,
  ) {
    this.recorder = new OperationRecorder(deps, RESTORES, 'Restore');
  }

  async reconcile({ namespace, name }: ReconcileRequest, signal: AbortSignal): Promise<ReconcileResult | void> {
    const restore = this.restores.get(namespace, name);
    if (!restore || restore.metadata?.deletionTimestamp) return;
    const phase = restore.status?.phase;
    if (phase === 'Completed' || phase === 'Failed') return;
    const { checkpointRef, targetPod } = restore.spec;

    const checkpoint = this.checkpoints.get(namespace, checkpointRef);
    if (!checkpoint) return void (await this.recorder.fail(restore, 'CheckpointNotFound', `KybernateCheckpoint ${checkpointRef} does not exist in ${namespace}`));
    if (checkpoint.status?.phase === 'Failed') return void (await this.recorder.fail(restore, 'CheckpointFailed', `KybernateCheckpoint ${checkpointRef} failed: ${checkpoint.status.message ?? ''}`));
    const sourceNode = checkpoint.status?.node;
    if (checkpoint.status?.phase !== 'Completed' || !sourceNode) {
      // Re-queued by the checkpoint's own changes (index RESTORES_BY_CHECKPOINT).
      return void (await this.recorder.write(restore, 'Pending', 'CheckpointNotCompleted', `waiting for KybernateCheckpoint ${checkpointRef} to complete`));
    }
    const node = targetPod.node ?? sourceNode;
    if (checkpoint.spec.storage.type === 'nodeLocal' && node !== sourceNode) {
      return void (await this.recorder.fail(restore, 'NodeMismatch', `checkpoint ${checkpointRef} is stored node-locally on ${sourceNode}; it cannot be restored on ${node}`));
    }

    const pod = await getOptional<V1Pod>(this.deps.kube, PODS, namespace, targetPod.name);
    if (!pod) {
      await this.recorder.write(restore, 'Pending', 'TargetPodMissing', `waiting for pod ${targetPod.name} to exist`);
      return { requeueAfterMs: WAIT_FOR_POD_MS };
    }
    const container = resolveContainer(pod, checkpoint.spec.containerName);
    if (!container.ok) return void (await this.recorder.fail(restore, container.reason, container.message));

    const placement = await this.gpuPlacement(restore, checkpoint, node);
    const gpuReady = gpuReadyCondition(placement);
    if (placement.kind === 'invalid') return void (await this.recorder.fail(restore, placement.reason, placement.message, [gpuReady!]));
    if (placement.kind === 'wait') return this.waitForGpu(restore, placement, gpuReady!);
    if (placement.kind === 'unchecked') this.deps.log.warn({ restore: `${namespace}/${name}`, node }, placement.message);

    const running = await this.recorder.write(restore, 'Running', 'RestoreInProgress', `restoring ${checkpointRef} into pod ${targetPod.name} on ${node}`, { node }, gpuReady ? [gpuReady] : []);
    if (!running) return;
    try {
      const deviceMapping = placement.kind === 'ready' ? placement.deviceMapping : (restore.spec.gpu?.deviceMapping ?? []);
      const outcome = await this.deps.agent.restore(
        { node: sourceNode, checkpointId: checkpointIdFor(namespace, checkpointRef) },
        { node, namespace, pod: targetPod.name, container: container.container, deviceMapping },
        restore.metadata?.uid ?? '',
        signal,
      );
      await this.recorder.write(running, 'Completed', 'Restored', `restored into pod ${targetPod.name} on ${node}`, {
        restoredPod: targetPod.name,
        containerID: outcome.containerId,
        restoreDurationSeconds: outcome.durationSeconds,
        gpuMemoryBytes: outcome.gpuMemoryBytes,
      });
      this.deps.log.info({ restore: `${namespace}/${name}`, pod: targetPod.name, node }, 'restore completed');
      await this.deps.events.record(running, 'Normal', 'Restored', 'Restore', `checkpoint ${checkpointRef} restored into pod ${targetPod.name} on ${node} in ${outcome.durationSeconds} s`);
    } catch (err) {
      if (isTransient(err)) throw err;
      await this.recorder.fail(running, 'RestoreFailed', failureMessage(err));
    }
  }

  /** The GPU preflight: asks the target node's agent for its GPUs only when the checkpoint holds GPU state. */
  private async gpuPlacement(restore: KybernateRestore, checkpoint: KybernateCheckpoint, node: string): Promise<GpuPlacement> {
    const captured = checkpoint.status?.gpu;
    // A Running restore may be in the agent already (the controller restarted mid-restore): the GPU memory
    // it is filling would fail the check. The idempotent Restore call re-attaches to it instead.
    if (!captured?.devices.length || restore.status?.phase === 'Running') return { kind: 'not-needed' };
    // An unreachable agent throws UnavailableError: the reconcile is retried with the queue's backoff.
    const report = (await this.deps.agent.status(node)).gpu;
    return decideGpuPlacement({ node, captured, report, deviceMapping: restore.spec.gpu?.deviceMapping ?? [] });
  }

  /**
   * No compatible GPU yet: the restore stays Pending with GpuReady False, the agent's Restore is not
   * called, and the check runs again after a delay that grows with the time waited. The Warning event
   * goes out when the reason changes, not on every retry.
   */
  private async waitForGpu(restore: KybernateRestore, placement: GpuPlacement & { kind: 'wait' }, condition: ConditionInput): Promise<ReconcileResult> {
    const previous = findCondition(restore.status?.conditions, 'GpuReady');
    const written = (await this.recorder.write(restore, 'Pending', placement.reason, placement.message, {}, [condition])) ?? restore;
    if (previous?.status !== 'False' || previous.reason !== placement.reason) {
      const { namespace, name } = restore.metadata ?? {};
      this.deps.log.warn({ restore: `${namespace}/${name}`, reason: placement.reason, message: placement.message }, 'restore waits for a compatible GPU');
      await this.deps.events.record(written, 'Warning', placement.reason, 'Restore', placement.message);
    }
    const since = parseKubeTime(findCondition(written.status?.conditions, 'GpuReady')?.lastTransitionTime);
    return { requeueAfterMs: gpuRetryDelayMs(since, this.deps.now().getTime()) };
  }
}
