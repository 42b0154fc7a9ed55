import type { TSchema } from '@sinclair/typebox';
import type { KindNames } from './meta.ts';

/** A CRD printer column (`kubectl get` output). */
export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
  format?: string;
}

/** Everything the CRD generator and the docs need to know about one kind. */
export interface KindDefinition {
  names: KindNames;
  schema: TSchema;
  /** Condition types the controller sets on this kind, each with what status True means. */
  conditions: Readonly<Record<string, string>>;
  printerColumns: PrinterColumn[];
}

/** `{ Running: 'Running', ... }` from a list of values, so callers can write `WorkloadPhase.Running`. */
export function literalsObject<const Values extends readonly string[]>(values: Values): { readonly [Value in Values[number]]: Value } {
  return Object.freeze(Object.fromEntries(values.map((value) => [value, value]))) as { readonly [Value in Values[number]]: Value };
}

export const AGE_COLUMN: PrinterColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
  description: 'Time since the object was created.',
};
