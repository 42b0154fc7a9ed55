/**
 * Valid base objects and invalid variations of them, shared by the in-process schema tests and the
 * tests against the real API server (which also checks what only it can: CEL rules, list uniqueness,
 * immutability on update).
 */
import {
  API_GROUP_VERSION,
  CHECKPOINT_NAMES,
  RESTORE_NAMES,
  WORKLOAD_NAMES,
  type KindNames,
} from '../../src/api/index.ts';

export type ApiObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; spec: Record<string, unknown> };

/** Why only the API server catches a case: TypeBox cannot evaluate it in-process. */
export type ServerOnly = 'cel' | 'list-uniqueness' | 'update';

export interface InvalidCase {
  name: string;
  names: KindNames;
  /** The object to create; for `update` cases, the valid object created first. */
  object: ApiObject;
  /** For `update` cases: the spec the update tries to write. */
  updatedSpec?: Record<string, unknown>;
  /** Field path as the API server names it, e.g. spec.template.spec.containers[0].image. */
  field: string;
  /** Text the API server's message must contain (besides the field path). */
  message: string;
  serverOnly?: ServerOnly;
}

export function workload(name: string, spec: Record<string, unknown> = {}): ApiObject {
  return {
    apiVersion: API_GROUP_VERSION,
    kind: WORKLOAD_NAMES.kind,
    metadata: { name },
    spec: {
      template: { spec: { containers: [{ name: 'app', image: 'docker.io/library/busybox:1.36' }] } },
      activator: { hosts: ['app.example.com'] },
      ...spec,
    },
  };
}

export function checkpoint(name: string, spec: Record<string, unknown> = {}): ApiObject {
  return { apiVersion: API_GROUP_VERSION, kind: CHECKPOINT_NAMES.kind, metadata: { name }, spec: { podName: 'app-0', ...spec } };
}

export function restore(name: string, spec: Record<string, unknown> = {}): ApiObject {
  return {
    apiVersion: API_GROUP_VERSION,
    kind: RESTORE_NAMES.kind,
    metadata: { name },
    spec: { checkpointRef: 'app-ckpt', targetPod: { name: 'app-restored' }, ...spec },
  };
}

const containers = (...list: Record<string, unknown>[]) => ({ template: { spec: { containers: list } } });
const GPU_A = 'GPU-5d4e3f2a-1b2c-4d5e-8f90-a1b2c3d4e5f6';
const GPU_B = 'GPU-0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d';
const GPU_C = 'GPU-11111111-2222-4333-8444-555555555555';

