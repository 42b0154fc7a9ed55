/** A pod address the activator may forward to: only ever taken from a registered workload's ready pods. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
  /** The pod behind the address, for logs (the static source names it after the address). */
  readonly pod: string;
}

/** One workload as the activator needs it: routing, limits and the pods that are ready now. */
export interface Workload {
  readonly namespace: string;
  readonly name: string;
  /** Exact host names or `*.suffix` wildcards (one or more labels in front of the suffix). */
  readonly hosts: readonly string[];
  /** Requests match when their path equals the prefix or continues it after a `/`; "/" matches all. */
  readonly pathPrefix: string;
  /** How long a held request may wait for a ready pod before it gets a 504. */
  readonly activationTimeoutMs: number;
  /** Most requests held at once (waiting for activation or for a free slot); beyond it: 503. */
  readonly queueSize: number;
  /** Most requests in flight per pod; 0 means unlimited. */
  readonly containerConcurrency: number;
  /** Ready pods. Empty means suspended (or not ready yet): requests are held and activation requested. */
  readonly endpoints: readonly Endpoint[];
  /** The controller's phase (`Running`, `Suspended`, ...), for logs and the activity endpoint only. */
  readonly phase: string;
}

export function workloadKey(workload: { namespace: string; name: string }): string {
  return `${workload.namespace}/${workload.name}`;
}

export function endpointKey(endpoint: Endpoint): string {
  return `${endpoint.host}:${endpoint.port}`;
}

/**
 * Where routing and readiness come from. A source delivers complete snapshots: the first one before
 * `start` resolves, later ones whenever anything changes.
 */
export interface WorkloadSource {
  start(onSnapshot: (workloads: readonly Workload[]) => void): Promise<void>;
  stop(): Promise<void>;
}

/** Asks for a suspended workload to be restored. Must be idempotent: replicas may ask concurrently. */
export interface ActivationTrigger {
  requestActivation(workload: { namespace: string; name: string }): Promise<void>;
}

export const WORKLOAD_DEFAULTS = {
  pathPrefix: '/',
  activationTimeoutMs: 60_000,
  queueSize: 10_000,
  containerConcurrency: 0,
} as const;
