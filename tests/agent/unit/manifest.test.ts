import { describe, expect, it } from 'vitest';
import { CorruptArtifactError } from '../../../src/agent/errors.ts';
import {
  compareArtifactFiles,
  describeProblems,
  isArtifactPath,
  isHostCopyPath,
  parseManifest,
  type CheckpointManifest,
} from '../../../src/agent/store/manifest.ts';
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
    expect(() => parseManifest(JSON.stringify({ ...sampleManifest(), schemaVersion: 4 }))).toThrow(/schemaVersion/);
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

describe('parseManifest, host copies of GPU memory (v3)', () => {
  const hostCopyFile = { path: 'host-copy/1.img', size: 10, chunkBytes: 4, chunkSha256: [sha('c'), sha('d'), sha('e')] };
  const hostCopy = { nsPid: 1, file: 'host-copy/1.img', ranges: [{ start: 0x7f0000000000, length: 6 }, { start: 0x7f0000100000, length: 4 }] };
  type HostCopy = typeof hostCopy;

  /** A v3 manifest of a GPU checkpoint with the given host copies and extra files. */
  function withHostCopies(hostCopies: HostCopy[], extraFiles: object[] = [hostCopyFile], schemaVersion = 3): CheckpointManifest {
    const manifest = sampleManifest({
      schemaVersion: schemaVersion as CheckpointManifest['schemaVersion'],
      gpu: {
        driverVersion: '580.95.05',
        cudaDriverApiVersion: 13000,
        gpus: [{ uuid: 'GPU-2b7a1c9e-0000-4000-8000-000000000001', name: 'NVIDIA H100 80GB HBM3', memoryTotalBytes: 85_899_345_920 }],
        processes: [{ pid: 4242, gpuUuid: 'GPU-2b7a1c9e-0000-4000-8000-000000000001', usedBytes: 1_048_576 }],
        hostCopies,
      },
    });
    manifest.files.push(...(extraFiles as CheckpointManifest['files']));
    return manifest;
  }

  const rejection = (manifest: object): unknown => {
    try {
      parseManifest(JSON.stringify(manifest));
    } catch (err) {
      return err;
    }
    return new Error('parsed');
  };

  it('accepts a v3 manifest whose host copy names its chunked host-copy file', () => {
    const manifest = withHostCopies([hostCopy]);
    expect(parseManifest(JSON.stringify(manifest), manifest.id)).toEqual(manifest);
    const two = withHostCopies(
      [hostCopy, { nsPid: 7, file: 'host-copy/7.img', ranges: [{ start: 0x1000, length: 3 }] }],
      [hostCopyFile, { path: 'host-copy/7.img', size: 3, chunkBytes: 4, chunkSha256: [sha('f')] }],
    );
    expect(parseManifest(JSON.stringify(two)).gpu?.hostCopies).toHaveLength(2);
  });

  it('accepts v3 manifests without host copies (a CPU checkpoint, a GPU one without them)', () => {
    expect(parseManifest(JSON.stringify(sampleManifest({ schemaVersion: 3 }))).schemaVersion).toBe(3);
    const gpuOnly = withHostCopies([], []);
    delete gpuOnly.gpu!.hostCopies;
    expect(parseManifest(JSON.stringify(gpuOnly)).gpu?.hostCopies).toBeUndefined();
  });

  it.each<[string, () => object, RegExp]>([
    ['its file is not listed', () => withHostCopies([{ ...hostCopy, file: 'host-copy/2.img' }], [{ ...hostCopyFile }, { ...hostCopyFile, path: 'host-copy/3.img' }]), /names host copy "host-copy\/2.img", which is not a listed host-copy\/ file/],
    ['its file is not under host-copy/', () => withHostCopies([{ ...hostCopy, file: 'criu/pages-1.img' }], []), /names host copy "criu\/pages-1.img", which is not a listed host-copy\/ file/],
    ['its file is recorded whole', () => withHostCopies([hostCopy], [{ path: 'host-copy/1.img', size: 10, sha256: sha('c') }]), /records host copy "host-copy\/1.img" whole, not in chunks/],
    ['its file size differs from its ranges', () => withHostCopies([{ ...hostCopy, ranges: [{ start: 0x1000, length: 6 }, { start: 0x2000, length: 6 }] }]), /host copy "host-copy\/1.img" is 10 bytes, its ranges hold 12/],
    ['its ranges overlap', () => withHostCopies([{ ...hostCopy, ranges: [{ start: 0x1000, length: 6 }, { start: 0x1005, length: 4 }] }]), /host copy "host-copy\/1.img" has overlapping or unsorted ranges/],
    ['its ranges descend', () => withHostCopies([{ ...hostCopy, ranges: [{ start: 0x2000, length: 6 }, { start: 0x1000, length: 4 }] }]), /overlapping or unsorted ranges/],
    [
      'two files of one process overlap',
      () => withHostCopies([hostCopy, { ...hostCopy, file: 'host-copy/2.img', ranges: [{ start: 0x7f0000100002, length: 10 }] }], [hostCopyFile, { ...hostCopyFile, path: 'host-copy/2.img' }]),
      /host copies of namespace pid 1 overlap/,
    ],
    ['one file named by two copies', () => withHostCopies([hostCopy, { ...hostCopy, nsPid: 2 }]), /names host copy "host-copy\/1.img" twice/],
    ['a host-copy/ file no copy names', () => withHostCopies([hostCopy], [hostCopyFile, { ...hostCopyFile, path: 'host-copy/9.img' }]), /lists "host-copy\/9.img", which no host copy names/],
    ['a host-copy/ file without any host copy', () => ({ ...sampleManifest({ schemaVersion: 3 }), files: [...sampleManifest().files, hostCopyFile] }), /lists "host-copy\/1.img", which no host copy names/],
    ['host copies in a v2 manifest', () => withHostCopies([hostCopy], [hostCopyFile], 2), /v2 has host copies \(added in v3\)/],
    ['host copies in a v1 manifest', () => withHostCopies([hostCopy], [], 1), /v1 has host copies/],
    ['a host copy with no ranges', () => withHostCopies([{ ...hostCopy, ranges: [] }]), /hostCopies/],
  ])('rejects a manifest where %s', (_, build, message) => {
    const error = rejection(build());
    expect(error).toBeInstanceOf(CorruptArtifactError);
    expect((error as Error).message).toMatch(message);
  });

  it("accepts a process's copy split over several files (segments written in parallel)", () => {
    const segments = withHostCopies(
      [hostCopy, { nsPid: 1, file: 'host-copy/2.img', ranges: [{ start: 0x7f0000200000, length: 10 }] }],
      [hostCopyFile, { ...hostCopyFile, path: 'host-copy/2.img' }],
    );
    expect(parseManifest(JSON.stringify(segments)).gpu?.hostCopies).toHaveLength(2);
  });

  it('accepts ranges that touch without overlapping', () => {
    const touching = withHostCopies([{ ...hostCopy, ranges: [{ start: 0x1000, length: 6 }, { start: 0x1006, length: 4 }] }]);
    expect(parseManifest(JSON.stringify(touching)).gpu?.hostCopies?.[0]?.ranges).toHaveLength(2);
  });
});

describe('isHostCopyPath', () => {
  it.each([
    ['host-copy/1.img', true],
    ['host-copy/anything', true],
    ['host-copy', false],
    ['host-copyx/1.img', false],
    ['criu/pages-1.img', false],
    ['spec.json', false],
  ])('%s -> %s', (path, expected) => {
    expect(isHostCopyPath(path)).toBe(expected);
  });

  it.each([
    ['host-copy/1.img', true],
    ['host-copy/sub/1.img', false],
    ['host-copy/../spec.json', false],
  ])('isArtifactPath(%s) -> %s', (path, expected) => {
    expect(isArtifactPath(path)).toBe(expected);
  });
});
