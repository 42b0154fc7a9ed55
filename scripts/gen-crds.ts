/** Writes deploy/crds/*.yaml and docs/api.md from the schemas in src/api (`npm run gen:crds`). */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadExamples } from '../src/api/examples.ts';
import { generatedFiles } from '../src/api/generate.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const files = generatedFiles(await loadExamples(repoRoot));
const written = new Set(files.map((file) => file.path));

for (const file of files) {
  await mkdir(dirname(join(repoRoot, file.path)), { recursive: true });
  await writeFile(join(repoRoot, file.path), file.content);
  console.log(`wrote ${file.path}`);
}
// A renamed kind must not leave its old CRD behind.
for (const name of await readdir(join(repoRoot, 'deploy/crds'))) {
  const path = `deploy/crds/${name}`;
  if (name.endsWith('.yaml') && !written.has(path)) {
    await rm(join(repoRoot, path));
    console.log(`removed stale ${path}`);
  }
}
