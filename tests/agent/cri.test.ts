import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  CRI_NAMESPACE,
  defaultCriPlugin,
  prepareCri,
  testImageArgs,
  TEST_IMAGE_REF,
  type CriClient,
  type NamespaceOptions,
  type PodSandboxConfig,
} from '../harness/containerd/index.ts';
import { useAgentStack, type AgentFixture } from './helpers/agent.ts';
import { removeTestContainer } from './helpers/containers.ts';
import { counterValues, isConsecutive, leftovers, waitFor, waitForCounter } from './helpers/observe.ts';

/**
 * The agent on containers as Kubernetes creates them: containerd's own CRI plugin (the code path the
 * kubelet drives) runs a pod sandbox and a container in namespace k8s.io; the agent checkpoints that
 * container and restores it into the same pod sandbox (its network namespace and cgroup parent).
 */

const stack = useAgentStack('cri', { namespace: CRI_NAMESPACE, cri: defaultCriPlugin() });
let t: AgentFixture;
let cri: CriClient;
beforeAll(async () => {
  t = stack();
  cri = await prepareCri(t.containerd);
});
afterAll(() => cri?.close());

/** What containerd 1.7's CRI reports in PodSandboxStatus(verbose).info.info (the fields used here). */
interface SandboxInfo {
  pid: number;
  runtimeSpec: { linux: { namespaces: { type: string; path?: string }[] } };
}

/**
 * Removes the pod's cgroup parent (the kubelet's job on a node) in every hierarchy it exists in (cgroup v1
 * controllers, the v2 mount), children first; returns the cgroups that could not go (they still have tasks).
 */
async function removeCgroupParent(cgroupParent: string): Promise<string[]> {
  const removeTree = async (dir: string): Promise<string[]> => {
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => undefined);
    if (!entries) return [];
    const kept: string[] = [];
    for (const entry of entries) if (entry.isDirectory()) kept.push(...(await removeTree(path.join(dir, entry.name))));
    return fs.rmdir(dir).then(() => kept, () => [...kept, dir]);
  };
  const kept: string[] = [];
  for (const hierarchy of await fs.readdir('/sys/fs/cgroup')) kept.push(...(await removeTree(path.join('/sys/fs/cgroup', hierarchy, cgroupParent))));
  return kept;
}

/**
 * What the kubelet asks for by default, for the sandbox and for each container: the pod's network and IPC
 * namespaces, a pid namespace per container (CRI puts a container whose options say nothing into the pod's
 * pid namespace, where its orphans would be left to the pause process to reap).
 */
const kubeletNamespaces: NamespaceOptions = { network: 'POD', pid: 'CONTAINER', ipc: 'POD' };

async function namespacesOf(pid: number): Promise<Record<'net' | 'ipc' | 'uts', string>> {
  const [net, ipc, uts] = await Promise.all(['net', 'ipc', 'uts'].map((type) => fs.readlink(`/proc/${pid}/ns/${type}`)));
  return { net: net!, ipc: ipc!, uts: uts! };
}

