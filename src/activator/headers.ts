/** Header rewriting between client and upstream (RFC 9110 section 7.6.1), pure. */

const HOP_BY_HOP = new Set([
  'connection',
  // Not hop-by-hop by the RFC, but Node's server already answered "100 Continue" to the client, and
  // undici refuses to send the header anyway.
  'expect',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export interface ClientInfo {
  readonly remoteAddress: string;
  readonly protocol: 'http' | 'https';
}

export interface UpstreamRequestHeaders {
  /** Flat [name, value, name, value, ...] as undici takes it. */
  readonly headers: string[];
  readonly hasBody: boolean;
}

/** Names listed in a Connection header are hop-by-hop for this message too. */
function connectionTokens(value: string): string[] {
  return value.split(',').map((token) => token.trim().toLowerCase()).filter((token) => token !== '');
}

/**
 * Request headers for the upstream from Node's rawHeaders: hop-by-hop ones dropped, X-Forwarded-For
 * appended to, X-Forwarded-Proto/Host set unless a proxy in front of us already set them. `keep` names
 * hop-by-hop headers to pass anyway (an Upgrade handshake needs Connection and Upgrade).
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  client: ClientInfo,
  keep: ReadonlySet<string> = new Set(),
): UpstreamRequestHeaders {
  const headers: string[] = [];
  let dropped: string[] | undefined;
  let forwardedFor: string | undefined;
  let host: string | undefined;
  let hasProto = false;
  let hasForwardedHost = false;
  let hasBody = false;
  for (let index = 0; index < rawHeaders.length; index += 2) {
    const name = rawHeaders[index]!;
    const value = rawHeaders[index + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'connection') dropped = connectionTokens(value);
    if (lower === 'transfer-encoding' || (lower === 'content-length' && value !== '0')) hasBody = true;
    if (HOP_BY_HOP.has(lower) && !keep.has(lower)) continue;
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      continue;
    }
    if (lower === 'host') host = value;
    else if (lower === 'x-forwarded-proto') hasProto = true;
    else if (lower === 'x-forwarded-host') hasForwardedHost = true;
    headers.push(name, value);
  }
  const filtered = dropped === undefined ? headers : withoutNames(headers, dropped, keep);
  filtered.push('x-forwarded-for', forwardedFor === undefined ? client.remoteAddress : `${forwardedFor}, ${client.remoteAddress}`);
  if (!hasProto) filtered.push('x-forwarded-proto', client.protocol);
  if (!hasForwardedHost && host !== undefined) filtered.push('x-forwarded-host', host);
  return { headers: filtered, hasBody };
}

function withoutNames(flat: string[], names: readonly string[], keep: ReadonlySet<string>): string[] {
  const drop = new Set(names.filter((name) => !keep.has(name)));
  if (drop.size === 0) return flat;
  const result: string[] = [];
  for (let index = 0; index < flat.length; index += 2) {
    if (!drop.has(flat[index]!.toLowerCase())) result.push(flat[index]!, flat[index + 1]!);
  }
  return result;
}

/** Drops hop-by-hop headers from an upstream response (undici hands them over lower-cased). */
export function stripResponseHopByHop(headers: Record<string, string | string[] | undefined>): void {
  const connection = headers.connection;
  if (connection !== undefined) {
    for (const token of connectionTokens(Array.isArray(connection) ? connection.join(',') : connection)) {
      delete headers[token];
    }
  }
  for (const name of HOP_BY_HOP) {
    if (name in headers) delete headers[name];
  }
}
