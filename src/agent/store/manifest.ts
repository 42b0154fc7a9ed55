import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CorruptArtifactError } from '../errors.ts';
import { GpuRecordSchema } from '../gpu/record.ts';

export const MANIFEST_FILE = 'manifest.json';
export const SPEC_FILE = 'spec.json';
export const ROOTFS_DIFF_FILE = 'rootfs-diff.tar';
export const CRIU_DIR = 'criu';
export const MANIFEST_KIND = 'kybernate.io/checkpoint';
export const MANIFEST_SCHEMA_VERSION = 1;
/** What CRIU always writes first; an image directory without it is not a CRIU image. */
const CRIU_INVENTORY = `${CRIU_DIR}/inventory.img`;
const CHECKPOINT_ID = /^[a-z0-9][a-z0-9._-]{0,127}$/;

const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });

const ArtifactFileSchema = Type.Object({
  path: Type.String({ minLength: 1 }),
  size: Type.Integer({ minimum: 0 }),
  sha256: Sha256,
});

/** Where a namespace of the checkpointed task came from: its own, joined by path, or the host's. */
const NamespaceOrigin = Type.Union([Type.Literal('own'), Type.Literal('path'), Type.Literal('host')]);

export const ManifestSchema = Type.Object({
  kind: Type.Literal(MANIFEST_KIND),
  schemaVersion: Type.Literal(MANIFEST_SCHEMA_VERSION),
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
export type NamespaceOriginKind = CheckpointManifest['source']['networkNamespace'];

export function isValidCheckpointId(id: string): boolean {
  return CHECKPOINT_ID.test(id);
}

/** A path inside the artifact: relative, normalized, no `..`, and one of the kinds of file an artifact has. */
export function isArtifactPath(path: string): boolean {
  if (path === SPEC_FILE || path === ROOTFS_DIFF_FILE) return true;
  const [dir, name, ...rest] = path.split('/');
  return dir === CRIU_DIR && rest.length === 0 && name !== undefined && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name);
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
    throw new CorruptArtifactError(`checkpoint manifest is not a ${MANIFEST_KIND} v${MANIFEST_SCHEMA_VERSION} manifest (${where})`, {
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
  }
  for (const required of [SPEC_FILE, ROOTFS_DIFF_FILE, CRIU_INVENTORY]) {
    if (!seen.has(required)) throw new CorruptArtifactError(`checkpoint manifest lacks "${required}"`, context);
  }
  return manifest;
}

export interface FileProblem {
  path: string;
  problem: 'missing' | 'size' | 'checksum' | 'unlisted';
  expected?: string;
  actual?: string;
}

/**
 * Compares what the manifest recorded with what is on disk. `actual` has every file found under the
 * artifact (other than the manifest); checksums may be absent for files whose size already differs.
 */
export function compareArtifactFiles(expected: ArtifactFile[], actual: { path: string; size: number; sha256?: string }[]): FileProblem[] {
  const problems: FileProblem[] = [];
  const found = new Map(actual.map((file) => [file.path, file]));
  for (const file of expected) {
    const onDisk = found.get(file.path);
    if (!onDisk) problems.push({ path: file.path, problem: 'missing' });
    else if (onDisk.size !== file.size) problems.push({ path: file.path, problem: 'size', expected: String(file.size), actual: String(onDisk.size) });
    else if (onDisk.sha256 !== file.sha256) problems.push({ path: file.path, problem: 'checksum', expected: file.sha256, actual: onDisk.sha256 ?? 'not computed' });
    found.delete(file.path);
  }
  for (const path of found.keys()) problems.push({ path, problem: 'unlisted' });
  return problems;
}

export function describeProblems(problems: FileProblem[]): string {
  return problems
    .map((p) => (p.problem === 'missing' || p.problem === 'unlisted' ? `${p.path}: ${p.problem}` : `${p.path}: ${p.problem} ${p.actual} != recorded ${p.expected}`))
    .join('; ');
}
