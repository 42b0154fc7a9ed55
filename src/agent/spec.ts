import { InvalidInputError } from '../lib/errors.ts';
import { FailedPreconditionError } from './errors.ts';
import type { NamespaceOriginKind } from './store/manifest.ts';

/** The parts of an OCI runtime spec the agent reads or rewrites; everything else passes through untouched. */
export interface OciSpec {
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux?: {
    namespaces?: { type: string; path?: string }[];
    cgroupsPath?: string;
    devices?: OciDevice[];
    resources?: { devices?: { allow: boolean; type?: string; major?: number; minor?: number; access?: string }[] } & Record<string, unknown>;
  } & Record<string, unknown>;
  [key: string]: unknown;
}

export interface OciMount {
  destination: string;
  source?: string;
  type?: string;
  options?: string[];
}

export interface OciDevice {
  path: string;
  type: 'c' | 'b' | 'u' | 'p';
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

/**
 * Where a restored container goes. Empty = standalone (what the checkpoint had). The pod-sandbox case
 * joins an existing network namespace and cgroup parent; mounts and devices replace those of the same
 * destination/path or are added (CRIU restores the mount table of the dump, so a destination it did not
 * have only matters to runc).
 */
export interface RestoreTarget {
  netnsPath?: string;
  cgroupParent?: string;
  mounts?: OciMount[];
  devices?: OciDevice[];
}

export function parseSpec(json: string): OciSpec {
  const spec = JSON.parse(json) as unknown;
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) throw new InvalidInputError('container spec is not a JSON object');
  return spec as OciSpec;
}

export function namespaceOrigin(spec: OciSpec, type: 'network' | 'pid'): NamespaceOriginKind {
  const ns = spec.linux?.namespaces?.find((n) => n.type === type);
  if (!ns) return 'host';
  return ns.path ? 'path' : 'own';
}

/**
 * The checkpointed network namespace decides where a restore may go: a task that had its own netns gets
 * it back from CRIU (standalone only); a task that ran in a namespace given by path (a pod sandbox) was
 * dumped with that netns as external, so CRIU needs one to join again.
 */
export function checkRestoreTarget(networkOrigin: NamespaceOriginKind, target: RestoreTarget, context: Record<string, unknown>): void {
  if (networkOrigin === 'path' && !target.netnsPath) {
    throw new FailedPreconditionError(
      'the checkpoint was taken in an external network namespace (a pod sandbox); a restore needs a target netns path',
      context,
    );
  }
  if (networkOrigin !== 'path' && target.netnsPath) {
    throw new FailedPreconditionError(
      `the checkpoint has ${networkOrigin === 'own' ? 'its own' : "the host's"} network namespace, which CRIU restores as it was; it cannot join ${target.netnsPath}`,
      context,
    );
  }
  if (target.netnsPath && !target.netnsPath.startsWith('/')) throw new InvalidInputError(`netns path must be absolute: ${target.netnsPath}`, context);
  for (const mount of target.mounts ?? []) {
    if (!mount.destination.startsWith('/')) throw new InvalidInputError(`mount destination must be absolute: ${mount.destination}`, context);
  }
  for (const device of target.devices ?? []) {
    if (!device.path.startsWith('/dev/')) throw new InvalidInputError(`device path must be under /dev: ${device.path}`, context);
  }
}

/** The cgroup path of the restored container: `<parent>/<id>`, the parent being the target's or the original's. */
export function restoredCgroupsPath(original: string | undefined, containerId: string, namespace: string, cgroupParent?: string): string {
  // systemd driver form "slice:prefix:name"
  if (!cgroupParent && original?.includes(':')) {
    const [slice, prefix] = original.split(':');
    return `${slice}:${prefix}:${containerId}`;
  }
  if (cgroupParent?.includes('.slice')) return `${cgroupParent}:kybernate:${containerId}`;
  const parent = cgroupParent ?? (original ? original.replace(/\/[^/]*$/, '') : `/${namespace}`);
  return `${parent.replace(/\/$/, '')}/${containerId}`;
}

