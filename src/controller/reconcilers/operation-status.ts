import { isDeepStrictEqual } from 'node:util';
import { setCondition, toKubeTime, type Condition, type ConditionInput, type OperationPhase } from '../../api/index.ts';
import { KybernateError, errorMessage } from '../../lib/errors.ts';
import type { KubeObject } from '../../lib/kube/client.ts';
import type { ResourceType } from '../../lib/kube/resources.ts';
import { updateStatus } from '../runtime/status.ts';
import type { ReconcilerDeps } from './deps.ts';

/** Status fields checkpoints and restores share (operationStatusFields in src/api). */
export interface OperationStatus {
  phase?: OperationPhase;
  conditions?: Condition[];
  node?: string;
  containerID?: string;
  gpuMemoryBytes?: number;
  message?: string;
  startedAt?: string;
  completedAt?: string;
}

/**
 * The status of a checkpoint or restore in `phase`, with its Completed condition: True once it
 * succeeded, False with `reason` otherwise, and any `extraConditions` (a restore's GpuReady).
 * Timestamps: startedAt when it starts Running, completedAt when it ends.
 */
export function operationStatus<S extends OperationStatus>(
  current: S | undefined,
  phase: OperationPhase,
  reason: string,
  message: string,
  now: Date,
  fields: Partial<S> = {},
  extraConditions: readonly ConditionInput[] = [],
): S {
  const conditions = [{ type: 'Completed', status: phase === 'Completed' ? 'True' : 'False', reason, message } as const, ...extraConditions].reduce(
    (list, condition) => setCondition(list, condition, now).conditions,
    current?.conditions ?? [],
  );
  const next = { ...current, ...fields, phase, message, conditions } as S;
  if (phase === 'Running' && !next.startedAt) next.startedAt = toKubeTime(now);
  if ((phase === 'Completed' || phase === 'Failed') && !next.completedAt) next.completedAt = toKubeTime(now);
  return next;
}

/** `next` unless it equals `current` (ignoring absent vs undefined fields): no write, no watch event, no loop. */
export function changedOnly<S>(current: S | undefined, next: S): S | undefined {
  return isDeepStrictEqual(normalize(current), normalize(next)) ? undefined : next;
}

function normalize(value: unknown): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** The agent could not be reached or was busy: retry, do not fail the operation. */
export function isTransient(err: unknown): boolean {
  return err instanceof KybernateError && (err.code === 'Unavailable' || err.code === 'NotLeader');
}

export function failureMessage(err: unknown): string {
  return err instanceof KybernateError ? `${err.code}: ${err.message}` : errorMessage(err);
}

/** Seconds between two instants, rounded to milliseconds. */
export function secondsBetween(fromMs: number, toMs: number): number {
  return Math.max(0, Math.round(toMs - fromMs) / 1000);
}

/**
 * Status writes and failure reporting shared by the checkpoint and restore reconcilers: every write is
 * conflict-checked and skipped when nothing changed; a failure is also logged and sent as a Warning event.
 */
export class OperationRecorder<S extends OperationStatus, T extends KubeObject & { status?: S }> {
  constructor(
    private readonly deps: ReconcilerDeps,
    private readonly type: ResourceType,
    private readonly action: string,
  ) {}

  async write(object: T, phase: OperationPhase, reason: string, message: string, fields: Partial<S> = {}, extraConditions: readonly ConditionInput[] = []): Promise<T | undefined> {
    const result = await updateStatus(this.deps.kube, this.type, object, (current: T) =>
      changedOnly(current.status, operationStatus(current.status, phase, reason, message, this.deps.now(), fields, extraConditions)),
    );
    return result.object;
  }

  async fail(object: T, reason: string, message: string, extraConditions: readonly ConditionInput[] = []): Promise<void> {
    await this.write(object, 'Failed', reason, message, {}, extraConditions);
    const { namespace, name } = object.metadata ?? {};
    this.deps.log.warn({ kind: this.type.kind, namespace, name, reason, message }, `${this.action.toLowerCase()} failed`);
    await this.deps.events.record(object, 'Warning', reason, this.action, message);
  }
}
