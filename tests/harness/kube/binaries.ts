import { join } from 'node:path';
import { requireExecutable, setupCacheDir } from '../../support/setup-cache.ts';

/** Where scripts/setup/20-kube.sh puts etcd, kube-apiserver and kubectl. */
export function kubeBinDir(): string {
  return setupCacheDir('bin');
}

export type KubeBinary = 'etcd' | 'kube-apiserver' | 'kubectl';

/** Absolute path of a cached binary, or an error that tells how to get it. */
export function kubeBinary(name: KubeBinary): string {
  const path = join(kubeBinDir(), name);
  requireExecutable(name, path, 'build kube-apiserver and kubectl and unpack etcd into $KYBERNATE_CACHE/bin');
  return path;
}
