import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CorruptArtifactError } from '../errors.ts';

/**
 * The export format of a checkpoint: a plain POSIX ustar archive of regular files, readable with any tar.
 * Only what an artifact holds is written or accepted (regular files with short relative names), so an
 * archive from elsewhere cannot place anything outside the import directory.
 */
const BLOCK = 512;
const NAME_BYTES = 100;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

export function tarHeader(name: string, size: number, mode: number, mtimeSeconds: number): Buffer {
  if (Buffer.byteLength(name) >= NAME_BYTES) throw new CorruptArtifactError(`archive entry name too long: ${name}`, { name });
  const header = Buffer.alloc(BLOCK, 0);
  header.write(name, 0, 'utf8');
  header.write(octal(mode & 0o7777, 8), 100, 'ascii');
  header.write(octal(0, 8), 108, 'ascii');
  header.write(octal(0, 8), 116, 'ascii');
  header.write(octal(size, 12), 124, 'ascii');
  header.write(octal(mtimeSeconds, 12), 136, 'ascii');
  header.write('        ', 148, 'ascii');
  header.write('0', 156, 'ascii');
  header.write('ustar\0', 257, 'ascii');
  header.write('00', 263, 'ascii');
  header.write(octal(checksum(header), 7) + ' ', 148, 'ascii');
  return header;
}

function checksum(header: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum;
}

export interface TarEntry {
  name: string;
  size: number;
  /** offset of the entry's data in the archive */
  offset: number;
}

/** Parses one header block; null for the end-of-archive (zero) block. */
export function parseTarHeader(header: Buffer, offset: number): TarEntry | null {
  if (header.every((byte) => byte === 0)) return null;
  const field = (start: number, length: number): string => header.subarray(start, start + length).toString('utf8').replace(/\0.*$/s, '').trim();
  const recorded = parseInt(field(148, 8), 8);
  if (recorded !== checksum(header)) throw new CorruptArtifactError(`archive header at byte ${offset} has a bad checksum`, { offset });
  const type = field(156, 1);
  const name = field(0, NAME_BYTES);
  if (type !== '0' && type !== '') throw new CorruptArtifactError(`archive entry "${name}" is not a regular file (type "${type}")`, { name });
  const size = parseInt(field(124, 12), 8);
  if (!Number.isSafeInteger(size) || size < 0) throw new CorruptArtifactError(`archive entry "${name}" has a bad size`, { name });
  return { name, size, offset: offset + BLOCK };
}

export async function writeArchive(archivePath: string, baseDir: string, names: string[]): Promise<void> {
  const out = createWriteStream(archivePath, { mode: 0o600, flags: 'wx' });
  async function* blocks(): AsyncGenerator<Buffer> {
    for (const name of names) {
      const file = path.join(baseDir, name);
      const stat = await fs.stat(file);
      yield tarHeader(name, stat.size, 0o600, Math.floor(stat.mtimeMs / 1000));
      for await (const chunk of createReadStream(file)) yield chunk as Buffer;
      const pad = (BLOCK - (stat.size % BLOCK)) % BLOCK;
      if (pad) yield Buffer.alloc(pad, 0);
    }
    yield Buffer.alloc(2 * BLOCK, 0);
  }
  await pipeline(blocks, out);
}

/** Extracts an archive written by writeArchive into `destDir`, accepting only names `accept` allows. */
export async function extractArchive(archivePath: string, destDir: string, accept: (name: string) => boolean): Promise<string[]> {
  const handle = await fs.open(archivePath, 'r');
  const names: string[] = [];
  try {
    const { size: archiveSize } = await handle.stat();
    let offset = 0;
    const header = Buffer.alloc(BLOCK);
    for (;;) {
      const { bytesRead } = await handle.read(header, 0, BLOCK, offset);
      if (bytesRead < BLOCK) throw new CorruptArtifactError('archive is truncated (no end-of-archive block)', { archive: archivePath });
      const entry = parseTarHeader(header, offset);
      if (!entry) break;
      if (!accept(entry.name) || names.includes(entry.name)) throw new CorruptArtifactError(`archive holds an unexpected entry "${entry.name}"`, { archive: archivePath });
      if (entry.offset + entry.size > archiveSize) throw new CorruptArtifactError(`archive is truncated inside "${entry.name}"`, { archive: archivePath });
      const target = path.join(destDir, entry.name);
      await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      if (entry.size === 0) await fs.writeFile(target, '', { mode: 0o600, flag: 'wx' });
      else
        await pipeline(
          createReadStream(archivePath, { start: entry.offset, end: entry.offset + entry.size - 1, highWaterMark: 1 << 20 }),
          createWriteStream(target, { mode: 0o600, flags: 'wx' }),
        );
      names.push(entry.name);
      offset = entry.offset + Math.ceil(entry.size / BLOCK) * BLOCK;
    }
  } finally {
    await handle.close();
  }
  return names;
}