it('a container created through CRI is checkpointed by the agent and restored into the same pod sandbox; CRI does not see the restored one', async () => {
  const uid = randomUUID();
  const cgroupParent = `/kybernate-cri-${uid.slice(0, 8)}`;
  const volume = path.join(t.dirs.base, 'volume');
  await fs.mkdir(volume, { recursive: true });
  const counterFile = path.join(volume, 'counter.log');
  const sandboxConfig: PodSandboxConfig = {
    metadata: { name: 'counter-pod', uid, namespace: 'default', attempt: 0 },
    hostname: 'counter-pod',
    log_directory: path.join(t.dirs.base, 'pod-logs'),
    linux: { cgroup_parent: cgroupParent, security_context: { namespace_options: kubeletNamespaces } },
  };
  const restoredId = `restored-${uid.slice(0, 8)}`;
  let podId: string | undefined;
  let netnsPath: string | undefined;
  let keptCgroups: string[];
  try {
    podId = await cri.runPodSandbox(sandboxConfig);
    const { info } = await cri.podSandboxStatus(podId, true);
    const sandbox = JSON.parse(info.info!) as SandboxInfo;
    // The pod's network namespace as the sandbox's spec names it (a kubelet-run node has the same).
    netnsPath = sandbox.runtimeSpec.linux.namespaces.find((ns) => ns.type === 'network')?.path;
    expect(netnsPath).toMatch(/^\/var\/run\/netns\/cni-/);

    const containerId = await cri.createContainer(
      podId,
      {
        metadata: { name: 'counter' },
        image: { image: TEST_IMAGE_REF },
        command: testImageArgs.counter('/data/counter.log'),
        log_path: 'counter.log',
        // a pod volume (emptyDir-like): the counter file stays readable on the host across the restore
        mounts: [{ container_path: '/data', host_path: volume }],
        linux: { security_context: { namespace_options: kubeletNamespaces } },
      },
      sandboxConfig,
    );
    await cri.startContainer(containerId);
    await waitForCounter(counterFile, 3);

    const checkpoint = await t.client.checkpointAndWait({ namespace: CRI_NAMESPACE, containerId, leaveRunning: false });
    const before = await counterValues(counterFile);
    // CRI learns of the kill from containerd's task exit event, as it would of any container that died.
    const original = await waitFor('CRI reports the original container exited', async () => {
      const status = await cri.containerStatus(containerId);
      return status.state === 'CONTAINER_EXITED' ? status : undefined;
    });
    expect(original).toMatchObject({ exit_code: 137, reason: 'Error' });
    const stored = await t.client.getCheckpoint(checkpoint.checkpoint_id);
    // CRI puts the container into the sandbox's namespaces by /proc/<sandbox pid>/ns/...: an external netns for runc and CRIU.
    expect(stored).toMatchObject({ namespace: CRI_NAMESPACE, container_id: containerId, image_ref: TEST_IMAGE_REF, network_namespace: 'path' });

    const restore = await t.client.restoreAndWait({
      checkpointId: checkpoint.checkpoint_id,
      containerId: restoredId,
      target: { netnsPath, cgroupParent },
    });
    const after = await waitForCounter(counterFile, 3, before.length);
    expect(after[before.length]).toBe(before.at(-1)! + 1);
    expect(isConsecutive(after)).toBe(true);
    // The pod's network, IPC and UTS namespaces: the netns from the target, the other two joined by runc as the spec names them.
    expect(await namespacesOf(restore.pid)).toEqual(await namespacesOf(sandbox.pid));
    expect(await fs.readFile(`/proc/${restore.pid}/cgroup`, 'utf8')).toContain(`${cgroupParent}/${restoredId}`);

    // containerd has the restored container in k8s.io; CRI's container store only has what CRI created.
    expect((await t.ctrd.getTask(restoredId, { namespace: CRI_NAMESPACE })).status).toBe('RUNNING');
    expect((await cri.listContainers(podId)).map((c) => c.id)).toEqual([containerId]);
    await expect(cri.containerStatus(restoredId)).rejects.toThrow(/NotFound|not found|does not exist/);

    // Stopping the pod (what the kubelet does when the pod goes) stops what CRI knows: the restored task runs on.
    await cri.stopPodSandbox(podId);
    expect((await cri.containerStatus(containerId)).state).toBe('CONTAINER_EXITED');
    expect((await t.ctrd.getTask(restoredId, { namespace: CRI_NAMESPACE })).status).toBe('RUNNING');
  } finally {
    await removeTestContainer(t.ctrd, restoredId, CRI_NAMESPACE, t.stateDir);
    if (podId) {
      await cri.stopPodSandbox(podId);
      await cri.removePodSandbox(podId);
    }
    keptCgroups = await removeCgroupParent(cgroupParent);
  }
  expect(keptCgroups).toEqual([]);
  expect(await cri.listPodSandboxes()).toEqual([]);
  if (netnsPath) await expect(fs.stat(netnsPath)).rejects.toThrow(/ENOENT/);
  expect(await leftovers(t.containerd, t.dirs, [])).toEqual([]);
});
