import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadExamples } from '../../src/api/examples.ts';
import { generatedFiles } from '../../src/api/generate.ts';

const REPO_ROOT = resolve(import.meta.dirname, '../..');
const FIX = 'run `npm run gen:crds` and commit the result';

describe('generated CRDs and API reference', () => {
  it('match src/api (no drift)', async () => {
    const files = generatedFiles(await loadExamples(REPO_ROOT));
    for (const file of files) {
      const onDisk = await readFile(join(REPO_ROOT, file.path), 'utf8').catch(() => undefined);
      expect(onDisk === file.content, `${file.path} is out of date with src/api: ${FIX}`).toBe(true);
    }
    const crdFiles = (await readdir(join(REPO_ROOT, 'deploy/crds'))).map((name) => `deploy/crds/${name}`);
    const stale = crdFiles.filter((path) => !files.some((file) => file.path === path));
    expect(stale, `deploy/crds has files src/api no longer generates: ${FIX}`).toEqual([]);
  });
});
