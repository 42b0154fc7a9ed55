import type { CheckpointManifest } from '../../../src/agent/store/manifest.ts';

export const sha = (c: string): string => c.repeat(64);

/** A manifest as the agent writes it (files and checksums made up). */
export function sampleManifest(overrides: Partial<CheckpointManifest> = {}): CheckpointManifest {
  return {
    kind: 'kybernate.io/checkpoint',
    schemaVersion: 1,
    id: 'counter-20261127t203000-abc123',
    createdAt: '2026-11-27T20:30:00.000Z',
    node: 'node-a',
    versions: { kernel: '6.18.44', criu: '4.1.1', containerd: 'v1.7.24' },
    source: {
      namespace: 'default',
      containerId: 'counter',
      image: { ref: 'docker.io/library/counter:1', digest: 'sha256:' + sha('a') },
      snapshotter: 'overlayfs',
      snapshotParent: 'sha256:' + sha('b'),
      runtime: { name: 'io.containerd.runc.v2', options: null },
      networkNamespace: 'own',
      pidNamespace: 'own',
      labels: {},
    },
    leaveRunning: true,
    files: [
      { path: 'criu/inventory.img', size: 10, sha256: sha('1') },
      { path: 'criu/pages-1.img', size: 4096, sha256: sha('2') },
      { path: 'rootfs-diff.tar', size: 1024, sha256: sha('3') },
      { path: 'spec.json', size: 100, sha256: sha('4') },
    ],
    timings: { 'criu-dump': 12.5 },
    ...overrides,
  };
}

