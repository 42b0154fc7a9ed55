import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CorruptArtifactError } from '../errors.ts';
import { GpuRecordSchema } from '../gpu/record.ts';

export const MANIFEST_FILE = 'manifest.json';
export const SPEC_FILE = 'spec.json';
export const ROOTFS_DIFF_FILE = 'rootfs-diff.tar';
export const CRIU_DIR = 'criu';
/** Host copies of GPU memory that the agent saved beside the CRIU image (one image file per CUDA process). */
export const HOST_COPY_DIR = 'host-copy';
export const MANIFEST_KIND = 'kybernate.io/checkpoint';
/**
 * Version 2 added chunked digests of large files, version 3 host copies of GPU memory beside the CRIU image
 * (an agent that does not know them must refuse the artifact, not restore without that memory). Versions
 * 1 and 2 are still read.
 */
export const MANIFEST_SCHEMA_VERSION = 3;
const READABLE_SCHEMA_VERSIONS = [1, 2, 3] as const;
/** What CRIU always writes first; an image directory without it is not a CRIU image. */
const CRIU_INVENTORY = `${CRIU_DIR}/inventory.img`;
const CHECKPOINT_ID = /^[a-z0-9][a-z0-9._-]{0,127}$/;

const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });

const WholeFileSchema = Type.Object({
  path: Type.String({ minLength: 1 }),
  size: Type.Integer({ minimum: 0 }),
  sha256: Sha256,
});

/** A large file as the sha256 of each `chunkBytes` range (the last one shorter), so that it can be hashed in parallel. */
const ChunkedFileSchema = Type.Object({
  path: Type.String({ minLength: 1 }),
  size: Type.Integer({ minimum: 1 }),
  chunkBytes: Type.Integer({ minimum: 1 }),
  chunkSha256: Type.Array(Sha256, { minItems: 1 }),
});

const ArtifactFileSchema = Type.Union([WholeFileSchema, ChunkedFileSchema]);

/** Where a namespace of the checkpointed task came from: its own, joined by path, or the host's. */
const NamespaceOrigin = Type.Union([Type.Literal('own'), Type.Literal('path'), Type.Literal('host')]);

export const ManifestSchema = Type.Object({
  kind: Type.Literal(MANIFEST_KIND),
  schemaVersion: Type.Union(READABLE_SCHEMA_VERSIONS.map((version) => Type.Literal(version))),
  id: Type.String({ pattern: CHECKPOINT_ID.source }),
  createdAt: Type.String({ minLength: 1 }),
  node: Type.String(),
  versions: Type.Object({ kernel: Type.String(), criu: Type.String(), containerd: Type.String() }),
  source: Type.Object({
    namespace: Type.String({ minLength: 1 }),
    containerId: Type.String({ minLength: 1 }),
    image: Type.Object({ ref: Type.String(), digest: Type.String() }),
    snapshotter: Type.String({ minLength: 1 }),
    /** chain id of the committed snapshot the container's rootfs was prepared from: the diff applies on it */
    snapshotParent: Type.String(),
    runtime: Type.Object({
      name: Type.String({ minLength: 1 }),
      options: Type.Union([Type.Null(), Type.Object({ typeUrl: Type.String(), valueBase64: Type.String() })]),
    }),
    networkNamespace: NamespaceOrigin,
    pidNamespace: NamespaceOrigin,
    labels: Type.Record(Type.String(), Type.String()),
  }),
  leaveRunning: Type.Boolean(),
  /** present when the CUDA state was checkpointed too: a restore must bring it back onto a GPU */
  gpu: Type.Optional(GpuRecordSchema),
  files: Type.Array(ArtifactFileSchema, { minItems: 1 }),
  /** milliseconds per step of the checkpoint */
  timings: Type.Record(Type.String(), Type.Number({ minimum: 0 })),
});

export type CheckpointManifest = Static<typeof ManifestSchema>;
export type ArtifactFile = Static<typeof ArtifactFileSchema>;
export type WholeFile = Static<typeof WholeFileSchema>;
/** What a file's checksum is recorded as: its whole sha256, or one per chunk. */
export type FileDigest = { sha256: string } | { chunkBytes: number; chunkSha256: string[] };
export type NamespaceOriginKind = CheckpointManifest['source']['networkNamespace'];

export function isValidCheckpointId(id: string): boolean {
  return CHECKPOINT_ID.test(id);
}

/** A path inside the artifact: relative, normalized, no `..`, and one of the kinds of file an artifact has. */
export function isArtifactPath(path: string): boolean {
  if (path === SPEC_FILE || path === ROOTFS_DIFF_FILE) return true;
  const [dir, name, ...rest] = path.split('/');
  return (dir === CRIU_DIR || dir === HOST_COPY_DIR) && rest.length === 0 && name !== undefined && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name);
}

