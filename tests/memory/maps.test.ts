import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { gainedRanges, insidePrivateAnonymous, isPrivateAnonymous, parseMaps, totalBytes, type Mapping } from '../../src/agent/memory/maps.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A mapping as parseMaps returns it: private anonymous rw memory unless told otherwise. */
function m(start: number, end: number, perms = 'rw-p', path = '', inode = 0): Mapping {
  return { start, end, perms, inode, path };
}

describe('parseMaps', () => {
  const text = [
    '5608f4292000-5608f4294000 r--p 00000000 fe:00 247026                     /usr/bin/node',
    '5609078bb000-5609078dc000 rw-p 00000000 00:00 0                          [heap]',
    '7f37bbe58000-7f37bbe7a000 rw-p 00000000 00:00 0 ',
    '7f37bbe7a000-7f37bbe7c000 rw-p 00000000 00:00 0                          [anon:v8 code space]',
    '7f37bbe7c000-7f37bbe7d000 r-xp 0017c000 fe:00 326269                     /opt/my models/lib weights v2.so',
    '7f37bbe7d000-7f37bbe7e000 rw-s 00000000 00:01 4100                       /memfd:cuda-shared (deleted)',
    '7f37bc0c0000-7f37bc0c7000 r--s 00000000 fe:00 325737                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache',
    '7f37bc0d0000-7f37bc0d2000 r-xp 00000000 00:00 0                          [vdso]',
    '7ffe3affc000-7ffe3b01d000 rw-p 00000000 00:00 0                          [stack]',
    '',
  ].join('\n');

  it('reads addresses, permissions, inode and path of each line (paths may hold spaces)', () => {
    expect(parseMaps(text)).toEqual([
      m(0x5608f4292000, 0x5608f4294000, 'r--p', '/usr/bin/node', 247026),
      m(0x5609078bb000, 0x5609078dc000, 'rw-p', '[heap]'),
      m(0x7f37bbe58000, 0x7f37bbe7a000),
      m(0x7f37bbe7a000, 0x7f37bbe7c000, 'rw-p', '[anon:v8 code space]'),
      m(0x7f37bbe7c000, 0x7f37bbe7d000, 'r-xp', '/opt/my models/lib weights v2.so', 326269),
      m(0x7f37bbe7d000, 0x7f37bbe7e000, 'rw-s', '/memfd:cuda-shared (deleted)', 4100),
      m(0x7f37bc0c0000, 0x7f37bc0c7000, 'r--s', '/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache', 325737),
      m(0x7f37bc0d0000, 0x7f37bc0d2000, 'r-xp', '[vdso]'),
      m(0x7ffe3affc000, 0x7ffe3b01d000, 'rw-p', '[stack]'),
    ]);
  });

  it('throws on a line that is not in the kernel format, naming it', () => {
    expect(() => parseMaps('7f00-7f10 rw-p 00000000 00:00 0\nthis is not a maps line\n')).toThrow(/unexpected \/proc\/<pid>\/maps line: this is not a maps line/);
    expect(() => parseMaps('7f00-7f10 rwxq 00000000 00:00 0\n')).toThrow(/unexpected/);
  });

  it('parses the maps of a real process (x86_64 lists [vsyscall] at 0xffffffffff600000, above 2^53)', () => {
    const maps = parseMaps(readFileSync('/proc/self/maps', 'utf8'));
    expect(maps.some((mapping) => mapping.path === '[stack]')).toBe(true);
    if (process.arch === 'x64') expect(maps.some((mapping) => mapping.path === '[vdso]')).toBe(true);
    for (const mapping of maps.filter((mm) => mm.start < Number.MAX_SAFE_INTEGER)) expect(mapping.end).toBeGreaterThan(mapping.start);
  });
});

describe('isPrivateAnonymous', () => {
  it.each([
    [m(0x1000, 0x2000), true],
    [m(0x1000, 0x2000, 'rw-p', '[anon:cuda host copy]'), true],
    [m(0x1000, 0x2000, 'rwxp'), true],
    [m(0x1000, 0x2000, 'r--p'), false],
    [m(0x1000, 0x2000, '---p'), false],
    [m(0x1000, 0x2000, 'rw-s'), false],
    [m(0x1000, 0x2000, 'rw-s', '/dev/zero (deleted)', 12), false],
    [m(0x1000, 0x2000, 'rw-p', '/usr/lib/libc.so.6', 326269), false],
    [m(0x1000, 0x2000, 'rw-p', '[heap]'), false],
    [m(0x1000, 0x2000, 'rw-p', '[stack]'), false],
  ])('%o -> %s', (mapping, expected) => {
    expect(isPrivateAnonymous(mapping)).toBe(expected);
  });
});

