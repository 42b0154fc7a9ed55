import type { V1Pod, V1Service } from '@kubernetes/client-node';
import {
  ACTIVATION_REQUESTED_AT_ANNOTATION,
  WORKLOAD_LABEL,
  findCondition,
  setCondition,
  toKubeTime,
  type ConditionInput,
  type KybernateCheckpoint,
  type KybernateRestore,
  type KybernateWorkload,
  type KybernateWorkloadStatus,
  type WorkloadPhase,
} from '../../api/index.ts';
import { parseDuration } from '../../lib/duration.ts';
import type { Logger } from '../../lib/log.ts';
import type { ActivityReport } from '../activity/activity-source.ts';
import { isAlreadyExists, isNotFound, type KubeObject } from '../../lib/kube/client.ts';
import { CHECKPOINTS, PODS, RESTORES, SERVICES, WORKLOADS, type ResourceType } from '../../lib/kube/resources.ts';
import { decideIdleAction, type IdleDecision, type SuspendReason } from '../policy/idle-policy.ts';
import type { IndexedCache } from '../../lib/kube/cache.ts';
import type { ReconcileRequest, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import { updateStatus } from '../runtime/status.ts';
import { parseKubeTime } from '../runtime/time.ts';
import type { ReconcilerDeps } from './deps.ts';
import type { GpuPodConfig } from '../gpu/pod-gpu.ts';
import { changedOnly, secondsBetween } from './operation-status.ts';
import { isPodReady, isTerminating, podReadySinceMs, resolveContainer } from './pods.ts';
import {
  buildCheckpoint,
  buildPod,
  buildRestore,
  buildService,
  checkpointName,
  desiredPodName,
  isOwnedBy,
  serviceMatches,
} from './workload-objects.ts';

/** Index of the pods cache: `namespace/workload` from the workload label. */
export const PODS_BY_WORKLOAD = 'workload';
export const podWorkloadIndex = (pod: V1Pod): string[] => {
  const workload = pod.metadata?.labels?.[WORKLOAD_LABEL];
  return workload ? [`${pod.metadata?.namespace}/${workload}`] : [];
};

export interface WorkloadReconcilerConfig {
  /** Longest Suspending or Restoring phase before the workload is marked Failed. */
  operationTimeoutMs: number;
  /** Runtime class and GPU resource of GPU workloads' pods. */
  gpu: GpuPodConfig;
}

export interface WorkloadCaches {
  workloads: IndexedCache<KybernateWorkload>;
  pods: IndexedCache<V1Pod>;
  services: IndexedCache<V1Service>;
  checkpoints: IndexedCache<KybernateCheckpoint>;
  restores: IndexedCache<KybernateRestore>;
}

type StatusChange = (status: KybernateWorkloadStatus) => KybernateWorkloadStatus;

interface Observed {
  workload: KybernateWorkload;
  pods: V1Pod[];
  log: Logger;
  now: Date;
}

/**
 * KybernateWorkload: owns a Service and the serving pod (owner references, label kybernate.io/workload),
 * asks the pure idle policy what to do and carries it out:
 * Running/Idle -suspend-> Suspending (KybernateCheckpoint created, then the pod removed) -> Suspended
 * -restore-> Restoring (pod created from the template, KybernateRestore of the last checkpoint) -> Running.
 * Suspended -> Restoring is one conflict-checked status write that requires phase Suspended, so a wake
 * is acted on once however many activators ask.
 */
export class WorkloadReconciler implements Reconciler {
  constructor(
    private readonly deps: ReconcilerDeps,
    private readonly caches: WorkloadCaches,
    private readonly activity: () => ActivityReport | undefined,
    private readonly config: WorkloadReconcilerConfig,
  ) {}

  async reconcile({ namespace, name }: ReconcileRequest): Promise<ReconcileResult | void> {
    const workload = this.caches.workloads.get(namespace, name);
    // Deletion needs no work here: the API server's garbage collector removes what the workload owns.
    if (!workload || isTerminating(workload)) return;
    const observed: Observed = {
      workload,
      pods: this.caches.pods.byIndex(PODS_BY_WORKLOAD, `${namespace}/${name}`).filter((pod) => isOwnedBy(pod, workload) && !isTerminating(pod)),
      log: this.deps.log.child({ workload: `${namespace}/${name}` }),
      now: this.deps.now(),
    };
    await this.ensureService(observed);

    const decision = decideIdleAction(this.policyInput(observed));
    observed.log.debug({ phase: workload.status?.phase, decision }, 'idle policy');
    switch (decision.action) {
      case 'fail':
        await this.setFailed(observed, decision.reason, decision.message);
        if (workload.status?.phase === 'Restoring') await this.withdrawPendingRestores(observed);
        return;
      case 'suspend':
        return this.beginSuspend(observed, decision);
      case 'restore':
        return this.beginRestore(observed, decision);
      case 'keep':
        switch (decision.phase) {
          case 'Suspending':
            return this.continueSuspend(observed);
          case 'Restoring':
            return this.continueRestore(observed);
          case 'Suspended':
            return this.keepSuspended(observed);
          case 'Failed':
            return;
          case 'Running':
          case 'Idle':
            return this.keepRunning(observed, decision);
        }
    }
  }

  private policyInput({ workload, pods, now }: Observed) {
    const status = workload.status;
    // A Failed workload whose spec changed starts over.
    const phase = status?.phase === 'Failed' && status.observedGeneration !== workload.metadata.generation ? undefined : status?.phase;
    const pod = pods[0];
    const suspendedCondition = findCondition(status?.conditions, 'Suspended');
    const suspendReason = suspendedCondition?.status === 'True' ? (suspendedCondition.reason as SuspendReason) : undefined;
    return {
      nowMs: now.getTime(),
      phase,
      phaseSinceMs: this.phaseSinceMs(workload, phase),
      spec: {
        suspend: workload.spec.suspend,
        scaleToZeroEnabled: workload.spec.scaleToZero.enabled && workload.spec.scaleToZero.minReplicas === 0,
        idleTimeoutMs: parseDuration(workload.spec.scaleToZero.idleTimeout),
        operationTimeoutMs: this.config.operationTimeoutMs,
      },
      podReady: pod ? isPodReady(pod) : false,
      readySinceMs: pod ? podReadySinceMs(pod) : undefined,
      suspendReason,
      suspendedAtMs: parseKubeTime(status?.suspendedAt),
      activationRequestedAtMs: this.activationRequestedAtMs(workload),
      activity: this.activity()?.snapshot(workload.metadata.namespace ?? '', workload.metadata.name ?? ''),
    };
  }

  /** Suspending counts from its checkpoint's creation, Restoring from when Suspended turned False. */
  private phaseSinceMs(workload: KybernateWorkload, phase: WorkloadPhase | undefined): number | undefined {
    if (phase === 'Suspending') return parseKubeTime(this.lastCheckpoint(workload)?.metadata?.creationTimestamp);
    if (phase === 'Restoring') return parseKubeTime(findCondition(workload.status?.conditions, 'Suspended')?.lastTransitionTime);
    return undefined;
  }

  private activationRequestedAtMs(workload: KybernateWorkload): number | undefined {
    const text = workload.metadata.annotations?.[ACTIVATION_REQUESTED_AT_ANNOTATION];
    if (text === undefined) return undefined;
    const ms = parseKubeTime(text);
    if (ms === undefined) this.deps.log.warn({ workload: workload.metadata.name, annotation: text }, `ignoring ${ACTIVATION_REQUESTED_AT_ANNOTATION}: not an RFC 3339 time`);
    return ms;
  }

  private lastCheckpoint(workload: KybernateWorkload): KybernateCheckpoint | undefined {
    const ref = workload.status?.lastCheckpointRef;
    return ref ? this.caches.checkpoints.get(workload.metadata.namespace ?? '', ref) : undefined;
  }

  // --- Running / Idle ---

  private async keepRunning(observed: Observed, decision: IdleDecision & { action: 'keep' }): Promise<ReconcileResult> {
    const podName = observed.pods[0]?.metadata?.name ?? desiredPodName(observed.workload);
    const pod = observed.pods[0] ?? (await this.createPod(observed, buildPod(observed.workload, podName, this.config.gpu)));
    const ready = pod ? isPodReady(pod) : false;
    // Leaving Restoring: the restore time is written in the same status write as the phase.
    const restoreSeconds = observed.workload.status?.phase === 'Restoring' ? this.restoreSeconds(observed) : undefined;
    const { written, workload } = await this.writeStatus(observed, (status) => ({
      ...status,
      phase: decision.phase,
      message: decision.message,
      ...(restoreSeconds === undefined ? {} : { lastRestoreDurationSeconds: restoreSeconds }),
      conditions: withConditions(status.conditions, observed, [
        ready ? { type: 'Ready', status: 'True', reason: 'PodReady' } : { type: 'Ready', status: 'False', reason: 'PodNotReady', message: `pod ${podName} is not ready` },
        { type: 'Suspended', status: 'False', reason: 'Running' },
        this.checkpointAvailable(observed.workload),
      ]),
    }));
    if (written && workload && observed.workload.status?.phase === 'Restoring') {
      observed.log.info({ seconds: restoreSeconds }, 'restored');
      await this.deps.events.record(workload, 'Normal', 'Restored', 'Restore', `the workload is ready again${restoreSeconds === undefined ? '' : ` after ${restoreSeconds} s`}`);
    }
    return decision.recheckAfterMs === undefined ? {} : { requeueAfterMs: decision.recheckAfterMs };
  }

  // --- suspend ---

  private async beginSuspend(observed: Observed, decision: IdleDecision & { action: 'suspend' }): Promise<void> {
    const { workload, pods, now } = observed;
    const pod = pods[0];
    const container = pod ? resolveContainer(pod, workload.spec.template.spec.containers[0]?.name) : undefined;
    if (!pod || !pod.spec?.nodeName || !container?.ok || !container.running) {
      // Nothing runs that could be checkpointed (never started, or starting): stop it, start fresh later.
      return this.finishSuspend(observed, undefined, `${decision.message}; no running container to checkpoint, the next activation starts a fresh pod`);
    }
    const name = checkpointName(workload, now);
    const { written, workload: updated } = await this.writeStatus(observed, (status) => ({
      ...status,
      phase: 'Suspending',
      lastCheckpointRef: name,
      message: decision.message,
      conditions: withConditions(status.conditions, observed, [{ type: 'Ready', status: 'False', reason: 'Suspending', message: decision.message }]),
    }));
    if (!written || !updated) return;
    observed.log.info({ reason: decision.reason, checkpoint: name, pod: pod.metadata?.name }, 'suspending');
    await this.deps.events.record(updated, 'Normal', 'Suspending', 'Suspend', `${decision.message}: checkpointing pod ${pod.metadata?.name} to ${name}`);
    await this.createOwned(CHECKPOINTS, buildCheckpoint(updated, name, pod, container.container));
  }

  private async continueSuspend(observed: Observed): Promise<void> {
    const { workload, pods } = observed;
    const checkpoint = this.lastCheckpoint(workload);
    if (!checkpoint) {
      const pod = pods[0];
      const container = pod ? resolveContainer(pod, workload.spec.template.spec.containers[0]?.name) : undefined;
      if (!pod || !container?.ok) return this.finishSuspend(observed, undefined, 'the pod went away before it was checkpointed');
      // The status write happened but the create did not (or the cache has not seen it yet): idempotent.
      await this.createOwned(CHECKPOINTS, buildCheckpoint(workload, workload.status?.lastCheckpointRef ?? '', pod, container.container));
      return;
    }
    if (checkpoint.status?.phase === 'Completed') return this.finishSuspend(observed, checkpoint, `checkpointed to ${checkpoint.metadata?.name}`);
    if (checkpoint.status?.phase === 'Failed') {
      return this.setFailed(observed, 'CheckpointFailed', `checkpoint ${checkpoint.metadata?.name} failed: ${checkpoint.status.message ?? ''}`);
    }
  }

  private async finishSuspend(observed: Observed, checkpoint: KybernateCheckpoint | undefined, message: string): Promise<void> {
    const { workload, now } = observed;
    const remaining = await this.deletePods(observed);
    const reason: SuspendReason = workload.spec.suspend ? 'SuspendRequested' : 'IdleTimeout';
    const startedMs = parseKubeTime(checkpoint?.metadata?.creationTimestamp);
    const { written, workload: updated } = await this.writeStatus(remaining, (status) => ({
      ...status,
      phase: 'Suspended',
      message,
      suspendedAt: toKubeTime(now),
      lastCheckpointRef: checkpoint?.metadata?.name,
      node: checkpoint?.status?.node ?? status.node,
      ...(startedMs === undefined ? {} : { lastSuspendDurationSeconds: secondsBetween(startedMs, now.getTime()) }),
      conditions: withConditions(status.conditions, observed, [
        { type: 'Ready', status: 'False', reason: 'Suspended', message: 'the workload is scaled to zero' },
        { type: 'Suspended', status: 'True', reason, message },
        checkpoint
          ? { type: 'CheckpointAvailable', status: 'True', reason: 'CheckpointCompleted', message: `checkpoint ${checkpoint.metadata?.name}` }
          : { type: 'CheckpointAvailable', status: 'False', reason: 'NoCheckpoint', message: 'suspended without a checkpoint' },
      ]),
    }));
    if (!written || !updated) return;
    observed.log.info({ checkpoint: checkpoint?.metadata?.name, reason }, 'suspended');
    await this.deps.events.record(updated, 'Normal', 'Suspended', 'Suspend', message);
    await this.deleteSuperseded(observed, checkpoint?.metadata?.name);
  }

  /**
   * Earlier checkpoints (and the restores made from them) are superseded by a new suspend: deleting them
   * frees the node's disk (each checkpoint's finalizer removes its images through the agent).
   */
  private async deleteSuperseded(observed: Observed, keepCheckpoint: string | undefined): Promise<void> {
    const owned = <T extends KubeObject>(cache: IndexedCache<T>) => cache.list().filter((object) => isOwnedBy(object, observed.workload));
    const stale = [
      ...owned(this.caches.restores).map((object) => [RESTORES, object] as const),
      ...owned(this.caches.checkpoints)
        .filter((object) => object.metadata?.name !== keepCheckpoint)
        .map((object) => [CHECKPOINTS, object] as const),
    ];
    await this.deleteObjects(observed, stale, 'deleted superseded object');
  }

  /** Deletes each object; one that is gone already is fine. */
  private async deleteObjects(observed: Observed, objects: readonly (readonly [ResourceType, KubeObject])[], logMessage: string): Promise<void> {
    for (const [type, object] of objects) {
      const { namespace, name } = object.metadata ?? {};
      await this.deps.kube.delete(type, namespace, name ?? '').catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      observed.log.info({ kind: type.kind, name }, logMessage);
    }
  }

  private async keepSuspended(observed: Observed): Promise<void> {
    // A pod left from an interrupted suspend or restore must not keep a GPU busy.
    const remaining = await this.deletePods(observed);
    await this.writeStatus(remaining, (status) => ({ ...status, conditions: withConditions(status.conditions, observed, [this.checkpointAvailable(observed.workload)]) }));
  }

  // --- restore ---

  private async beginRestore(observed: Observed, decision: IdleDecision & { action: 'restore' }): Promise<void> {
    // The exactly-once point: writeStatus moves only a status still Suspended (re-read after a conflict).
    const { written, workload } = await this.writeStatus(observed, (status) => ({
      ...status,
      phase: 'Restoring',
      message: decision.message,
      conditions: withConditions(status.conditions, observed, [
        { type: 'Suspended', status: 'False', reason: 'Restoring', message: decision.message },
        { type: 'Ready', status: 'False', reason: 'Restoring', message: decision.message },
      ]),
    }));
    if (!written || !workload) return;
    observed.log.info({ reason: decision.reason, checkpoint: workload.status?.lastCheckpointRef }, 'restoring');
    await this.deps.events.record(workload, 'Normal', 'Restoring', 'Restore', `${decision.message}: restoring ${workload.status?.lastCheckpointRef ?? 'a fresh pod (no checkpoint)'}`);
    await this.continueRestore({ ...observed, workload });
  }

  private async continueRestore(observed: Observed): Promise<void> {
    const { workload } = observed;
    const checkpoint = this.lastCheckpoint(workload);
    const checkpointNode = checkpoint?.status?.phase === 'Completed' ? checkpoint.status.node : undefined;
    const podName = desiredPodName(workload);
    const restoreFrom = checkpoint && checkpointNode ? { checkpoint: checkpoint.metadata?.name ?? '', node: checkpointNode } : undefined;
    const pod = observed.pods.find((p) => p.metadata?.name === podName) ?? (await this.createPod(observed, buildPod(workload, podName, this.config.gpu, restoreFrom)));
    if (restoreFrom) {
      const restore = this.caches.restores.get(workload.metadata.namespace ?? '', podName);
      if (!restore) return void (await this.createOwned(RESTORES, buildRestore(workload, restoreFrom.checkpoint, podName, restoreFrom.node)));
      if (restore.status?.phase === 'Failed') return this.setFailed(observed, 'RestoreFailed', `restore ${podName} failed: ${restore.status.message ?? ''}`);
      await this.mirrorGpuReady(observed, restore);
      if (restore.status?.phase !== 'Completed') return;
    }
    if (pod && isPodReady(pod)) await this.keepRunning(observed, { action: 'keep', phase: 'Running', reason: 'Restored', message: `pod ${podName} is ready` });
  }

  /**
   * The restore's GpuReady condition (and its message as the workload's), copied onto the workload: why
   * a wake is held back (no compatible GPU on the checkpoint's node) shows where users look. A Warning
   * event marks each new reason.
   */
  private async mirrorGpuReady(observed: Observed, restore: KybernateRestore): Promise<void> {
    const gpuReady = findCondition(restore.status?.conditions, 'GpuReady');
    if (!gpuReady) return;
    const previous = findCondition(observed.workload.status?.conditions, 'GpuReady');
    const waiting = gpuReady.status === 'False';
    const message = `restore ${restore.metadata?.name}: ${gpuReady.message}`;
    const { written, workload } = await this.writeStatus(observed, (status) => ({
      ...status,
      message: waiting ? `waiting for a compatible GPU: ${message}` : message,
      conditions: withConditions(status.conditions, observed, [{ type: 'GpuReady', status: gpuReady.status, reason: gpuReady.reason, message }]),
    }));
    if (!written || !workload || !waiting || (previous?.status === 'False' && previous.reason === gpuReady.reason)) return;
    observed.log.warn({ reason: gpuReady.reason, restore: restore.metadata?.name }, 'wake waits for a compatible GPU');
    await this.deps.events.record(workload, 'Warning', gpuReady.reason, 'Restore', message);
  }

  /** From the activation request (or, without one, from when the restore started) to now. */
  private restoreSeconds(observed: Observed): number | undefined {
    const startedMs = this.activationRequestedAtMs(observed.workload) ?? this.phaseSinceMs(observed.workload, 'Restoring');
    return startedMs === undefined ? undefined : secondsBetween(startedMs, observed.now.getTime());
  }

  /**
   * A restore that has not reached the agent yet (waiting for its checkpoint, its pod or a compatible GPU)
   * must not bring the process back later into the pod of a workload that gave up on it. One already
   * Running finishes (the agent is at work); a spec change starts the workload over either way.
   */
  private async withdrawPendingRestores(observed: Observed): Promise<void> {
    const pending = this.caches.restores.list().filter((restore) => isOwnedBy(restore, observed.workload) && (restore.status?.phase ?? 'Pending') === 'Pending');
    await this.deleteObjects(observed, pending.map((restore) => [RESTORES, restore] as const), 'withdrew the pending restore of the failed workload');
  }

  // --- shared ---

  private async setFailed(observed: Observed, reason: string, message: string): Promise<void> {
    const { written, workload } = await this.writeStatus(observed, (status) => ({
      ...status,
      phase: 'Failed',
      message,
      conditions: withConditions(status.conditions, observed, [{ type: 'Ready', status: 'False', reason, message }]),
    }));
    if (!written || !workload) return;
    observed.log.warn({ reason, message }, 'workload failed');
    await this.deps.events.record(workload, 'Warning', reason, 'Fail', message);
  }

  private checkpointAvailable(workload: KybernateWorkload): ConditionInput {
    const checkpoint = this.lastCheckpoint(workload);
    return checkpoint?.status?.phase === 'Completed'
      ? { type: 'CheckpointAvailable', status: 'True', reason: 'CheckpointCompleted', message: `checkpoint ${checkpoint.metadata?.name}` }
      : { type: 'CheckpointAvailable', status: 'False', reason: 'NoCheckpoint', message: '' };
  }

  /**
   * Writes status (observedGeneration, endpoints and node always follow the pods) unless nothing changed.
   * Every write is guarded by the phase this reconcile started from: when a conflict re-read shows that
   * the phase moved meanwhile (another writer), nothing is written and the change's watch event
   * reconciles again from the new state, so no transition (and no event) happens twice.
   */
  private async writeStatus(observed: Observed, change: StatusChange): Promise<{ written: boolean; workload: KybernateWorkload | undefined }> {
    const expectedPhase = observed.workload.status?.phase;
    const result = await updateStatus(this.deps.kube, WORKLOADS, observed.workload, (current: KybernateWorkload) => {
      if (current.status?.phase !== expectedPhase) return undefined;
      const status = current.status ?? {};
      const pods = observed.pods;
      const next = change({
        ...status,
        observedGeneration: current.metadata.generation,
        endpoints: pods.map((pod) => ({ pod: pod.metadata?.name ?? '', ...podAddress(pod, current), ready: isPodReady(pod) })),
        node: pods[0]?.spec?.nodeName ?? status.node,
      });
      return changedOnly(current.status, next);
    });
    return { written: result.written, workload: result.object };
  }

  private async ensureService({ workload, log }: Observed): Promise<void> {
    const desired = buildService(workload);
    const existing = this.caches.services.get(workload.metadata.namespace ?? '', workload.metadata.name ?? '');
    if (!existing) return void (await this.createOwned(SERVICES, desired));
    if (!isOwnedBy(existing, workload)) {
      log.warn({ service: existing.metadata?.name }, 'a Service of the same name exists and is not owned by this workload; leaving it alone');
      return;
    }
    if (serviceMatches(existing, desired)) return;
    await this.deps.kube.replace(SERVICES, { ...existing, spec: { ...existing.spec, selector: desired.spec?.selector, ports: desired.spec?.ports } });
    log.info('service updated');
  }

  private async createPod(observed: Observed, pod: V1Pod): Promise<V1Pod | undefined> {
    const created = await this.createOwned(PODS, pod);
    if (created) observed.log.info({ pod: pod.metadata?.name, restoreFrom: pod.spec?.nodeName }, 'pod created');
    return created;
  }

  /** Creates an owned object; one that already exists (an earlier reconcile made it) is not an error. */
  private async createOwned<T extends KubeObject>(type: ResourceType, object: T): Promise<T | undefined> {
    try {
      return await this.deps.kube.create(type, object);
    } catch (err) {
      if (isAlreadyExists(err)) return undefined;
      throw err;
    }
  }

  /** Deletes the workload's pods; returns the observation without them. */
  private async deletePods(observed: Observed): Promise<Observed> {
    for (const pod of observed.pods) {
      // Grace 0: the container was checkpointed (or never served); waiting for a graceful stop gains nothing.
      await this.deps.kube.delete(PODS, pod.metadata?.namespace, pod.metadata?.name ?? '', { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata?.uid } }).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      observed.log.info({ pod: pod.metadata?.name }, 'pod deleted');
    }
    return { ...observed, pods: [] };
  }
}

function withConditions(conditions: KybernateWorkloadStatus['conditions'], { workload, now }: Observed, updates: ConditionInput[]) {
  return updates.reduce((list, update) => setCondition(list, { ...update, observedGeneration: workload.metadata.generation }, now).conditions, conditions ?? []);
}

function podAddress(pod: V1Pod, workload: KybernateWorkload): { ip?: string; port?: number } {
  return pod.status?.podIP ? { ip: pod.status.podIP, port: workload.spec.activator.port } : {};
}
