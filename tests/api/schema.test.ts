import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { buildCrd, KIND_DEFINITIONS, kindDefinition, toOpenApiSchema, withDefaults, type OpenApiSchema } from '../../src/api/crd.ts';
import { loadExamples } from '../../src/api/examples.ts';
import { InvalidInputError } from '../../src/lib/errors.ts';
import { INVALID_CASES, checkpoint, restore, workload } from './cases.ts';

const REPO_ROOT = resolve(import.meta.dirname, '../..');

/** Validation errors after defaulting, the order the API server works in. */
function errorPaths(object: { kind: string }): string[] {
  return [...Value.Errors(kindDefinition(object.kind).schema, withDefaults(object))].map((error) => error.path);
}

/** spec.a[0].b -> /spec/a/0/b (TypeBox reports JSON pointers). */
function pointer(field: string): string {
  return '/' + field.replace(/\[(\d+)\]/g, '.$1').split('.').join('/');
}

/** Every schema node with the dotted path Kubernetes would show for it. */
function* nodes(schema: OpenApiSchema, path: string): Generator<[string, OpenApiSchema]> {
  yield [path, schema];
  for (const [name, child] of Object.entries((schema.properties ?? {}) as Record<string, OpenApiSchema>)) {
    yield* nodes(child, `${path}.${name}`);
  }
  if (schema.items) yield* nodes(schema.items as OpenApiSchema, `${path}[]`);
}

describe('CRD schemas', () => {
  for (const definition of KIND_DEFINITIONS) {
    const { kind } = definition.names;
    const schema = toOpenApiSchema(definition.schema, kind);

    it(`${kind}: every field has a description (kubectl explain shows it)`, () => {
      const undescribed = [...nodes(schema, kind)].filter(
        ([path, node]) => path !== `${kind}.metadata` && (typeof node.description !== 'string' || node.description.length < 10),
      );
      expect(undescribed.map(([path]) => path)).toEqual([]);
    });

    it(`${kind}: every node is structural (has a type, no properties next to additionalProperties)`, () => {
      for (const [path, node] of nodes(schema, kind)) {
        expect(node.type, path).toBeTypeOf('string');
        expect(node.properties !== undefined && node.additionalProperties !== undefined, path).toBe(false);
      }
    });

    it(`${kind}: defaulted fields are not required by the server`, () => {
      for (const [path, node] of nodes(schema, kind)) {
        const properties = (node.properties ?? {}) as Record<string, OpenApiSchema>;
        for (const name of (node.required ?? []) as string[]) expect(properties[name]?.default, `${path}.${name}`).toBeUndefined();
      }
    });

    it(`${kind}: CRD names, scope, category, status subresource and printer columns`, () => {
      const crd = buildCrd(definition) as {
        metadata: { name: string };
        spec: { scope: string; names: { categories: string[]; shortNames: string[] }; versions: Record<string, unknown>[] };
      };
      expect(crd.metadata.name).toBe(`${definition.names.plural}.kybernate.io`);
      expect(crd.spec.scope).toBe('Namespaced');
      expect(crd.spec.names.categories).toEqual(['kybernate']);
      expect(crd.spec.names.shortNames).toEqual(definition.names.shortNames);
      const [version] = crd.spec.versions;
      expect(version).toMatchObject({ name: 'v1alpha1', served: true, storage: true, subresources: { status: {} } });
      const columns = (version?.additionalPrinterColumns ?? []) as { name: string }[];
      expect(columns.map((column) => column.name)).toEqual(expect.arrayContaining(['Phase', 'Node', 'Age']));
    });
  }

  it('renders string-literal unions as enums and Records as string maps', () => {
    const schema = toOpenApiSchema(
      Type.Object({
        mode: Type.Union([Type.Literal('a'), Type.Literal('b')], { description: 'the mode' }),
        labels: Type.Record(Type.String(), Type.String(), { description: 'labels' }),
      }),
    );
    expect(schema.properties).toEqual({
      mode: { type: 'string', description: 'the mode', enum: ['a', 'b'] },
      labels: { type: 'object', description: 'labels', additionalProperties: { type: 'string' } },
    });
  });

  it.each([
    ['a keyword Kubernetes does not know', Type.Object({ x: Type.String({ examples: ['e'] }) }), 'keyword "examples"'],
    ['a union of numbers', Type.Object({ x: Type.Union([Type.Literal(1), Type.Literal(2)]) }), 'only unions of string literals'],
    ['a schema-valued additionalProperties', Type.Object({}, { additionalProperties: Type.String() }), 'additionalProperties must be false'],
  ])('refuses %s, naming the field', (_what, schema, message) => {
    expect(() => toOpenApiSchema(schema, 'Thing')).toThrow(InvalidInputError);
    expect(() => toOpenApiSchema(schema, 'Thing')).toThrow(message);
  });
});

describe('examples and defaults (in-process)', () => {
  it('every example in deploy/examples is valid for its kind once defaulted', async () => {
    const examples = await loadExamples(REPO_ROOT);
    expect(examples.map((example) => example.kind).sort()).toEqual(
      ['KybernateCheckpoint', 'KybernateRestore', 'KybernateWorkload', 'KybernateWorkload'],
    );
    for (const example of examples) expect(errorPaths(parse(example.text) as { kind: string }), example.path).toEqual([]);
  });

  it('fills in the documented workload defaults', () => {
    const spec = withDefaults(workload('w')).spec;
    expect(spec).toMatchObject({
      suspend: false,
      scaleToZero: { enabled: true, idleTimeout: '5m', mode: 'checkpoint', minReplicas: 0, maxReplicas: 1 },
      activator: { pathPrefix: '/', port: 8080, activationTimeout: '60s', queueSize: 10000, containerConcurrency: 0 },
      checkpoint: { storage: { type: 'nodeLocal' }, gpu: { enabled: false, lockTimeout: '10s' } },
    });
  });

  it('fills in checkpoint defaults and leaves restores as given', () => {
    expect(withDefaults(checkpoint('c')).spec).toEqual({
      podName: 'app-0',
      leaveRunning: false,
      storage: { type: 'nodeLocal' },
      gpu: { enabled: false, lockTimeout: '10s' },
    });
    expect(withDefaults(restore('r')).spec).toEqual(restore('r').spec);
  });

  it('refuses to default an object of an unknown kind, naming the kinds it knows', () => {
    expect(() => withDefaults({ kind: 'Pod' })).toThrow(InvalidInputError);
    expect(() => withDefaults({ kind: 'Pod' })).toThrow('unknown kind "Pod": expected one of KybernateWorkload, KybernateCheckpoint, KybernateRestore');
  });

  it('keeps unknown fields inside the pod template (they belong to the Pod API)', () => {
    const object = workload('w', { template: { spec: { nodeSelector: { gpu: 'h100' }, containers: [{ name: 'a', image: 'i', args: ['x'] }] } } });
    expect(errorPaths(object)).toEqual([]);
  });
});

describe('invalid objects (in-process; CEL, list uniqueness and updates are checked by the API server tests)', () => {
  const inProcess = INVALID_CASES.filter((c) => c.serverOnly === undefined);

  it('covers enough cases', () => {
    expect(inProcess.length).toBeGreaterThanOrEqual(20);
  });

  it.each(inProcess.map((c) => [`${c.names.kind}: ${c.name}`, c] as const))('rejects %s', (_label, c) => {
    expect(errorPaths(c.object)).toContain(pointer(c.field));
  });
});
