/** One line of /proc/<pid>/maps. Addresses are exact JavaScript integers (user space is below 2^53). */
export interface Mapping {
  start: number;
  end: number;
  /** e.g. "rw-p": read, write, execute, p(rivate) or s(hared) */
  perms: string;
  inode: number;
  /** file path, [heap], [stack], [vdso], [anon:<name>] or empty for anonymous memory */
  path: string;
}

/** A byte range of a process's address space. */
export interface MemoryRange {
  start: number;
  length: number;
}

/**
 * Parses /proc/<pid>/maps; a line that does not parse is an error (the kernel's format is fixed). Mappings
 * beyond 2^53 are left out: on x86_64 that is the kernel's [vsyscall] page, which no process owns (user
 * memory there would need 5-level paging and an explicit high address), and none of it is memory the
 * agent saves or writes.
 */
export function parseMaps(text: string): Mapping[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .flatMap((line) => {
      const match = /^([0-9a-f]+)-([0-9a-f]+) ([rwxsp-]{4}) [0-9a-f]+ [0-9a-f]+:[0-9a-f]+ (\d+)\s*(.*)$/.exec(line);
      if (!match) throw new Error(`unexpected /proc/<pid>/maps line: ${line}`);
      const end = BigInt(`0x${match[2]!}`);
      if (end > BigInt(Number.MAX_SAFE_INTEGER)) return [];
      return [{ start: Number(BigInt(`0x${match[1]!}`)), end: Number(end), perms: match[3]!, inode: Number(match[4]), path: match[5]! }];
    });
}

/**
 * Readable and writable private anonymous memory: what malloc/mmap hand out. Not file mappings, not
 * shared memory, not the kernel's special mappings, and not [heap]: brk memory that any allocator of the
 * process may hand out again.
 */
export function isPrivateAnonymous(mapping: Mapping): boolean {
  const [read, write, , share] = mapping.perms;
  return read === 'r' && write === 'w' && share === 'p' && mapping.inode === 0 && (mapping.path === '' || mapping.path.startsWith('[anon:'));
}

/** Sorted, merged intervals of the private anonymous mappings. */
function privateAnonymousIntervals(mappings: readonly Mapping[]): [number, number][] {
  const sorted = mappings.filter(isPrivateAnonymous).map((m): [number, number] => [m.start, m.end]).sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [start, end] of sorted) {
    const last = merged.at(-1);
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  return merged;
}

/**
 * The private anonymous memory that `after` has and `before` had not, as ranges of at least `minBytes`:
 * what a process gained between two snapshots of its mappings. Exact at byte level whatever the kernel
 * merged: a new mapping next to an old one shows up as the old VMA grown, and only the new part counts.
 */
export function gainedRanges(before: readonly Mapping[], after: readonly Mapping[], minBytes: number): MemoryRange[] {
  const had = privateAnonymousIntervals(before);
  const gained: MemoryRange[] = [];
  let h = 0;
  for (const [start, end] of privateAnonymousIntervals(after)) {
    let cursor = start;
    while (h < had.length && had[h]![1] <= cursor) h++;
    for (let i = h; i < had.length && had[i]![0] < end; i++) {
      const [hadStart, hadEnd] = had[i]!;
      if (hadStart > cursor) gained.push({ start: cursor, length: hadStart - cursor });
      cursor = Math.max(cursor, hadEnd);
    }
    if (cursor < end) gained.push({ start: cursor, length: end - cursor });
  }
  return gained.filter((range) => range.length >= minBytes);
}

export function totalBytes(ranges: readonly MemoryRange[]): number {
  return ranges.reduce((sum, range) => sum + range.length, 0);
}

/** Whether every range lies inside the process's private anonymous memory (checked before writing into it). */
export function insidePrivateAnonymous(ranges: readonly MemoryRange[], mappings: readonly Mapping[]): boolean {
  const intervals = privateAnonymousIntervals(mappings);
  return ranges.every(({ start, length }) => intervals.some(([s, e]) => s <= start && start + length <= e));
}
