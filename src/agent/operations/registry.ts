import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../lib/log.ts';
import { errorMessage, KybernateError, NotFoundError } from '../../lib/errors.ts';
import { KeyedLock } from './keyed-lock.ts';
import {
  isTerminal,
  newOperation,
  recoverAfterRestart,
  resolveSubmission,
  transition,
  type Operation,
  type OperationKind,
} from './state.ts';

/** What a running operation reports: the step it has entered. */
export type ReportStep = (name: string) => void;

export interface OperationResult {
  checkpointId?: string;
  pid?: number;
}

export interface Submission {
  id: string;
  kind: OperationKind;
  request: string;
  namespace: string;
  containerId: string;
  run: (step: ReportStep) => Promise<OperationResult>;
}

/**
 * Long operations (checkpoint, restore) by id: each is recorded as JSON under `dir` so that a client
 * can poll it after an agent restart, runs under its container's lock, and emits `update` on every change.
 */
export class OperationRegistry extends EventEmitter<{ update: [Operation] }> {
  private readonly operations = new Map<string, Operation>();
  private readonly running = new Map<string, Promise<Operation>>();
  private readonly lock = new KeyedLock();
  private saves: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {
    super();
    this.setMaxListeners(0);
  }

  /** Reads the recorded operations; those that were still running are marked failed. */
  async load(now = new Date()): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await fs.readdir(this.dir)) {
      if (!name.endsWith('.json')) continue;
      try {
        const op = JSON.parse(await fs.readFile(path.join(this.dir, name), 'utf8')) as Operation;
        const recovered = recoverAfterRestart(op, now);
        this.operations.set(op.id, recovered);
        if (recovered !== op) await this.save(recovered);
      } catch (err) {
        this.log.warn({ file: name, err: errorMessage(err) }, 'skipping unreadable operation record');
      }
    }
  }

  get(id: string): Operation {
    const op = this.operations.get(id);
    if (!op) throw new NotFoundError(`operation ${id} not found`, { operation: id });
    return op;
  }

  list(): Operation[] {
    return [...this.operations.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Starts the operation, or returns the known one for a repeated id with the same request. */
  submit(submission: Submission): Operation {
    const existing = this.operations.get(submission.id);
    if (resolveSubmission(existing, submission.kind, submission.request) === 'existing') return existing!;
    const op = newOperation(submission, new Date());
    this.update(op);
    this.running.set(op.id, this.execute(op, submission.run));
    return op;
  }

  /** Resolves with the operation once it is SUCCEEDED or FAILED. */
  async wait(id: string): Promise<Operation> {
    const op = this.get(id);
    if (isTerminal(op.state)) return op;
    return this.running.get(id) ?? op;
  }

  /** Resolves when every running operation has finished (for shutdown). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.running.values()]);
  }

  private async execute(initial: Operation, run: Submission['run']): Promise<Operation> {
    let op = initial;
    let stepStartedAt = new Date();
    const log = this.log.child({ operation: op.id, kind: op.kind, namespace: op.namespace, container: op.containerId });
    let final: Operation;
    try {
      const result = await this.lock.run(`${op.namespace}/${op.containerId}`, async () => {
        op = this.update(transition(op, { type: 'start' }, new Date()));
        log.info('operation started');
        return run((name) => {
          const now = new Date();
          op = this.update(transition(op, { type: 'step', name }, now, stepStartedAt));
          stepStartedAt = now;
        });
      });
      final = transition(op, { type: 'succeed', ...result }, new Date(), stepStartedAt);
      log.info({ checkpoint: final.checkpointId, pid: final.pid, steps: final.steps }, 'operation succeeded');
    } catch (err) {
      const code = err instanceof KybernateError ? err.code : 'Internal';
      final = transition(op, { type: 'fail', code, message: errorMessage(err) }, new Date(), stepStartedAt);
      log.error({ err, code }, 'operation failed');
    }
    // Recorded before anyone hears of it: a client that saw SUCCEEDED finds it so after an agent restart.
    await this.save(final).catch((err: unknown) => log.error({ err }, 'could not record the operation'));
    this.update(final);
    this.running.delete(final.id);
    return final;
  }

  private update(op: Operation): Operation {
    this.operations.set(op.id, op);
    this.emit('update', op);
    if (op.state === 'PENDING') void this.save(op).catch((err: unknown) => this.log.error({ err, operation: op.id }, 'could not record the operation'));
    return op;
  }

  /** Records are written one after another, so an older state never overwrites a newer one. */
  private save(op: Operation): Promise<void> {
    const file = path.join(this.dir, `${op.id}.json`);
    const write = async (): Promise<void> => {
      await fs.writeFile(`${file}.tmp`, JSON.stringify(op), { mode: 0o600 });
      await fs.rename(`${file}.tmp`, file);
    };
    const next = this.saves.then(write);
    this.saves = next.catch(() => undefined);
    return next;
  }
}
