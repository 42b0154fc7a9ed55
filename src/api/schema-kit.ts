/**
 * Building blocks for the CRD schemas. Each one is a TypeBox schema (so it yields a static TS type and
 * can be checked in-process) restricted to what a Kubernetes structural schema accepts once
 * `toOpenApiSchema` has translated string-literal unions and string maps.
 */
import { FormatRegistry, Type, type SchemaOptions, type TLiteral, type TUnion } from '@sinclair/typebox';
import { DURATION_PATTERN } from '../lib/duration.ts';

// Kubernetes checks `format: date-time` itself; TypeBox needs a checker for in-process validation.
if (!FormatRegistry.Has('date-time')) {
  FormatRegistry.Set('date-time', (value) => !Number.isNaN(Date.parse(value)) && /^\d{4}-\d\d-\d\dT/.test(value));
}

/** RFC 1123 DNS label (container names, Kubernetes names that become DNS labels). */
export const DNS_LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** RFC 1123 DNS subdomain (object names such as pods, checkpoints, nodes). */
export const DNS_SUBDOMAIN_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** An exact lower-case hostname, or `*.suffix` matching any name under suffix. */
export const HOST_PATTERN = '^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** NVIDIA GPU or MIG instance UUID as printed by `nvidia-smi -L`. */
export const GPU_UUID_PATTERN = '^(GPU|MIG)-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/** Every field carries a description: `kubectl explain` shows it and docs/api.md is built from it. */
type Described = SchemaOptions & { description: string };

export function Duration(options: Described & { default?: string }) {
  return Type.String({ ...options, pattern: DURATION_PATTERN, maxLength: 64 });
}

export function DnsLabel(options: Described) {
  return Type.String({ ...options, pattern: DNS_LABEL_PATTERN, maxLength: 63 });
}

export function DnsSubdomain(options: Described) {
  return Type.String({ ...options, pattern: DNS_SUBDOMAIN_PATTERN, maxLength: 253 });
}

export function Timestamp(options: Described) {
  return Type.String({ ...options, format: 'date-time' });
}

/** A string enum; rendered as `type: string` + `enum` in the CRD. */
export function StringEnum<const Values extends readonly [string, ...string[]]>(
  values: Values,
  options: Described & { default?: Values[number] },
): TUnion<TLiteral<Values[number]>[]> {
  return Type.Union(
    values.map((value) => Type.Literal(value)),
    options,
  );
}

/** Free-form string map (labels, annotations); rendered as `additionalProperties: {type: string}`. */
export function StringMap(options: Described) {
  return Type.Record(Type.String(), Type.String(), options);
}

/** An object whose unknown fields are errors in-process and pruned (or, with Strict, rejected) by the server. */
export const closed = { additionalProperties: false } as const;

/** `x-kubernetes-validations` CEL rule with the message users see when it fails. */
export interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

export function celRules(...rules: CelRule[]) {
  return { 'x-kubernetes-validations': rules };
}
