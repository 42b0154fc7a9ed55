import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { InvalidInputError } from '../lib/errors.ts';
import { EXAMPLES_DIR } from './generate.ts';
import type { ExampleFile } from './reference.ts';

/** The example manifests under deploy/examples, in name order, each with the kind it declares. */
export async function loadExamples(repoRoot: string): Promise<ExampleFile[]> {
  const names = (await readdir(join(repoRoot, EXAMPLES_DIR))).filter((name) => name.endsWith('.yaml')).sort();
  return Promise.all(
    names.map(async (name) => {
      const path = `${EXAMPLES_DIR}/${name}`;
      const text = await readFile(join(repoRoot, path), 'utf8');
      const kind = (parse(text) as { kind?: unknown } | null)?.kind;
      if (typeof kind !== 'string') throw new InvalidInputError(`${path}: no kind`, { path });
      return { path, kind, text };
    }),
  );
}
