/**
 * The generated CRDs on a real kube-apiserver + etcd (tests/harness/kube): installation, examples,
 * defaults, every invalid case (CEL, list uniqueness and immutability included), the status
 * subresource, printer columns and the documentation the server publishes for `kubectl explain`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  API_GROUP,
  API_VERSION,
  buildCondition,
  CHECKPOINT_NAMES,
  sameCondition,
  WORKLOAD_NAMES,
  type Condition,
  type KindNames,
} from '../../src/api/index.ts';
import { KIND_DEFINITIONS, kindDefinition, withDefaults } from '../../src/api/crd.ts';
import { loadExamples } from '../../src/api/examples.ts';
import { startControlPlane, type ControlPlane } from '../harness/kube/index.ts';
import { INVALID_CASES, checkpoint, workload, type ApiObject } from './cases.ts';
// The generic poll helper lives with the containerd harness; it is not containerd-specific.
import { waitFor } from '../support/wait.ts';
import { restClient, type RestClient } from './rest.ts';

const REPO_ROOT = resolve(import.meta.dirname, '../..');
const NAMESPACE = 'default';
let plane: ControlPlane | undefined;
let api: RestClient;
const controlPlane = () => plane!;

const collection = (names: KindNames, namespace = NAMESPACE) => `/apis/${API_GROUP}/${API_VERSION}/namespaces/${namespace}/${names.plural}`;
const item = (names: KindNames, name: string, namespace = NAMESPACE) => `${collection(names, namespace)}/${name}`;
const STRICT = '?fieldValidation=Strict';

async function create(object: ApiObject, query = STRICT) {
  const { names } = kindDefinition(object.kind);
  return api.call('POST', collection(names, object.metadata.namespace) + query, object);
}

function isEstablished(crd: Record<string, unknown>): boolean {
  const conditions = ((crd.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []);
  return ['Established', 'NamesAccepted'].every((type) => conditions.some((c) => c.type === type && c.status === 'True'));
}

beforeAll(async () => {
  plane = await startControlPlane();
  api = restClient(plane.server, plane.tls);
  const files = (await readdir(join(REPO_ROOT, 'deploy/crds'))).filter((name) => name.endsWith('.yaml'));
  for (const file of files) {
    const crd = parse(await readFile(join(REPO_ROOT, 'deploy/crds', file), 'utf8')) as unknown;
    const created = await api.call('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
    if (created.status !== 201) throw new Error(`installing ${file}: ${created.status} ${JSON.stringify(created.body)}`);
  }
  const created = await api.call('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'inference' } });
  expect(created.status).toBe(201);
});

afterAll(async () => {
  await plane?.stop();
});

describe('CRDs on a real API server', () => {
  it('install and become Established, with names, short names and category', async () => {
    for (const { names } of KIND_DEFINITIONS) {
      const crd = await waitFor(`${names.plural} Established`, async () => {
        const response = await api.call('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${names.plural}.${API_GROUP}`);
        return isEstablished(response.body) ? response.body : undefined;
      });
      expect((crd.status as { acceptedNames: unknown }).acceptedNames).toMatchObject({
        kind: names.kind,
        shortNames: names.shortNames,
        categories: ['kybernate'],
      });
    }
  });

  it('accepts every example (Strict field validation) and applies the same defaults as src/api', async () => {
    const examples = await loadExamples(REPO_ROOT);
    for (const example of examples) {
      const object = parse(example.text) as ApiObject;
      const response = await create(object);
      expect(response.status, `${example.path}: ${JSON.stringify(response.body)}`).toBe(201);
      expect(response.body.spec, example.path).toEqual(withDefaults(object).spec);
    }
  });

  it('fills in every documented default on a minimal workload', async () => {
    const response = await create(workload('minimal'));
    expect(response.status).toBe(201);
    expect(response.body.spec).toEqual(withDefaults(workload('minimal')).spec);
    expect(response.body.spec).toMatchObject({
      suspend: false,
      scaleToZero: { enabled: true, idleTimeout: '5m', mode: 'checkpoint', minReplicas: 0, maxReplicas: 1 },
      activator: { pathPrefix: '/', port: 8080, activationTimeout: '60s', queueSize: 10000, containerConcurrency: 0 },
      checkpoint: { storage: { type: 'nodeLocal' }, gpu: { enabled: false, lockTimeout: '10s' } },
    });
  });

  it('prunes unknown fields when the client does not ask for Strict, but keeps pod spec fields', async () => {
    const object = workload('pruned', {
      idleTimeout: '5m',
      template: { spec: { nodeSelector: { gpu: 'h100' }, containers: [{ name: 'app', image: 'busybox', args: ['x'] }] } },
    });
    const response = await create(object, '');
    expect(response.status).toBe(201);
    expect(response.body.spec).not.toHaveProperty('idleTimeout');
    expect(response.body.spec).toMatchObject({
      template: { spec: { nodeSelector: { gpu: 'h100' }, containers: [{ name: 'app', image: 'busybox', args: ['x'] }] } },
    });
  });
});

describe('invalid objects are rejected with a clear message', () => {
  it(`covers at least 20 cases (${INVALID_CASES.length})`, () => {
    expect(INVALID_CASES.length).toBeGreaterThanOrEqual(20);
  });

  it.each(INVALID_CASES.map((c) => [`${c.names.kind}: ${c.name}`, c] as const))('%s', async (_label, c) => {
    let response;
    if (c.updatedSpec) {
      const created = await create(c.object);
      expect(created.status).toBe(201);
      const path = item(c.names, c.object.metadata.name);
      response = await api.call('PUT', path + STRICT, { ...created.body, spec: c.updatedSpec });
    } else {
      response = await create(c.object);
    }
    const message = String(response.body.message);
    expect([400, 422], message).toContain(response.status);
    expect(message).toContain(c.field);
    expect(message).toContain(c.message);
  });
});

describe('status subresource', () => {
  const statusOf = (conditions: Condition[]) => ({ phase: 'Suspended', node: 'worker-1', lastCheckpointRef: 'status-ckpt', conditions });

  it('writes status only through /status, and condition helpers round-trip unchanged', async () => {
    const created = await create(workload('with-status'));
    expect(created.status).toBe(201);
    const path = item(WORKLOAD_NAMES, 'with-status');
    const ready = buildCondition({ type: 'Ready', status: 'False', reason: 'Suspended', message: 'checkpointed', observedGeneration: 1 }, new Date());

    const viaMain = await api.call('PUT', path, { ...created.body, status: statusOf([ready]) });
    expect(viaMain.status).toBe(200);
    expect(viaMain.body.status).toBeUndefined();

    const viaStatus = await api.call('PUT', `${path}/status`, { ...viaMain.body, spec: { ...(viaMain.body.spec as object), suspend: true }, status: statusOf([ready]) });
    expect(viaStatus.status, JSON.stringify(viaStatus.body)).toBe(200);
    expect(viaStatus.body.spec).toMatchObject({ suspend: false });
    const stored = (viaStatus.body.status as { conditions: Condition[] }).conditions[0]!;
    expect(sameCondition(stored, ready)).toBe(true);
    expect(stored.lastTransitionTime).toBe(ready.lastTransitionTime);
  });

  it('validates status too (unknown phase, bad condition reason)', async () => {
    const created = await create(workload('bad-status'));
    const path = `${item(WORKLOAD_NAMES, 'bad-status')}/status`;
    const badPhase = await api.call('PUT', path, { ...created.body, status: { phase: 'Sleeping' } });
    expect(badPhase.status).toBe(422);
    expect(String(badPhase.body.message)).toContain('status.phase: Unsupported value: "Sleeping"');
    const condition = { type: 'Ready', status: 'True', reason: 'not camel case', message: '', lastTransitionTime: '2026-11-27T10:00:00Z' };
    const badReason = await api.call('PUT', path, { ...created.body, status: { conditions: [condition] } });
    expect(badReason.status).toBe(422);
    expect(String(badReason.body.message)).toContain('status.conditions[0].reason');
  });

  it('lets the controller write the status of an immutable checkpoint', async () => {
    const created = await create(checkpoint('status-ckpt'));
    const response = await api.call('PUT', `${item(CHECKPOINT_NAMES, 'status-ckpt')}/status`, {
      ...created.body,
      status: { phase: 'Completed', node: 'worker-1', sizeBytes: 3_000_000_000, checkpointDurationSeconds: 1.6, location: '/var/lib/kybernate/checkpoints/x' },
    });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body.status).toMatchObject({ phase: 'Completed', sizeBytes: 3_000_000_000 });
  });
});

describe('what kubectl shows', () => {
  it('prints the printer columns (Table view)', async () => {
    const table = await api.call('GET', collection(WORKLOAD_NAMES), undefined, 'application/json;as=Table;v=v1;g=meta.k8s.io');
    expect(table.status).toBe(200);
    const columns = (table.body.columnDefinitions as { name: string }[]).map((column) => column.name);
    expect(columns).toEqual(['Name', 'Phase', 'Ready', 'Mode', 'Node', 'Checkpoint', 'Idle-Timeout', 'Age']);
    const rows = table.body.rows as { cells: unknown[]; object: { metadata: { name: string } } }[];
    const withStatus = rows.find((row) => row.cells[0] === 'with-status');
    expect(withStatus?.cells.slice(1, 7)).toEqual(['Suspended', 'False', 'checkpoint', 'worker-1', 'status-ckpt', '5m']);
  });

  it('publishes the field descriptions in its OpenAPI v3 document (what kubectl explain reads)', async () => {
    const schemas = await waitFor('the kybernate.io OpenAPI v3 document', async () => {
      const response = await api.call('GET', `/openapi/v3/apis/${API_GROUP}/${API_VERSION}`);
      const components = (response.body.components as { schemas?: Record<string, Record<string, unknown>> } | undefined)?.schemas;
      return components?.[`io.kybernate.${API_VERSION}.${WORKLOAD_NAMES.kind}`] ? components : undefined;
    });
    for (const { names, schema } of KIND_DEFINITIONS) {
      const published = schemas[`io.kybernate.${API_VERSION}.${names.kind}`] as { description: string; properties: Record<string, { description: string }> };
      const source = schema as unknown as { description: string; properties: Record<string, { description: string }> };
      expect(published.description).toBe(source.description);
      expect(published.properties.spec?.description).toBe(source.properties.spec?.description);
    }
  });

  // kubectl comes from scripts/setup/20-kube.sh like kube-apiserver.
  it('kubectl explain shows the descriptions', async () => {
    const { stdout } = await controlPlane().kubectl(['explain', 'kw.spec.scaleToZero.idleTimeout']);
    // kubectl wraps long lines.
    expect(stdout.replace(/\s+/g, ' ')).toContain('How long the workload must see no request and have none in flight before it is suspended.');
    const kinds = await controlPlane().kubectl(['get', 'kybernate', '-A', '-o', 'name']);
    expect(kinds.stdout).toContain('kybernateworkload.kybernate.io/minimal');
  });
});
