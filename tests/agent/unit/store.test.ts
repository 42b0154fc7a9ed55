import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../../src/lib/errors.ts';
import { AlreadyExistsError, CorruptArtifactError } from '../../../src/agent/errors.ts';
import { MANIFEST_KIND, MANIFEST_SCHEMA_VERSION, type ArtifactFile, type CheckpointManifest, type FileDigest } from '../../../src/agent/store/manifest.ts';
import { CheckpointStore } from '../../../src/agent/store/store.ts';
import { sampleManifest, sha } from './fixtures.ts';

let root: string;
let store: CheckpointStore;

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'kyb-store-'));
  store = new CheckpointStore(path.join(root, 'store'));
  await store.init();
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** Stages and commits an artifact with small stand-in files (the store does not look inside them). */
async function storeArtifact(id: string): Promise<CheckpointManifest> {
  const dir = await store.beginStaging(id);
  await fs.writeFile(path.join(dir, 'criu/inventory.img'), 'inventory');
  await fs.writeFile(path.join(dir, 'criu/pages-1.img'), Buffer.alloc(10_000, 7));
  await fs.writeFile(path.join(dir, 'rootfs-diff.tar'), Buffer.alloc(1024));
  await fs.writeFile(path.join(dir, 'spec.json'), '{"ociVersion":"1.1.0"}');
  const manifest = sampleManifest({ id, files: await store.describeFiles(dir) });
  await store.commit(manifest);
  return manifest;
}

