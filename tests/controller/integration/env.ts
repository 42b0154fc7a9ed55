import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { findCondition, type KybernateWorkload } from '../../../src/api/index.ts';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { KIND_DEFINITIONS } from '../../../src/api/crd.ts';
import type { WorkloadActivityEntry } from '../../../src/controller/activity/activity-source.ts';
import { HttpActivitySource } from '../../../src/controller/activity/activity-source.ts';
import type { NodeAgent } from '../../../src/controller/agent/node-agent.ts';
import { kybernateControllers } from '../../../src/controller/controllers.ts';
import { HttpKubeClient, type KubeClient, type KubeObject } from '../../../src/lib/kube/client.ts';
import { kubeconfigConnection } from '../../../src/lib/kube/kubeconfig.ts';
import { PODS, WORKLOADS, type ResourceType } from '../../../src/lib/kube/resources.ts';
import { LeaderElector } from '../../../src/controller/runtime/leader-election.ts';
import { Manager } from '../../../src/controller/runtime/manager.ts';
import { createLogger } from '../../../src/lib/log.ts';
import { startControlPlane, type ControlPlane } from '../../harness/kube/index.ts';
import { waitFor as waitUntil } from '../../support/wait.ts';
import { InProcessTestNodeAgent } from './test-node-agent.ts';

export const NAMESPACES: ResourceType = { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false };
const CRDS: ResourceType = { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', plural: 'customresourcedefinitions', namespaced: false };

/** API reads may fail while the server restarts: keep polling through errors. */
export function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  return waitUntil(what, probe, { timeoutMs, retryErrors: true });
}

const CRD_DIR = new URL('../../../deploy/crds/', import.meta.url).pathname;

/** A real control plane with the CRDs from deploy/crds installed and Established. */
export async function startKube(): Promise<{ plane: ControlPlane; kube: KubeClient }> {
  const plane = await startControlPlane();
  const kube = new HttpKubeClient(kubeconfigConnection(plane.kubeconfigPath));
  for (const file of (await readdir(CRD_DIR)).filter((name) => name.endsWith('.yaml'))) {
    await kube.create(CRDS, parse(await readFile(join(CRD_DIR, file), 'utf8')) as KubeObject);
  }
  for (const definition of KIND_DEFINITIONS) {
    await waitFor(`CRD ${definition.names.plural} Established`, async () => {
      const crd = await kube.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(CRDS, undefined, `${definition.names.plural}.kybernate.io`);
      return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') || undefined;
    });
  }
  return { plane, kube };
}

export async function createNamespace(kube: KubeClient, name: string): Promise<string> {
  await kube.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  return name;
}

/** Stands in for the activator replicas' admin ports: a real HTTP server whose `/v1/activity` the test sets. */
export class ActivityServer {
  workloads: WorkloadActivityEntry[] = [];
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      if (req.url !== '/v1/activity') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ replica: 'test', time: new Date().toISOString(), workloads: this.workloads }));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

export interface RunningController<A extends NodeAgent = InProcessTestNodeAgent> {
  identity: string;
  agent: A;
  elector: LeaderElector;
  /** Graceful shutdown: in-flight reconciles finish, the lease is released. */
  stop(): Promise<void>;
}

export function startController(plane: ControlPlane, activity: ActivityServer, identity?: string): RunningController;
export function startController<A extends NodeAgent>(plane: ControlPlane, activity: ActivityServer, identity: string, agent: A, operationTimeoutMs?: number): RunningController<A>;
export function startController(
  plane: ControlPlane,
  activity: ActivityServer,
  identity = 'controller-a',
  agent: NodeAgent = new InProcessTestNodeAgent(),
  operationTimeoutMs = 60_000,
): RunningController<NodeAgent> {
  const log = createLogger('controller').child({ identity });
  const kube = new HttpKubeClient(kubeconfigConnection(plane.kubeconfigPath));
  const elector = new LeaderElector(
    kube,
    { namespace: 'default', leaseName: 'kybernate-controller', identity, leaseDurationMs: 6_000, renewDeadlineMs: 4_000, retryPeriodMs: 500 },
    log,
  );
  const work = kybernateControllers(
    { identity, workers: 2, activityPollIntervalMs: 300, operationTimeoutMs },
    { agent, activity: new HttpActivitySource(() => [activity.url], 2_000, log), log },
  );
  const manager = new Manager(kube, work, log, elector);
  const shutdown = new AbortController();
  const done = manager.run(shutdown.signal);
  return {
    identity,
    agent,
    elector,
    stop: async () => {
      shutdown.abort();
      await done;
    },
  };
}