const WORKLOAD_CASES: Omit<InvalidCase, 'names'>[] = [
  { name: 'missing template', object: workload('w-no-template', { template: undefined }), field: 'spec.template', message: 'Required value' },
  { name: 'no containers', object: workload('w-no-containers', containers()), field: 'spec.template.spec.containers', message: 'should have at least 1 items' },
  {
    name: 'container without image',
    object: workload('w-no-image', containers({ name: 'app' })),
    field: 'spec.template.spec.containers[0].image',
    message: 'Required value',
  },
  {
    name: 'container name not a DNS label',
    object: workload('w-bad-container-name', containers({ name: 'App_1', image: 'busybox' })),
    field: 'spec.template.spec.containers[0].name',
    message: 'should match',
  },
  {
    name: 'two containers with one name',
    object: workload('w-dup-containers', containers({ name: 'app', image: 'a' }, { name: 'app', image: 'b' })),
    field: 'spec.template.spec.containers[1]',
    message: 'Duplicate value',
    serverOnly: 'list-uniqueness',
  },
  { name: 'negative idle timeout', object: workload('w-neg-idle', { scaleToZero: { idleTimeout: '-5m' } }), field: 'spec.scaleToZero.idleTimeout', message: 'should match' },
  { name: 'duration without unit', object: workload('w-bad-duration', { scaleToZero: { idleTimeout: '300' } }), field: 'spec.scaleToZero.idleTimeout', message: 'should match' },
  {
    name: 'duration in words',
    object: workload('w-words-duration', { activator: { hosts: ['a.example.com'], activationTimeout: '1 minute' } }),
    field: 'spec.activator.activationTimeout',
    message: 'should match',
  },
  { name: 'unknown scale-to-zero mode', object: workload('w-bad-mode', { scaleToZero: { mode: 'freeze' } }), field: 'spec.scaleToZero.mode', message: 'Unsupported value: "freeze"' },
  {
    name: 'maxReplicas below minReplicas',
    object: workload('w-max-lt-min', { scaleToZero: { minReplicas: 3, maxReplicas: 2 } }),
    field: 'spec.scaleToZero.maxReplicas',
    message: 'scaleToZero.maxReplicas must be greater than or equal to scaleToZero.minReplicas',
    serverOnly: 'cel',
  },
  { name: 'negative minReplicas', object: workload('w-neg-min', { scaleToZero: { minReplicas: -1 } }), field: 'spec.scaleToZero.minReplicas', message: 'should be greater than or equal to 0' },
  { name: 'port 0', object: workload('w-port-0', { activator: { hosts: ['a.example.com'], port: 0 } }), field: 'spec.activator.port', message: 'should be greater than or equal to 1' },
  {
    name: 'port above 65535',
    object: workload('w-port-high', { activator: { hosts: ['a.example.com'], port: 70000 } }),
    field: 'spec.activator.port',
    message: 'should be less than or equal to 65535',
  },
  { name: 'host with upper case and _', object: workload('w-bad-host', { activator: { hosts: ['Bad_Host.example.com'] } }), field: 'spec.activator.hosts[0]', message: 'should match' },
  { name: 'wildcard without dot', object: workload('w-bad-wildcard', { activator: { hosts: ['*example.com'] } }), field: 'spec.activator.hosts[0]', message: 'should match' },
  { name: 'URL instead of host', object: workload('w-url-host', { activator: { hosts: ['http://a.example.com'] } }), field: 'spec.activator.hosts[0]', message: 'should match' },
  {
    name: 'same host twice',
    object: workload('w-dup-host', { activator: { hosts: ['a.example.com', 'a.example.com'] } }),
    field: 'spec.activator.hosts[1]',
    message: 'Duplicate value',
    serverOnly: 'list-uniqueness',
  },
  { name: 'path prefix without /', object: workload('w-bad-prefix', { activator: { hosts: ['a.example.com'], pathPrefix: 'api' } }), field: 'spec.activator.pathPrefix', message: 'should match' },
  { name: 'queue size 0', object: workload('w-queue-0', { activator: { hosts: ['a.example.com'], queueSize: 0 } }), field: 'spec.activator.queueSize', message: 'should be greater than or equal to 1' },
  {
    name: 'queue size above a million',
    object: workload('w-queue-big', { activator: { hosts: ['a.example.com'], queueSize: 2_000_000 } }),
    field: 'spec.activator.queueSize',
    message: 'should be less than or equal to 1000000',
  },
  {
    name: 'negative container concurrency',
    object: workload('w-neg-cc', { activator: { hosts: ['a.example.com'], containerConcurrency: -1 } }),
    field: 'spec.activator.containerConcurrency',
    message: 'should be greater than or equal to 0',
  },
  {
    name: 'scale to zero without hosts',
    object: workload('w-no-hosts', { activator: {} }),
    field: 'spec.activator.hosts',
    message: 'activator.hosts must list at least one host when scaleToZero.enabled is true',
    serverOnly: 'cel',
  },
  {
    name: 'release mode without GPU checkpointing',
    object: workload('w-release-cpu', { scaleToZero: { mode: 'release' } }),
    field: 'spec.scaleToZero.mode',
    message: 'scaleToZero.mode release frees the GPU in place and needs checkpoint.gpu.enabled: true',
    serverOnly: 'cel',
  },
  {
    name: 'shared volume without path',
    object: workload('w-shared-no-path', { checkpoint: { storage: { type: 'sharedVolume' } } }),
    field: 'spec.checkpoint.storage.path',
    message: 'storage.path is required when storage.type is sharedVolume',
    serverOnly: 'cel',
  },
  { name: 'unknown storage type', object: workload('w-s3', { checkpoint: { storage: { type: 's3' } } }), field: 'spec.checkpoint.storage.type', message: 'Unsupported value: "s3"' },
  { name: 'relative storage path', object: workload('w-rel-path', { checkpoint: { storage: { path: 'ckpt' } } }), field: 'spec.checkpoint.storage.path', message: 'should match' },
  { name: 'suspend as a string', object: workload('w-suspend-str', { suspend: 'yes' }), field: 'spec.suspend', message: 'must be of type boolean' },
  { name: 'GPU lock timeout without unit', object: workload('w-lock-10', { checkpoint: { gpu: { lockTimeout: '10' } } }), field: 'spec.checkpoint.gpu.lockTimeout', message: 'should match' },
  { name: 'unknown spec field (typo)', object: workload('w-unknown', { idleTimeout: '5m' }), field: 'spec.idleTimeout', message: 'unknown field' },
  {
    name: 'unknown field in scaleToZero',
    object: workload('w-unknown-nested', { scaleToZero: { idleTimout: '5m' } }),
    field: 'spec.scaleToZero.idleTimout',
    message: 'unknown field',
  },
];

