import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CorruptArtifactError } from '../../src/agent/errors.ts';
import { gainedRanges, parseMaps, totalBytes, type Mapping, type MemoryRange } from '../../src/agent/memory/maps.ts';
import { fillMemoryImages, planChunks, releaseMemory, saveMemoryImages, segmentBytesFor, splitIntoSegments, type MemoryImageDigest } from '../../src/agent/memory/memory-image.ts';
import { loadPtrace } from '../../src/agent/memory/ptrace.ts';
import { StoppedProcess } from '../../src/agent/memory/stopped-process.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('splitIntoSegments and segmentBytesFor', () => {
  it('cuts the ranges into consecutive groups of at most segmentBytes, cutting a range where a group is full', () => {
    expect(splitIntoSegments([{ start: 0x1000, length: 10 }, { start: 0x9000, length: 3 }], 4)).toEqual([
      [{ start: 0x1000, length: 4 }],
      [{ start: 0x1004, length: 4 }],
      [{ start: 0x1008, length: 2 }, { start: 0x9000, length: 2 }],
      [{ start: 0x9002, length: 1 }],
    ]);
    expect(splitIntoSegments([{ start: 0x1000, length: 8 }], 8)).toEqual([[{ start: 0x1000, length: 8 }]]);
    expect(splitIntoSegments([], 8)).toEqual([]);
  });

  it('makes segments of whole chunks, about two per worker, never less than one chunk', () => {
    // 18.4 GB in 64 MiB chunks on 16 workers: 274 chunks / 32 -> 8 chunks (512 MiB) a segment
    expect(segmentBytesFor(18_369_105_920, { chunkBytes: 64 * MiB, maxWorkers: 16 })).toBe(512 * MiB);
    expect(segmentBytesFor(3 * MiB, { chunkBytes: 64 * MiB, maxWorkers: 16 })).toBe(64 * MiB);
    expect(segmentBytesFor(48 * MiB, { chunkBytes: 8 * MiB, maxWorkers: 1 })).toBe(24 * MiB);
  });
});

describe('planChunks', () => {
  it('cuts one range into chunks of chunkBytes, the last one shorter', () => {
    expect(planChunks([{ start: 0x1000, length: 10 }], 4)).toEqual([
      { fileOffset: 0, length: 4, pieces: [{ address: 0x1000, fileOffset: 0, length: 4 }] },
      { fileOffset: 4, length: 4, pieces: [{ address: 0x1004, fileOffset: 4, length: 4 }] },
      { fileOffset: 8, length: 2, pieces: [{ address: 0x1008, fileOffset: 8, length: 2 }] },
    ]);
  });

  it('makes only full chunks of an exact multiple, and starts a new chunk where a range ends on a boundary', () => {
    expect(planChunks([{ start: 0x10000, length: 8 }], 4)).toEqual([
      { fileOffset: 0, length: 4, pieces: [{ address: 0x10000, fileOffset: 0, length: 4 }] },
      { fileOffset: 4, length: 4, pieces: [{ address: 0x10004, fileOffset: 4, length: 4 }] },
    ]);
    expect(planChunks([{ start: 0x10000, length: 4 }, { start: 0x20000, length: 4 }], 4)).toEqual([
      { fileOffset: 0, length: 4, pieces: [{ address: 0x10000, fileOffset: 0, length: 4 }] },
      { fileOffset: 4, length: 4, pieces: [{ address: 0x20000, fileOffset: 4, length: 4 }] },
    ]);
  });

  it('lets a chunk span ranges, its pieces in file order', () => {
    expect(planChunks([{ start: 0x1000, length: 6 }, { start: 0x9000, length: 5 }], 4)).toEqual([
      { fileOffset: 0, length: 4, pieces: [{ address: 0x1000, fileOffset: 0, length: 4 }] },
      {
        fileOffset: 4,
        length: 4,
        pieces: [
          { address: 0x1004, fileOffset: 4, length: 2 },
          { address: 0x9000, fileOffset: 6, length: 2 },
        ],
      },
      { fileOffset: 8, length: 3, pieces: [{ address: 0x9002, fileOffset: 8, length: 3 }] },
    ]);
    expect(planChunks([{ start: 0x1000, length: 1 }, { start: 0x2000, length: 1 }, { start: 0x3000, length: 1 }], 4096)).toEqual([
      {
        fileOffset: 0,
        length: 3,
        pieces: [
          { address: 0x1000, fileOffset: 0, length: 1 },
          { address: 0x2000, fileOffset: 1, length: 1 },
          { address: 0x3000, fileOffset: 2, length: 1 },
        ],
      },
    ]);
  });

  it('plans nothing for no ranges', () => {
    expect(planChunks([], 4)).toEqual([]);
  });

  it('covers every byte once, whatever the sizes', () => {
    const ranges = [{ start: 0x7f0000000000, length: 3 * MiB + 17 }, { start: 0x7f0000800000, length: 5 }, { start: 0x7f0001000000, length: 2 * MiB }];
    const chunks = planChunks(ranges, MiB);
    expect(chunks.map((chunk) => chunk.length)).toEqual([MiB, MiB, MiB, MiB, MiB, 22]);
    for (const [i, chunk] of chunks.entries()) {
      expect(chunk.fileOffset).toBe(i * MiB);
      expect(chunk.pieces.reduce((sum, piece) => sum + piece.length, 0)).toBe(chunk.length);
    }
    expect(chunks[3]!.pieces).toEqual([
      { address: 0x7f0000000000 + 3 * MiB, fileOffset: 3 * MiB, length: 17 },
      { address: 0x7f0000800000, fileOffset: 3 * MiB + 17, length: 5 },
      { address: 0x7f0001000000, fileOffset: 3 * MiB + 22, length: MiB - 22 },
    ]);
  });
});

