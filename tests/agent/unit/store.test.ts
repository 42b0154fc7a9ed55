import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../../src/lib/errors.ts';
import { AlreadyExistsError, CorruptArtifactError } from '../../../src/agent/errors.ts';
import { MANIFEST_KIND, type CheckpointManifest } from '../../../src/agent/store/manifest.ts';
import { CheckpointStore } from '../../../src/agent/store/store.ts';
import { sampleManifest } from './fixtures.ts';

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
