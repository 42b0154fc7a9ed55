/**
 * Turns the TypeBox schemas into apiextensions.k8s.io/v1 CustomResourceDefinitions. TypeBox emits a
 * few JSON Schema forms a Kubernetes structural schema does not accept; they are translated here, and
 * anything else unknown is an error rather than a CRD the API server would refuse at install time.
 */
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { InvalidInputError } from '../lib/errors.ts';
import { CHECKPOINT_KIND } from './checkpoint.ts';
import type { KindDefinition } from './kind.ts';
import { API_CATEGORY, API_GROUP, API_VERSION } from './meta.ts';
import { RESTORE_KIND } from './restore.ts';
import { WORKLOAD_KIND } from './workload.ts';

export const KIND_DEFINITIONS: readonly KindDefinition[] = [WORKLOAD_KIND, CHECKPOINT_KIND, RESTORE_KIND];

export type OpenApiSchema = { [keyword: string]: unknown };

// JSONSchemaProps fields of apiextensions.k8s.io/v1 that the schemas here may use.
const ALLOWED_KEYWORDS = new Set([
  'type', 'format', 'description', 'default', 'enum', 'pattern', 'minLength', 'maxLength', 'minimum', 'maximum',
  'minItems', 'maxItems', 'required', 'properties', 'items', 'additionalProperties', 'nullable',
  'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys',
  'x-kubernetes-validations', 'x-kubernetes-map-type',
]);

// TypeBox's Record(String, T) key pattern: any key, i.e. a map.
const ANY_KEY_PATTERN = '^(.*)$';

/** The Kubernetes (structural, OpenAPI v3) form of a TypeBox schema. `path` names the field in errors. */
export function toOpenApiSchema(schema: TSchema, path = '<root>'): OpenApiSchema {
  const source = JSON.parse(JSON.stringify(schema)) as OpenApiSchema; // drops TypeBox's symbol keys
  return convert(source, path);
}

function convert(node: OpenApiSchema, path: string): OpenApiSchema {
  const out: OpenApiSchema = {};
  for (const [keyword, value] of Object.entries(node)) {
    switch (keyword) {
      case 'anyOf':
        Object.assign(out, stringEnum(value, path));
        break;
      case 'patternProperties':
        out.additionalProperties = convert(mapValueSchema(value, path), `${path}[*]`);
        break;
      case 'additionalProperties':
        // false is expressed by a structural schema's pruning (and Strict field validation) instead.
        if (value !== false) throw new InvalidInputError(`${path}: additionalProperties must be false or come from a Record`, { path });
        break;
      case 'properties': {
        const entries = Object.entries(value as Record<string, OpenApiSchema>);
        if (entries.length > 0) out.properties = Object.fromEntries(entries.map(([name, child]) => [name, convert(child, `${path}.${name}`)]));
        break;
      }
      case 'required':
        out.required = optionalIfDefaulted(value as string[], node.properties as Record<string, OpenApiSchema> | undefined);
        break;
      case 'items':
        out.items = convert(value as OpenApiSchema, `${path}[]`);
        break;
      default:
        if (!ALLOWED_KEYWORDS.has(keyword)) {
          throw new InvalidInputError(`${path}: JSON Schema keyword "${keyword}" is not allowed in a CRD schema`, { path, keyword });
        }
        out[keyword] = value;
    }
  }
  if (Array.isArray(out.required) && out.required.length === 0) delete out.required;
  // type and description first: the YAML reads like `kubectl explain`.
  const { type, description, ...rest } = out;
  return { ...(type === undefined ? {} : { type }), ...(description === undefined ? {} : { description }), ...rest };
}

/**
 * TypeBox marks defaulted fields required (so the static types say "always present once read back");
 * for the API server they are optional, since it fills them in.
 */
function optionalIfDefaulted(required: string[], properties: Record<string, OpenApiSchema> = {}): string[] {
  return required.filter((name) => properties[name]?.default === undefined);
}

function stringEnum(members: unknown, path: string): OpenApiSchema {
  const values = (members as OpenApiSchema[]).map((member) => member.const);
  if (!values.every((value) => typeof value === 'string')) {
    throw new InvalidInputError(`${path}: only unions of string literals (enums) can be rendered into a CRD`, { path });
  }
  return { type: 'string', enum: values };
}

function mapValueSchema(patternProperties: unknown, path: string): OpenApiSchema {
  const entries = Object.entries(patternProperties as Record<string, OpenApiSchema>);
  const [only] = entries;
  if (entries.length !== 1 || !only || only[0] !== ANY_KEY_PATTERN) {
    throw new InvalidInputError(`${path}: only Record(String, T) maps can be rendered into a CRD`, { path });
  }
  return only[1];
}

export function buildCrd(definition: KindDefinition): Record<string, unknown> {
  const { names, printerColumns } = definition;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${names.plural}.${API_GROUP}` },
    spec: {
      group: API_GROUP,
      names: {
        kind: names.kind,
        listKind: names.listKind,
        plural: names.plural,
        singular: names.singular,
        shortNames: [...names.shortNames],
        categories: [API_CATEGORY],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: toOpenApiSchema(definition.schema, names.kind) },
          subresources: { status: {} },
          additionalPrinterColumns: printerColumns,
        },
      ],
    },
  };
}

export function kindDefinition(kind: string): KindDefinition {
  const definition = KIND_DEFINITIONS.find((candidate) => candidate.names.kind === kind);
  if (!definition) {
    throw new InvalidInputError(`unknown kind "${kind}": expected one of ${KIND_DEFINITIONS.map((d) => d.names.kind).join(', ')}`, { kind });
  }
  return definition;
}

/**
 * A copy of `object` with the schema defaults of its kind filled in, as the API server fills them in
 * before validation and storage (so in-memory objects look like ones read back from the server).
 */
export function withDefaults<T extends { kind: string }>(object: T): T {
  return Value.Default(kindDefinition(object.kind).schema, structuredClone(object)) as T;
}