/**
 * The runc v2 shim serves every container whose spec names the same group (these annotations, in the
 * shim's order) from one process; Kubernetes' CRI puts each pod container into its sandbox's shim with
 * the sandbox-id annotation. A container without them gets a shim of its own (a new process, ~75 ms).
 */
export const SHIM_GROUP_ANNOTATIONS = ['io.containerd.runc.v2.group', 'io.kubernetes.cri.sandbox-id'] as const;
export const SANDBOX_ID_ANNOTATION = 'io.kubernetes.cri.sandbox-id';
/** The label CRI puts on a pod's sandbox container (the one holding its namespaces). */
export const SANDBOX_KIND_LABEL = 'io.cri-containerd.kind';
export const SANDBOX_KIND = 'sandbox';

/** The sandbox container that holds `netnsPath`: the one whose spec joins that network namespace. */
export function sandboxHoldingNetns(sandboxes: { id: string; spec: OciSpec }[], netnsPath: string): string | undefined {
  return sandboxes.find(({ spec }) => spec.linux?.namespaces?.some((ns) => ns.type === 'network' && ns.path === netnsPath))?.id;
}

/** The target pod's sandbox container: its id (CRI's pod sandbox id) and its task's pid, the process holding the pod's namespaces. */
export interface TargetSandbox {
  id: string;
  pid: number;
}

/** A namespace joined through a process: `/proc/<pid>/ns/<type>`, as CRI joins a pod's namespaces through its sandbox. */
const PROCESS_NAMESPACE_PATH = /^\/proc\/(\d+)\/ns\/[a-z_]+$/;

function namespaceProcess(nsPath: string | undefined): number | undefined {
  const pid = nsPath ? PROCESS_NAMESPACE_PATH.exec(nsPath)?.[1] : undefined;
  return pid === undefined ? undefined : Number(pid);
}

/**
 * The namespaces of a container restored into a pod: the target netns, and each namespace the checkpoint
 * joined through its source pod's process (CRI: IPC, UTS, and pid when the pod shares it, all by
 * `/proc/<source sandbox pid>/ns/<type>`) joined through the target's process instead: the target sandbox's
 * task, or the process a `/proc/<pid>/ns/net` target netns names. The source pod's process is the one whose
 * netns the checkpoint joined. Any other process's namespace is refused: that pid now belongs to whatever
 * took it. Own namespaces, and namespace files by name (they name a namespace, not a process), stay.
 */
export function podNamespaces(spec: OciSpec, netnsPath: string, sandbox: TargetSandbox | undefined, context: Record<string, unknown>): { type: string; path?: string }[] {
  const namespaces = spec.linux?.namespaces ?? [];
  const sourcePid = namespaceProcess(namespaces.find((ns) => ns.type === 'network')?.path);
  const targetPid = sandbox?.pid ?? namespaceProcess(netnsPath);
  const joined = namespaces
    .filter((ns) => ns.type !== 'network')
    .map((ns) => {
      const pid = namespaceProcess(ns.path);
      if (pid === undefined) return ns;
      if (pid !== sourcePid) {
        throw new FailedPreconditionError(
          `the checkpoint joins the ${ns.type} namespace of process ${pid} (${ns.path}), which is not the process of its pod's network namespace: a restore cannot tell what that pid is now`,
          context,
        );
      }
      if (targetPid === undefined) {
        throw new FailedPreconditionError(
          `the checkpoint joins its pod's ${ns.type} namespace (${ns.path}); no pod sandbox container holds the target netns ${netnsPath}, so the target pod's ${ns.type} namespace is unknown`,
          context,
        );
      }
      return { ...ns, path: ns.path!.replace(`/proc/${pid}/`, `/proc/${targetPid}/`) };
    });
  return [...joined, { type: 'network', path: netnsPath }];
}

