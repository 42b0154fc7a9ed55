import type { WorkloadActivity } from '../activity.ts';
import type { Workload } from '../types.ts';

/**
 * The IPC protocol between the activator's primary process and its workers (cluster mode). The
 * primary owns the workload source and the activation trigger; workers own connections and requests.
 */
export type PrimaryMessage =
  | { readonly kind: 'kybernate:snapshot'; readonly workloads: readonly Workload[] }
  | { readonly kind: 'kybernate:activation-done'; readonly id: number; readonly error?: string }
  | { readonly kind: 'kybernate:activity-query'; readonly id: number }
  | { readonly kind: 'kybernate:drain'; readonly graceMs: number };

export type WorkerMessage =
  /** The worker's message handler is installed: send it the current snapshot. */
  | { readonly kind: 'kybernate:hello' }
  | { readonly kind: 'kybernate:listening' }
  | { readonly kind: 'kybernate:activate'; readonly id: number; readonly namespace: string; readonly name: string }
  | { readonly kind: 'kybernate:activity'; readonly id: number; readonly workloads: readonly WorkloadActivity[] };

/** prom-client's aggregator shares the channel, so messages are told apart by their `kind`. */
export function isPrimaryMessage(message: unknown): message is PrimaryMessage {
  return isKybernateMessage(message);
}

export function isWorkerMessage(message: unknown): message is WorkerMessage {
  return isKybernateMessage(message);
}

function isKybernateMessage(message: unknown): boolean {
  return typeof message === 'object' && message !== null && typeof (message as { kind?: unknown }).kind === 'string' && (message as { kind: string }).kind.startsWith('kybernate:');
}