describe('gainedRanges', () => {
  const base = 0x7f0000000000;
  const at = (mib: number): number => base + mib * MiB;

  it('finds a brand-new mapping', () => {
    const before = [m(at(0), at(1)), m(at(10), at(11))];
    const after = [m(at(0), at(1)), m(at(4), at(8)), m(at(10), at(11))];
    expect(gainedRanges(before, after, 0)).toEqual([{ start: at(4), length: 4 * MiB }]);
  });

  it('finds only the new part of an old mapping the kernel merged a new one into, on either side', () => {
    const before = [m(at(10), at(12))];
    expect(gainedRanges(before, [m(at(6), at(12))], 0)).toEqual([{ start: at(6), length: 4 * MiB }]);
    expect(gainedRanges(before, [m(at(10), at(15))], 0)).toEqual([{ start: at(12), length: 3 * MiB }]);
    expect(gainedRanges(before, [m(at(9), at(13))], 0)).toEqual([
      { start: at(9), length: MiB },
      { start: at(12), length: MiB },
    ]);
  });

  it('finds a gap filled between two old mappings that are now one VMA', () => {
    const before = [m(at(0), at(2)), m(at(5), at(6))];
    expect(gainedRanges(before, [m(at(0), at(6))], 0)).toEqual([{ start: at(2), length: 3 * MiB }]);
  });

  it('is exact at byte level across several old and new intervals, in any input order', () => {
    const page = 4 * KiB;
    const p = (n: number): number => base + n * page;
    const before = [m(p(6), p(7)), m(p(1), p(2)), m(p(3), p(4))];
    const after = [m(p(6), p(8)), m(p(0), p(5))];
    expect(gainedRanges(before, after, 0)).toEqual([
      { start: p(0), length: page },
      { start: p(2), length: page },
      { start: p(4), length: page },
      { start: p(7), length: page },
    ]);
    // One old interval covering two new ones (a munmap in its middle, then growth past its end).
    expect(gainedRanges([m(p(0), p(10))], [m(p(0), p(3)), m(p(5), p(12))], 0)).toEqual([{ start: p(10), length: 2 * page }]);
  });

  it('counts memory that was reserved PROT_NONE before and is read-write now as gained', () => {
    const before = [m(at(0), at(1)), m(at(1), at(64), '---p')];
    const after = [m(at(0), at(9)), m(at(9), at(64), '---p')];
    expect(gainedRanges(before, after, 0)).toEqual([{ start: at(1), length: 8 * MiB }]);
  });

  it('ignores gains of shared memory, file mappings, [heap] and [stack]', () => {
    const before = [m(at(0), at(1)), m(at(20), at(21), 'rw-p', '[heap]')];
    const after = [
      m(at(0), at(1)),
      m(at(2), at(4), 'rw-s', '/dev/nvidia0', 917),
      m(at(4), at(6), 'rw-s'),
      m(at(6), at(8), 'rw-p', '/data/model.bin', 4242),
      m(at(8), at(9), 'r--p'),
      m(at(20), at(30), 'rw-p', '[heap]'),
      m(at(40), at(41), 'rw-p', '[stack]'),
    ];
    expect(gainedRanges(before, after, 0)).toEqual([]);
  });

  it('keeps only ranges of at least minBytes (a range of exactly minBytes is kept)', () => {
    const before = [m(at(0), at(1))];
    const after = [m(at(0) - 4 * KiB, at(1)), m(at(2), at(4)), m(at(8), at(9))];
    expect(gainedRanges(before, after, MiB)).toEqual([
      { start: at(2), length: 2 * MiB },
      { start: at(8), length: MiB },
    ]);
    expect(gainedRanges(before, after, MiB + 1)).toEqual([{ start: at(2), length: 2 * MiB }]);
  });

  it('finds nothing when memory was only removed or shrunk', () => {
    const before = [m(at(0), at(4)), m(at(8), at(12))];
    expect(gainedRanges(before, [m(at(0), at(4))], 0)).toEqual([]);
    expect(gainedRanges(before, [m(at(1), at(3)), m(at(8), at(9))], 0)).toEqual([]);
    expect(gainedRanges(before, [], 0)).toEqual([]);
    expect(gainedRanges(before, before, 0)).toEqual([]);
  });
});

describe('totalBytes', () => {
  it('sums the lengths', () => {
    expect(totalBytes([])).toBe(0);
    expect(totalBytes([{ start: 0x1000, length: 4096 }, { start: 0x9000, length: 10 }])).toBe(4106);
  });
});

describe('insidePrivateAnonymous', () => {
  const mappings = [
    m(0x10000, 0x20000),
    m(0x20000, 0x30000, 'rw-p', '[anon:named]'),
    m(0x40000, 0x50000),
    m(0x50000, 0x60000, 'rw-p', '/usr/lib/libc.so.6', 326269),
    m(0x60000, 0x70000, 'rw-s'),
    m(0x70000, 0x80000, 'rw-p', '[heap]'),
    m(0x80000, 0x90000, 'r--p'),
  ];

  it('is true for ranges inside private anonymous memory, also across two adjacent mappings', () => {
    expect(insidePrivateAnonymous([], mappings)).toBe(true);
    expect(insidePrivateAnonymous([{ start: 0x10000, length: 0x10000 }], mappings)).toBe(true);
    expect(insidePrivateAnonymous([{ start: 0x11000, length: 0x100 }, { start: 0x41000, length: 0xf000 }], mappings)).toBe(true);
    expect(insidePrivateAnonymous([{ start: 0x18000, length: 0x10000 }], mappings)).toBe(true);
    expect(insidePrivateAnonymous([{ start: 0x10000, length: 0x20000 }], mappings)).toBe(true);
  });

  it('is false when any range reaches into a gap, a file, shared memory, [heap] or read-only memory', () => {
    expect(insidePrivateAnonymous([{ start: 0x28000, length: 0x10000 }], mappings)).toBe(false);
    expect(insidePrivateAnonymous([{ start: 0x30000, length: 0x1000 }], mappings)).toBe(false);
    expect(insidePrivateAnonymous([{ start: 0x11000, length: 0x100 }, { start: 0x4f000, length: 0x2000 }], mappings)).toBe(false);
    expect(insidePrivateAnonymous([{ start: 0x51000, length: 0x1000 }], mappings)).toBe(false);
    expect(insidePrivateAnonymous([{ start: 0x61000, length: 0x1000 }], mappings)).toBe(false);
    expect(insidePrivateAnonymous([{ start: 0x71000, length: 0x1000 }], mappings)).toBe(false);
    expect(insidePrivateAnonymous([{ start: 0x81000, length: 0x1000 }], mappings)).toBe(false);
    expect(insidePrivateAnonymous([{ start: 0x0f000, length: 0x2000 }], mappings)).toBe(false);
  });
});
