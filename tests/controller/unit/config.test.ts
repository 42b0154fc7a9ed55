import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { activatorUrls } from '../../../src/controller/activity/activator-directory.ts';
import { loadConfig } from '../../../src/controller/config.ts';
import { InvalidInputError } from '../../../src/lib/errors.ts';

describe('loadConfig', () => {
  it('has working defaults', () => {
    const config = loadConfig({ POD_NAME: 'controller-0', POD_NAMESPACE: 'kybernate' });
    expect(config).toMatchObject({
      watchNamespace: undefined,
      identity: 'controller-0',
      leaderElection: { enabled: true, namespace: 'kybernate', leaseName: 'kybernate-controller', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 },
      workers: 4,
      activatorUrls: [],
      activityPollIntervalMs: 5_000,
      operationTimeoutMs: 600_000,
      agent: { addressTemplate: '{node}:7443' },
      gpu: { runtimeClassName: 'nvidia', resourceName: 'nvidia.com/gpu' },
    });
  });

  it('reads every variable', () => {
    const config = loadConfig({
      KYBERNATE_WATCH_NAMESPACE: 'ml',
      KYBERNATE_IDENTITY: 'me',
      KYBERNATE_LEADER_ELECTION: 'false',
      KYBERNATE_WORKERS: '8',
      KYBERNATE_ACTIVATOR_URLS: 'http://10.0.0.1:9090, http://10.0.0.2:9090',
      KYBERNATE_ACTIVITY_POLL_INTERVAL: '1s',
      KYBERNATE_OPERATION_TIMEOUT: '2m',
      KYBERNATE_AGENT_ADDRESS: 'agent.{node}.svc:7443',
      KYBERNATE_GPU_RUNTIME_CLASS: 'nvidia-cdi',
      KYBERNATE_GPU_RESOURCE: 'nvidia.com/mig-1g.10gb',
    });
    expect(config).toMatchObject({
      watchNamespace: 'ml',
      identity: 'me',
      leaderElection: { enabled: false },
      workers: 8,
      activatorUrls: ['http://10.0.0.1:9090', 'http://10.0.0.2:9090'],
      activityPollIntervalMs: 1_000,
      operationTimeoutMs: 120_000,
      agent: { addressTemplate: 'agent.{node}.svc:7443' },
      gpu: { runtimeClassName: 'nvidia-cdi', resourceName: 'nvidia.com/mig-1g.10gb' },
    });
  });

  it('an empty KYBERNATE_GPU_RUNTIME_CLASS sets no runtime class (the node default runtime has the GPU hook)', () => {
    expect(loadConfig({ KYBERNATE_GPU_RUNTIME_CLASS: '' }).gpu).toEqual({ runtimeClassName: undefined, resourceName: 'nvidia.com/gpu' });
  });

  it.each([
    [{ KYBERNATE_WORKERS: '0' }, 'KYBERNATE_WORKERS'],
    [{ KYBERNATE_WORKERS: 'many' }, 'KYBERNATE_WORKERS'],
    [{ KYBERNATE_ACTIVATOR_URLS: 'ftp://x' }, 'KYBERNATE_ACTIVATOR_URLS: "ftp://x"'],
    [{ KYBERNATE_ACTIVITY_POLL_INTERVAL: '5' }, 'KYBERNATE_ACTIVITY_POLL_INTERVAL: invalid duration'],
    [{ KYBERNATE_AGENT_ADDRESS: 'agent:7443' }, 'must contain {node}'],
    [{ KYBERNATE_RENEW_DEADLINE: '20s' }, 'RETRY_PERIOD < KYBERNATE_RENEW_DEADLINE < KYBERNATE_LEASE_DURATION'],
    [{ KYBERNATE_GPU_RUNTIME_CLASS: 'Nvidia' }, 'KYBERNATE_GPU_RUNTIME_CLASS: "Nvidia" is not a RuntimeClass name'],
    [{ KYBERNATE_GPU_RESOURCE: 'gpu' }, 'KYBERNATE_GPU_RESOURCE: "gpu" is not an extended resource name'],
  ])('rejects %j naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(InvalidInputError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe('activator discovery', () => {
  it('parses KYBERNATE_ACTIVATOR_PODS and the admin port', () => {
    expect(loadConfig({ KYBERNATE_ACTIVATOR_PODS: 'kybernate-system/app=activator,tier=edge' }).activatorPods).toEqual({
      namespace: 'kybernate-system',
      labelSelector: 'app=activator,tier=edge',
      adminPort: 9090,
    });
    expect(loadConfig({ KYBERNATE_ACTIVATOR_PODS: 'ns/app=a', KYBERNATE_ACTIVATOR_ADMIN_PORT: '8081' }).activatorPods?.adminPort).toBe(8081);
    expect(() => loadConfig({ KYBERNATE_ACTIVATOR_PODS: 'app=activator' })).toThrow('expected "<namespace>/<label selector>"');
    expect(() => loadConfig({ KYBERNATE_ACTIVATOR_PODS: 'ns/app=a', KYBERNATE_ACTIVATOR_ADMIN_PORT: '0' })).toThrow('not a port number');
  });

  it('lists every activator pod with an IP that has not finished, ready or not', () => {
    const pod = (name: string, status: V1Pod['status'], deleting = false): V1Pod => ({ metadata: { name, ...(deleting ? { deletionTimestamp: new Date() } : {}) }, status });
    const urls = activatorUrls(
      [
        pod('b', { phase: 'Running', podIP: '10.0.0.2' }),
        pod('draining', { phase: 'Running', podIP: '10.0.0.3', conditions: [{ type: 'Ready', status: 'False' }] }),
        pod('a', { phase: 'Running', podIP: '10.0.0.1' }),
        pod('v6', { phase: 'Running', podIP: 'fd00::7' }),
        pod('pending', { phase: 'Pending' }),
        pod('done', { phase: 'Succeeded', podIP: '10.0.0.9' }),
        pod('gone', { phase: 'Running', podIP: '10.0.0.8' }, true),
      ],
      9090,
    );
    expect(urls).toEqual(['http://10.0.0.1:9090', 'http://10.0.0.2:9090', 'http://10.0.0.3:9090', 'http://[fd00::7]:9090']);
  });
});
