import { KybernateError } from '../../../src/lib/errors.ts';

/** The harness cannot run: a binary is missing, a daemon did not start or died. The message says what to do. */
export class HarnessError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('HarnessError', message, context, options);
  }
}
