/**
 * The Kubernetes source and trigger against a real kube-apiserver + etcd (tests/harness/kube): a
 * request to a suspended workload patches the wake annotation, and a pod turning Ready (status
 * written the way the kubelet would) releases it. No kubelet runs: the pod's IP is the loopback
 * backend's, so the released request really reaches it.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { parse } from 'yaml';
import { ACTIVATION_REQUESTED_AT_ANNOTATION, WORKLOAD_LABEL, type KybernateWorkload } from '../../src/api/index.ts';
import { Activator } from '../../src/activator/activator.ts';
import { DEFAULT_PROBE_RULES } from '../../src/activator/probes.ts';
import { KubeActivationTrigger, KubeWorkloadSource } from '../../src/activator/sources/kube-source.ts';
import { HttpKubeClient, type KubeClient, type KubeObject } from '../../src/lib/kube/client.ts';
import { kubeconfigConnection } from '../../src/lib/kube/kubeconfig.ts';
import { PODS, WORKLOADS, type ResourceType } from '../../src/lib/kube/resources.ts';
import { createLogger } from '../../src/lib/log.ts';
import { startControlPlane, type ControlPlane } from '../harness/kube/index.ts';
import { startBackend, waitFor, type Backend } from './harness.ts';

const CRDS: ResourceType = { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', plural: 'customresourcedefinitions', namespaced: false };
const NAMESPACES: ResourceType = { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false };
const CRD_DIR = fileURLToPath(new URL('../../deploy/crds', import.meta.url));
const NAMESPACE = 'activator-test';

let plane: ControlPlane | undefined;
let kube: KubeClient;
let backend: Backend;
let activator: Activator;
let url: string;

async function eventually<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  plane = await startControlPlane();
  kube = new HttpKubeClient(kubeconfigConnection(plane.kubeconfigPath));
  for (const file of (await readdir(CRD_DIR)).filter((name) => name.endsWith('.yaml'))) {
    await kube.create(CRDS, parse(await readFile(join(CRD_DIR, file), 'utf8')) as KubeObject);
  }
  await eventually('the workload CRD is served', () => kube.list(WORKLOADS, 'default').then((list) => list));
  await kube.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  backend = await startBackend((req, res) => res.end(`pod answered ${req.url}`));
  const backendPort = Number(backend.address.split(':')[1]);
  const workload: KybernateWorkload = {
    apiVersion: 'kybernate.io/v1alpha1',
    kind: 'KybernateWorkload',
    metadata: { name: 'llm', namespace: NAMESPACE },
    spec: {
      template: { spec: { containers: [{ name: 'server', image: 'example.invalid/llm:1' }] } },
      activator: { hosts: ['llm.kube.test'], port: backendPort, activationTimeout: '30s' },
    } as unknown as KybernateWorkload['spec'],
  };
  await kube.create(WORKLOADS, workload);

  const log = createLogger('activator-kube-test');
  activator = new Activator({
    source: new KubeWorkloadSource(kube, log),
    trigger: new KubeActivationTrigger(kube),
    log,
    probes: DEFAULT_PROBE_RULES,
    pools: { connectionsPerEndpoint: 16, keepAliveTimeoutMs: 10_000 },
  });
  await activator.start();
  await new Promise<void>((resolve) => activator.server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(activator.server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await activator?.drain(1_000);
  await activator?.close();
  await backend?.close();
  await plane?.stop();
});

describe('Kubernetes workload source and activation trigger', () => {
  it('routes from the KybernateWorkload, wakes it by annotation, and releases on pod readiness', async () => {
    expect(activator.activity().map((workload) => `${workload.namespace}/${workload.name}`)).toEqual([`${NAMESPACE}/llm`]);
    const held = request(`${url}/v1/generate`, { headers: { host: 'llm.kube.test' } });
    await waitFor('request held', () => activator.activity()[0]?.queued === 1);

    const annotated = await eventually('the wake annotation', async () => {
      const current = await kube.get<KybernateWorkload>(WORKLOADS, NAMESPACE, 'llm');
      return current.metadata.annotations?.[ACTIVATION_REQUESTED_AT_ANNOTATION];
    });
    expect(Date.parse(annotated)).toBeGreaterThan(Date.now() - 60_000);

    // What the controller and the kubelet would do: a labelled pod that turns Ready on the backend's address.
    await kube.create(PODS, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'llm-0', namespace: NAMESPACE, labels: { [WORKLOAD_LABEL]: 'llm' } },
      spec: { containers: [{ name: 'server', image: 'example.invalid/llm:1' }] },
    } as KubeObject);
    expect(activator.activity()[0]?.queued).toBe(1);
    await kube.mergePatch(PODS, NAMESPACE, 'llm-0', {
      status: { phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }], conditions: [{ type: 'Ready', status: 'True' }] },
    }, 'status');

    const response = await held;
    expect(response.statusCode).toBe(200);
    expect(await response.body.text()).toBe('pod answered /v1/generate');
    expect(activator.activity()[0]).toMatchObject({ readyEndpoints: 1, queued: 0 });
  });

  it('stops routing to a pod that is no longer Ready', async () => {
    await kube.mergePatch(PODS, NAMESPACE, 'llm-0', { status: { conditions: [{ type: 'Ready', status: 'False' }] } }, 'status');
    await waitFor('pod dropped', () => activator.activity()[0]?.readyEndpoints === 0);
    expect(backend.seen).toHaveLength(1);
  });
});
