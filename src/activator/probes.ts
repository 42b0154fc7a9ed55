/**
 * Health checks (kubelet, cloud load balancers) must not wake a suspended workload nor count as
 * activity, or a workload behind a health-checking load balancer would never go idle.
 */
export interface ProbeRules {
  /** A request whose User-Agent starts with one of these is a probe. */
  readonly userAgentPrefixes: readonly string[];
  /** A request whose path (without query) is one of these is a probe. */
  readonly paths: readonly string[];
}

export const DEFAULT_PROBE_RULES: ProbeRules = {
  userAgentPrefixes: ['kube-probe/', 'ELB-HealthChecker/', 'GoogleHC/', 'Amazon-Route53-Health-Check-Service'],
  paths: [],
};

export function isProbe(rules: ProbeRules, userAgent: string | undefined, url: string): boolean {
  if (userAgent !== undefined) {
    for (const prefix of rules.userAgentPrefixes) {
      if (userAgent.startsWith(prefix)) return true;
    }
  }
  if (rules.paths.length === 0) return false;
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  return rules.paths.includes(path);
}
