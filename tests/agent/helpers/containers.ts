import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ContainerdClient } from '../../../src/agent/containerd/client.ts';
import type { Mount } from '../../../src/agent/containerd/types.ts';
import { OCI_SPEC_TYPE_URL } from '../../../src/agent/restore.ts';

/**
 * Starts test containers through containerd's API, the way the kubelet's CRI plugin would: a snapshot
 * prepared on the image's chain id, a container with an OCI spec, a task whose stdout/stderr go to a file.
 */

async function readJson(client: ContainerdClient, digest: string, namespace: string): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of client.readContent(digest, { namespace })) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
}

/** The chain id of an image's top layer (the parent of a container snapshot), for linux/amd64. */
export async function imageChainId(client: ContainerdClient, imageRef: string, namespace: string): Promise<string> {
  const image = await client.getImage(imageRef, { namespace });
  let manifest = await readJson(client, image.target!.digest, namespace);
  if (Array.isArray(manifest.manifests)) {
    const entries = manifest.manifests as { digest: string; platform?: { os?: string; architecture?: string } }[];
    const entry = entries.find((m) => !m.platform || (m.platform.os === 'linux' && m.platform.architecture === 'amd64')) ?? entries[0]!;
    manifest = await readJson(client, entry.digest, namespace);
  }
  const config = await readJson(client, (manifest.config as { digest: string }).digest, namespace);
  const diffIds = (config.rootfs as { diff_ids: string[] }).diff_ids;
  return diffIds.reduce((chain, diffId) => (chain ? `sha256:${createHash('sha256').update(`${chain} ${diffId}`).digest('hex')}` : diffId), '');
}

export interface TestContainerOptions {
  id: string;
  image: string;
  args: string[];
  namespace: string;
  /** join this network namespace (a pod sandbox's); default: a new one */
  netnsPath?: string;
  /** the container's cgroup is <cgroupParent>/<id> (a pod's cgroup); default: /<namespace> */
  cgroupParent?: string;
  /** OCI spec annotations, e.g. CRI's io.kubernetes.cri.sandbox-id, which puts a pod's containers into one shim */
  annotations?: Record<string, string>;
  /** containerd labels of the container record, e.g. CRI's io.cri-containerd.kind=sandbox */
  labels?: Record<string, string>;
  /** share the host's pid namespace */
  hostPid?: boolean;
  logPath: string;
  snapshotter?: string;
  /** host directories bind-mounted read-write (a pod's volumes) */
  binds?: { destination: string; source: string }[];
}

export function testSpec(options: TestContainerOptions): Record<string, unknown> {
  const caps = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];
  const namespaces: { type: string; path?: string }[] = [{ type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (!options.hostPid) namespaces.push({ type: 'pid' });
  namespaces.push(options.netnsPath ? { type: 'network', path: options.netnsPath } : { type: 'network' });
  return {
    ociVersion: '1.1.0',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: options.args,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs' },
    hostname: options.id,
    ...(options.annotations ? { annotations: options.annotations } : {}),
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      ...(options.binds ?? []).map((bind) => ({ ...bind, type: 'bind', options: ['rbind', 'rw'] })),
    ],
    linux: {
      namespaces,
      cgroupsPath: `${options.cgroupParent ?? `/${options.namespace}`}/${options.id}`,
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

export interface ContainerWithSnapshot {
  readonly id: string;
  readonly image: string;
  readonly namespace: string;
  readonly spec: Record<string, unknown>;
  readonly snapshotter?: string;
  /** The image's chain id when the caller already has it (keeps the lookup out of a timed section). */
  readonly parent?: string;
  readonly labels?: Record<string, string>;
}

/** Creates a container and its rootfs snapshot from an image; returns the rootfs mounts for its task. */
export async function createContainerWithSnapshot(client: ContainerdClient, options: ContainerWithSnapshot): Promise<Mount[]> {
  const call = { namespace: options.namespace };
  const snapshotter = options.snapshotter ?? 'overlayfs';
  const parent = options.parent ?? (await imageChainId(client, options.image, options.namespace));
  // The container first: it makes the snapshot a GC root from the moment it exists (an unreferenced
  // snapshot may be collected by a GC that another delete triggered before the container names it).
  await client.createContainer(
    {
      id: options.id,
      labels: options.labels ?? {},
      image: options.image,
      runtime: { name: 'io.containerd.runc.v2', options: null },
      spec: { type_url: OCI_SPEC_TYPE_URL, value: Buffer.from(JSON.stringify(options.spec)) },
      snapshotter,
      snapshot_key: options.id,
    },
    call,
  );
  return client.prepareSnapshot(snapshotter, options.id, parent, call);
}

/** Creates and starts a container from an image; returns the task's pid. */
export async function runTestContainer(client: ContainerdClient, options: TestContainerOptions): Promise<number> {
  const call = { namespace: options.namespace };
  const mounts = await createContainerWithSnapshot(client, { ...options, spec: testSpec(options) });
  await fs.mkdir(path.dirname(options.logPath), { recursive: true });
  await client.createTask({ containerId: options.id, rootfs: mounts, stdout: `file://${options.logPath}`, stderr: `file://${options.logPath}` }, call);
  return (await client.startTask(options.id, call)).pid;
}

/**
 * Kills and removes a container with its task and snapshot, whatever of those exists. With `stateDir`
 * (containerd's state dir) it also waits until the old shim has removed the task's bundle: containerd
 * 1.7 does that after Tasks.Delete returns, and a new task of the same id created meanwhile loses its
 * rootfs mount point ("failed to mount rootfs component: no such file or directory").
 */
export async function removeTestContainer(client: ContainerdClient, id: string, namespace: string, stateDir?: string): Promise<void> {
  const call = { namespace };
  const ignore = (): void => undefined;
  await client.killTask(id, 9, call).catch(ignore);
  await client.waitTask(id, { ...call, timeoutMs: 10_000 }).catch(ignore);
  await client.deleteTask(id, call).catch(ignore);
  await client.deleteContainer(id, call).catch(ignore);
  await client.removeSnapshot('overlayfs', id, call).catch(ignore);
  if (!stateDir) return;
  const bundle = path.join(stateDir, 'io.containerd.runtime.v2.task', namespace, id);
  for (let waited = 0; await fs.stat(bundle).then(() => true, () => false); waited += 50) {
    if (waited > 10_000) throw new Error(`bundle ${bundle} still there 10 s after its task was deleted`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
