/** Kubernetes-style status conditions (metav1.Condition), merged purely. */
export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export type ConditionUpdate = Omit<Condition, 'lastTransitionTime'>;

/**
 * Returns the conditions with `update` applied. `lastTransitionTime` moves only when the status
 * changes (so it tells since when a condition holds); reason/message/observedGeneration always follow
 * the update. The input array is not modified; the order of existing conditions is kept.
 */
export function setCondition(conditions: readonly Condition[] | undefined, update: ConditionUpdate, now: Date): Condition[] {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === update.type);
  const existing = index >= 0 ? list[index] : undefined;
  const lastTransitionTime =
    existing && existing.status === update.status ? existing.lastTransitionTime : toRfc3339Seconds(now);
  const merged: Condition = { ...update, lastTransitionTime };
  if (index >= 0) list[index] = merged;
  else list.push(merged);
  return list;
}

export function setConditions(conditions: readonly Condition[] | undefined, updates: readonly ConditionUpdate[], now: Date): Condition[] {
  return updates.reduce<Condition[]>((list, update) => setCondition(list, update, now), [...(conditions ?? [])]);
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

/** metav1.Time is RFC 3339 with second precision. */
export function toRfc3339Seconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** metav1.MicroTime (Lease renewTime, Event eventTime) needs six fractional digits. */
export function toMicroTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