/**
 * CRI keeps a pod's `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` (under its root dir) and `/dev/shm`
 * (under its state dir) in `<dir>/sandboxes/<sandbox id>/` of its plugin's directories, and bind-mounts them
 * into each container of the pod.
 */
const CRI_SANDBOXES_DIR = '/io.containerd.grpc.v1.cri/sandboxes/';

/** The mounts of a container restored into another pod: sources in the source pod's CRI sandbox dirs moved to the target pod's. */
export function podMounts(mounts: OciMount[] | undefined, sourceSandboxId: string | undefined, targetSandboxId: string): OciMount[] | undefined {
  if (!mounts || !sourceSandboxId || sourceSandboxId === targetSandboxId) return mounts;
  const sourceDir = `${CRI_SANDBOXES_DIR}${sourceSandboxId}/`;
  const targetDir = `${CRI_SANDBOXES_DIR}${targetSandboxId}/`;
  return mounts.map((mount) => (mount.source?.includes(sourceDir) ? { ...mount, source: mount.source.replace(sourceDir, targetDir) } : mount));
}

/**
 * The shim group of a container restored into a pod: the target pod's sandbox when one holds the target
 * netns (its running shim serves the restored task too, no new shim process), else none. The
 * checkpoint's own group names the source pod, whose shim must never serve a container of another pod.
 */
function shimGroupAnnotations(annotations: Record<string, string> | undefined, sandboxId: string | undefined): Record<string, string> | undefined {
  const kept = Object.entries(annotations ?? {}).filter(([key]) => !(SHIM_GROUP_ANNOTATIONS as readonly string[]).includes(key));
  if (sandboxId) kept.push([SANDBOX_ID_ANNOTATION, sandboxId]);
  return kept.length > 0 || annotations ? Object.fromEntries(kept) : undefined;
}

/**
 * The spec of the restored container: the checkpoint's, placed into the target. `sandbox` (restores into
 * a pod only): the target pod's sandbox container, whose namespaces, CRI files and shim the restored task
 * gets instead of the source pod's. Does not modify `spec`; throws `FailedPrecondition` where the
 * checkpoint joins a namespace the target cannot stand in for (see podNamespaces).
 */
export function restoreSpec(
  spec: OciSpec,
  containerId: string,
  namespace: string,
  target: RestoreTarget,
  sandbox?: TargetSandbox,
  context: Record<string, unknown> = {},
): OciSpec {
  const linux = { ...(spec.linux ?? {}) };
  if (target.netnsPath) linux.namespaces = podNamespaces(spec, target.netnsPath, sandbox, context);
  linux.cgroupsPath = restoredCgroupsPath(spec.linux?.cgroupsPath, containerId, namespace, target.cgroupParent);
  if (target.devices?.length) {
    const byPath = new Map((linux.devices ?? []).map((d) => [d.path, d]));
    for (const device of target.devices) byPath.set(device.path, device);
    linux.devices = [...byPath.values()];
    const rules = linux.resources?.devices ?? [];
    linux.resources = {
      ...(linux.resources ?? {}),
      devices: [
        ...rules,
        ...target.devices.map((d) => ({ allow: true, type: d.type, major: d.major, minor: d.minor, access: 'rwm' })),
      ],
    };
  }
  let mounts = sandbox ? podMounts(spec.mounts, spec.annotations?.[SANDBOX_ID_ANNOTATION], sandbox.id) : spec.mounts;
  if (target.mounts?.length) {
    const byDestination = new Map((mounts ?? []).map((m) => [m.destination, m]));
    for (const mount of target.mounts) {
      byDestination.set(mount.destination, { type: 'bind', options: ['rbind', 'rw'], ...mount });
    }
    mounts = [...byDestination.values()];
  }
  const annotations = target.netnsPath ? shimGroupAnnotations(spec.annotations, sandbox?.id) : spec.annotations;
  return { ...spec, mounts, linux, ...(annotations ? { annotations } : {}) };
}
