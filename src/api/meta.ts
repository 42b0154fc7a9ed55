/** API group, version and the names Kubernetes knows the three kinds by. */
export const API_GROUP = 'kybernate.io';
export const API_VERSION = 'v1alpha1';
export const API_GROUP_VERSION = `${API_GROUP}/${API_VERSION}`;
export const API_CATEGORY = 'kybernate';

export interface KindNames {
  readonly kind: string;
  readonly listKind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
}

export const WORKLOAD_NAMES = {
  kind: 'KybernateWorkload',
  listKind: 'KybernateWorkloadList',
  plural: 'kybernateworkloads',
  singular: 'kybernateworkload',
  shortNames: ['kw'],
} as const satisfies KindNames;

export const CHECKPOINT_NAMES = {
  kind: 'KybernateCheckpoint',
  listKind: 'KybernateCheckpointList',
  plural: 'kybernatecheckpoints',
  singular: 'kybernatecheckpoint',
  shortNames: ['kc'],
} as const satisfies KindNames;

export const RESTORE_NAMES = {
  kind: 'KybernateRestore',
  listKind: 'KybernateRestoreList',
  plural: 'kybernaterestores',
  singular: 'kybernaterestore',
  shortNames: ['kr'],
} as const satisfies KindNames;

/** Label every workload pod carries (architecture.md: the activator routes by it). */
export const WORKLOAD_LABEL = `${API_GROUP}/workload`;
/** Annotation the activator merge-patches onto a workload to ask for activation (RFC 3339 time). */
export const ACTIVATION_REQUESTED_AT_ANNOTATION = `${API_GROUP}/activation-requested-at`;
