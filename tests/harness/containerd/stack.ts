import { accessSync, constants } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HarnessError } from '../kube/errors.ts';

const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

/** Where scripts/setup/30-containerd.sh installs the stack: bin/ (daemons and tools) and image/ (busybox). */
export function stackDir(): string {
  return join(process.env.KYBERNATE_CACHE ?? join(REPO_ROOT, '.cache'), 'containerd');
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
    try {
      accessSync(path, constants.X_OK);
    } catch (err) {
      throw new HarnessError(
        `${name} not found at ${path}: run \`bash scripts/setup.sh\` (or \`npm test\`, which runs it first) ` +
          'to install containerd, runc, CRIU and busybox into $KYBERNATE_CACHE/containerd',
        { binary: name, path },
        { cause: err },
      );
    }
  }
  return binaries;
}
