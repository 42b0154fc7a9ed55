import type { Logger } from '../../lib/log.ts';
import type { NodeAgent } from '../agent/node-agent.ts';
import type { KubeClient } from '../../lib/kube/client.ts';
import type { EventRecorder } from '../runtime/events.ts';

/** What every reconciler gets: a client fenced to the leadership term, events, the agents, a clock. */
export interface ReconcilerDeps {
  kube: KubeClient;
  events: EventRecorder;
  agent: NodeAgent;
  log: Logger;
  now: () => Date;
}