/**
 * A Node process that allocates buffers and reports their sha256 on command (one line each on stdin and
 * stdout). It runs under a shell, so that it is not a child of this process: libuv's SIGCHLD handling
 * calls waitpid on this process's own children and could take their ptrace stops (the agent's targets
 * are never its children either).
 */
const CHILD_SOURCE = `
const { createHash } = require('node:crypto');
const buffers = {};
let pending = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (data) => {
  pending += data;
  for (let nl = pending.indexOf('\\n'); nl >= 0; nl = pending.indexOf('\\n')) {
    const [cmd, name, mib] = pending.slice(0, nl).split(' ');
    pending = pending.slice(nl + 1);
    if (cmd === 'alloc') {
      const buffer = Buffer.alloc(Number(mib) * 1048576);
      for (let i = 0; i < buffer.length; i += 4096) buffer.writeUInt32LE((i ^ 0x5a5a5a5a) >>> 0, i);
      buffers[name] = buffer;
      console.log('allocated ' + name);
    } else if (cmd === 'sum') console.log('sum ' + name + ' ' + createHash('sha256').update(buffers[name]).digest('hex'));
    else if (cmd === 'ping') console.log('pong ' + name);
  }
});
setInterval(() => {}, 5);
console.log('ready ' + process.pid);
`;

class Child {
  private readonly lines: string[] = [];
  private waiters: (() => void)[] = [];
  pid = 0;

  private constructor(private readonly shell: ChildProcess) {
    let partial = '';
    shell.stdout!.setEncoding('utf8');
    shell.stdout!.on('data', (data: string) => {
      partial += data;
      const complete = partial.split('\n');
      partial = complete.pop()!;
      this.lines.push(...complete);
      for (const waiter of this.waiters.splice(0)) waiter();
    });
  }

  static async start(dir: string): Promise<Child> {
    const script = path.join(dir, 'child.cjs');
    await fs.writeFile(script, CHILD_SOURCE);
    // Not `exec`: the shell stays the parent of the Node process.
    const shell = spawn('/bin/sh', ['-c', '"$0" "$1"; exit $?', process.execPath, script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const child = new Child(shell);
    child.pid = Number((await child.next('ready ')).split(' ')[1]);
    return child;
  }

  send(command: string): void {
    this.shell.stdin!.write(`${command}\n`);
  }

  /** Whether a line starting with `prefix` has come (and takes it). */
  take(prefix: string): string | undefined {
    const index = this.lines.findIndex((line) => line.startsWith(prefix));
    return index < 0 ? undefined : this.lines.splice(index, 1)[0];
  }

  async next(prefix: string, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.take(prefix);
      if (line !== undefined) return line;
      if (Date.now() > deadline) throw new Error(`child ${this.pid} did not answer "${prefix}" within ${timeoutMs} ms`);
      await Promise.race([new Promise<void>((resolve) => this.waiters.push(resolve)), sleep(100)]);
    }
  }

  async ask(command: string, prefix: string): Promise<string> {
    this.send(command);
    return this.next(prefix);
  }

  async sum(name: string): Promise<string> {
    return (await this.ask(`sum ${name}`, `sum ${name} `)).split(' ')[2]!;
  }

  kill(): void {
    if (this.pid > 0) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    this.shell.kill('SIGKILL');
  }
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
const readMaps = (pid: number): Mapping[] => parseMaps(readFileSync(`/proc/${pid}/maps`, 'utf8'));

async function readMemory(pid: number, ranges: readonly MemoryRange[]): Promise<Buffer> {
  const handle = await fs.open(`/proc/${pid}/mem`, 'r');
  try {
    const parts: Buffer[] = [];
    for (const range of ranges) {
      const part = Buffer.alloc(range.length);
      for (let done = 0; done < part.length; ) done += (await handle.read(part, done, part.length - done, range.start + done)).bytesRead;
      parts.push(part);
    }
    return Buffer.concat(parts);
  } finally {
    await handle.close();
  }
}

/** The scheduler state of every thread ("t": stopped by its tracer). */
function threadStates(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
  });
}

