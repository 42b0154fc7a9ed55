/** The two workload sources' logic: static config parsing and the Kubernetes translation (pure). */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KybernateWorkload } from '../../src/api/index.ts';
import { activationPatch, isPodReady, translateCluster } from '../../src/activator/sources/kube-translate.ts';
import { StaticWorkloadSource, parseEndpoint } from '../../src/activator/sources/static-source.ts';
import type { Workload } from '../../src/activator/types.ts';
import { InvalidInputError } from '../../src/lib/errors.ts';

function workload(name: string, activator: Record<string, unknown>, phase?: string): KybernateWorkload {
  return {
    apiVersion: 'kybernate.io/v1alpha1',
    kind: 'KybernateWorkload',
    metadata: { name, namespace: 'ml' },
    spec: { activator } as unknown as KybernateWorkload['spec'],
    ...(phase === undefined ? {} : { status: { phase } as KybernateWorkload['status'] }),
  };
}

function pod(name: string, options: { workload?: string; ip?: string; ready?: boolean; deleting?: boolean; namespace?: string }): V1Pod {
  return {
    metadata: {
      name,
      namespace: options.namespace ?? 'ml',
      labels: options.workload === undefined ? {} : { 'kybernate.io/workload': options.workload },
      ...(options.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    status: {
      ...(options.ip === undefined ? {} : { podIP: options.ip }),
      conditions: [{ type: 'Ready', status: options.ready === false ? 'False' : 'True' }],
    },
  };
}

describe('Kubernetes translation', () => {
  it('joins workloads with their ready, labelled pods on spec.activator.port', () => {
    const { workloads, problems } = translateCluster(
      [workload('llm', { hosts: ['llm.example.com'], pathPrefix: '/v1', port: 8000, activationTimeout: '2m', queueSize: 50, containerConcurrency: 4 }, 'Running')],
      [
        pod('llm-b', { workload: 'llm', ip: '10.0.0.2' }),
        pod('llm-a', { workload: 'llm', ip: '10.0.0.1' }),
        pod('llm-starting', { workload: 'llm', ip: '10.0.0.3', ready: false }),
        pod('llm-terminating', { workload: 'llm', ip: '10.0.0.4', deleting: true }),
        pod('llm-no-ip', { workload: 'llm' }),
        pod('llm-other-namespace', { workload: 'llm', ip: '10.0.0.5', namespace: 'other' }),
        pod('unrelated', { ip: '10.0.0.6' }),
      ],
    );
    expect(problems).toEqual([]);
    expect(workloads).toEqual<Workload[]>([
      {
        namespace: 'ml',
        name: 'llm',
        hosts: ['llm.example.com'],
        pathPrefix: '/v1',
        activationTimeoutMs: 120_000,
        queueSize: 50,
        containerConcurrency: 4,
        endpoints: [
          { host: '10.0.0.1', port: 8000, pod: 'llm-a' },
          { host: '10.0.0.2', port: 8000, pod: 'llm-b' },
        ],
        phase: 'Running',
      },
    ]);
  });

  it('a suspended workload has no endpoints; defaults fill what the spec leaves out', () => {
    const { workloads } = translateCluster([workload('idle', { hosts: ['*.idle.test'] }, 'Suspended')], []);
    expect(workloads[0]).toMatchObject({ endpoints: [], phase: 'Suspended', pathPrefix: '/', queueSize: 10_000, containerConcurrency: 0, activationTimeoutMs: 60_000 });
  });

  it('skips workloads without hosts, and reports bad hosts and durations', () => {
    const { workloads, problems } = translateCluster(
      [workload('no-hosts', {}), workload('bad-host', { hosts: ['a.*.test'] }), workload('bad-timeout', { hosts: ['t.test'], activationTimeout: 'soon' })],
      [],
    );
    expect(workloads).toEqual([]);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toContain('workload ml/bad-host');
    expect(problems[1]).toContain('ml/bad-timeout: spec.activator.activationTimeout: invalid duration "soon"');
  });

  it('judges pod readiness by the Ready condition, pod IP and deletion', () => {
    expect(isPodReady(pod('p', { ip: '10.0.0.1' }))).toBe(true);
    expect(isPodReady(pod('p', { ip: '10.0.0.1', ready: false }))).toBe(false);
    expect(isPodReady(pod('p', {}))).toBe(false);
    expect(isPodReady(pod('p', { ip: '10.0.0.1', deleting: true }))).toBe(false);
  });

  it('asks for activation with a merge patch of the annotation only', () => {
    expect(activationPatch(new Date('2026-11-27T20:00:00Z'))).toEqual({
      metadata: { annotations: { 'kybernate.io/activation-requested-at': '2026-11-27T20:00:00.000Z' } },
    });
  });
});

describe('static source', () => {
  it('parses a config and applies defaults; suspended workloads have no endpoints', async () => {
    const source = new StaticWorkloadSource({
      workloads: [{ name: 'a', hosts: ['a.test'], endpoints: ['127.0.0.1:8080', '[::1]:9000'], suspended: true, activationTimeout: '5s' }],
    });
    const snapshots: (readonly Workload[])[] = [];
    await source.start((workloads) => snapshots.push(workloads));
    expect(snapshots[0]![0]).toMatchObject({ namespace: 'default', endpoints: [], phase: 'Suspended', activationTimeoutMs: 5_000, queueSize: 10_000 });
    source.setSuspended('default/a', false);
    expect(snapshots[1]![0]!.endpoints).toEqual([
      { host: '127.0.0.1', port: 8080, pod: '127.0.0.1:8080' },
      { host: '::1', port: 9000, pod: '[::1]:9000' },
    ]);
    source.setEndpoints('default/a', ['127.0.0.1:8081']);
    expect(snapshots[2]![0]!.endpoints).toEqual([{ host: '127.0.0.1', port: 8081, pod: '127.0.0.1:8081' }]);
  });

  it('rejects bad config with a clear error and keeps the previous one', async () => {
    expect(() => new StaticWorkloadSource({ workloads: [{ name: 'a' }] })).toThrow(/invalid activator config: \/workloads\/0/);
    expect(() => new StaticWorkloadSource({ workloads: [{ name: 'a', hosts: ['a'], queueSize: 0 }] })).toThrow(InvalidInputError);
    expect(() => parseEndpoint('localhost', 'here')).toThrow('here: endpoint "localhost" is not "host:port"');
    const source = new StaticWorkloadSource({ workloads: [{ name: 'a', hosts: ['a.test'] }] });
    expect(() => source.replace({ workloads: [{ name: 'a', hosts: ['a.test'] }, { name: 'a', hosts: ['b.test'] }] })).toThrow('workload default/a is listed twice');
    expect(source.snapshot().map((w) => w.hosts)).toEqual([['a.test']]);
    expect(() => source.setSuspended('default/missing', true)).toThrow('no workload default/missing');
  });
});
