/** KybernateWorkload: an inference service that scales to zero by checkpointing or releasing its GPU. */
import { Type, type Static } from '@sinclair/typebox';
import type { V1PodTemplateSpec } from '@kubernetes/client-node';
import { Conditions, GPU_READY_MEANING, GpuCheckpointSchema, StorageSchema, resourceSchema, type KubeResource } from './common.ts';
import { AGE_COLUMN, literalsObject, type KindDefinition } from './kind.ts';
import { WORKLOAD_LABEL, WORKLOAD_NAMES } from './meta.ts';
import { DnsLabel, DnsSubdomain, Duration, HOST_PATTERN, StringEnum, StringMap, Timestamp, celRules, closed } from './schema-kit.ts';

export const WORKLOAD_PHASES = ['Running', 'Idle', 'Suspending', 'Suspended', 'Restoring', 'Failed'] as const;
export type WorkloadPhase = (typeof WORKLOAD_PHASES)[number];
export const WorkloadPhase = literalsObject(WORKLOAD_PHASES);

/** Condition types of a workload, each with what status True means. */
export const WORKLOAD_CONDITIONS = {
  Ready: 'A pod of the workload is Ready and receives requests.',
  Suspended: 'The workload is scaled to zero: checkpointed, or its GPU released in place.',
  CheckpointAvailable: 'status.lastCheckpointRef names a completed checkpoint the workload can be restored from.',
  GpuReady: `${GPU_READY_MEANING} Mirrors the condition of the workload's current KybernateRestore.`,
} as const;
export type WorkloadConditionType = keyof typeof WORKLOAD_CONDITIONS;
export const WORKLOAD_CONDITION_TYPES = Object.keys(WORKLOAD_CONDITIONS) as WorkloadConditionType[];
export const WorkloadConditionType = literalsObject(WORKLOAD_CONDITION_TYPES);

/** checkpoint: CRIU (+ CUDA) checkpoint, pod removed. release: GPU memory moved to the host, process kept. */
export const SCALE_TO_ZERO_MODES = ['checkpoint', 'release'] as const;
export type ScaleToZeroMode = (typeof SCALE_TO_ZERO_MODES)[number];

const ContainerSchema = Type.Object(
  {
    name: DnsLabel({ description: 'Container name, unique within the pod (DNS label).' }),
    image: Type.String({ description: 'Container image reference.', minLength: 1, maxLength: 4096 }),
  },
  {
    description: 'A container as in a Pod spec; fields other than name and image are kept as given.',
    'x-kubernetes-preserve-unknown-fields': true,
  },
);

const PodSpecSchema = Type.Object(
  {
    containers: Type.Array(ContainerSchema, {
      description: 'Containers of the pod; at least one, names unique.',
      minItems: 1,
      maxItems: 64,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
    }),
  },
  {
    description:
      'A Pod spec (core/v1 PodSpec). The API server checks containers here; the rest is validated when the pod is created.',
    'x-kubernetes-preserve-unknown-fields': true,
  },
);

const PodTemplateSchema = Type.Unsafe<V1PodTemplateSpec & { spec: NonNullable<V1PodTemplateSpec['spec']> }>(
  Type.Object(
    {
      metadata: Type.Optional(
        Type.Object(
          {
            labels: Type.Optional(StringMap({ description: `Labels of the pods; the controller adds ${WORKLOAD_LABEL}.` })),
            annotations: Type.Optional(StringMap({ description: 'Annotations of the pods.' })),
          },
          { ...closed, description: 'Labels and annotations given to the workload pods.' },
        ),
      ),
      spec: PodSpecSchema,
    },
    { ...closed, description: 'Template of the pod that serves the workload (as in a Deployment).' },
  ),
);