/** A host copy image of GPU memory (verified while a restore writes it back, not before). */
export function isHostCopyPath(path: string): boolean {
  return path.startsWith(`${HOST_COPY_DIR}/`);
}

/**
 * Parses and checks a manifest read from disk or an imported archive. Anything unexpected (another kind,
 * a schema this agent does not know, a path that leaves the artifact, a missing CRIU inventory) means
 * the artifact is not one this agent wrote, and it is rejected before any of it reaches CRIU.
 */
export function parseManifest(text: string, expectedId?: string): CheckpointManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CorruptArtifactError(`checkpoint manifest is not valid JSON: ${(err as Error).message}`, { checkpoint: expectedId });
  }
  if (!Value.Check(ManifestSchema, value)) {
    const first = Value.Errors(ManifestSchema, value).First();
    const where = first ? `${first.path || '/'}: ${first.message}` : 'unknown field';
    throw new CorruptArtifactError(`checkpoint manifest is not a ${MANIFEST_KIND} v${READABLE_SCHEMA_VERSIONS.join('/v')} manifest (${where})`, {
      checkpoint: expectedId,
    });
  }
  const manifest = value;
  const context = { checkpoint: manifest.id };
  if (expectedId !== undefined && manifest.id !== expectedId) {
    throw new CorruptArtifactError(`checkpoint manifest names id "${manifest.id}" but is stored as "${expectedId}"`, context);
  }
  const seen = new Set<string>();
  for (const file of manifest.files) {
    if (!isArtifactPath(file.path)) throw new CorruptArtifactError(`checkpoint manifest lists a foreign path "${file.path}"`, context);
    if (seen.has(file.path)) throw new CorruptArtifactError(`checkpoint manifest lists "${file.path}" twice`, context);
    seen.add(file.path);
    if ('chunkSha256' in file) checkChunkedEntry(manifest.schemaVersion, file, context);
  }
  for (const required of [SPEC_FILE, ROOTFS_DIFF_FILE, CRIU_INVENTORY]) {
    if (!seen.has(required)) throw new CorruptArtifactError(`checkpoint manifest lacks "${required}"`, context);
  }
  checkHostCopies(manifest, context);
  return manifest;
}

/**
 * Host copies and host-copy files must match one to one: each listed in chunks of the size of its ranges,
 * whose addresses ascend without overlap, also across the copies (files) of one process: they are written
 * into the restored process.
 */
function checkHostCopies(manifest: CheckpointManifest, context: Record<string, unknown>): void {
  const copies = manifest.gpu?.hostCopies ?? [];
  if (copies.length > 0 && manifest.schemaVersion < 3) throw new CorruptArtifactError(`checkpoint manifest v${manifest.schemaVersion} has host copies (added in v3)`, context);
  const files = new Map(manifest.files.map((file) => [file.path, file]));
  const rangesOf = new Map<number, { start: number; length: number }[]>();
  const named = new Set<string>();
  for (const copy of copies) {
    if (named.has(copy.file)) throw new CorruptArtifactError(`checkpoint manifest names host copy "${copy.file}" twice`, context);
    named.add(copy.file);
    const file = files.get(copy.file);
    if (!isHostCopyPath(copy.file) || !file) throw new CorruptArtifactError(`checkpoint manifest names host copy "${copy.file}", which is not a listed ${HOST_COPY_DIR}/ file`, context);
    if (!('chunkSha256' in file)) throw new CorruptArtifactError(`checkpoint manifest records host copy "${copy.file}" whole, not in chunks`, context);
    const bytes = copy.ranges.reduce((sum, range) => sum + range.length, 0);
    if (bytes !== file.size) throw new CorruptArtifactError(`host copy "${copy.file}" is ${file.size} bytes, its ranges hold ${bytes}`, context);
    for (let i = 1; i < copy.ranges.length; i++) {
      const previous = copy.ranges[i - 1]!;
      if (copy.ranges[i]!.start < previous.start + previous.length) throw new CorruptArtifactError(`host copy "${copy.file}" has overlapping or unsorted ranges`, context);
    }
    rangesOf.set(copy.nsPid, [...(rangesOf.get(copy.nsPid) ?? []), ...copy.ranges]);
  }
  for (const [nsPid, ranges] of rangesOf) {
    const sorted = [...ranges].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.start < sorted[i - 1]!.start + sorted[i - 1]!.length) {
        throw new CorruptArtifactError(`host copies of namespace pid ${nsPid} overlap (two files would write the same memory)`, context);
      }
    }
  }
  const unnamed = manifest.files.find((file) => isHostCopyPath(file.path) && !named.has(file.path));
  if (unnamed) throw new CorruptArtifactError(`checkpoint manifest lists "${unnamed.path}", which no host copy names`, context);
}

