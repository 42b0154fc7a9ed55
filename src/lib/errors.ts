/**
 * Base of every error Kybernate throws on purpose. `code` is stable and machine-readable (used in
 * status conditions, HTTP bodies and gRPC details); `context` names the objects involved so a log
 * line or a condition message says which workload/pod/container failed.
 */
export class KybernateError extends Error {
  readonly code: string;
  readonly context: Record<string, unknown>;

  constructor(code: string, message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** Input that can never succeed as given (bad spec, unknown reference). Retrying does not help. */
export class InvalidInputError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('InvalidInput', message, context, options);
  }
}

/** A referenced object does not exist. */
export class NotFoundError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('NotFound', message, context, options);
  }
}

/** A dependency (containerd, the API server, the GPU driver) is unavailable; retry later. */
export class UnavailableError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('Unavailable', message, context, options);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
