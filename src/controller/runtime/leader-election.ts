import type { Logger } from '../../lib/log.ts';
import { errorMessage } from '../../lib/errors.ts';
import { getOptional, isAlreadyExists, isConflict, type KubeClient, type KubeObject } from '../../lib/kube/client.ts';
import { LEASES } from '../../lib/kube/resources.ts';
import { decideLease, mustStepDown, releasedLease, sameLease, type LeaseObservation, type LeaseSpec } from './leader-decision.ts';
import { sleep } from '../../lib/scheduler.ts';
import { toMicroTime } from './time.ts';

export interface LeaderElectionConfig {
  namespace: string;
  leaseName: string;
  identity: string;
  /** How long a lease is valid after its last renewal; others wait this long before taking over. */
  leaseDurationMs: number;
  /** A leader that has not renewed for this long stops acting (must be < leaseDurationMs). */
  renewDeadlineMs: number;
  /** Interval of acquire attempts and renewals. */
  retryPeriodMs: number;
}

type Lease = KubeObject & { spec?: LeaseSpec };

const formatTime = (ms: number) => toMicroTime(new Date(ms));

/**
 * Leader election on a coordination.k8s.io/v1 Lease. `run` campaigns until it holds the lease, then runs
 * `lead(signal)` while renewing; when renewal fails past renewDeadline the signal aborts (stop acting)
 * and it campaigns again. On shutdown a leader releases the lease so a standby takes over at once.
 */
export class LeaderElector {
  private observation: LeaseObservation | undefined;
  private leading = false;

  constructor(
    private readonly kube: KubeClient,
    private readonly config: LeaderElectionConfig,
    private readonly log: Logger,
  ) {
    if (config.renewDeadlineMs >= config.leaseDurationMs) {
      throw new Error('leader election: renewDeadline must be shorter than leaseDuration');
    }
  }

  isLeader(): boolean {
    return this.leading;
  }

  async run(signal: AbortSignal, lead: (leadership: AbortSignal) => Promise<void>): Promise<void> {
    const log = this.log.child({ lease: `${this.config.namespace}/${this.config.leaseName}`, identity: this.config.identity });
    while (!signal.aborted) {
      if ((await this.tryAcquireOrRenew(log)) !== 'holding') {
        await sleep(this.config.retryPeriodMs, signal);
        continue;
      }
      log.info('became leader');
      this.leading = true;
      const leadership = new AbortController();
      const leadingDone = lead(leadership.signal).catch((err: unknown) => log.error({ err: errorMessage(err) }, 'leader work failed'));
      let lastRenewedAtMs = Date.now();
      while (!signal.aborted) {
        await sleep(this.config.retryPeriodMs, signal);
        if (signal.aborted) break;
        const outcome = await this.tryAcquireOrRenew(log);
        if (outcome === 'holding') lastRenewedAtMs = Date.now();
        else if (outcome === 'taken') {
          log.warn('lost leadership: another instance holds the lease; stopping');
          break;
        } else if (mustStepDown(lastRenewedAtMs, this.config.renewDeadlineMs, Date.now())) {
          log.warn({ sinceRenewMs: Date.now() - lastRenewedAtMs }, 'lost leadership: could not renew the lease in time; stopping');
          break;
        }
      }
      this.leading = false;
      leadership.abort();
      await leadingDone;
      if (signal.aborted) await this.release(log);
    }
  }

  /** holding: this instance holds the lease now; taken: another does; failed: unknown (API error, lost race). */
  private async tryAcquireOrRenew(log: Logger): Promise<'holding' | 'taken' | 'failed'> {
    const { namespace, leaseName, identity, leaseDurationMs } = this.config;
    try {
      const existing = await getOptional<Lease>(this.kube, LEASES, namespace, leaseName);
      const nowMs = Date.now();
      if (!this.observation || !sameLease(this.observation.spec, existing?.spec)) {
        this.observation = { spec: existing?.spec ?? {}, observedAtMs: nowMs };
      }
      const decision = decideLease({ identity, current: existing?.spec, observation: this.observation, leaseDurationMs, nowMs, formatTime });
      if (decision.action === 'wait') {
        log.debug({ holder: decision.holder, expiresInMs: decision.expiresInMs }, 'lease held by another instance');
        return 'taken';
      }
      const written = existing
        ? await this.kube.replace<Lease>(LEASES, { ...existing, spec: decision.spec })
        : await this.kube.create<Lease>(LEASES, { apiVersion: LEASES.apiVersion, kind: LEASES.kind, metadata: { name: leaseName, namespace }, spec: decision.spec });
      this.observation = { spec: written.spec ?? decision.spec, observedAtMs: nowMs };
      return 'holding';
    } catch (err) {
      // Another candidate wrote first: not an error, it won this round.
      if (isConflict(err) || isAlreadyExists(err)) return 'failed';
      log.warn({ err: errorMessage(err) }, 'lease acquire/renew failed');
      return 'failed';
    }
  }

  private async release(log: Logger): Promise<void> {
    try {
      const lease = await this.kube.get<Lease>(LEASES, this.config.namespace, this.config.leaseName);
      if (lease.spec?.holderIdentity !== this.config.identity) return;
      await this.kube.replace<Lease>(LEASES, { ...lease, spec: releasedLease(lease.spec, Date.now(), formatTime) });
      log.info('released the lease');
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'could not release the lease; others take over after it expires');
    }
  }
}
