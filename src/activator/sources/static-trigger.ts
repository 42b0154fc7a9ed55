import type { ActivationTrigger } from '../types.ts';
import { workloadKey } from '../types.ts';
import type { StaticWorkloadSource } from './static-source.ts';

/**
 * For static-config demos only, where no controller exists: "activating" marks the workload as not
 * suspended, so its configured endpoints (already running) become ready and held requests go out.
 */
export class StaticResumeTrigger implements ActivationTrigger {
  constructor(private readonly source: StaticWorkloadSource) {}

  async requestActivation(workload: { namespace: string; name: string }): Promise<void> {
    this.source.setSuspended(workloadKey(workload), false);
  }
}
