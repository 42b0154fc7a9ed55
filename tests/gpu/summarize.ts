/**
 * Builds bench/results/gpu-<date>.json from the raw rows of GPU runs (tests/gpu/run.sh): one row per size
 * and store of the container proof (through the agent), with the process-level plain sequence (criu CLI +
 * driver API) and cold start measured in the same device call beside it.
 * Usage: npx tsx tests/gpu/summarize.ts --out FILE RUN_DIR...
 *   RUN_DIR: what one device call brought back: container-*.json or gpu-container-results.json (container
 *   proof rows, the store named by the file), and process.json or gpu-results.json (process-level rows).
 *   A `run.json` beside them ({"call": ..., "code": ..., "note": ...}) is copied into each row.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

type Row = Record<string, unknown>;

const { values, positionals } = parseArgs({ options: { out: { type: 'string' } }, allowPositionals: true });
if (!values.out || positionals.length === 0) throw new Error('usage: summarize.ts --out FILE RUN_DIR...');

const round = (value: number): number => Math.round(value * 1000) / 1000;
const readRows = (file: string): Row[] => JSON.parse(readFileSync(file, 'utf8')) as Row[];

/** The store of a container row: where the agent kept the artifact. */
function storeKind(row: Row, file: string): string {
  const named = /^container-(\w+)\.json$/.exec(path.basename(file))?.[1];
  if (named) return named === 'huge' ? 'tmpfs (huge=within_size)' : named;
  return String(row.store).startsWith('/dev/shm') ? 'tmpfs' : 'disk';
}

function summarize(dir: string): Row[] {
  const files = readdirSync(dir);
  const run = existsSync(path.join(dir, 'run.json')) ? (JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8')) as Row) : {};
  const processFile = ['process.json', 'gpu-results.json'].find((name) => files.includes(name));
  const plain = new Map((processFile ? readRows(path.join(dir, processFile)) : []).map((row) => [row.gib, row]));
  const containerFiles = files.filter((name) => /^container-\w+\.json$/.test(name) || name === 'gpu-container-results.json');
  return containerFiles.flatMap((name) =>
    readRows(path.join(dir, name)).map((row): Row => {
      // A baseline that failed (its row has an error) is no baseline: its columns stay empty, its error is kept.
      const measured = plain.get(row.gib);
      const p = measured && !measured.error ? measured : undefined;
      const hostCopies = ((row.manifest_gpu as { hostCopies?: { ranges: { length: number }[] }[] } | null)?.hostCopies ?? []);
      const plainCheckpoint = p ? Number(p.cuda_checkpoint_s) + Number(p.criu_dump_s) : null;
      return {
        ...run,
        date: row.date,
        gpu: row.gpu,
        driver: row.driver,
        cuda_driver_api: row.cuda_driver_api,
        thp: row.thp,
        gib: row.gib,
        store: storeKind(row, name),
        checkpoint_s: row.checkpoint_s,
        restore_s: row.restore_s,
        release_s: row.release_s,
        resume_s: row.resume_s,
        cold_start_s: row.cold_start_s,
        plain_checkpoint_s: plainCheckpoint === null ? null : round(plainCheckpoint),
        plain_restore_s: p?.plain_restore_s ?? null,
        restore_speedup_vs_plain: p ? round(Number(p.plain_restore_s) / Number(row.restore_s)) : null,
        checkpoint_speedup_vs_plain: plainCheckpoint === null ? null : round(plainCheckpoint / Number(row.checkpoint_s)),
        plain_steps_s: p ? { cuda_checkpoint: p.cuda_checkpoint_s, criu_dump: p.criu_dump_s, criu_restore: p.criu_restore_s, cuda_restore: p.cuda_restore_s } : null,
        process_cold_start_s: p ? { page_cache_dropped: p.cold_start_s, page_cache_warm: p.cold_start_warm_cache_s } : null,
        counter_continued: row.counter_continued === true && (p ? p.counter_continued === true : true),
        checksum_ok: row.checksum_ok === true && (p ? p.checksum_ok === true : true),
        counter_frozen_while_released: row.counter_frozen_while_released,
        task_stopped_after_checkpoint: row.task_stopped_after_checkpoint,
        artifact_bytes: row.image_bytes,
        host_copy_bytes: hostCopies.reduce((sum, copy) => sum + copy.ranges.reduce((s, r) => s + r.length, 0), 0),
        host_copy_files: hostCopies.length,
        checkpoint_steps_ms: row.checkpoint_steps_ms,
        restore_steps_ms: row.restore_steps_ms,
        ...(measured?.error ? { plain_error: measured.error } : {}),
        ...(row.error ? { error: row.error } : {}),
      };
    }),
  );
}

const rows = positionals.flatMap(summarize);
writeFileSync(values.out, JSON.stringify(rows, null, 2) + '\n');
console.log(`${rows.length} rows -> ${values.out}`);