export function workloadManifest(namespace: string, name: string, overrides: { suspend?: boolean; idleTimeout?: string; port?: number } = {}): KybernateWorkload {
  return {
    apiVersion: 'kybernate.io/v1alpha1',
    kind: 'KybernateWorkload',
    metadata: { name, namespace },
    // The API server fills in the remaining defaults.
    spec: {
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'server', image: 'registry.local/counter:1' }] } },
      suspend: overrides.suspend ?? false,
      scaleToZero: { idleTimeout: overrides.idleTimeout ?? '1h' },
      activator: { hosts: [`${name}.example.com`], port: overrides.port ?? 8080 },
    },
  } as unknown as KybernateWorkload;
}

/** What kubelet and the scheduler would do (the test control plane has neither): bind the pod and report it running and ready. */
export async function runPod(kube: KubeClient, namespace: string, name: string, node = 'node-a'): Promise<void> {
  const pod = await kube.get<V1Pod>(PODS, namespace, name);
  if (!pod.spec?.nodeName) {
    const bindings: ResourceType = { apiVersion: 'v1', kind: 'Binding', plural: `pods/${name}/binding`, namespaced: true };
    await kube.create(bindings, { apiVersion: 'v1', kind: 'Binding', metadata: { name, namespace }, target: { apiVersion: 'v1', kind: 'Node', name: node } } as KubeObject);
  }
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const containers = pod.spec?.containers ?? [];
  await kube.mergePatch(PODS, namespace, name, {
    status: {
      phase: 'Running',
      podIP: '10.244.0.7',
      conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
      containerStatuses: containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: '',
        ready: true,
        restartCount: 0,
        containerID: `containerd://${name}-${c.name}`,
        state: { running: { startedAt: now } },
      })),
    },
  }, 'status');
}

/** The workload once its status satisfies `accept` (by default: once it has reached `phase`). */
export async function waitForWorkload(kube: KubeClient, namespace: string, name: string, phase: string, accept: (w: KybernateWorkload) => boolean = () => true, timeoutMs?: number): Promise<KybernateWorkload> {
  return waitFor(`${namespace}/${name} ${phase}`, async () => {
    const workload = await kube.get<KybernateWorkload>(WORKLOADS, namespace, name);
    return workload.status?.phase === phase && accept(workload) ? workload : undefined;
  }, timeoutMs);
}

export function isReady(workload: KybernateWorkload): boolean {
  return findCondition(workload.status?.conditions, 'Ready')?.status === 'True';
}

export interface ControllerEnvironment {
  plane: ControlPlane;
  kube: KubeClient;
  activity: ActivityServer;
  /** Present when asked for: one leader-elected controller with the in-process test agent. */
  controller: RunningController;
}

/** One control plane (and optionally a running controller) for a whole test file; filled in by beforeAll. */
export function useControllerEnvironment(options: { withController: boolean; operationTimeoutMs?: number }): ControllerEnvironment {
  const env = {} as ControllerEnvironment;
  beforeAll(async () => {
    Object.assign(env, await startKube());
    env.activity = await new ActivityServer().start();
    if (options.withController) env.controller = startController(env.plane, env.activity, 'controller-a', new InProcessTestNodeAgent(), options.operationTimeoutMs);
  });
  afterAll(async () => {
    await env.controller?.stop();
    await env.activity?.stop();
    await env.plane?.stop();
  });
  return env;
}
