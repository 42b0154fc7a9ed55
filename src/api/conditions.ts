/**
 * Pure helpers for status conditions, with the semantics of apimachinery's meta.SetStatusCondition:
 * lastTransitionTime moves only when the status changes, so a reconcile that re-asserts the same state
 * writes nothing.
 */
import { InvalidInputError } from '../lib/errors.ts';
import { ConditionSchema, type Condition, type ConditionStatus } from './common.ts';

export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message?: string;
  observedGeneration?: number;
}

const REASON_PATTERN = new RegExp(ConditionSchema.properties.reason.pattern ?? '');

/** metav1.Time is serialised in whole seconds; matching it keeps a read-back condition equal to the written one. */
export function toKubeTime(time: Date): string {
  return time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function buildCondition(input: ConditionInput, now: Date): Condition {
  if (!REASON_PATTERN.test(input.reason)) {
    // The API server would reject the whole status write; fail here with the culprit named instead.
    throw new InvalidInputError(`condition ${input.type}: reason "${input.reason}" must be CamelCase (letters, digits, _ , :)`, {
      type: input.type,
      reason: input.reason,
    });
  }
  const condition: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message ?? '',
    lastTransitionTime: toKubeTime(now),
  };
  if (input.observedGeneration !== undefined) condition.observedGeneration = input.observedGeneration;
  return condition;
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((condition) => condition.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

/** Equal in everything but lastTransitionTime. */
export function sameCondition(a: Condition, b: Condition | ConditionInput): boolean {
  return (
    a.type === b.type &&
    a.status === b.status &&
    a.reason === b.reason &&
    a.message === (b.message ?? '') &&
    a.observedGeneration === b.observedGeneration
  );
}

export interface ConditionsUpdate {
  conditions: Condition[];
  changed: boolean;
}

/** Adds or updates the condition of input.type; the list keeps its order and the input list is not modified. */
export function setCondition(conditions: readonly Condition[] | undefined, input: ConditionInput, now: Date): ConditionsUpdate {
  const current = conditions ?? [];
  const existing = findCondition(current, input.type);
  if (existing && sameCondition(existing, input)) return { conditions: [...current], changed: false };
  const next = buildCondition(input, now);
  if (!existing) return { conditions: [...current, next], changed: true };
  if (existing.status === next.status) next.lastTransitionTime = existing.lastTransitionTime;
  return { conditions: current.map((condition) => (condition === existing ? next : condition)), changed: true };
}

export function removeCondition(conditions: readonly Condition[] | undefined, type: string): ConditionsUpdate {
  const current = conditions ?? [];
  const kept = current.filter((condition) => condition.type !== type);
  return { conditions: kept, changed: kept.length !== current.length };
}
