import { createHash } from 'node:crypto';
import type { V1OwnerReference, V1Pod, V1Service } from '@kubernetes/client-node';
import { API_GROUP, WORKLOAD_LABEL, type KybernateCheckpoint, type KybernateRestore, type KybernateWorkload } from '../../api/index.ts';
import { CHECKPOINTS, PODS, RESTORES, SERVICES } from '../../lib/kube/resources.ts';
import { withGpuPodNeeds, type GpuPodConfig } from '../gpu/pod-gpu.ts';

/**
 * Tells the restore path (the agent's runtime shim) which KybernateCheckpoint a new pod is restored from.
 * Not yet in docs/architecture.md's contract list: the agent issue consumes it.
 */
export const RESTORE_FROM_ANNOTATION = `${API_GROUP}/restore-from`;

/** Pure builders of the objects a KybernateWorkload owns. */
export function controllerRef(workload: KybernateWorkload): V1OwnerReference {
  return {
    apiVersion: workload.apiVersion,
    kind: workload.kind,
    name: workload.metadata.name ?? '',
    uid: workload.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function isOwnedBy(object: { metadata?: { ownerReferences?: V1OwnerReference[] } }, workload: KybernateWorkload): boolean {
  return object.metadata?.ownerReferences?.some((ref) => ref.controller && ref.uid === workload.metadata.uid) ?? false;
}

/**
 * The pod name for the workload's current run: fixed per suspended period (derived from the workload uid
 * and suspendedAt), so a reconcile that runs again before the informer saw its create cannot start a
 * second pod: the second create fails with AlreadyExists.
 */
export function desiredPodName(workload: KybernateWorkload): string {
  const epoch = workload.status?.suspendedAt ?? 'initial';
  const suffix = createHash('sha256').update(`${workload.metadata.uid}/${epoch}`).digest('hex').slice(0, 6);
  return `${truncate(workload.metadata.name ?? '', 63 - 7)}-${suffix}`;
}

/**
 * Checkpoint names carry the decision time (base 36 milliseconds): unique per suspend of one workload,
 * since its suspends are serialized and a restore lies between two of them.
 */
export function checkpointName(workload: KybernateWorkload, now: Date): string {
  return `${truncate(workload.metadata.name ?? '', 200)}-${now.getTime().toString(36)}`;
}

export function buildPod(workload: KybernateWorkload, name: string, gpu: GpuPodConfig, restoreFrom?: { checkpoint: string; node: string }): V1Pod {
  const template = workload.spec.template;
  const spec = withGpuPodNeeds(template.spec, workload.spec.checkpoint.gpu.enabled, gpu);
  return {
    apiVersion: PODS.apiVersion,
    kind: PODS.kind,
    metadata: {
      name,
      namespace: workload.metadata.namespace,
      labels: { ...template.metadata?.labels, [WORKLOAD_LABEL]: workload.metadata.name ?? '' },
      annotations: { ...template.metadata?.annotations, ...(restoreFrom ? { [RESTORE_FROM_ANNOTATION]: restoreFrom.checkpoint } : {}) },
      ownerReferences: [controllerRef(workload)],
    },
    // A node-local checkpoint can only come back on its node: the pod is bound there directly.
    spec: restoreFrom ? { ...spec, nodeName: restoreFrom.node } : spec,
  };
}

export function buildService(workload: KybernateWorkload): V1Service {
  const port = workload.spec.activator.port;
  return {
    apiVersion: SERVICES.apiVersion,
    kind: SERVICES.kind,
    metadata: {
      name: workload.metadata.name,
      namespace: workload.metadata.namespace,
      labels: { [WORKLOAD_LABEL]: workload.metadata.name ?? '' },
      ownerReferences: [controllerRef(workload)],
    },
    spec: {
      selector: { [WORKLOAD_LABEL]: workload.metadata.name ?? '' },
      ports: [{ name: 'http', port, targetPort: port, protocol: 'TCP' }],
    },
  };
}

/** Whether an existing Service already routes as `desired` does (selector and ports). */
export function serviceMatches(existing: V1Service, desired: V1Service): boolean {
  const ports = (s: V1Service) => JSON.stringify((s.spec?.ports ?? []).map((p) => [p.name, p.port, p.targetPort, p.protocol ?? 'TCP']));
  return JSON.stringify(existing.spec?.selector ?? {}) === JSON.stringify(desired.spec?.selector ?? {}) && ports(existing) === ports(desired);
}

export function buildCheckpoint(workload: KybernateWorkload, name: string, pod: V1Pod, container: string): KybernateCheckpoint {
  return {
    apiVersion: CHECKPOINTS.apiVersion,
    kind: CHECKPOINTS.kind,
    metadata: { name, namespace: workload.metadata.namespace, labels: { [WORKLOAD_LABEL]: workload.metadata.name ?? '' }, ownerReferences: [controllerRef(workload)] },
    spec: {
      podName: pod.metadata?.name ?? '',
      containerName: container,
      leaveRunning: false,
      storage: workload.spec.checkpoint.storage,
      gpu: workload.spec.checkpoint.gpu,
    },
  };
}

export function buildRestore(workload: KybernateWorkload, checkpoint: string, podName: string, node: string): KybernateRestore {
  return {
    apiVersion: RESTORES.apiVersion,
    kind: RESTORES.kind,
    metadata: { name: podName, namespace: workload.metadata.namespace, labels: { [WORKLOAD_LABEL]: workload.metadata.name ?? '' }, ownerReferences: [controllerRef(workload)] },
    spec: { checkpointRef: checkpoint, targetPod: { name: podName, node } },
  };
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max).replace(/-+$/, '');
}
