import { InvalidInputError } from '../../lib/errors.ts';
import { AlreadyExistsError } from '../errors.ts';

export type OperationKind = 'checkpoint' | 'restore';
export type OperationState = 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED';

export interface OperationStep {
  name: string;
  /** milliseconds the step took; absent while it runs */
  ms?: number;
}

export interface Operation {
  id: string;
  kind: OperationKind;
  state: OperationState;
  /** canonical JSON of the request: the same id with another request is refused */
  request: string;
  namespace: string;
  containerId: string;
  steps: OperationStep[];
  checkpointId?: string;
  pid?: number;
  error?: { code: string; message: string };
  createdAt: string;
  /** when it obtained its container's lock and began */
  startedAt?: string;
  updatedAt: string;
}

export type OperationEvent =
  | { type: 'start' }
  | { type: 'step'; name: string }
  | { type: 'succeed'; checkpointId?: string; pid?: number }
  | { type: 'fail'; code: string; message: string };

const OPERATION_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isValidOperationId(id: string): boolean {
  return OPERATION_ID.test(id);
}

export function isTerminal(state: OperationState): boolean {
  return state === 'SUCCEEDED' || state === 'FAILED';
}

export function newOperation(fields: Pick<Operation, 'id' | 'kind' | 'request' | 'namespace' | 'containerId'>, now: Date): Operation {
  if (!isValidOperationId(fields.id)) {
    throw new InvalidInputError(`invalid operation id "${fields.id}": letters, digits, ".", "_" and "-", at most 128`, { operation: fields.id });
  }
  const at = now.toISOString();
  return { ...fields, state: 'PENDING', steps: [], createdAt: at, updatedAt: at };
}

/** Closes the running step (if any) with its duration. */
function closeStep(steps: OperationStep[], now: Date, stepStartedAt: Date | undefined): OperationStep[] {
  const last = steps.at(-1);
  if (!last || last.ms !== undefined || !stepStartedAt) return steps;
  return [...steps.slice(0, -1), { ...last, ms: now.getTime() - stepStartedAt.getTime() }];
}

/**
 * The operation state machine: PENDING -start-> RUNNING -step*-> RUNNING -succeed|fail-> SUCCEEDED|FAILED.
 * A PENDING operation may also fail (e.g. its container lock was never obtained). Terminal states are final.
 */
export function transition(op: Operation, event: OperationEvent, now: Date, stepStartedAt?: Date): Operation {
  const updatedAt = now.toISOString();
  const invalid = (): never => {
    throw new InvalidInputError(`operation ${op.id}: event "${event.type}" is not allowed in state ${op.state}`, { operation: op.id });
  };
  switch (event.type) {
    case 'start':
      if (op.state !== 'PENDING') return invalid();
      return { ...op, state: 'RUNNING', startedAt: updatedAt, updatedAt };
    case 'step':
      if (op.state !== 'RUNNING') return invalid();
      return { ...op, steps: [...closeStep(op.steps, now, stepStartedAt), { name: event.name }], updatedAt };
    case 'succeed': {
      if (op.state !== 'RUNNING') return invalid();
      const result = { ...(event.checkpointId ? { checkpointId: event.checkpointId } : {}), ...(event.pid ? { pid: event.pid } : {}) };
      return { ...op, ...result, state: 'SUCCEEDED', steps: closeStep(op.steps, now, stepStartedAt), updatedAt };
    }
    case 'fail':
      if (isTerminal(op.state)) return invalid();
      return { ...op, state: 'FAILED', steps: closeStep(op.steps, now, stepStartedAt), error: { code: event.code, message: event.message }, updatedAt };
  }
}

/**
 * Idempotency per operation id: a new id starts an operation; a known id with the same request returns
 * the known operation (whatever its state); a known id with another request is a client error.
 */
export function resolveSubmission(existing: Operation | undefined, kind: OperationKind, request: string): 'start' | 'existing' {
  if (!existing) return 'start';
  if (existing.kind === kind && existing.request === request) return 'existing';
  throw new AlreadyExistsError(`operation id ${existing.id} was used for another ${existing.kind} request`, { operation: existing.id });
}

/** An operation that was not finished when the agent stopped can never finish: it failed. */
export function recoverAfterRestart(op: Operation, now: Date): Operation {
  if (isTerminal(op.state)) return op;
  return {
    ...op,
    state: 'FAILED',
    error: { code: 'Aborted', message: 'the agent restarted while the operation ran; its partial results were removed' },
    updatedAt: now.toISOString(),
  };
}

/** JSON with sorted keys, so that two equal requests compare equal whatever their field order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
