import { describe, expect, it } from 'vitest';
import { buildRoutingTable, hostPatternProblem, normalizeHost, normalizePathPrefix } from '../../src/activator/routing.ts';

function table(specs: { id: string; hosts: string[]; pathPrefix?: string }[]) {
  return buildRoutingTable(specs.map((spec) => ({ hosts: spec.hosts, pathPrefix: spec.pathPrefix ?? '/', target: spec.id, id: spec.id })));
}

describe('routing table', () => {
  it('normalizes hosts: case, port, trailing dot, IPv6', () => {
    expect(normalizeHost('API.Example.COM.:8443')).toBe('api.example.com');
    expect(normalizeHost('[::1]:8080')).toBe('[::1]');
    expect(normalizePathPrefix('api/')).toBe('/api');
    expect(normalizePathPrefix('')).toBe('/');
  });

  it('matches exact hosts before wildcards, and longer wildcard suffixes first', () => {
    const { table: routes } = table([
      { id: 'exact', hosts: ['a.example.com'] },
      { id: 'wide', hosts: ['*.example.com'] },
      { id: 'narrow', hosts: ['*.team.example.com'] },
    ]);
    expect(routes.match('a.example.com', '/')).toBe('exact');
    expect(routes.match('b.example.com', '/')).toBe('wide');
    expect(routes.match('x.team.example.com', '/')).toBe('narrow');
    expect(routes.match('y.x.team.example.com', '/')).toBe('narrow');
    expect(routes.match('example.com', '/')).toBeUndefined();
    expect(routes.match(undefined, '/')).toBeUndefined();
  });

  it('picks the longest path prefix on whole segments', () => {
    const { table: routes } = table([
      { id: 'root', hosts: ['h'] },
      { id: 'api', hosts: ['h'], pathPrefix: '/api' },
      { id: 'v2', hosts: ['h'], pathPrefix: '/api/v2/' },
    ]);
    expect(routes.match('h', '/api')).toBe('api');
    expect(routes.match('h', '/api?x=1')).toBe('api');
    expect(routes.match('h', '/api/v1/x')).toBe('api');
    expect(routes.match('h', '/api/v2/x')).toBe('v2');
    expect(routes.match('h', '/apix')).toBe('root');
  });

  it('falls back from an exact host without a matching prefix to a wildcard', () => {
    const { table: routes } = table([
      { id: 'exact-api', hosts: ['a.example.com'], pathPrefix: '/api' },
      { id: 'wild', hosts: ['*.example.com'] },
    ]);
    expect(routes.match('a.example.com', '/api/x')).toBe('exact-api');
    expect(routes.match('a.example.com', '/other')).toBe('wild');
  });

  it('reports a host and prefix claimed twice and keeps the first claim', () => {
    const built = table([
      { id: 'first', hosts: ['h'] },
      { id: 'second', hosts: ['h', 'other'] },
    ]);
    expect(built.conflicts).toEqual(['second: host "h" path "/" is already routed to first']);
    expect(built.table.match('h', '/')).toBe('first');
    expect(built.table.match('other', '/')).toBe('second');
  });

  it('rejects malformed host patterns', () => {
    expect(hostPatternProblem('*.example.com')).toBeUndefined();
    expect(hostPatternProblem('a.*.example.com')).toContain('wildcard');
    expect(hostPatternProblem('*')).toContain('wildcard');
    expect(hostPatternProblem('a b')).toContain('whitespace');
  });
});