describe('CheckpointStore', () => {
  it('commits a staged artifact with root-only modes and reads it back verified', async () => {
    const manifest = await storeArtifact('ck-1');
    expect(await store.verify('ck-1')).toEqual(manifest);
    const dir = store.artifactPath('ck-1');
    expect((await fs.stat(store.root)).mode & 0o777).toBe(0o700);
    expect((await fs.stat(dir)).mode & 0o777).toBe(0o700);
    expect((await fs.stat(path.join(dir, 'manifest.json'))).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.join(dir, 'criu/pages-1.img'))).mode & 0o777).toBe(0o600);
    expect(await fs.readdir(path.join(store.root, 'staging'))).toEqual([]);
  });

  it('refuses a second artifact with the same id', async () => {
    await storeArtifact('ck-1');
    await expect(store.beginStaging('ck-1')).rejects.toThrow(AlreadyExistsError);
  });

  it('detects a flipped byte, a truncated file and an added file', async () => {
    await storeArtifact('ck-1');
    const pages = path.join(store.artifactPath('ck-1'), 'criu/pages-1.img');
    const handle = await fs.open(pages, 'r+');
    await handle.write(Buffer.from([8]), 0, 1, 5000);
    await handle.close();
    await expect(store.verify('ck-1')).rejects.toThrow(/criu\/pages-1.img: checksum/);
    await fs.truncate(pages, 100);
    await expect(store.verify('ck-1')).rejects.toThrow(/criu\/pages-1.img: size 100 != recorded 10000/);
    await fs.writeFile(path.join(store.artifactPath('ck-1'), 'criu/evil.img'), 'x');
    await expect(store.verify('ck-1')).rejects.toThrow(/criu\/evil.img: unlisted/);
  });

  it('lists artifacts, reporting unreadable ones instead of hiding them', async () => {
    await storeArtifact('ck-1');
    await storeArtifact('ck-2');
    await fs.writeFile(path.join(store.artifactPath('ck-2'), 'manifest.json'), '{"kind":"x"}');
    const listed = await store.list();
    expect(listed.map((e) => [e.id, e.manifest?.kind, e.error?.constructor.name])).toEqual([
      ['ck-1', MANIFEST_KIND, undefined],
      ['ck-2', undefined, 'CorruptArtifactError'],
    ]);
  });

  it('deletes an artifact and says so when it is not there', async () => {
    await storeArtifact('ck-1');
    await store.delete('ck-1');
    await expect(store.get('ck-1')).rejects.toThrow(NotFoundError);
    await expect(store.delete('ck-1')).rejects.toThrow(NotFoundError);
  });

  it('removes staging and work leftovers of an interrupted run at init', async () => {
    await store.beginStaging('half-written');
    await store.createWorkDir('restore-x');
    const leftovers = await new CheckpointStore(store.root).init();
    expect(leftovers.sort()).toEqual([expect.stringMatching(/^staging\/half-written$/), expect.stringMatching(/^work\/restore-x-/)].sort());
    await expect(store.get('half-written')).rejects.toThrow(NotFoundError);
  });

  it('gives each restore hard links to the image, so files CRIU adds stay out of the artifact', async () => {
    await storeArtifact('ck-1');
    const ws = await store.prepareRestoreWorkspace('ck-1', 'restore-c');
    expect((await fs.readdir(ws.imagePath)).sort()).toEqual(['inventory.img', 'pages-1.img']);
    await fs.writeFile(path.join(ws.imagePath, 'stats-restore'), 'x');
    await store.verify('ck-1');
    await store.removeWorkDir(ws.dir);
  });

  it('exports one tar archive and imports it into another store', async () => {
    const manifest = await storeArtifact('ck-1');
    const archive = path.join(root, 'ck-1.tar');
    const { bytes } = await store.export('ck-1', archive);
    expect(bytes).toBeGreaterThan(10_000);
    // Any tar reads it.
    expect(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n')).toEqual(['manifest.json', ...manifest.files.map((f) => f.path)]);
    const other = new CheckpointStore(path.join(root, 'other'));
    await other.init();
    expect(await other.import(archive)).toEqual(manifest);
    await other.verify('ck-1');
    await expect(other.import(archive)).rejects.toThrow(AlreadyExistsError);
  });

  it('rejects a truncated archive, a tampered one and one with foreign entries, leaving nothing behind', async () => {
    await storeArtifact('ck-1');
    const archive = path.join(root, 'ck-1.tar');
    await store.export('ck-1', archive);
    const other = new CheckpointStore(path.join(root, 'other'));
    await other.init();

    const truncated = path.join(root, 'truncated.tar');
    await fs.copyFile(archive, truncated);
    await fs.truncate(truncated, 3000);
    await expect(other.import(truncated)).rejects.toThrow(CorruptArtifactError);

    const tampered = path.join(root, 'tampered.tar');
    const bytes = await fs.readFile(archive);
    bytes[bytes.indexOf(Buffer.alloc(16, 7)) + 3] = 9;
    await fs.writeFile(tampered, bytes);
    await expect(other.import(tampered)).rejects.toThrow(/criu\/pages-1.img: checksum/);

    const foreignDir = path.join(root, 'foreign');
    await fs.mkdir(foreignDir);
    await fs.writeFile(path.join(foreignDir, 'hello.txt'), 'hi');
    const foreign = path.join(root, 'foreign.tar');
    execFileSync('tar', ['-cf', foreign, '-C', foreignDir, 'hello.txt']);
    await expect(other.import(foreign)).rejects.toThrow(/unexpected entry "hello.txt"/);

    expect((await other.list()).length).toBe(0);
    expect(await fs.readdir(path.join(other.root, 'staging'))).toEqual([]);
  });
});