const ScaleToZeroSchema = Type.Object(
  {
    enabled: Type.Boolean({ description: 'Suspend the workload when it has been idle for idleTimeout.', default: true }),
    idleTimeout: Duration({
      description: 'How long the workload must see no request and have none in flight before it is suspended.',
      default: '5m',
    }),
    mode: StringEnum(SCALE_TO_ZERO_MODES, {
      description:
        'How an idle workload is suspended: checkpoint (CRIU + CUDA checkpoint to storage, pod removed, GPU and memory freed) or release (GPU memory moved to host memory in place, the process and pod stay; the faster tier, needs checkpoint.gpu.enabled).',
      default: 'checkpoint',
    }),
    minReplicas: Type.Integer({
      description: 'Pods kept even when idle; 0 lets an idle workload go to zero.',
      minimum: 0,
      format: 'int32',
      default: 0,
    }),
    maxReplicas: Type.Integer({ description: 'Most pods the workload runs.', minimum: 1, format: 'int32', default: 1 }),
  },
  {
    ...closed,
    description: 'When and how the workload scales to zero.',
    default: {},
    ...celRules({
      // Checked against the bare default {} too, where neither field is set yet.
      rule: '!has(self.minReplicas) || !has(self.maxReplicas) || self.maxReplicas >= self.minReplicas',
      message: 'scaleToZero.maxReplicas must be greater than or equal to scaleToZero.minReplicas',
      fieldPath: '.maxReplicas',
    }),
  },
);

const ActivatorSchema = Type.Object(
  {
    hosts: Type.Optional(
      Type.Array(
        Type.String({
          description: 'An exact lower-case hostname (api.example.com) or a wildcard *.suffix (*.example.com).',
          pattern: HOST_PATTERN,
          maxLength: 253,
        }),
        {
          description:
            'Host header values routed to this workload; required (at least one) when scaleToZero is enabled, since requests to these hosts wake it.',
          maxItems: 64,
          'x-kubernetes-list-type': 'set',
        },
      ),
    ),
    pathPrefix: Type.String({
      description: 'Only requests whose path starts with this prefix are routed to the workload.',
      pattern: '^/',
      maxLength: 1024,
      default: '/',
    }),
    port: Type.Integer({ description: 'Container port the activator sends requests to.', minimum: 1, maximum: 65535, format: 'int32', default: 8080 }),
    activationTimeout: Duration({
      description: 'How long a held request may wait for the workload to become ready before it is answered with 504.',
      default: '60s',
    }),
    queueSize: Type.Integer({
      description: 'Most requests each activator replica holds for this workload while it activates; more get 503.',
      minimum: 1,
      maximum: 1_000_000,
      format: 'int32',
      default: 10_000,
    }),
    containerConcurrency: Type.Integer({
      description: 'Most requests in flight to one pod at a time; 0 means unlimited.',
      minimum: 0,
      format: 'int32',
      default: 0,
    }),
  },
  { ...closed, description: 'How the activator routes and holds requests for this workload.', default: {} },
);

const WorkloadCheckpointSchema = Type.Object(
  { storage: StorageSchema, gpu: GpuCheckpointSchema },
  { ...closed, description: 'Where and how the workload is checkpointed when it scales to zero.', default: {} },
);

export const KybernateWorkloadSpecSchema = Type.Object(
  {
    template: PodTemplateSchema,
    suspend: Type.Boolean({ description: 'Suspend the workload now, whatever its activity; false lets it run.', default: false }),
    scaleToZero: ScaleToZeroSchema,
    activator: ActivatorSchema,
    checkpoint: WorkloadCheckpointSchema,
  },
  {
    ...closed,
    description: 'Desired state of the workload.',
    ...celRules(
      {
        rule: '!self.scaleToZero.enabled || (has(self.activator.hosts) && size(self.activator.hosts) > 0)',
        message: 'activator.hosts must list at least one host when scaleToZero.enabled is true: requests to those hosts wake the workload',
        fieldPath: '.activator.hosts',
        reason: 'FieldValueRequired',
      },
      {
        rule: "self.scaleToZero.mode != 'release' || self.checkpoint.gpu.enabled",
        message: 'scaleToZero.mode release frees the GPU in place and needs checkpoint.gpu.enabled: true',
        fieldPath: '.scaleToZero.mode',
      },
    ),
  },
);

