import { join } from 'node:path';
import { requireExecutable, setupCacheDir } from '../../support/setup-cache.ts';

/** Where scripts/setup/30-containerd.sh installs the stack: bin/ (daemons and tools) and image/ (busybox). */
export function stackDir(): string {
  return setupCacheDir('containerd');
}

export interface StackBinaries {
  /** The folder holding all of them; put it first on PATH so the shim finds runc and runc finds criu. */
  binDir: string;
  containerd: string;
  shim: string;
  ctr: string;
  runc: string;
  criu: string;
  /** busybox-static, the whole rootfs of the test image. */
  busybox: string;
}

/** Absolute paths of the installed stack, or an error that tells how to install it. */
export function stackBinaries(): StackBinaries {
  const dir = stackDir();
  const binDir = join(dir, 'bin');
  const binaries: StackBinaries = {
    binDir,
    containerd: join(binDir, 'containerd'),
    shim: join(binDir, 'containerd-shim-runc-v2'),
    ctr: join(binDir, 'ctr'),
    runc: join(binDir, 'runc'),
    criu: join(binDir, 'criu'),
    busybox: join(dir, 'image', 'busybox'),
  };
  for (const [name, path] of Object.entries(binaries)) {
    if (name === 'binDir') continue;
    requireExecutable(name, path, 'install containerd, runc, CRIU and busybox into $KYBERNATE_CACHE/containerd');
  }
  return binaries;
}