describe('CheckpointStore with chunked checksums of large files', () => {
  const CHUNK = 4096;
  const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
  /** Distinct bytes per position, so that a chunk's checksum depends on where it is. */
  const content = (size: number): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + (i >> 8)) & 0xff));
  const sizes = { 'criu/empty.img': 0, 'criu/below.img': CHUNK - 1, 'criu/exact.img': CHUNK, 'criu/above.img': CHUNK + 1, 'criu/pages-1.img': 5 * CHUNK + 7 };
  let chunked: CheckpointStore;

  beforeEach(async () => {
    chunked = new CheckpointStore(path.join(root, 'chunked'), { chunkBytes: CHUNK, maxWorkers: 3 });
    await chunked.init();
  });

  async function storeChunked(id: string, target: CheckpointStore = chunked): Promise<CheckpointManifest> {
    const dir = await target.beginStaging(id);
    await fs.writeFile(path.join(dir, 'criu/inventory.img'), 'inventory');
    for (const [rel, size] of Object.entries(sizes)) await fs.writeFile(path.join(dir, rel), content(size));
    await fs.writeFile(path.join(dir, 'rootfs-diff.tar'), content(3 * CHUNK));
    await fs.writeFile(path.join(dir, 'spec.json'), '{"ociVersion":"1.1.0"}');
    const manifest = sampleManifest({ id, schemaVersion: MANIFEST_SCHEMA_VERSION, files: await target.sealStaging(id) });
    await target.commit(manifest);
    return manifest;
  }

  const entry = (manifest: CheckpointManifest, rel: string): ArtifactFile => manifest.files.find((file) => file.path === rel)!;

  it('records files up to one chunk whole and larger CRIU files as the sha256 of each chunk, at every boundary', async () => {
    const manifest = await storeChunked('ck-c');
    for (const rel of ['criu/empty.img', 'criu/below.img', 'criu/exact.img']) {
      expect(entry(manifest, rel)).toEqual({ path: rel, size: sizes[rel as keyof typeof sizes], sha256: sha256(content(sizes[rel as keyof typeof sizes])) });
    }
    const above = content(CHUNK + 1);
    expect(entry(manifest, 'criu/above.img')).toEqual({
      path: 'criu/above.img',
      size: CHUNK + 1,
      chunkBytes: CHUNK,
      chunkSha256: [sha256(above.subarray(0, CHUNK)), sha256(above.subarray(CHUNK))],
    });
    const pages = content(5 * CHUNK + 7);
    expect(entry(manifest, 'criu/pages-1.img')).toMatchObject({
      chunkBytes: CHUNK,
      chunkSha256: [0, 1, 2, 3, 4, 5].map((k) => sha256(pages.subarray(k * CHUNK, (k + 1) * CHUNK))),
    });
    // The rootfs diff's sha256 is its containerd digest: always whole, whatever its size.
    expect(entry(manifest, 'rootfs-diff.tar')).toEqual({ path: 'rootfs-diff.tar', size: 3 * CHUNK, sha256: sha256(content(3 * CHUNK)) });
    expect(await chunked.verify('ck-c')).toEqual(manifest);
  });

  it('names the file and the chunk whose byte flipped', async () => {
    await storeChunked('ck-c');
    const pages = path.join(chunked.artifactPath('ck-c'), 'criu/pages-1.img');
    const handle = await fs.open(pages, 'r+');
    await handle.write(Buffer.from([0xff ^ content(5 * CHUNK + 7)[3 * CHUNK + 100]!]), 0, 1, 3 * CHUNK + 100);
    await handle.close();
    const error = await chunked.verify('ck-c').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CorruptArtifactError);
    expect((error as Error).message).toMatch(/criu\/pages-1.img: checksum of chunk 3 \(bytes 12288-16383\); first: [0-9a-f]{64} != recorded [0-9a-f]{64}$/);
    expect((error as CorruptArtifactError).context.problems).toEqual([expect.objectContaining({ path: 'criu/pages-1.img', chunks: { indexes: [3], chunkBytes: CHUNK, fileSize: 5 * CHUNK + 7 } })]);
  });

  it('names the last, short chunk and detects a truncated chunked file by its size', async () => {
    await storeChunked('ck-c');
    const pages = path.join(chunked.artifactPath('ck-c'), 'criu/pages-1.img');
    const handle = await fs.open(pages, 'r+');
    await handle.write(Buffer.from('x'), 0, 1, 5 * CHUNK + 6);
    await handle.close();
    await expect(chunked.verify('ck-c')).rejects.toThrow(/chunk 5 \(bytes 20480-20486\)/);
    await fs.truncate(pages, 2 * CHUNK);
    await expect(chunked.verify('ck-c')).rejects.toThrow(/criu\/pages-1.img: size 8192 != recorded 20487/);
  });

  it('still verifies an artifact of a version 1 manifest (every file hashed whole)', async () => {
    const manifest = await storeChunked('ck-c');
    const v1: CheckpointManifest = {
      ...manifest,
      schemaVersion: 1,
      files: await Promise.all(
        manifest.files.map(async (file) => ({ path: file.path, size: file.size, sha256: sha256(await fs.readFile(path.join(chunked.artifactPath('ck-c'), file.path))) })),
      ),
    };
    await fs.writeFile(path.join(chunked.artifactPath('ck-c'), 'manifest.json'), JSON.stringify(v1));
    expect(await chunked.verify('ck-c')).toEqual(v1);
    const pages = path.join(chunked.artifactPath('ck-c'), 'criu/pages-1.img');
    await fs.writeFile(pages, Buffer.concat([Buffer.from('y'), content(5 * CHUNK + 6)]));
    await expect(chunked.verify('ck-c')).rejects.toThrow(/criu\/pages-1.img: checksum [0-9a-f]{64} != recorded/);
  });

  it('exports a chunked artifact and imports it into a store with another chunk size', async () => {
    const manifest = await storeChunked('ck-c');
    const archive = path.join(root, 'ck-c.tar');
    await chunked.export('ck-c', archive);
    // The default store: 64 MiB chunks; the recorded 4 KiB chunks are what it checks against.
    expect(await store.import(archive)).toEqual(manifest);
    expect(await store.verify('ck-c')).toEqual(manifest);
  });
});

