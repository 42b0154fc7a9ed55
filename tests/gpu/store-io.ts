/**
 * What bounds the agent store's commit and verify on the GPU machine (KYBERNATE_GPU_RUN=store-io, docs/gpu.md):
 * sha256 rate of the store's chunked hashing by worker count (page cache warm, then dropped), and the rate
 * at which freshly written data becomes durable (write, then fsync) on the work dir's disk and on tmpfs.
 * Reads the first --gib GiB of an existing file (the proof's weights); rows go to --out as JSON.
 */
import { open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { hashChunks } from '../../src/agent/store/hash-pool.ts';
import { chunkRanges, DEFAULT_CHUNK_BYTES } from '../../src/agent/store/hashing.ts';
import { createLogger } from '../../src/lib/log.ts';
import { dropPageCache } from './proof.ts';

const { values } = parseArgs({
  options: {
    file: { type: 'string' },
    gib: { type: 'string', default: '4' },
    workers: { type: 'string', default: '1,2,4,8,16' },
    'write-dirs': { type: 'string', default: '/var/tmp,/dev/shm' },
    out: { type: 'string', default: 'gpu-store-io.json' },
  },
});
const log = createLogger('gpu-store-io');
const bytes = Number(values.gib) * 2 ** 30;
const rows: Record<string, unknown>[] = [];
const gbPerS = (b: number, ms: number): number => Math.round((b / 1e9 / (ms / 1000)) * 100) / 100;

async function hashRate(workers: number): Promise<number> {
  const t0 = performance.now();
  await hashChunks(chunkRanges(bytes, DEFAULT_CHUNK_BYTES).map((range) => ({ file: values.file!, ...range })), workers);
  return performance.now() - t0;
}

if (values.file) {
  await hashRate(8); // brings the range into the page cache
  for (const workers of values.workers.split(',').map(Number)) {
    const ms = await hashRate(workers);
    rows.push({ what: 'hash, page cache warm', workers, bytes, ms: Math.round(ms), gb_per_s: gbPerS(bytes, ms) });
    log.info(rows.at(-1), 'hash rate');
  }
  await dropPageCache(log);
  const ms = await hashRate(8);
  rows.push({ what: 'hash, page cache dropped', workers: 8, bytes, ms: Math.round(ms), gb_per_s: gbPerS(bytes, ms) });
  log.info(rows.at(-1), 'hash rate');
}

for (const dir of values['write-dirs'].split(',')) {
  const file = join(dir, `kybernate-store-io-${process.pid}`);
  const block = Buffer.alloc(64 << 20, 0x5a);
  const handle = await open(file, 'w');
  try {
    const t0 = performance.now();
    for (let done = 0; done < bytes; done += block.length) await handle.write(block);
    const written = performance.now() - t0;
    await handle.sync();
    const synced = performance.now() - t0;
    rows.push({ what: 'write then fsync', dir, bytes, write_ms: Math.round(written), fsync_ms: Math.round(synced - written), durable_gb_per_s: gbPerS(bytes, synced) });
    log.info(rows.at(-1), 'write rate');
  } finally {
    await handle.close();
    await rm(file, { force: true });
  }
}
await writeFile(values.out, JSON.stringify({ date: new Date().toISOString(), rows }, null, 2) + '\n');
