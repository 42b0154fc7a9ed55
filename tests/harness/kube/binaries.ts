import { accessSync, constants } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HarnessError } from './errors.ts';

const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

/** Where scripts/setup/20-kube.sh puts etcd, kube-apiserver and kubectl. */
export function kubeBinDir(): string {
  return join(process.env.KYBERNATE_CACHE ?? join(REPO_ROOT, '.cache'), 'bin');
}

export type KubeBinary = 'etcd' | 'kube-apiserver' | 'kubectl';

/** Absolute path of a cached binary, or an error that tells how to get it. */
export function kubeBinary(name: KubeBinary): string {
  const path = join(kubeBinDir(), name);
  try {
    accessSync(path, constants.X_OK);
  } catch (err) {
    throw new HarnessError(
      `${name} not found at ${path}: run \`bash scripts/setup.sh\` (or \`npm test\`, which runs it first) ` +
        'to build kube-apiserver and kubectl and unpack etcd into $KYBERNATE_CACHE/bin',
      { binary: name, path },
      { cause: err },
    );
  }
  return path;
}
