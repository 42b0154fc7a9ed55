/** Kybernate's API (group kybernate.io, version v1alpha1): types, schemas and helpers, defined once. */
export * from './meta.ts';
export {
  CONDITION_STATUSES,
  STORAGE_TYPES,
  type Condition,
  type ConditionStatus,
  type GpuCheckpoint,
  type KubeResource,
  type Storage,
  type StorageType,
} from './common.ts';
export * from './conditions.ts';
export * from './workload.ts';
export * from './checkpoint.ts';
export * from './restore.ts';
export type { KindDefinition, PrinterColumn } from './kind.ts';
export { KIND_DEFINITIONS, kindDefinition, withDefaults } from './crd.ts';
