/** KybernateCheckpoint: one checkpoint of one container of a pod (CPU state, plus GPU state when enabled). */
import { Type, type Static } from '@sinclair/typebox';
import { GpuCheckpointSchema, StorageSchema, operationStatusFields, resourceSchema, type KubeResource } from './common.ts';
import { AGE_COLUMN, literalsObject, type KindDefinition } from './kind.ts';
import { CHECKPOINT_NAMES } from './meta.ts';
import { DnsLabel, DnsSubdomain, celRules, closed, type CelRule } from './schema-kit.ts';

/** One GPU whose state a checkpoint holds, as the node agent recorded it before the CUDA checkpoint. */
const CapturedGpuSchema = Type.Object(
  {
    uuid: Type.String({ description: 'UUID of the GPU the state was taken from (GPU-...).', maxLength: 96 }),
    model: Type.String({ description: 'GPU model as NVML names it, e.g. NVIDIA H100 80GB HBM3; a restore needs the same model.', maxLength: 256 }),
    memoryTotalBytes: Type.Integer({ description: 'Memory of that GPU, in bytes.', minimum: 0, format: 'int64' }),
    capturedBytes: Type.Integer({
      description: 'GPU memory the checkpointed processes held on it, in bytes: a restore needs this much free on its target GPU.',
      minimum: 0,
      format: 'int64',
    }),
  },
  { ...closed, description: 'A GPU whose state the checkpoint captured.' },
);

export const CheckpointGpuStatusSchema = Type.Object(
  {
    driverVersion: Type.String({ description: 'NVIDIA kernel driver version on the checkpoint node, e.g. 580.159.04.', maxLength: 64 }),
    driverApiVersion: Type.Optional(
      Type.Integer({ description: 'CUDA driver API version on the checkpoint node (cuDriverGetVersion, e.g. 13000).', minimum: 0, format: 'int32' }),
    ),
    processes: Type.Integer({ description: 'Number of CUDA processes checkpointed.', minimum: 0, format: 'int32' }),
    devices: Type.Array(CapturedGpuSchema, {
      description: 'The GPUs the checkpointed processes used.',
      maxItems: 64,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['uuid'],
    }),
  },
  { ...closed, description: 'GPU state the checkpoint holds (present only when it captured CUDA processes).' },
);
export type CheckpointGpuStatus = Static<typeof CheckpointGpuStatusSchema>;

/** Phases of a one-shot operation (checkpoint or restore). */
export const OPERATION_PHASES = ['Pending', 'Running', 'Completed', 'Failed'] as const;
export type OperationPhase = (typeof OPERATION_PHASES)[number];
export const OperationPhase = literalsObject(OPERATION_PHASES);

/** Condition types of checkpoints and restores, each with what status True means. */
export const OPERATION_CONDITIONS = {
  Completed: 'The operation succeeded (False with a reason once it failed, Unknown while it runs).',
} as const;
export type OperationConditionType = keyof typeof OPERATION_CONDITIONS;
export const OPERATION_CONDITION_TYPES = Object.keys(OPERATION_CONDITIONS) as OperationConditionType[];
export const OperationConditionType = literalsObject(OPERATION_CONDITION_TYPES);

export function immutableSpec(kind: string): CelRule {
  return { rule: 'self == oldSelf', message: `spec is immutable: create a new ${kind} instead of changing this one` };
}

export const KybernateCheckpointSpecSchema = Type.Object(
  {
    podName: DnsSubdomain({ description: 'Name of the pod (same namespace) whose container is checkpointed.' }),
    containerName: Type.Optional(
      DnsLabel({ description: 'Container to checkpoint; may be left out when the pod has exactly one container.' }),
    ),
    leaveRunning: Type.Boolean({
      description: 'Keep the container running after the checkpoint (a snapshot); false stops it (the scale-to-zero case).',
      default: false,
    }),
    storage: StorageSchema,
    gpu: GpuCheckpointSchema,
  },
  {
    ...closed,
    description: 'What to checkpoint and where to put it. Immutable after creation.',
    ...celRules(immutableSpec(CHECKPOINT_NAMES.kind)),
  },
);

export const KybernateCheckpointStatusSchema = Type.Object(
  {
    ...operationStatusFields(OPERATION_PHASES, 'checkpoint'),
    location: Type.Optional(Type.String({ description: 'Where the checkpoint images are, on the node or the shared volume.', maxLength: 4096 })),
    sizeBytes: Type.Optional(Type.Integer({ description: 'Total size of the checkpoint images, in bytes.', minimum: 0, format: 'int64' })),
    checkpointDurationSeconds: Type.Optional(
      Type.Number({ description: 'How long the checkpoint took (GPU lock and checkpoint, CRIU dump), in seconds.', minimum: 0 }),
    ),
    gpu: Type.Optional(CheckpointGpuStatusSchema),
  },
  { ...closed, description: 'Progress and result of the checkpoint, written by the controller.' },
);

export const KybernateCheckpointSchema = resourceSchema(
  CHECKPOINT_NAMES.kind,
  KybernateCheckpointSpecSchema,
  KybernateCheckpointStatusSchema,
  'A checkpoint of one container of a pod: its process state (CRIU) and, when enabled, its GPU state (CUDA).',
);

export type KybernateCheckpointSpec = Static<typeof KybernateCheckpointSpecSchema>;
export type KybernateCheckpointStatus = Static<typeof KybernateCheckpointStatusSchema>;
export type KybernateCheckpoint = KubeResource<KybernateCheckpointSpec, KybernateCheckpointStatus>;

export const CHECKPOINT_KIND: KindDefinition = {
  names: CHECKPOINT_NAMES,
  schema: KybernateCheckpointSchema,
  conditions: OPERATION_CONDITIONS,
  printerColumns: [
    { name: 'Pod', type: 'string', jsonPath: '.spec.podName', description: 'Pod checkpointed.' },
    { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Where the checkpoint is.' },
    { name: 'Node', type: 'string', jsonPath: '.status.node', description: 'Node the checkpoint was taken on.' },
    { name: 'Size', type: 'integer', jsonPath: '.status.sizeBytes', description: 'Size of the images in bytes.' },
    { name: 'GPU', type: 'boolean', jsonPath: '.spec.gpu.enabled', description: 'Whether GPU state is included.', priority: 1 },
    { name: 'Location', type: 'string', jsonPath: '.status.location', description: 'Where the images are.', priority: 1 },
    AGE_COLUMN,
  ],
};
