/**
 * Host + path routing, pure. Exact hosts win over wildcards, a longer wildcard suffix over a shorter
 * one, and within a host the longest matching path prefix wins.
 */

export interface RouteSpec<T> {
  readonly hosts: readonly string[];
  readonly pathPrefix: string;
  readonly target: T;
  /** Names the target in conflict messages. */
  readonly id: string;
}

interface PrefixRoute<T> {
  readonly prefix: string;
  readonly target: T;
  readonly id: string;
}

export interface RoutingTable<T> {
  match(hostHeader: string | undefined, path: string): T | undefined;
}

export interface BuiltRoutingTable<T> {
  readonly table: RoutingTable<T>;
  /** Routes dropped because another target already claimed the same host and prefix. */
  readonly conflicts: readonly string[];
}

/** Lower case, no port, no trailing dot: "API.Example.com.:8080" -> "api.example.com". */
export function normalizeHost(hostHeader: string): string {
  let host = hostHeader.trim().toLowerCase();
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    return close === -1 ? host : host.slice(0, close + 1);
  }
  const colon = host.indexOf(':');
  if (colon !== -1) host = host.slice(0, colon);
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

export function normalizePathPrefix(prefix: string): string {
  if (prefix === '' || prefix === '/') return '/';
  const withSlash = prefix.startsWith('/') ? prefix : `/${prefix}`;
  return withSlash.endsWith('/') ? withSlash.slice(0, -1) : withSlash;
}

function pathMatches(prefix: string, path: string): boolean {
  if (prefix === '/') return true;
  if (!path.startsWith(prefix)) return false;
  const next = path.charCodeAt(prefix.length);
  // Whole segments only: "/api" matches "/api", "/api/x" and "/api?q" but not "/apix".
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */;
}

class HostPathTable<T> implements RoutingTable<T> {
  constructor(
    private readonly exact: ReadonlyMap<string, readonly PrefixRoute<T>[]>,
    private readonly wildcard: ReadonlyMap<string, readonly PrefixRoute<T>[]>,
  ) {}

  match(hostHeader: string | undefined, path: string): T | undefined {
    if (hostHeader === undefined) return undefined;
    const host = normalizeHost(hostHeader);
    const exactHit = matchPrefix(this.exact.get(host), path);
    if (exactHit !== undefined) return exactHit;
    // Try suffixes from longest to shortest: for "a.b.example.com" first ".b.example.com", then ".example.com".
    for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) {
      const hit = matchPrefix(this.wildcard.get(host.slice(dot)), path);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }
}

function matchPrefix<T>(routes: readonly PrefixRoute<T>[] | undefined, path: string): T | undefined {
  if (routes === undefined) return undefined;
  for (const route of routes) {
    if (pathMatches(route.prefix, path)) return route.target;
  }
  return undefined;
}

export function buildRoutingTable<T>(specs: readonly RouteSpec<T>[]): BuiltRoutingTable<T> {
  const exact = new Map<string, PrefixRoute<T>[]>();
  const wildcard = new Map<string, PrefixRoute<T>[]>();
  const conflicts: string[] = [];
  for (const spec of specs) {
    const prefix = normalizePathPrefix(spec.pathPrefix);
    for (const rawHost of spec.hosts) {
      const host = normalizeHost(rawHost);
      const isWildcard = host.startsWith('*.');
      const map = isWildcard ? wildcard : exact;
      const key = isWildcard ? host.slice(1) : host;
      const routes = map.get(key) ?? [];
      const taken = routes.find((route) => route.prefix === prefix);
      if (taken !== undefined) {
        if (taken.id !== spec.id) {
          conflicts.push(`${spec.id}: host "${rawHost}" path "${prefix}" is already routed to ${taken.id}`);
        }
        continue;
      }
      routes.push({ prefix, target: spec.target, id: spec.id });
      map.set(key, routes);
    }
  }
  for (const routes of [...exact.values(), ...wildcard.values()]) {
    routes.sort((a, b) => b.prefix.length - a.prefix.length);
  }
  return { table: new HostPathTable(exact, wildcard), conflicts };
}

/** Why a host pattern is unusable, or undefined when it is fine. */
export function hostPatternProblem(pattern: string): string | undefined {
  const host = normalizeHost(pattern);
  if (host === '' || host === '*.') return `host "${pattern}" is empty`;
  const rest = host.startsWith('*.') ? host.slice(2) : host;
  if (rest.includes('*')) return `host "${pattern}": a wildcard is only allowed as the whole first label ("*.example.com")`;
  if (/[\s/]/.test(rest)) return `host "${pattern}" contains whitespace or "/"`;
  return undefined;
}
