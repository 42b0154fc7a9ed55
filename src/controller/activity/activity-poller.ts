import type { Logger } from '../../lib/log.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Runnable } from '../runtime/manager.ts';
import { sleep } from '../../lib/scheduler.ts';
import type { ActivityReport, ActivitySource } from './activity-source.ts';

/**
 * Reads all activators once per interval (not once per workload) and then asks for every workload to
 * be reconciled against the fresh report. Until the first read, `latest()` is undefined: activity is
 * unknown and the idle policy suspends nothing.
 */
export class ActivityPoller implements Runnable {
  private report: ActivityReport | undefined;

  constructor(
    private readonly source: ActivitySource,
    private readonly intervalMs: number,
    private readonly onReport: () => void,
    private readonly log: Logger,
  ) {}

  latest(): ActivityReport | undefined {
    return this.report;
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        this.report = await this.source.read(signal);
        this.onReport();
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'reading activity failed');
      }
      await sleep(this.intervalMs, signal);
    }
  }
}