function checkChunkedEntry(schemaVersion: number, file: Static<typeof ChunkedFileSchema>, context: Record<string, unknown>): void {
  if (schemaVersion < 2) throw new CorruptArtifactError(`checkpoint manifest v${schemaVersion} has chunk checksums for "${file.path}" (added in v2)`, context);
  // The rootfs diff's sha256 is its content digest in containerd: it must be recorded whole.
  if (!file.path.startsWith(`${CRIU_DIR}/`) && !isHostCopyPath(file.path)) {
    throw new CorruptArtifactError(`checkpoint manifest records "${file.path}" in chunks; only CRIU image files and host copies may be`, context);
  }
  const expected = Math.ceil(file.size / file.chunkBytes);
  if (file.chunkSha256.length !== expected) {
    throw new CorruptArtifactError(`checkpoint manifest lists ${file.chunkSha256.length} chunk checksums for "${file.path}", its size needs ${expected}`, context);
  }
}

/** The manifest's rootfs diff entry, recorded whole (parseManifest ensures it): its sha256 is a containerd digest. */
export function rootfsDiffFile(manifest: CheckpointManifest): WholeFile {
  const file = manifest.files.find((entry) => entry.path === ROOTFS_DIFF_FILE);
  if (!file || !('sha256' in file)) throw new CorruptArtifactError(`checkpoint ${manifest.id} has no whole-file ${ROOTFS_DIFF_FILE} entry`, { checkpoint: manifest.id });
  return file;
}

export interface FileProblem {
  path: string;
  problem: 'missing' | 'size' | 'checksum' | 'unlisted';
  expected?: string;
  actual?: string;
  /** for a chunked file: the chunks whose checksum differs (the first one's digests are in expected/actual) */
  chunks?: { indexes: number[]; chunkBytes: number; fileSize: number };
}

/** A file as found on disk; checksums are absent where they were not computed (its size already differs). */
export interface FoundFile {
  path: string;
  size: number;
  sha256?: string;
  chunkBytes?: number;
  chunkSha256?: string[];
}

/**
 * Compares what the manifest recorded with what is on disk. `actual` has every file found under the
 * artifact (other than the manifest), hashed with the layout the manifest recorded for it.
 */
export function compareArtifactFiles(expected: ArtifactFile[], actual: FoundFile[]): FileProblem[] {
  const problems: FileProblem[] = [];
  const found = new Map(actual.map((file) => [file.path, file]));
  for (const file of expected) {
    const onDisk = found.get(file.path);
    if (!onDisk) problems.push({ path: file.path, problem: 'missing' });
    else if (onDisk.size !== file.size) problems.push({ path: file.path, problem: 'size', expected: String(file.size), actual: String(onDisk.size) });
    else {
      const problem = compareDigests(file, onDisk);
      if (problem) problems.push(problem);
    }
    found.delete(file.path);
  }
  for (const path of found.keys()) problems.push({ path, problem: 'unlisted' });
  return problems;
}

function compareDigests(file: ArtifactFile, onDisk: FoundFile): FileProblem | undefined {
  if ('sha256' in file) {
    const actual = onDisk.sha256 ?? 'not computed';
    return actual === file.sha256 ? undefined : { path: file.path, problem: 'checksum', expected: file.sha256, actual };
  }
  const actualChunks = onDisk.chunkBytes === file.chunkBytes ? (onDisk.chunkSha256 ?? []) : [];
  const indexes = file.chunkSha256.flatMap((sha, index) => (actualChunks[index] === sha ? [] : [index]));
  if (indexes.length === 0) return undefined;
  const first = indexes[0]!;
  return { path: file.path, problem: 'checksum', expected: file.chunkSha256[first], actual: actualChunks[first] ?? 'not computed', chunks: { indexes, chunkBytes: file.chunkBytes, fileSize: file.size } };
}

const NAMED_CHUNKS = 3;

export function describeProblems(problems: FileProblem[]): string {
  return problems.map(describeProblem).join('; ');
}

function describeProblem(p: FileProblem): string {
  if (p.problem === 'missing' || p.problem === 'unlisted') return `${p.path}: ${p.problem}`;
  if (!p.chunks) return `${p.path}: ${p.problem} ${p.actual} != recorded ${p.expected}`;
  const { indexes, chunkBytes, fileSize } = p.chunks;
  const named = indexes.slice(0, NAMED_CHUNKS).map((index) => `chunk ${index} (bytes ${index * chunkBytes}-${Math.min((index + 1) * chunkBytes, fileSize) - 1})`);
  const more = indexes.length > NAMED_CHUNKS ? ` and ${indexes.length - NAMED_CHUNKS} more chunks` : '';
  return `${p.path}: checksum of ${named.join(', ')}${more}; first: ${p.actual} != recorded ${p.expected}`;
}
