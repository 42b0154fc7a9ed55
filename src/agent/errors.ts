import { KybernateError } from '../lib/errors.ts';

/** The object to create exists already (a container, snapshot, checkpoint or operation id with another request). */
export class AlreadyExistsError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('AlreadyExists', message, context, options);
  }
}

/** The object is in the wrong state for the request (task not running, checkpoint taken in another netns mode). */
export class FailedPreconditionError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('FailedPrecondition', message, context, options);
  }
}

/** An artifact whose manifest or files do not match what was recorded: never handed to CRIU. */
export class CorruptArtifactError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('CorruptArtifact', message, context, options);
  }
}

/** The image (or its unpacked snapshot) the checkpoint's rootfs diff applies to is not on this node. */
export class BaseImageMissingError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('BaseImageMissing', message, context, options);
  }
}

/** CRIU could not give a restored process its original pid: that pid is taken in the target pid namespace. */
export class PidCollisionError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('PidCollision', message, context, options);
  }
}

/** containerd, runc or CRIU failed for a reason that has no more specific class; the message is containerd's. */
export class ContainerdError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('ContainerdError', message, context, options);
  }
}

/** The call did not finish before its deadline. */
export class DeadlineExceededError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('DeadlineExceeded', message, context, options);
  }
}