describe('CheckpointStore with host copies of GPU memory', () => {
  const CHUNK = 4096;
  const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
  const hostCopyBytes = Buffer.from(Array.from({ length: 3 * CHUNK + 5 }, (_, i) => (i * 7 + 3) & 0xff));
  let hosts: CheckpointStore;

  beforeEach(async () => {
    hosts = new CheckpointStore(path.join(root, 'hosts'), { chunkBytes: CHUNK, maxWorkers: 2 });
    await hosts.init();
  });

  async function stageWithHostCopy(id: string): Promise<string> {
    const dir = await hosts.beginStaging(id);
    await fs.writeFile(path.join(dir, 'criu/inventory.img'), 'inventory');
    await fs.writeFile(path.join(dir, 'criu/pages-1.img'), Buffer.alloc(2 * CHUNK + 1, 7));
    await fs.writeFile(path.join(dir, 'rootfs-diff.tar'), Buffer.alloc(1024));
    await fs.writeFile(path.join(dir, 'spec.json'), '{"ociVersion":"1.1.0"}');
    await fs.mkdir(path.join(dir, 'host-copy'), { mode: 0o700 });
    await fs.writeFile(path.join(dir, 'host-copy/1.img'), hostCopyBytes);
    return dir;
  }

  function gpuManifest(id: string, files: ArtifactFile[]): CheckpointManifest {
    return sampleManifest({
      id,
      schemaVersion: MANIFEST_SCHEMA_VERSION,
      files,
      gpu: {
        driverVersion: '580.95.05',
        cudaDriverApiVersion: 13000,
        gpus: [{ uuid: 'GPU-2b7a1c9e-0000-4000-8000-000000000001', name: 'NVIDIA H100 80GB HBM3', memoryTotalBytes: 85_899_345_920 }],
        processes: [{ pid: 4242, gpuUuid: 'GPU-2b7a1c9e-0000-4000-8000-000000000001', usedBytes: 1_048_576 }],
        hostCopies: [{ nsPid: 1, file: 'host-copy/1.img', ranges: [{ start: 0x7f0000000000, length: CHUNK }, { start: 0x7f0000100000, length: 2 * CHUNK + 5 }] }],
      },
    });
  }

  const entry = (files: ArtifactFile[], rel: string): ArtifactFile | undefined => files.find((file) => file.path === rel);

  it('records the digests it is given for files in `known` as given, without hashing them', async () => {
    await stageWithHostCopy('ck-h');
    // Neither digest matches the content: recorded as given, they cannot have come from hashing the files.
    const madeUp = { chunkBytes: CHUNK, chunkSha256: [sha('a'), sha('b'), sha('c'), sha('d')] };
    const known = new Map<string, FileDigest>([
      ['host-copy/1.img', madeUp],
      ['criu/inventory.img', { sha256: sha('e') }],
    ]);
    const files = await hosts.sealStaging('ck-h', known);
    expect(entry(files, 'host-copy/1.img')).toEqual({ path: 'host-copy/1.img', size: 3 * CHUNK + 5, ...madeUp });
    expect(entry(files, 'criu/inventory.img')).toEqual({ path: 'criu/inventory.img', size: 9, sha256: sha('e') });
    // The other files are hashed as usual.
    expect(entry(files, 'spec.json')).toEqual({ path: 'spec.json', size: 22, sha256: sha256(Buffer.from('{"ociVersion":"1.1.0"}')) });
    expect(entry(files, 'criu/pages-1.img')).toMatchObject({ chunkBytes: CHUNK, chunkSha256: [sha256(Buffer.alloc(CHUNK, 7)), sha256(Buffer.alloc(CHUNK, 7)), sha256(Buffer.alloc(1, 7))] });
  });

  it('hashes a host copy in chunks, even one smaller than a chunk, when no digest is given', async () => {
    await stageWithHostCopy('ck-h');
    const files = await hosts.sealStaging('ck-h');
    expect(entry(files, 'host-copy/1.img')).toEqual({
      path: 'host-copy/1.img',
      size: 3 * CHUNK + 5,
      chunkBytes: CHUNK,
      chunkSha256: [0, 1, 2, 3].map((k) => sha256(hostCopyBytes.subarray(k * CHUNK, (k + 1) * CHUNK))),
    });
  });

  it('leaves the checksums of host copies to the caller when asked, but still checks their presence and size', async () => {
    await stageWithHostCopy('ck-h');
    const manifest = gpuManifest('ck-h', await hosts.sealStaging('ck-h'));
    await hosts.commit(manifest);
    const later = (rel: string): boolean => rel.startsWith('host-copy/');
    expect(await hosts.verify('ck-h')).toEqual(manifest);
    expect(await hosts.verify('ck-h', { checksumsLater: later })).toEqual(manifest);

    const copy = path.join(hosts.artifactPath('ck-h'), 'host-copy/1.img');
    const handle = await fs.open(copy, 'r+');
    await handle.write(Buffer.from([hostCopyBytes[2 * CHUNK + 10]! ^ 0xff]), 0, 1, 2 * CHUNK + 10);
    await handle.close();
    // Same size, other bytes: left to the caller with the predicate, caught without it.
    expect(await hosts.verify('ck-h', { checksumsLater: later })).toEqual(manifest);
    await expect(hosts.verify('ck-h')).rejects.toThrow(/host-copy\/1.img: checksum of chunk 2 \(bytes 8192-12287\)/);

    // The predicate spares only the files it names.
    const pages = path.join(hosts.artifactPath('ck-h'), 'criu/pages-1.img');
    await fs.writeFile(pages, Buffer.alloc(2 * CHUNK + 1, 8));
    await expect(hosts.verify('ck-h', { checksumsLater: later })).rejects.toThrow(/criu\/pages-1.img: checksum of chunk 0/);
    await fs.writeFile(pages, Buffer.alloc(2 * CHUNK + 1, 7));
    expect(await hosts.verify('ck-h', { checksumsLater: later })).toEqual(manifest);

    await fs.truncate(copy, 3 * CHUNK);
    await expect(hosts.verify('ck-h', { checksumsLater: later })).rejects.toThrow(/host-copy\/1.img: size 12288 != recorded 12293/);
    await fs.appendFile(copy, Buffer.alloc(10));
    await expect(hosts.verify('ck-h', { checksumsLater: later })).rejects.toThrow(/host-copy\/1.img: size 12298 != recorded 12293/);
    await fs.rm(copy);
    const error = await hosts.verify('ck-h', { checksumsLater: later }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CorruptArtifactError);
    expect((error as Error).message).toMatch(/host-copy\/1.img: missing/);
  });
});
