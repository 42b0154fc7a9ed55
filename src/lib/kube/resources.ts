import { API_GROUP_VERSION, CHECKPOINT_NAMES, RESTORE_NAMES, WORKLOAD_NAMES } from '../../api/index.ts';

/** Enough about a resource type to build its REST paths. */
export interface ResourceType {
  apiVersion: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

export const PODS: ResourceType = { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true };
export const SERVICES: ResourceType = { apiVersion: 'v1', kind: 'Service', plural: 'services', namespaced: true };
export const EVENTS: ResourceType = { apiVersion: 'events.k8s.io/v1', kind: 'Event', plural: 'events', namespaced: true };
export const LEASES: ResourceType = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', plural: 'leases', namespaced: true };
export const WORKLOADS: ResourceType = { apiVersion: API_GROUP_VERSION, kind: WORKLOAD_NAMES.kind, plural: WORKLOAD_NAMES.plural, namespaced: true };
export const CHECKPOINTS: ResourceType = { apiVersion: API_GROUP_VERSION, kind: CHECKPOINT_NAMES.kind, plural: CHECKPOINT_NAMES.plural, namespaced: true };
export const RESTORES: ResourceType = { apiVersion: API_GROUP_VERSION, kind: RESTORE_NAMES.kind, plural: RESTORE_NAMES.plural, namespaced: true };

/** `/api/v1/namespaces/ns/pods/name/status` and the like; namespace undefined lists across namespaces. */
export function resourcePath(type: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const root = type.apiVersion.includes('/') ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`;
  const scope = type.namespaced && namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const object = name === undefined ? '' : `/${encodeURIComponent(name)}`;
  return `${root}${scope}/${type.plural}${object}${subresource ? `/${subresource}` : ''}`;
}
