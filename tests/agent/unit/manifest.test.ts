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
    expect(() => parseManifest(JSON.stringify({ ...sampleManifest(), schemaVersion: 2 }))).toThrow(/schemaVersion/);
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
});
