/** KybernateRestore: bring a KybernateCheckpoint back as a running pod. */
import { Type, type Static } from '@sinclair/typebox';
import { GPU_READY_MEANING, operationStatusFields, resourceSchema, type KubeResource } from './common.ts';
import { OPERATION_CONDITIONS, OPERATION_PHASES, immutableSpec } from './checkpoint.ts';
import { AGE_COLUMN, type KindDefinition } from './kind.ts';
import { RESTORE_NAMES } from './meta.ts';
import { DnsSubdomain, GPU_UUID_PATTERN, StringMap, celRules, closed } from './schema-kit.ts';

const EnvVarSchema = Type.Object(
  {
    name: Type.String({ description: 'Name of the environment variable.', minLength: 1, maxLength: 1024, pattern: '^[^=]+$' }),
    value: Type.String({ description: 'Value of the environment variable.', default: '' }),
  },
  { ...closed, description: 'An environment variable for the restored pod spec.' },
);

const OverridesSchema = Type.Object(
  {
    labels: Type.Optional(StringMap({ description: 'Labels added to (or replacing those of) the restored pod.' })),
    annotations: Type.Optional(StringMap({ description: 'Annotations added to (or replacing those of) the restored pod.' })),
    env: Type.Optional(
      Type.Array(EnvVarSchema, {
        description:
          'Environment variables set on the restored pod spec. The restored process keeps the environment it was checkpointed with; these are for the pod record and restarts.',
        maxItems: 256,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
      }),
    ),
  },
  { ...closed, description: 'Changes to the pod metadata and spec recorded in the checkpoint.' },
);

const TargetPodSchema = Type.Object(
  {
    name: DnsSubdomain({ description: 'Name of the pod to create from the checkpoint (same namespace).' }),
    node: Type.Optional(
      DnsSubdomain({ description: 'Node to restore on; defaults to the checkpoint node (required for nodeLocal storage).' }),
    ),
    overrides: Type.Optional(OverridesSchema),
  },
  { ...closed, description: 'The pod the checkpoint is restored into.' },
);

const DeviceMappingSchema = Type.Object(
  {
    from: Type.String({ description: 'UUID of the GPU the checkpoint was taken on (GPU-... or MIG-...).', pattern: GPU_UUID_PATTERN, maxLength: 64 }),
    to: Type.String({ description: 'UUID of the GPU to restore onto.', pattern: GPU_UUID_PATTERN, maxLength: 64 }),
  },
  { ...closed, description: 'Restore the state of GPU from onto GPU to.' },
);

const RestoreGpuSchema = Type.Object(
  {
    deviceMapping: Type.Optional(
      Type.Array(DeviceMappingSchema, {
        description: 'GPU remapping for restoring onto other GPUs than the checkpointed ones; empty keeps the same UUIDs.',
        maxItems: 16,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['from'],
        ...celRules({
          rule: 'self.all(m, self.exists_one(n, n.to == m.to))',
          message: 'gpu.deviceMapping maps two GPUs onto the same target: every "to" must be distinct',
        }),
      }),
    ),
  },
  { ...closed, description: 'GPU options of the restore.' },
);

export const KybernateRestoreSpecSchema = Type.Object(
  {
    checkpointRef: DnsSubdomain({ description: 'Name of the KybernateCheckpoint (same namespace) to restore.' }),
    targetPod: TargetPodSchema,
    gpu: Type.Optional(RestoreGpuSchema),
  },
  {
    ...closed,
    description: 'Which checkpoint to restore into which pod. Immutable after creation.',
    ...celRules(immutableSpec(RESTORE_NAMES.kind)),
  },
);

export const KybernateRestoreStatusSchema = Type.Object(
  {
    ...operationStatusFields(OPERATION_PHASES, 'restore'),
    restoredPod: Type.Optional(DnsSubdomain({ description: 'Name of the pod running the restored container.' })),
    restoreDurationSeconds: Type.Optional(
      Type.Number({ description: 'How long the restore took (CRIU restore, GPU restore and unlock), in seconds.', minimum: 0 }),
    ),
  },
  { ...closed, description: 'Progress and result of the restore, written by the controller.' },
);

export const KybernateRestoreSchema = resourceSchema(
  RESTORE_NAMES.kind,
  KybernateRestoreSpecSchema,
  KybernateRestoreStatusSchema,
  'A restore of a KybernateCheckpoint into a pod, on the checkpoint node or another one.',
);

export type KybernateRestoreSpec = Static<typeof KybernateRestoreSpecSchema>;
export type KybernateRestoreStatus = Static<typeof KybernateRestoreStatusSchema>;
export type KybernateRestore = KubeResource<KybernateRestoreSpec, KybernateRestoreStatus>;

/** Condition types of restores: the operation's, and whether the target node has a GPU for the checkpoint's GPU state. */
export const RESTORE_CONDITIONS = {
  ...OPERATION_CONDITIONS,
  GpuReady: GPU_READY_MEANING,
} as const;
export type RestoreConditionType = keyof typeof RESTORE_CONDITIONS;

export const RESTORE_KIND: KindDefinition = {
  names: RESTORE_NAMES,
  schema: KybernateRestoreSchema,
  conditions: RESTORE_CONDITIONS,
  printerColumns: [
    { name: 'Checkpoint', type: 'string', jsonPath: '.spec.checkpointRef', description: 'Checkpoint restored.' },
    { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Where the restore is.' },
    { name: 'Pod', type: 'string', jsonPath: '.status.restoredPod', description: 'Pod running the restored container.' },
    { name: 'Node', type: 'string', jsonPath: '.status.node', description: 'Node the restore ran on.' },
    { name: 'Duration', type: 'number', jsonPath: '.status.restoreDurationSeconds', description: 'Restore time in seconds.', priority: 1 },
    {
      name: 'GPU',
      type: 'string',
      jsonPath: '.status.conditions[?(@.type=="GpuReady")].reason',
      description: 'GPU preflight: CompatibleGpu, or why the restore waits (NoCompatibleGpu, GpuUnavailable, ...).',
      priority: 1,
    },
    AGE_COLUMN,
  ],
};