const CHECKPOINT_CASES: Omit<InvalidCase, 'names'>[] = [
  { name: 'missing podName', object: checkpoint('c-no-pod', { podName: undefined }), field: 'spec.podName', message: 'Required value' },
  { name: 'podName not a DNS name', object: checkpoint('c-bad-pod', { podName: 'Pod_1' }), field: 'spec.podName', message: 'should match' },
  { name: 'unknown field (typo)', object: checkpoint('c-unknown', { container: 'app' }), field: 'spec.container', message: 'unknown field' },
  { name: 'negative lock timeout', object: checkpoint('c-neg-lock', { gpu: { enabled: true, lockTimeout: '-1s' } }), field: 'spec.gpu.lockTimeout', message: 'should match' },
  {
    name: 'podName changed after creation',
    object: checkpoint('c-immutable'),
    updatedSpec: { podName: 'app-1' },
    field: 'spec',
    message: 'spec is immutable: create a new KybernateCheckpoint instead of changing this one',
    serverOnly: 'update',
  },
  {
    name: 'leaveRunning changed after creation',
    object: checkpoint('c-immutable-2'),
    updatedSpec: { podName: 'app-0', leaveRunning: true },
    field: 'spec',
    message: 'spec is immutable',
    serverOnly: 'update',
  },
];

const RESTORE_CASES: Omit<InvalidCase, 'names'>[] = [
  { name: 'missing checkpointRef', object: restore('r-no-ref', { checkpointRef: undefined }), field: 'spec.checkpointRef', message: 'Required value' },
  { name: 'missing target pod name', object: restore('r-no-pod', { targetPod: { node: 'worker-1' } }), field: 'spec.targetPod.name', message: 'Required value' },
  {
    name: 'malformed GPU UUID',
    object: restore('r-bad-gpu', { gpu: { deviceMapping: [{ from: 'GPU-0', to: GPU_B }] } }),
    field: 'spec.gpu.deviceMapping[0].from',
    message: 'should match',
  },
  {
    name: 'two GPUs mapped onto one',
    object: restore('r-dup-target', { gpu: { deviceMapping: [{ from: GPU_A, to: GPU_C }, { from: GPU_B, to: GPU_C }] } }),
    field: 'spec.gpu.deviceMapping',
    message: 'every "to" must be distinct',
    serverOnly: 'cel',
  },
  {
    name: 'target node changed after creation',
    object: restore('r-immutable'),
    updatedSpec: { checkpointRef: 'app-ckpt', targetPod: { name: 'app-restored', node: 'worker-9' } },
    field: 'spec',
    message: 'spec is immutable: create a new KybernateRestore instead of changing this one',
    serverOnly: 'update',
  },
];

// `{ podName: undefined }` in a case means "field left out".
function dropUndefined(object: ApiObject): ApiObject {
  return { ...object, spec: Object.fromEntries(Object.entries(object.spec).filter(([, value]) => value !== undefined)) };
}

export const INVALID_CASES: InvalidCase[] = [
  ...WORKLOAD_CASES.map((c) => ({ ...c, names: WORKLOAD_NAMES })),
  ...CHECKPOINT_CASES.map((c) => ({ ...c, names: CHECKPOINT_NAMES })),
  ...RESTORE_CASES.map((c) => ({ ...c, names: RESTORE_NAMES })),
].map((c) => ({ ...c, object: dropUndefined(c.object) }));
