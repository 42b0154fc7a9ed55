import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError } from '../../lib/errors.ts';
import { AlreadyExistsError, CorruptArtifactError } from '../errors.ts';
import { extractArchive, writeArchive } from './archive.ts';
import { defaultHashingOptions, layoutFor, layoutOf, statAndHashFiles, type HashingOptions } from './hashing.ts';
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
  type FileDigest,
  type FileProblem,
  type FoundFile,
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
  private readonly hashing: HashingOptions;
  /** staged checkpoints whose files sealStaging already made private and durable */
  private readonly sealed = new Set<string>();

  constructor(root: string = DEFAULT_STORE_ROOT, hashing: Partial<HashingOptions> = {}) {
    this.root = root;
    this.hashing = { ...defaultHashingOptions(), ...hashing };
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

  /** The staging directory of a checkpoint being written (beginStaging made it). */
  stagingPath(id: string): string {
    return path.join(this.stagingDir, id);
  }

  /** How large files are chunked and hashed: memory images written beside an artifact use the same. */
  get hashingOptions(): HashingOptions {
    return { ...this.hashing };
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
    this.sealed.delete(id);
    await fs.rm(path.join(this.stagingDir, id), { recursive: true, force: true });
  }

  /**
   * Lists the files of a staged or stored artifact with their sizes and checksums, in a stable order:
   * large CRIU image files as chunk checksums (hashed in parallel), the others whole. Files in `known`
   * (digests their writer computed from the bytes it wrote) are only measured.
   */
  async describeFiles(dir: string, known: ReadonlyMap<string, FileDigest> = new Map()): Promise<ArtifactFile[]> {
    const rels = (await listFiles(dir)).filter((rel) => rel !== MANIFEST_FILE);
    const hashed = await statAndHashFiles(
      rels.map((rel) => ({ file: path.join(dir, rel), layout: (size: number) => (known.has(rel) ? undefined : layoutFor(rel, size, this.hashing.chunkBytes)) })),
      this.hashing,
    );
    return rels.map((rel, i) => ({ path: rel, size: hashed[i]!.size, ...(known.get(rel) ?? hashed[i]!.digest!) }));
  }

  /**
   * Describes a staged checkpoint's files for its manifest and, at the same time, makes them private and
   * durable: the fsyncs write back to disk what CRIU just wrote while the hashing reads it from the page
   * cache, instead of one after the other. commit() then only adds the manifest and renames. `known`:
   * see describeFiles.
   */
  async sealStaging(id: string, known?: ReadonlyMap<string, FileDigest>): Promise<ArtifactFile[]> {
    const staged = path.join(this.stagingDir, id);
    const [files] = await Promise.all([this.describeFiles(staged, known), syncFiles(staged)]);
    this.sealed.add(id);
    return files;
  }

  /**
   * Makes a staged checkpoint durable and visible: tightens modes and fsyncs (unless sealStaging did),
   * writes the manifest last, fsyncs it, then renames staging/<id> to artifacts/<id> in one step, so a
   * reader never sees a half-written artifact.
   */
  async commit(manifest: CheckpointManifest): Promise<void> {
    const staged = path.join(this.stagingDir, manifest.id);
    if (!this.sealed.delete(manifest.id)) await syncFiles(staged);
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

  /**
   * Checks every file against the manifest's sizes and checksums, each file hashed the way the manifest
   * recorded it (whole, or in its chunks); throws CorruptArtifactError naming the differences (file and chunk).
   * Files for which `checksumsLater` holds are only checked for presence and size: the caller verifies
   * them otherwise (a restore hashes the host copies beside its other steps) and must use nothing it has
   * not. `maxWorkers` caps the hashing threads below the store's (work that runs beside other work).
   */
  async verify(id: string, options: { checksumsLater?: (rel: string) => boolean; maxWorkers?: number } = {}): Promise<CheckpointManifest> {
    const manifest = await this.get(id);
    const dir = this.artifactPath(id);
    const hashing = { ...this.hashing, ...(options.maxWorkers ? { maxWorkers: options.maxWorkers } : {}) };
    const problems = await checkFiles(dir, manifest.files, hashing, options.checksumsLater);
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
      const problems = await checkFiles(staging, manifest.files, this.hashing);
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
 * What differs between a directory and the files a manifest recorded: each file is hashed the way the
 * manifest recorded it (whole, or in its chunks), so artifacts of older manifests and of stores with
 * another chunk size verify too.
 */
async function checkFiles(dir: string, recorded: ArtifactFile[], hashing: HashingOptions, checksumsLater: (rel: string) => boolean = () => false): Promise<FileProblem[]> {
  const expected = new Map(recorded.map((file) => [file.path, file]));
  const rels = (await listFiles(dir)).filter((rel) => rel !== MANIFEST_FILE);
  const hashed = await statAndHashFiles(
    rels.map((rel) => ({
      file: path.join(dir, rel),
      // Hashing a file whose size is already wrong (or that is not listed) only costs time.
      layout: (size: number) => {
        const entry = expected.get(rel);
        return entry?.size === size && !checksumsLater(rel) ? layoutOf(entry) : undefined;
      },
    })),
    hashing,
  );
  // A file left to the caller counts as matching its record once its size does.
  const found: FoundFile[] = rels.map((rel, i) => {
    const entry = expected.get(rel);
    const later = entry && entry.size === hashed[i]!.size && checksumsLater(rel);
    return { path: rel, size: hashed[i]!.size, ...(later ? entry : hashed[i]!.digest) };
  });
  return compareArtifactFiles(recorded, found);
}

/** chmod 0600 + fsync of every file of a directory, side by side: one at a time costs a disk flush each. */
async function syncFiles(dir: string): Promise<void> {
  await Promise.all(
    (await listFiles(dir)).map(async (rel) => {
      await fs.chmod(path.join(dir, rel), 0o600);
      await fsyncPath(path.join(dir, rel));
    }),
  );
}

async function fsyncPath(target: string): Promise<void> {
  const handle = await fs.open(target, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
