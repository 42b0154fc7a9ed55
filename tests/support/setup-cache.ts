import { accessSync, constants } from 'node:fs';
import { join, resolve } from 'node:path';
import { HarnessError } from '../harness/kube/errors.ts';

const REPO_ROOT = resolve(import.meta.dirname, '../..');

/** Where scripts/setup.sh installs what the test tiers need: $KYBERNATE_CACHE, else <repo>/.cache. */
export function setupCacheDir(...parts: string[]): string {
  return join(process.env.KYBERNATE_CACHE ?? join(REPO_ROOT, '.cache'), ...parts);
}

/** Throws a HarnessError that says how to get `name` when `path` is not an executable file. */
export function requireExecutable(name: string, path: string, installs: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch (err) {
    throw new HarnessError(
      `${name} not found at ${path}: run \`bash scripts/setup.sh\` (or \`npm test\`, which runs it first) to ${installs}`,
      { binary: name, path },
      { cause: err },
    );
  }
}
