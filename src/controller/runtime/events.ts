import { randomBytes } from 'node:crypto';
import type { Logger } from '../../lib/log.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { KubeClient, KubeObject } from '../../lib/kube/client.ts';
import { EVENTS } from '../../lib/kube/resources.ts';
import { toMicroTime } from './time.ts';

export type EventType = 'Normal' | 'Warning';

/** User-visible transitions (`kubectl describe` / `kubectl events`). */
export interface EventRecorder {
  record(regarding: KubeObject, type: EventType, reason: string, action: string, note: string): Promise<void>;
}

export const REPORTING_CONTROLLER = 'kybernate.io/controller';

/**
 * Writes events.k8s.io/v1 Events. An event that cannot be written is logged, never thrown: losing an
 * event must not fail the reconcile that caused it.
 */
export class KubeEventRecorder implements EventRecorder {
  constructor(
    private readonly kube: KubeClient,
    private readonly reportingInstance: string,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async record(regarding: KubeObject, type: EventType, reason: string, action: string, note: string): Promise<void> {
    const meta = regarding.metadata ?? {};
    const event = {
      apiVersion: EVENTS.apiVersion,
      kind: EVENTS.kind,
      metadata: { name: `${meta.name}.${randomBytes(8).toString('hex')}`, namespace: meta.namespace },
      eventTime: toMicroTime(this.now()),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.reportingInstance,
      action,
      reason,
      type,
      // The API server caps note at 1 KiB.
      note: note.length > 1024 ? `${note.slice(0, 1021)}...` : note,
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resourceVersion: meta.resourceVersion,
      },
    };
    try {
      await this.kube.create(EVENTS, event);
    } catch (err) {
      this.log.warn({ kind: regarding.kind, namespace: meta.namespace, name: meta.name, reason, err: errorMessage(err) }, 'could not record event');
    }
  }
}
