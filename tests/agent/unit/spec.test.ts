import { describe, expect, it } from 'vitest';
import { FailedPreconditionError } from '../../../src/agent/errors.ts';
import { InvalidInputError } from '../../../src/lib/errors.ts';
import { checkRestoreTarget, namespaceOrigin, restoreSpec, restoredCgroupsPath, sandboxHoldingNetns, type OciSpec } from '../../../src/agent/spec.ts';

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
    expect(restoreSpec(inPod, 'r', 'k8s.io', target, 'new-pod').annotations).toEqual({ other: 'kept', 'io.kubernetes.cri.sandbox-id': 'new-pod' });
    // No sandbox holds the target netns: a shim of its own rather than the source pod's.
    expect(restoreSpec(inPod, 'r', 'k8s.io', target).annotations).toEqual({ other: 'kept' });
    expect(restoreSpec(spec, 'r', 'k8s.io', target, 'new-pod').annotations).toEqual({ 'io.kubernetes.cri.sandbox-id': 'new-pod' });
    expect(restoreSpec(spec, 'r', 'k8s.io', target).annotations).toBeUndefined();
  });

  it('keeps the annotations of a standalone restore as they were', () => {
    const annotated: OciSpec = { ...spec, annotations: { 'io.containerd.runc.v2.group': 'g' } };
    expect(restoreSpec(annotated, 'r', 'default', {}).annotations).toEqual({ 'io.containerd.runc.v2.group': 'g' });
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