const BUFFER_MIB = 64;
const SYS_GETPID = 39;
const SYS_GETTID = 186;

describe.runIf(process.arch === 'x64' && process.getuid?.() === 0)('memory images of a real process (ptrace, /proc/<pid>/mem)', () => {
  let dir: string;
  let child: Child;
  let stopped: StoppedProcess | undefined;
  /** where the child's 64 MiB buffer "a" is: what it gained in private anonymous memory by allocating it */
  let buffer: MemoryRange;
  let originalSum: string;
  const options = { chunkBytes: MiB, maxWorkers: 2 };

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kyb-memory-image-'));
    child = await Child.start(dir);
    const before = readMaps(child.pid);
    await child.ask(`alloc a ${BUFFER_MIB}`, 'allocated a');
    const gained = gainedRanges(before, readMaps(child.pid), BUFFER_MIB * MiB);
    expect(gained, 'one range of at least the buffer size gained by the allocation').toHaveLength(1);
    buffer = gained[0]!;
    originalSum = await child.sum('a');
  });

  afterEach(async () => {
    await stopped?.detach();
    stopped = undefined;
    child?.kill();
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function stop(): Promise<StoppedProcess> {
    stopped = await StoppedProcess.stop(loadPtrace(), child.pid, { timeoutMs: 5_000 });
    return stopped;
  }

  async function detach(): Promise<void> {
    await stopped!.detach();
    stopped = undefined;
  }

  it('stops every thread: the child answers nothing until the detach, then answers', async () => {
    const target = await stop();
    const tasks = readdirSync(`/proc/${child.pid}/task`).map(Number);
    expect(tasks.length).toBeGreaterThan(1);
    expect([...target.threads].sort((x, y) => x - y)).toEqual(tasks.sort((x, y) => x - y));
    expect(threadStates(child.pid).every((state) => state === 't')).toBe(true);
    expect(await target.syscallsAllowed()).toBe(true);

    child.send('ping 1');
    await sleep(500);
    expect(child.take('pong 1')).toBeUndefined();
    await detach();
    await expect(child.next('pong 1')).resolves.toBe('pong 1');
    expect(threadStates(child.pid).includes('t')).toBe(false);
    expect(await child.sum('a')).toBe(originalSum);
  });

  it('runs an injected system call on a stopped thread and puts the thread back as it was', async () => {
    const target = await stop();
    await expect(target.syscall(SYS_GETPID, [])).resolves.toBe(child.pid);
    // The main thread is the one used when it is stopped.
    await expect(target.syscall(SYS_GETTID, [])).resolves.toBe(child.pid);
    await expect(target.syscall(SYS_GETPID, [])).resolves.toBe(child.pid);
    await detach();
    await expect(child.ask('ping 2', 'pong 2')).resolves.toBe('pong 2');
    expect(await child.sum('a')).toBe(originalSum);
  });

  it('saves two ranges into an image file holding exactly that memory, with the sha256 of each chunk', async () => {
    // 2.5 MiB, then 3 MiB further on: chunk 2 holds the end of the first range and the start of the second.
    const ranges = [
      { start: buffer.start, length: 2 * MiB + 512 * KiB },
      { start: buffer.start + 8 * MiB + 4 * KiB, length: 3 * MiB },
    ];
    const file = path.join(dir, 'image.bin');
    await stop();
    const [digest] = await saveMemoryImages([{ pid: child.pid, ranges, file }], options);
    const memory = await readMemory(child.pid, ranges);
    await detach();

    const image = await fs.readFile(file);
    expect(image.length).toBe(totalBytes(ranges));
    expect(image.equals(memory)).toBe(true);
    expect(image.subarray(0, 2 * MiB).some((byte) => byte !== 0)).toBe(true);
    expect(digest).toEqual({
      size: 5 * MiB + 512 * KiB,
      chunkBytes: MiB,
      chunkSha256: [0, 1, 2, 3, 4, 5].map((i) => sha256(image.subarray(i * MiB, (i + 1) * MiB))),
    });
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect(await child.sum('a')).toBe(originalSum);
  });

  it('releases the memory (pages read as zeros), then fills it back from the image', async () => {
    const file = path.join(dir, 'image.bin');
    const target = await stop();
    const [digest] = await saveMemoryImages([{ pid: child.pid, ranges: [buffer], file }], options);
    await releaseMemory(target, [buffer]);
    expect((await readMemory(child.pid, [buffer])).every((byte) => byte === 0)).toBe(true);
    await detach();
    const released = await child.sum('a');
    expect(released).not.toBe(originalSum);
    expect(released).toBe(sha256(Buffer.alloc(BUFFER_MIB * MiB)));

    await stop();
    await fillMemoryImages([{ pid: child.pid, ranges: [buffer], file, digest: digest! }], options);
    await detach();
    expect(await child.sum('a')).toBe(originalSum);
  });

  it('rejects an image whose byte was flipped, naming the chunk', async () => {
    const file = path.join(dir, 'image.bin');
    await stop();
    const [digest] = await saveMemoryImages([{ pid: child.pid, ranges: [buffer], file }], options);
    const handle = await fs.open(file, 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 3 * MiB + 5);
    await handle.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, 3 * MiB + 5);
    await handle.close();

    const error = await fillMemoryImages([{ pid: child.pid, ranges: [buffer], file, digest: digest! }], options).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CorruptArtifactError);
    expect((error as Error).message).toContain(file);
    expect((error as Error).message).toMatch(/chunk 3 \(bytes 3145728-4194303\) differs/);
    expect((error as CorruptArtifactError).context).toMatchObject({ pid: child.pid, chunks: [3] });
  });

  describe('refuses before writing anything', () => {
    /** An image file of zeros with true chunk digests: written into the process, it would zero its buffer. */
    async function zeroImage(ranges: MemoryRange[]): Promise<{ file: string; digest: MemoryImageDigest }> {
      const file = path.join(dir, `zeros-${Math.random().toString(16).slice(2)}.bin`);
      const size = totalBytes(ranges);
      await fs.writeFile(file, Buffer.alloc(size));
      const chunks = planChunks(ranges, MiB);
      return { file, digest: { size, chunkBytes: MiB, chunkSha256: chunks.map((chunk) => sha256(Buffer.alloc(chunk.length))) } };
    }

    async function expectRefused(ranges: MemoryRange[], message: RegExp): Promise<void> {
      const { file, digest } = await zeroImage(ranges);
      // What the ranges hold now, where they can be read (an unmapped one cannot).
      const snapshot = () => Promise.all(ranges.map((range) => readMemory(child.pid, [range]).then(sha256, () => 'unreadable')));
      // Stopped, as in a restore: nothing but the fill could change the memory meanwhile.
      await stop();
      const before = await snapshot();
      expect(before[0]).not.toBe(sha256(Buffer.alloc(ranges[0]!.length)));
      const error = await fillMemoryImages([{ pid: child.pid, ranges, file, digest }], options).catch((err: unknown) => err);
      const after = await snapshot();
      await detach();
      expect(error).toBeInstanceOf(CorruptArtifactError);
      expect((error as Error).message).toMatch(message);
      expect(after).toEqual(before);
    }

    it('an image with a range that is not mapped', async () => {
      // Below mmap_min_addr: never mapped.
      await expectRefused([{ start: buffer.start, length: MiB }, { start: 0x1000, length: 4 * KiB }], /not private anonymous memory of process/);
      expect(await child.sum('a')).toBe(originalSum);
    });

    it('an image with a range in a file mapping, in [heap] or in read-only memory', async () => {
      const maps = readMaps(child.pid);
      const fileData = maps.find((m) => m.perms === 'rw-p' && m.inode !== 0);
      const heap = maps.find((m) => m.path === '[heap]');
      const readOnly = maps.find((m) => m.perms === 'r--p' && m.inode !== 0);
      for (const mapping of [fileData, heap, readOnly].filter((m) => m !== undefined)) {
        await expectRefused([{ start: buffer.start, length: MiB }, { start: mapping.start, length: Math.min(4 * KiB, mapping.end - mapping.start) }], /not private anonymous memory/);
      }
      expect(fileData, 'the node binary or a library has a rw-p data mapping').toBeDefined();
      expect(await child.sum('a')).toBe(originalSum);
    });

    it('an image whose size differs from its ranges or from the digest', async () => {
      const ranges = [{ start: buffer.start, length: 2 * MiB }];
      const { file, digest } = await zeroImage(ranges);
      await fs.truncate(file, 2 * MiB - 1);
      await expect(fillMemoryImages([{ pid: child.pid, ranges, file, digest }], options)).rejects.toThrow(CorruptArtifactError);
      await expect(fillMemoryImages([{ pid: child.pid, ranges, file, digest }], options)).rejects.toThrow(/is 2097151 bytes, its ranges need 2097152 and the manifest records 2097152/);
      await fs.truncate(file, 2 * MiB);
      await expect(fillMemoryImages([{ pid: child.pid, ranges: [{ start: buffer.start, length: MiB }], file, digest }], options)).rejects.toThrow(CorruptArtifactError);
      await expect(fillMemoryImages([{ pid: child.pid, ranges, file: path.join(dir, 'missing.bin'), digest }], options)).rejects.toThrow(CorruptArtifactError);
      expect(await child.sum('a')).toBe(originalSum);
    });
  });
});
