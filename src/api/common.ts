/** Schemas shared by the three kinds: conditions, checkpoint storage and GPU options, the object envelope. */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { API_GROUP_VERSION } from './meta.ts';
import { Duration, StringEnum, Timestamp, celRules, closed } from './schema-kit.ts';

export const CONDITION_STATUSES = ['True', 'False', 'Unknown'] as const;
export type ConditionStatus = (typeof CONDITION_STATUSES)[number];

/** The shape of metav1.Condition, with the same validation Kubernetes' own types use. */
export const ConditionSchema = Type.Object(
  {
    type: Type.String({
      description: 'Type of condition in CamelCase, e.g. Ready.',
      maxLength: 316,
      pattern:
        '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
    }),
    status: StringEnum(CONDITION_STATUSES, { description: 'Status of the condition: True, False or Unknown.' }),
    observedGeneration: Type.Optional(
      Type.Integer({
        description: 'The .metadata.generation the condition was set for; older than the object means stale.',
        minimum: 0,
        format: 'int64',
      }),
    ),
    lastTransitionTime: Timestamp({ description: 'Last time the condition changed from one status to another.' }),
    reason: Type.String({
      description: 'Programmatic identifier (CamelCase) of the reason for the last transition.',
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
    }),
    message: Type.String({ description: 'Human-readable details about the transition; may be empty.', maxLength: 32768 }),
  },
  { ...closed, description: 'One aspect of the current state, in the shape of metav1.Condition.' },
);
export type Condition = Static<typeof ConditionSchema>;

export function Conditions(description: string) {
  return Type.Array(ConditionSchema, {
    description,
    maxItems: 32,
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
  });
}

/**
 * What the `GpuReady` condition (restores, and workloads while they restore) says when True. Set only
 * for checkpoints with GPU state; False (reasons NoCompatibleGpu, GpuUnavailable, UnsupportedCudaDriver)
 * holds the restore back, Unknown (GpuNotReported) lets it go ahead unchecked.
 */
export const GPU_READY_MEANING =
  'The target node has a free GPU compatible with the checkpoint (same model, enough free memory, a CUDA driver its agent supports); set only for checkpoints with GPU state.';

export const STORAGE_TYPES = ['nodeLocal', 'sharedVolume'] as const;
export type StorageType = (typeof STORAGE_TYPES)[number];

export const StorageSchema = Type.Object(
  {
    type: StringEnum(STORAGE_TYPES, {
      description:
        'Where checkpoint images live: nodeLocal (the node agent store, /var/lib/kybernate/checkpoints; restore on the same node) or sharedVolume (a path mounted on every node).',
      default: 'nodeLocal',
    }),
    path: Type.Optional(
      Type.String({
        description: 'Absolute directory for checkpoint images; required for sharedVolume, overrides the store for nodeLocal.',
        pattern: '^/',
        maxLength: 4096,
      }),
    ),
  },
  {
    ...closed,
    description: 'Where the checkpoint images are written.',
    default: {},
    ...celRules({
      // The server also checks this rule against the bare default {} (no nested defaults): guard with has().
      rule: "!has(self.type) || self.type != 'sharedVolume' || has(self.path)",
      message: 'storage.path is required when storage.type is sharedVolume',
      fieldPath: '.path',
      reason: 'FieldValueRequired',
    }),
  },
);
export type Storage = Static<typeof StorageSchema>;

export const GpuCheckpointSchema = Type.Object(
  {
    enabled: Type.Boolean({
      description: 'Checkpoint GPU state too: lock the CUDA process, move GPU memory to the host, then dump with CRIU.',
      default: false,
    }),
    lockTimeout: Duration({
      description: 'Longest wait for in-flight CUDA work to finish when locking the process before the GPU checkpoint.',
      default: '10s',
    }),
  },
  { ...closed, description: 'GPU (CUDA) checkpoint options.', default: {} },
);
export type GpuCheckpoint = Static<typeof GpuCheckpointSchema>;

/** Status fields every one-shot operation (checkpoint, restore) reports. */
export function operationStatusFields<const Phases extends readonly [string, ...string[]]>(phases: Phases, verb: string) {
  return {
    phase: Type.Optional(StringEnum(phases, { description: `Where the ${verb} is: ${phases.join(', ')}.` })),
    conditions: Type.Optional(Conditions(`Latest observations of the ${verb}; Completed is True once it succeeded.`)),
    node: Type.Optional(Type.String({ description: `Node the ${verb} ran on.`, maxLength: 253 })),
    containerID: Type.Optional(Type.String({ description: `containerd id of the container the ${verb} acted on.`, maxLength: 256 })),
    gpuMemoryBytes: Type.Optional(
      Type.Integer({ description: `GPU memory moved by the ${verb}, in bytes (0 for CPU-only containers).`, minimum: 0, format: 'int64' }),
    ),
    message: Type.Optional(Type.String({ description: `Human-readable detail of the ${verb}'s state, e.g. why it failed.`, maxLength: 32768 })),
    startedAt: Type.Optional(Timestamp({ description: `When the node agent started the ${verb}.` })),
    completedAt: Type.Optional(Timestamp({ description: `When the ${verb} completed or failed.` })),
  };
}

/** The envelope every kind shares; metadata stays a plain object (the API server owns its schema). */
export function resourceSchema<Spec extends TSchema, Status extends TSchema>(kind: string, spec: Spec, status: Status, description: string) {
  return Type.Object(
    {
      apiVersion: Type.Optional(
        Type.String({ description: `APIVersion of this representation of the object: ${API_GROUP_VERSION}.` }),
      ),
      kind: Type.Optional(Type.String({ description: `Kind of the object: ${kind}.` })),
      // The API server owns metadata's schema and documentation: a CRD may not describe it.
      metadata: Type.Optional(Type.Object({})),
      spec,
      status: Type.Optional(status),
    },
    { description },
  );
}

/** A stored object of one of the kinds, as the API server returns it. */
export interface KubeResource<Spec, Status> {
  apiVersion: string;
  kind: string;
  metadata: V1ObjectMeta;
  spec: Spec;
  status?: Status;
}
