import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError } from '../../lib/errors.ts';
import { AlreadyExistsError, CorruptArtifactError } from '../errors.ts';
import { extractArchive, writeArchive } from './archive.ts';
import {
  CRIU_DIR,
  MANIFEST_FILE,
  compareArtifactFiles,
  describeProblems,
  isArtifactPath,
  isValidCheckpointId,
  parseManifest,
  type ArtifactFile,
  type CheckpointManifest,
} from './manifest.ts';

export const DEFAULT_STORE_ROOT = '/var/lib/kybernate/checkpoints';

/** Where one restore reads the CRIU image from and lets CRIU write its logs; removed after the restore. */
export interface RestoreWorkspace {
  imagePath: string;
  workPath: string;
  dir: string;
}

/**
 * The node's checkpoint store. Layout under the root (0700, files 0600):
 *   artifacts/<id>/     committed checkpoints: manifest.json, spec.json, rootfs-diff.tar, criu/*
 *   staging/<id>/       a checkpoint being written; renamed into artifacts/ only when complete
 *   work/<name>/        per-operation scratch (CRIU work dirs, restore image links)
 * A committed artifact is never modified: restores read it through hard links in work/, so the files
 * CRIU adds there (stats-restore) stay out of the artifact. staging/ and work/ are emptied at start,
 * so a crash leaves nothing that looks like a checkpoint.
 */
export class CheckpointStore {
  readonly root: string;

  constructor(root: string = DEFAULT_STORE_ROOT) {
    this.root = root;
  }

  private get artifactsDir(): string {
    return path.join(this.root, 'artifacts');
  }
  private get stagingDir(): string {
    return path.join(this.root, 'staging');
  }
  private get workDir(): string {
    return path.join(this.root, 'work');
  }

  artifactPath(id: string): string {
    return path.join(this.artifactsDir, id);
  }

