import { describe, expect, it } from 'vitest';
import { FailedPreconditionError } from '../../../src/agent/errors.ts';
import { InvalidInputError } from '../../../src/lib/errors.ts';
import { checkRestoreTarget, namespaceOrigin, podMounts, podNamespaces, restoreSpec, restoredCgroupsPath, sandboxHoldingNetns, type OciSpec } from '../../../src/agent/spec.ts';

const spec: OciSpec = {
  ociVersion: '1.1.0',
  process: { args: ['/bin/counter'] },
  mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }, { destination: '/data', type: 'bind', source: '/old/data', options: ['rbind'] }],
  linux: {
    namespaces: [{ type: 'pid' }, { type: 'network', path: '/var/run/netns/old' }, { type: 'mount' }],
    cgroupsPath: '/default/counter',
    resources: { devices: [{ allow: false, access: 'rwm' }] },
  },
};

describe('namespaceOrigin', () => {
  it('tells own, path and host namespaces apart', () => {
    expect(namespaceOrigin(spec, 'pid')).toBe('own');
    expect(namespaceOrigin(spec, 'network')).toBe('path');
    expect(namespaceOrigin({ linux: { namespaces: [] } }, 'network')).toBe('host');
  });
});

describe('checkRestoreTarget', () => {
  it('needs a target netns for a checkpoint taken in an external netns', () => {
    expect(() => checkRestoreTarget('path', {}, {})).toThrow(FailedPreconditionError);
    expect(() => checkRestoreTarget('path', { netnsPath: '/var/run/netns/new' }, {})).not.toThrow();
  });

  it('refuses a target netns for a task that had its own', () => {
    expect(() => checkRestoreTarget('own', { netnsPath: '/var/run/netns/new' }, {})).toThrow(/its own network namespace/);
    expect(() => checkRestoreTarget('own', {}, {})).not.toThrow();
  });

  it('rejects relative paths and devices outside /dev', () => {
    expect(() => checkRestoreTarget('path', { netnsPath: 'netns/x' }, {})).toThrow(InvalidInputError);
    expect(() => checkRestoreTarget('own', { mounts: [{ destination: 'data' }] }, {})).toThrow(InvalidInputError);
    expect(() => checkRestoreTarget('own', { devices: [{ path: '/tmp/x', type: 'c', major: 1, minor: 3 }] }, {})).toThrow(InvalidInputError);
  });
});

describe('restoredCgroupsPath', () => {
  it('puts the new container under the original parent, or the target parent', () => {
    expect(restoredCgroupsPath('/default/counter', 'counter-2', 'default')).toBe('/default/counter-2');
    expect(restoredCgroupsPath('/kubepods/besteffort/pod1/abc', 'def', 'k8s.io', '/kubepods/besteffort/pod2')).toBe('/kubepods/besteffort/pod2/def');
    expect(restoredCgroupsPath(undefined, 'c', 'ns')).toBe('/ns/c');
    expect(restoredCgroupsPath('kubepods.slice:cri-containerd:abc', 'def', 'k8s.io')).toBe('kubepods.slice:cri-containerd:def');
  });
});

