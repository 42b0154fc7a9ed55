import type { V1Pod } from '@kubernetes/client-node';
import { parseDuration } from '../../lib/duration.ts';
import type { KybernateCheckpoint, KybernateCheckpointStatus } from '../../api/index.ts';
import { checkpointIdFor } from '../agent/node-agent.ts';
import { getOptional } from '../../lib/kube/client.ts';
import { CHECKPOINTS, PODS } from '../../lib/kube/resources.ts';
import type { IndexedCache } from '../../lib/kube/cache.ts';
import type { ReconcileRequest, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import { hasFinalizer, setFinalizer } from '../runtime/finalizers.ts';
import type { ReconcilerDeps } from './deps.ts';
import { failureMessage, isTransient, OperationRecorder } from './operation-status.ts';
import { isTerminating, resolveContainer, WAIT_FOR_POD_MS } from './pods.ts';

/** Removes the checkpoint images on the node when the KybernateCheckpoint is deleted. */
export const CHECKPOINT_FINALIZER = 'kybernate.io/checkpoint-artifact';


/**
 * KybernateCheckpoint: validate the pod and container, then ask the node agent to checkpoint it.
 * Pending -> Running -> Completed | Failed; Completed and Failed are final (the spec is immutable).
 * The finalizer is added before the agent is called, so images are never left behind by a delete.
 */
export class CheckpointReconciler implements Reconciler {
  private readonly recorder: OperationRecorder<KybernateCheckpointStatus, KybernateCheckpoint>;

  constructor(
    private readonly deps: ReconcilerDeps,
    private readonly checkpoints: IndexedCache<KybernateCheckpoint>,
  ) {
    this.recorder = new OperationRecorder(deps, CHECKPOINTS, 'Checkpoint');
  }

  async reconcile({ namespace, name }: ReconcileRequest, signal: AbortSignal): Promise<ReconcileResult | void> {
    let checkpoint = this.checkpoints.get(namespace, name);
    if (!checkpoint) return;
    const log = this.deps.log.child({ checkpoint: `${namespace}/${name}`, pod: checkpoint.spec.podName });
    if (isTerminating(checkpoint)) return this.finalize(checkpoint);
    const phase = checkpoint.status?.phase;
    if (phase === 'Completed' || phase === 'Failed') return;
    checkpoint = await setFinalizer(this.deps.kube, CHECKPOINTS, checkpoint, CHECKPOINT_FINALIZER, true);

    const pod = await getOptional<V1Pod>(this.deps.kube, PODS, namespace, checkpoint.spec.podName);
    if (!pod) return void (await this.recorder.fail(checkpoint, 'PodNotFound', `pod ${checkpoint.spec.podName} does not exist in ${namespace}`));
    const container = resolveContainer(pod, checkpoint.spec.containerName);
    if (!container.ok) return void (await this.recorder.fail(checkpoint, container.reason, container.message));
    const node = pod.spec?.nodeName;
    if (!node || !container.running || !container.containerId) {
      await this.recorder.write(checkpoint, 'Pending', 'PodNotRunning', `waiting for container ${container.container} of pod ${pod.metadata?.name} to run on a node`);
      return { requeueAfterMs: WAIT_FOR_POD_MS };
    }

    const running = await this.recorder.write(checkpoint, 'Running', 'CheckpointInProgress', `checkpointing container ${container.container} on ${node}`, {
      node,
      containerID: container.containerId,
    });
    if (!running) return;
    try {
      const artifact = await this.deps.agent.checkpoint(
        { node, namespace, pod: checkpoint.spec.podName, container: container.container, containerId: container.containerId },
        {
          operationId: checkpoint.metadata?.uid ?? '',
          checkpointId: checkpointIdFor(namespace, name),
          leaveRunning: checkpoint.spec.leaveRunning,
          storage: checkpoint.spec.storage,
          gpu: { enabled: checkpoint.spec.gpu.enabled, lockTimeoutMs: parseDuration(checkpoint.spec.gpu.lockTimeout) },
        },
        signal,
      );
      await this.recorder.write(running, 'Completed', 'Checkpointed', `checkpoint stored at ${artifact.location}`, {
        location: artifact.location,
        sizeBytes: artifact.sizeBytes,
        checkpointDurationSeconds: artifact.durationSeconds,
        gpuMemoryBytes: artifact.gpuMemoryBytes,
        ...(artifact.gpu ? { gpu: artifact.gpu } : {}),
      });
      log.info({ node, location: artifact.location, sizeBytes: artifact.sizeBytes }, 'checkpoint completed');
      await this.deps.events.record(running, 'Normal', 'Checkpointed', 'Checkpoint', `container ${container.container} of pod ${pod.metadata?.name} checkpointed on ${node} (${artifact.sizeBytes} bytes)`);
    } catch (err) {
      if (isTransient(err)) throw err;
      await this.recorder.fail(running, 'CheckpointFailed', failureMessage(err));
    }
  }

  private async finalize(checkpoint: KybernateCheckpoint): Promise<void> {
    if (!hasFinalizer(checkpoint, CHECKPOINT_FINALIZER)) return;
    const node = checkpoint.status?.node;
    const { namespace = '', name = '' } = checkpoint.metadata ?? {};
    // Only a checkpoint that reached the agent can have images; Pending/validation failures have none.
    if (node && checkpoint.status?.phase !== 'Pending') {
      await this.deps.agent.delete({ node, checkpointId: checkpointIdFor(namespace, name) });
      this.deps.log.info({ checkpoint: `${namespace}/${name}`, node }, 'checkpoint images deleted');
    }
    await setFinalizer(this.deps.kube, CHECKPOINTS, checkpoint, CHECKPOINT_FINALIZER, false);
  }
}