const EndpointSchema = Type.Object(
  {
    pod: DnsSubdomain({ description: 'Name of the pod.' }),
    ip: Type.Optional(Type.String({ description: 'Pod IP the activator sends requests to.', maxLength: 64 })),
    port: Type.Optional(Type.Integer({ description: 'Port on the pod IP.', minimum: 1, maximum: 65535, format: 'int32' })),
    ready: Type.Boolean({ description: 'Whether the pod is Ready and may receive requests.', default: false }),
  },
  { ...closed, description: 'A pod serving the workload.' },
);

export const KybernateWorkloadStatusSchema = Type.Object(
  {
    phase: Type.Optional(
      StringEnum(WORKLOAD_PHASES, {
        description: 'Lifecycle phase: Running, Idle (running, no recent requests), Suspending, Suspended, Restoring or Failed.',
      }),
    ),
    conditions: Type.Optional(Conditions(`Latest observations: ${WORKLOAD_CONDITION_TYPES.join(', ')}.`)),
    lastCheckpointRef: Type.Optional(
      DnsSubdomain({ description: 'Name of the KybernateCheckpoint (same namespace) the workload was last suspended to.' }),
    ),
    node: Type.Optional(Type.String({ description: 'Node the workload runs on, or was suspended on.', maxLength: 253 })),
    observedGeneration: Type.Optional(
      Type.Integer({ description: 'The .metadata.generation this status reflects.', minimum: 0, format: 'int64' }),
    ),
    endpoints: Type.Optional(
      Type.Array(EndpointSchema, {
        description: 'Pods of the workload and whether they are ready.',
        maxItems: 1024,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['pod'],
      }),
    ),
    suspendedAt: Type.Optional(Timestamp({ description: 'When the workload was last suspended.' })),
    lastSuspendDurationSeconds: Type.Optional(
      Type.Number({ description: 'How long the last suspend took, from decision to Suspended, in seconds.', minimum: 0 }),
    ),
    lastRestoreDurationSeconds: Type.Optional(
      Type.Number({ description: 'How long the last restore took, from activation request to a ready pod, in seconds.', minimum: 0 }),
    ),
    message: Type.Optional(Type.String({ description: 'Human-readable detail of the current phase, e.g. why it failed.', maxLength: 32768 })),
  },
  { ...closed, description: 'Observed state of the workload, written by the controller.' },
);

export const KybernateWorkloadSchema = resourceSchema(
  WORKLOAD_NAMES.kind,
  KybernateWorkloadSpecSchema,
  KybernateWorkloadStatusSchema,
  'An inference service that Kybernate scales to zero when idle (checkpointing or releasing its GPU) and wakes on the first request.',
);

export type KybernateWorkloadSpec = Static<typeof KybernateWorkloadSpecSchema>;
export type KybernateWorkloadStatus = Static<typeof KybernateWorkloadStatusSchema>;
export type WorkloadEndpoint = Static<typeof EndpointSchema>;
export type KybernateWorkload = KubeResource<KybernateWorkloadSpec, KybernateWorkloadStatus>;

export const WORKLOAD_KIND: KindDefinition = {
  names: WORKLOAD_NAMES,
  schema: KybernateWorkloadSchema,
  conditions: WORKLOAD_CONDITIONS,
  printerColumns: [
    { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Lifecycle phase.' },
    {
      name: 'Ready',
      type: 'string',
      jsonPath: '.status.conditions[?(@.type=="Ready")].status',
      description: 'Whether a ready pod serves the workload.',
    },
    { name: 'Mode', type: 'string', jsonPath: '.spec.scaleToZero.mode', description: 'How the workload scales to zero.' },
    { name: 'Node', type: 'string', jsonPath: '.status.node', description: 'Node the workload runs on.' },
    { name: 'Checkpoint', type: 'string', jsonPath: '.status.lastCheckpointRef', description: 'Last checkpoint.', priority: 1 },
    { name: 'Idle-Timeout', type: 'string', jsonPath: '.spec.scaleToZero.idleTimeout', description: 'Idle time before suspend.', priority: 1 },
    AGE_COLUMN,
  ],
};