describe('restoreSpec', () => {
  it('joins the target netns and cgroup parent without touching the original', () => {
    const before = JSON.stringify(spec);
    const out = restoreSpec(spec, 'restored', 'default', { netnsPath: '/var/run/netns/new', cgroupParent: '/pod2' });
    expect(out.linux?.namespaces).toEqual([{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/new' }]);
    expect(out.linux?.cgroupsPath).toBe('/pod2/restored');
    expect(out.process).toEqual(spec.process);
    expect(JSON.stringify(spec)).toBe(before);
  });

  it('replaces mounts by destination, adds devices and allows them in the cgroup', () => {
    const out = restoreSpec(spec, 'r', 'default', {
      mounts: [{ destination: '/data', source: '/new/data' }, { destination: '/extra', source: '/host/extra' }],
      devices: [{ path: '/dev/nvidia0', type: 'c', major: 195, minor: 0 }],
    });
    expect(out.mounts).toEqual([
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/data', source: '/new/data', type: 'bind', options: ['rbind', 'rw'] },
      { destination: '/extra', source: '/host/extra', type: 'bind', options: ['rbind', 'rw'] },
    ]);
    expect(out.linux?.devices).toEqual([{ path: '/dev/nvidia0', type: 'c', major: 195, minor: 0 }]);
    expect(out.linux?.resources?.devices?.at(-1)).toEqual({ allow: true, type: 'c', major: 195, minor: 0, access: 'rwm' });
  });

  it('puts a container restored into a pod into the shim group of the target sandbox, never the source pod\'s', () => {
    const inPod: OciSpec = { ...spec, annotations: { 'io.kubernetes.cri.sandbox-id': 'old-pod', 'io.containerd.runc.v2.group': 'old-pod', other: 'kept' } };
    const target = { netnsPath: '/var/run/netns/new' };
    expect(restoreSpec(inPod, 'r', 'k8s.io', target, { id: 'new-pod', pid: 200 }).annotations).toEqual({ other: 'kept', 'io.kubernetes.cri.sandbox-id': 'new-pod' });
    // No sandbox holds the target netns: a shim of its own rather than the source pod's.
    expect(restoreSpec(inPod, 'r', 'k8s.io', target).annotations).toEqual({ other: 'kept' });
    expect(restoreSpec(spec, 'r', 'k8s.io', target, { id: 'new-pod', pid: 200 }).annotations).toEqual({ 'io.kubernetes.cri.sandbox-id': 'new-pod' });
    expect(restoreSpec(spec, 'r', 'k8s.io', target).annotations).toBeUndefined();
  });

  it('keeps the annotations of a standalone restore as they were', () => {
    const annotated: OciSpec = { ...spec, annotations: { 'io.containerd.runc.v2.group': 'g' } };
    expect(restoreSpec(annotated, 'r', 'default', {}).annotations).toEqual({ 'io.containerd.runc.v2.group': 'g' });
  });
});

/** A container as containerd 1.7's CRI creates it in pod `old-pod` (sandbox pid 100), under containerd root /var/lib/containerd. */
const criContainer: OciSpec = {
  annotations: { 'io.kubernetes.cri.sandbox-id': 'old-pod' },
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/data', type: 'bind', source: '/var/lib/kubelet/pods/uid/volumes/data' },
    { destination: '/etc/hostname', type: 'bind', source: '/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/old-pod/hostname' },
    { destination: '/etc/hosts', type: 'bind', source: '/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/old-pod/hosts' },
    { destination: '/etc/resolv.conf', type: 'bind', source: '/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/old-pod/resolv.conf' },
    { destination: '/dev/shm', type: 'bind', source: '/run/containerd/io.containerd.grpc.v1.cri/sandboxes/old-pod/shm' },
  ],
  linux: {
    namespaces: [
      { type: 'pid' },
      { type: 'ipc', path: '/proc/100/ns/ipc' },
      { type: 'uts', path: '/proc/100/ns/uts' },
      { type: 'mount' },
      { type: 'network', path: '/proc/100/ns/net' },
    ],
  },
};
const newPod = { id: 'new-pod', pid: 200 };
const targetNetns = '/var/run/netns/cni-new';

describe('restore into another pod', () => {
  it('joins every namespace the source pod\'s sandbox held through the target sandbox\'s process', () => {
    expect(podNamespaces(criContainer, targetNetns, newPod, {})).toEqual([
      { type: 'pid' },
      { type: 'ipc', path: '/proc/200/ns/ipc' },
      { type: 'uts', path: '/proc/200/ns/uts' },
      { type: 'mount' },
      { type: 'network', path: targetNetns },
    ]);
  });

  it('joins the pod\'s pid namespace through the target too when the source pod shared it', () => {
    const shared: OciSpec = { linux: { namespaces: [{ type: 'pid', path: '/proc/100/ns/pid' }, { type: 'network', path: '/proc/100/ns/net' }] } };
    expect(podNamespaces(shared, targetNetns, newPod, {})[0]).toEqual({ type: 'pid', path: '/proc/200/ns/pid' });
  });

  it('takes the target process from a /proc/<pid>/ns/net target when no sandbox holds it', () => {
    expect(podNamespaces(criContainer, '/proc/300/ns/net', undefined, {}).find((ns) => ns.type === 'ipc')).toEqual({ type: 'ipc', path: '/proc/300/ns/ipc' });
  });

  it('refuses a namespace of a process that is not the source pod\'s sandbox, and a pod namespace with no target process', () => {
    const joinsAnother: OciSpec = { linux: { namespaces: [{ type: 'pid', path: '/proc/555/ns/pid' }, { type: 'network', path: '/proc/100/ns/net' }] } };
    expect(() => podNamespaces(joinsAnother, targetNetns, newPod, { container: 'c' })).toThrow(
      expect.objectContaining({ code: 'FailedPrecondition', message: expect.stringMatching(/pid namespace of process 555/), context: { container: 'c' } }),
    );
    // The source netns by name: no process of the source pod is known, so none of its /proc namespaces can be matched.
    const namedNetns: OciSpec = { linux: { namespaces: [{ type: 'ipc', path: '/proc/100/ns/ipc' }, { type: 'network', path: '/var/run/netns/old' }] } };
    expect(() => podNamespaces(namedNetns, targetNetns, newPod, {})).toThrow(FailedPreconditionError);
    expect(() => podNamespaces(criContainer, targetNetns, undefined, {})).toThrow(/no pod sandbox container holds the target netns/);
  });

  it('keeps own namespaces and namespace files by name', () => {
    const named: OciSpec = { linux: { namespaces: [{ type: 'ipc', path: '/var/run/ipcns/x' }, { type: 'uts' }, { type: 'network', path: '/var/run/netns/old' }] } };
    expect(podNamespaces(named, targetNetns, undefined, {})).toEqual([{ type: 'ipc', path: '/var/run/ipcns/x' }, { type: 'uts' }, { type: 'network', path: targetNetns }]);
  });

  it('moves the mounts of the source pod\'s CRI files to the target pod\'s, and nothing else', () => {
    const moved = podMounts(criContainer.mounts, 'old-pod', 'new-pod');
    expect(moved?.map((m) => m.source)).toEqual([
      'proc',
      '/var/lib/kubelet/pods/uid/volumes/data',
      '/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/new-pod/hostname',
      '/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/new-pod/hosts',
      '/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/new-pod/resolv.conf',
      '/run/containerd/io.containerd.grpc.v1.cri/sandboxes/new-pod/shm',
    ]);
    expect(podMounts(criContainer.mounts, undefined, 'new-pod')).toBe(criContainer.mounts);
    expect(podMounts(criContainer.mounts, 'new-pod', 'new-pod')).toBe(criContainer.mounts);
  });

  it('restoreSpec places a CRI container into the target pod; the caller\'s mounts still win', () => {
    const before = JSON.stringify(criContainer);
    const out = restoreSpec(criContainer, 'r', 'k8s.io', { netnsPath: targetNetns, mounts: [{ destination: '/etc/hosts', source: '/custom/hosts' }] }, newPod);
    expect(out.linux?.namespaces).toEqual(podNamespaces(criContainer, targetNetns, newPod, {}));
    expect(out.mounts?.find((m) => m.destination === '/etc/hostname')?.source).toContain('/sandboxes/new-pod/hostname');
    expect(out.mounts?.find((m) => m.destination === '/etc/hosts')?.source).toBe('/custom/hosts');
    expect(JSON.stringify(criContainer)).toBe(before);
  });
});

describe('sandboxHoldingNetns', () => {
  it('finds the sandbox container whose spec joins the network namespace', () => {
    const sandbox = (id: string, netns?: string) => ({ id, spec: { linux: { namespaces: [{ type: 'network', ...(netns ? { path: netns } : {}) }] } } });
    const sandboxes = [sandbox('a', '/var/run/netns/a'), sandbox('own'), sandbox('b', '/var/run/netns/b')];
    expect(sandboxHoldingNetns(sandboxes, '/var/run/netns/b')).toBe('b');
    expect(sandboxHoldingNetns(sandboxes, '/var/run/netns/c')).toBeUndefined();
  });
});
