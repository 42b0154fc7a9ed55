/**
 * Kybernate's API (group kybernate.io, version v1alpha1): types, schemas and helpers, defined once.
 * The static types describe objects as the API server returns them: a field with a server-side
 * default is never missing there, so it is required in the type. Build in-memory objects (tests,
 * fixtures) with `withDefaults()`, which fills in the same defaults.
 */
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
