import { describe, expect, it } from 'vitest';
import { CorruptArtifactError } from '../../../src/agent/errors.ts';
import { compareArtifactFiles, describeProblems, isArtifactPath, parseManifest } from '../../../src/agent/store/manifest.ts';
import { sampleManifest, sha } from './fixtures.ts';

describe('parseManifest', () => {
  it('accepts a manifest the agent writes', () => {
    const manifest = sampleManifest();
    expect(parseManifest(JSON.stringify(manifest), manifest.id)).toEqual(manifest);
  });

  it('rejects text that is not JSON', () => {
    expect(() => parseManifest('{not json')).toThrow(CorruptArtifactError);
  });

  it('rejects a foreign kind or an unknown schema version, naming the field', () => {
    expect(() => parseManifest(JSON.stringify({ ...sampleManifest(), kind: 'other' }))).toThrow(/\/kind/);
    expect(() => parseManifest(JSON.stringify({ ...sampleManifest(), schemaVersion: 3 }))).toThrow(/schemaVersion/);
  });

  it('rejects a manifest stored under another id', () => {
    expect(() => parseManifest(JSON.stringify(sampleManifest()), 'other-id')).toThrow(/stored as "other-id"/);
  });

  it('rejects paths that leave the artifact or are listed twice', () => {
    const escape = sampleManifest();
    escape.files.push({ path: '../etc/passwd', size: 1, sha256: sha('5') });
    expect(() => parseManifest(JSON.stringify(escape))).toThrow(/foreign path/);
    const twice = sampleManifest();
    twice.files.push(twice.files[0]!);
    expect(() => parseManifest(JSON.stringify(twice))).toThrow(/twice/);
  });

  it('requires the spec, the rootfs diff and the CRIU inventory', () => {
    const noInventory = sampleManifest();
    noInventory.files = noInventory.files.filter((f) => f.path !== 'criu/inventory.img');
    expect(() => parseManifest(JSON.stringify(noInventory))).toThrow(/criu\/inventory.img/);
  });

  it('rejects a checksum that is not a sha256 hex digest', () => {
    const bad = sampleManifest();
    bad.files[0] = { ...bad.files[0]!, sha256: 'xyz' };
    expect(() => parseManifest(JSON.stringify(bad))).toThrow(CorruptArtifactError);
  });
});

describe('parseManifest, chunked entries (v2)', () => {
  const chunkedPages = { path: 'criu/pages-1.img', size: 10, chunkBytes: 4, chunkSha256: [sha('a'), sha('b'), sha('c')] };
  const withPages = (schemaVersion: number, pages: object): string =>
    JSON.stringify({ ...sampleManifest(), schemaVersion, files: sampleManifest().files.map((f) => (f.path === 'criu/pages-1.img' ? pages : f)) });

  it('accepts chunk checksums of a CRIU file in a v2 manifest', () => {
    expect(parseManifest(withPages(2, chunkedPages)).files[1]).toEqual(chunkedPages);
  });

  it('rejects chunk checksums in a v1 manifest, a chunk count that does not fit the size, and a chunked rootfs diff', () => {
    expect(() => parseManifest(withPages(1, chunkedPages))).toThrow(/v1 has chunk checksums for "criu\/pages-1.img"/);
    expect(() => parseManifest(withPages(2, { ...chunkedPages, chunkSha256: [sha('a'), sha('b')] }))).toThrow(/2 chunk checksums .* needs 3/);
    const chunkedDiff = { ...sampleManifest(), schemaVersion: 2, files: sampleManifest().files.map((f) => (f.path === 'rootfs-diff.tar' ? { ...chunkedPages, path: f.path } : f)) };
    expect(() => parseManifest(JSON.stringify(chunkedDiff))).toThrow(/records "rootfs-diff.tar" in chunks/);
  });
});

describe('isArtifactPath', () => {
  it.each([
    ['spec.json', true],
    ['rootfs-diff.tar', true],
    ['criu/pages-1.img', true],
    ['criu/descriptors.json', true],
    ['criu/sub/x.img', false],
    ['criu/../spec.json', false],
    ['manifest.json', false],
    ['/abs', false],
    ['other.txt', false],
  ])('%s -> %s', (path, expected) => {
    expect(isArtifactPath(path)).toBe(expected);
  });
});

describe('compareArtifactFiles', () => {
  const expected = sampleManifest().files;

  it('finds nothing wrong with identical files', () => {
    expect(compareArtifactFiles(expected, expected)).toEqual([]);
  });

  it('reports missing, resized, altered and unlisted files', () => {
    const actual = [
      { ...expected[1]!, size: 4095 },
      { ...expected[2]!, sha256: sha('f') },
      expected[3]!,
      { path: 'criu/extra.img', size: 1, sha256: sha('9') },
    ];
    const problems = compareArtifactFiles(expected, actual);
    expect(problems.map((p) => [p.path, p.problem])).toEqual([
      ['criu/inventory.img', 'missing'],
      ['criu/pages-1.img', 'size'],
      ['rootfs-diff.tar', 'checksum'],
      ['criu/extra.img', 'unlisted'],
    ]);
    expect(describeProblems(problems)).toContain('criu/pages-1.img: size 4095 != recorded 4096');
  });

  it('names the chunks of a chunked file whose checksums differ, the first few by byte range', () => {
    const recorded = { path: 'criu/pages-1.img', size: 18, chunkBytes: 3, chunkSha256: ['1', '2', '3', '4', '5', '6'].map(sha) };
    const onDisk = { ...recorded, chunkSha256: ['1', 'x', '3', 'y', 'z', 'w'].map(sha) };
    const problems = compareArtifactFiles([recorded], [onDisk]);
    expect(problems).toEqual([{ path: 'criu/pages-1.img', problem: 'checksum', expected: sha('2'), actual: sha('x'), chunks: { indexes: [1, 3, 4, 5], chunkBytes: 3, fileSize: 18 } }]);
    expect(describeProblems(problems)).toBe(`criu/pages-1.img: checksum of chunk 1 (bytes 3-5), chunk 3 (bytes 9-11), chunk 4 (bytes 12-14) and 1 more chunks; first: ${sha('x')} != recorded ${sha('2')}`);
    expect(compareArtifactFiles([recorded], [{ ...recorded }])).toEqual([]);
  });
});
