import type { ReportStep } from './registry.ts';

/**
 * The named steps of one operation: `timed` reports the step to the operation (progress) and records
 * its duration; `measure` only records (for parts that run inside a reported step).
 */
export interface StepTimer {
  /** Milliseconds per step, rounded to 0.01 ms; ends up in the manifest or the result. */
  readonly timings: Record<string, number>;
  measure<T>(name: string, fn: () => Promise<T>): Promise<T>;
  timed<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export function createStepTimer(step: ReportStep): StepTimer {
  const timings: Record<string, number> = {};
  const measure = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const startedAt = performance.now();
    try {
      return await fn();
    } finally {
      timings[name] = Math.round((performance.now() - startedAt) * 100) / 100;
    }
  };
  return {
    timings,
    measure,
    timed: (name, fn) => {
      step(name);
      return measure(name, fn);
    },
  };
}
