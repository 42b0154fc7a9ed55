import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Containerd } from './containerd.ts';
import { execTool } from './exec.ts';
import { stackBinaries } from './stack.ts';

/** The reference the test image is imported under; no registry has it, so nothing ever pulls it. */
export const TEST_IMAGE_REF = 'kybernate.test/busybox:1';

const ENTRYPOINT = '/usr/local/bin/kybernate-test';
const ENTRYPOINT_SOURCE = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../images/busybox-test/kybernate-test');

/** Full process args for the image's programs (images/busybox-test/kybernate-test says what they do). */
export const testImageArgs = {
  /** Prints 1, 2, 3, ... every 100 ms to stdout and appends each to `file` (default /tmp/counter.log). */
  counter: (file?: string): string[] => [ENTRYPOINT, 'counter', ...(file ? [file] : [])],
  /** busybox httpd on `port`; GET / answers `kybernate-test http <token made at start>`. */
  http: (port: number): string[] => [ENTRYPOINT, 'http', String(port)],
};

/** What an image built from the busybox rootfs runs: its reference and its config's Entrypoint and Cmd. */
export interface TestImageDefinition {
  ref: string;
  entrypoint: string[];
  cmd: string[];
}

/** The test image: the kybernate-test programs, the counter by default. */
export const TEST_IMAGE: TestImageDefinition = { ref: TEST_IMAGE_REF, entrypoint: [ENTRYPOINT], cmd: ['counter'] };

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface TestImageArchive {
  ref: string;
  /** An OCI image layout as one tar (oci-layout, index.json, blobs/sha256/...), as `ctr images import` takes it. */
  path: string;
  manifest: Descriptor;
  config: Descriptor;
  /** The one uncompressed layer; its digest is also the rootfs diff id. */
  layer: Descriptor;
}

/**
 * Builds the test image (or another `image` on the same rootfs) as an OCI layout tar in `outDir`, without
 * any registry: the rootfs is busybox-static with its applets as symlinks, plus the kybernate-test entry
 * script. The test image's default command: the counter.
 */
export async function buildTestImageArchive(outDir: string, image: TestImageDefinition = TEST_IMAGE): Promise<TestImageArchive> {
  const work = await mkdtemp(join(outDir, 'image-build-'));
  try {
    const layerPath = join(work, 'layer.tar');
    await writeRootfs(join(work, 'rootfs'));
    // A reproducible layer: sorted names, fixed owner and time, so the same inputs give the same digest.
    await execTool('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', join(work, 'rootfs'), '-cf', layerPath, '.']);

    const layout = join(work, 'layout');
    const blobs = join(layout, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const layer = await fileDescriptor(layerPath, 'application/vnd.oci.image.layer.v1.tar');
    await copyFile(layerPath, join(blobs, hex(layer.digest)));

    const config = await writeBlob(blobs, 'application/vnd.oci.image.config.v1+json', {
      architecture: 'amd64',
      os: 'linux',
      config: { Entrypoint: image.entrypoint, Cmd: image.cmd, Env: ['PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'], WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [layer.digest] },
      history: [{ created_by: 'tests/harness/containerd/image.ts (busybox-static + kybernate-test)' }],
    });
    const manifest = await writeBlob(blobs, 'application/vnd.oci.image.manifest.v1+json', {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: [layer],
    });
    await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            ...manifest,
            platform: { architecture: 'amd64', os: 'linux' },
            // containerd names the imported image after io.containerd.image.name (a full reference).
            annotations: { 'io.containerd.image.name': image.ref, 'org.opencontainers.image.ref.name': image.ref.split(':').at(-1)! },
          },
        ],
      }),
    );
    const path = join(outDir, `${image.ref.replace(/[^a-z0-9]+/g, '-')}.oci.tar`);
    await execTool('tar', ['-C', layout, '-cf', path, 'oci-layout', 'index.json', 'blobs']);
    return { ref: image.ref, path, manifest, config, layer };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface ImportOptions {
  /** Namespace to import into (default: the instance's). */
  namespace?: string;
  /** Which image (default: the test image, TEST_IMAGE_REF). */
  image?: TestImageDefinition;
}

/** Builds the test image (or `options.image`) and imports it (unpacked for overlayfs) into `containerd` under its ref. */
export async function buildTestImage(containerd: Containerd, options: ImportOptions = {}): Promise<TestImageArchive> {
  const archive = await buildTestImageArchive(containerd.dir, options.image);
  await containerd.ctr(['images', 'import', '--snapshotter', 'overlayfs', archive.path], { namespace: options.namespace });
  return archive;
}

async function writeRootfs(rootfs: string): Promise<void> {
  const { busybox } = stackBinaries();
  for (const folder of ['bin', 'dev', 'etc', 'proc', 'root', 'run', 'sys', 'tmp', 'usr/local/bin', 'var', 'www']) {
    await mkdir(join(rootfs, folder), { recursive: true });
  }
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await copyFile(busybox, join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
  // Every applet at its usual place (bin/sh, usr/bin/seq, sbin/ip, ...), as busybox --install would link it.
  const applets = (await execTool(busybox, ['--list-full'])).split('\n').filter((path) => path && path !== 'bin/busybox');
  for (const applet of applets) {
    await mkdir(join(rootfs, dirname(applet)), { recursive: true });
    await symlink('/bin/busybox', join(rootfs, applet));
  }
  await copyFile(ENTRYPOINT_SOURCE, join(rootfs, ENTRYPOINT));
  await chmod(join(rootfs, ENTRYPOINT), 0o755);
  await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\n');
}

async function writeBlob(blobs: string, mediaType: string, content: unknown): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify(content));
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  await writeFile(join(blobs, hex(digest)), bytes);
  return { mediaType, digest, size: bytes.length };
}

async function fileDescriptor(path: string, mediaType: string): Promise<Descriptor> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { mediaType, digest: `sha256:${hash.digest('hex')}`, size };
}

function hex(digest: string): string {
  return digest.slice('sha256:'.length);
}
