import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * One structured logger per process. Components derive children that carry their ids
 * (`log.child({ workload, pod, container })`) so every line can be traced to its object.
 */
export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  return pino({
    level: process.env.KYBERNATE_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info'),
    base: { component },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...options,
  });
}