  /** Creates the layout and removes what an interrupted agent left in staging/ and work/; returns those names. */
  async init(): Promise<string[]> {
    for (const dir of [this.root, this.artifactsDir, this.stagingDir, this.workDir]) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.chmod(dir, 0o700);
    }
    const leftovers: string[] = [];
    for (const dir of [this.stagingDir, this.workDir]) {
      for (const name of await fs.readdir(dir)) {
        await fs.rm(path.join(dir, name), { recursive: true, force: true });
        leftovers.push(path.join(path.basename(dir), name));
      }
    }
    return leftovers;
  }

  newCheckpointId(containerId: string): string {
    const base = containerId.toLowerCase().replace(/[^a-z0-9._-]/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 80) || 'checkpoint';
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').toLowerCase();
    return `${base}-${stamp}-${randomBytes(3).toString('hex')}`;
  }

  async exists(id: string): Promise<boolean> {
    return fs.stat(this.artifactPath(id)).then(() => true, () => false);
  }

  /** A fresh directory for a checkpoint being written; the CRIU image goes to its criu/ subdirectory. */
  async beginStaging(id: string): Promise<string> {
    if (!isValidCheckpointId(id)) throw new CorruptArtifactError(`invalid checkpoint id "${id}"`, { checkpoint: id });
    if (await this.exists(id)) throw new AlreadyExistsError(`checkpoint ${id} exists already`, { checkpoint: id });
    const dir = path.join(this.stagingDir, id);
    await fs.mkdir(dir, { mode: 0o700 });
    await fs.mkdir(path.join(dir, CRIU_DIR), { mode: 0o700 });
    return dir;
  }

  async discardStaging(id: string): Promise<void> {
    await fs.rm(path.join(this.stagingDir, id), { recursive: true, force: true });
  }

  /** Lists the files of a staged or stored artifact with their sizes and sha256, in a stable order. */
  async describeFiles(dir: string): Promise<ArtifactFile[]> {
    const rels = (await listFiles(dir)).filter((rel) => rel !== MANIFEST_FILE);
    return mapConcurrently(rels, async (rel) => {
      const full = path.join(dir, rel);
      const { size } = await fs.stat(full);
      return { path: rel, size, sha256: await sha256File(full) };
    });
  }

  /**
   * Makes a staged checkpoint durable and visible: tightens modes, writes the manifest last, fsyncs, then
   * renames staging/<id> to artifacts/<id> in one step, so a reader never sees a half-written artifact.
   */
  async commit(manifest: CheckpointManifest): Promise<void> {
    const staged = path.join(this.stagingDir, manifest.id);
    // fsync'ed side by side: one at a time costs a disk flush each.
    await Promise.all(
      (await listFiles(staged)).map(async (rel) => {
        await fs.chmod(path.join(staged, rel), 0o600);
        await fsyncPath(path.join(staged, rel));
      }),
    );
    await fs.writeFile(path.join(staged, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    await fsyncPath(path.join(staged, MANIFEST_FILE));
    await fsyncPath(path.join(staged, CRIU_DIR));
    await fsyncPath(staged);
    if (await this.exists(manifest.id)) throw new AlreadyExistsError(`checkpoint ${manifest.id} exists already`, { checkpoint: manifest.id });
    await fs.rename(staged, this.artifactPath(manifest.id));
    await fsyncPath(this.artifactsDir);
  }

  async get(id: string): Promise<CheckpointManifest> {
    if (!isValidCheckpointId(id)) throw new NotFoundError(`checkpoint ${id} not found (invalid id)`, { checkpoint: id });
    let text: string;
    try {
      text = await fs.readFile(path.join(this.artifactPath(id), MANIFEST_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        if (await this.exists(id)) throw new CorruptArtifactError(`checkpoint ${id} has no manifest`, { checkpoint: id });
        throw new NotFoundError(`checkpoint ${id} not found in ${this.artifactsDir}`, { checkpoint: id });
      }
      throw err;
    }
    return parseManifest(text, id);
  }

  /** Every stored checkpoint; unreadable ones are returned as errors rather than hidden. */
  async list(): Promise<{ id: string; manifest?: CheckpointManifest; error?: Error }[]> {
    const ids = (await fs.readdir(this.artifactsDir)).sort();
    return Promise.all(ids.map((id) => this.get(id).then((manifest) => ({ id, manifest }), (error: Error) => ({ id, error }))));
  }

  async delete(id: string): Promise<void> {
    if (!isValidCheckpointId(id) || !(await this.exists(id))) throw new NotFoundError(`checkpoint ${id} not found`, { checkpoint: id });
    // Rename first so that a concurrent reader sees the artifact either whole or gone.
    const doomed = path.join(this.workDir, `delete-${id}-${randomBytes(3).toString('hex')}`);
    await fs.rename(this.artifactPath(id), doomed);
    await fs.rm(doomed, { recursive: true, force: true });
  }

  /** Checks every file against the manifest's sizes and sha256; throws CorruptArtifactError naming the differences. */
  async verify(id: string): Promise<CheckpointManifest> {
    const manifest = await this.get(id);
    const dir = this.artifactPath(id);
    const expectedSize = new Map(manifest.files.map((file) => [file.path, file.size]));
    const rels = (await listFiles(dir)).filter((rel) => rel !== MANIFEST_FILE);
    const actual = await mapConcurrently(rels, async (rel) => {
      const full = path.join(dir, rel);
      const { size } = await fs.stat(full);
      // Hashing a file whose size is already wrong only costs time.
      return { path: rel, size, sha256: expectedSize.get(rel) === size ? await sha256File(full) : undefined };
    });
    const problems = compareArtifactFiles(manifest.files, actual);
    if (problems.length > 0) {
      throw new CorruptArtifactError(`checkpoint ${id} does not match its manifest: ${describeProblems(problems)}`, { checkpoint: id, problems });
    }
    return manifest;
  }

  /** A scratch directory for one operation (e.g. the CRIU work dir of a checkpoint). */
  async createWorkDir(name: string): Promise<string> {
    const dir = path.join(this.workDir, `${name}-${randomBytes(4).toString('hex')}`);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  async removeWorkDir(dir: string): Promise<void> {
    await fs.rm(dir, { recursive: true, force: true });
  }

  /** Hard-links the artifact's CRIU image into a fresh work directory for one restore. */
  async prepareRestoreWorkspace(id: string, name: string): Promise<RestoreWorkspace> {
    const dir = await this.createWorkDir(name);
    const imagePath = path.join(dir, 'image');
    const workPath = path.join(dir, 'criu-work');
    await fs.mkdir(imagePath, { mode: 0o700 });
    await fs.mkdir(workPath, { mode: 0o700 });
    const source = path.join(this.artifactPath(id), CRIU_DIR);
    for (const name of await fs.readdir(source)) await fs.link(path.join(source, name), path.join(imagePath, name));
    return { dir, imagePath, workPath };
  }

  async export(id: string, archivePath: string): Promise<{ bytes: number }> {
    const manifest = await this.verify(id);
    const names = [MANIFEST_FILE, ...manifest.files.map((file) => file.path)];
    await writeArchive(archivePath, this.artifactPath(id), names);
    return { bytes: (await fs.stat(archivePath)).size };
  }

  /** Imports an exported archive: extracted into staging/, verified like any artifact, then committed. */
  async import(archivePath: string): Promise<CheckpointManifest> {
    const staging = await fs.mkdtemp(path.join(this.stagingDir, 'import-'));
    try {
      await extractArchive(archivePath, staging, (name) => name === MANIFEST_FILE || isArtifactPath(name));
      const manifest = parseManifest(await fs.readFile(path.join(staging, MANIFEST_FILE), 'utf8').catch(() => {
        throw new CorruptArtifactError(`archive ${archivePath} has no ${MANIFEST_FILE}`, { archive: archivePath });
      }));
      const problems = compareArtifactFiles(manifest.files, await this.describeFiles(staging));
      if (problems.length > 0) {
        throw new CorruptArtifactError(`archive ${archivePath} does not match its manifest: ${describeProblems(problems)}`, { archive: archivePath, problems });
      }
      if (await this.exists(manifest.id)) throw new AlreadyExistsError(`checkpoint ${manifest.id} exists already`, { checkpoint: manifest.id });
      await fsyncPath(staging);
      await fs.rename(staging, this.artifactPath(manifest.id));
      return manifest;
    } finally {
      await fs.rm(staging, { recursive: true, force: true });
    }
  }
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}

/**
 * Files hashed side by side: a CRIU image is dozens of small files, and one at a time each waits for its
 * own open/read/close round trips through libuv's pool (about 1 ms apiece on a loaded node). Bounded so
 * a large artifact does not hold one 1 MiB read buffer per file at once. Results keep the input order.
 */
const HASH_CONCURRENCY = 8;

async function mapConcurrently<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, items.length) }, worker));
  return results;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function fsyncPath(target: string): Promise<void> {
  const handle = await fs.open(target, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
