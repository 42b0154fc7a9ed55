import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../support/wait.ts';
import type { Containerd } from './containerd.ts';
import { CriClient } from './cri-client.ts';
import { buildTestImage, TEST_IMAGE_REF, type TestImageDefinition } from './image.ts';

/** The namespace containerd's CRI plugin keeps Kubernetes' containers, images and sandboxes in. */
export const CRI_NAMESPACE = 'k8s.io';

/**
 * The pod sandbox ("pause") image: no registry is reachable, so it is the test image's busybox rootfs
 * with `sleep` as the whole program. StopPodSandbox kills it with SIGKILL, so it needs no signal handling.
 */
export const PAUSE_IMAGE: TestImageDefinition = { ref: 'kybernate.test/pause:1', entrypoint: ['/bin/sleep'], cmd: ['2147483647'] };

const CNI_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), 'cni');

/** How the harness configures containerd's CRI plugin (`io.containerd.grpc.v1.cri`), when enabled. */
export interface CriPluginOptions {
  sandboxImage: string;
  /** CNI plugin binaries; CRI also runs `loopback` from here for every pod */
  cniBinDir: string;
  /** CNI network configs; CRI uses the first */
  cniConfDir: string;
}

/**
 * The default CRI setup: the local pause image and the harness's own minimal CNI plugin
 * (`cni/bin/kybernate-test-cni`: lo up, eth0 10.88.0.2/24 inside the pod's network namespace), so a pod
 * gets its own network namespace by path as under a kubelet, without real CNI plugins on the machine.
 */
export function defaultCriPlugin(): CriPluginOptions {
  return { sandboxImage: PAUSE_IMAGE.ref, cniBinDir: resolve(CNI_DIR, 'bin'), cniConfDir: resolve(CNI_DIR, 'conf') };
}

/** The config.toml lines of the CRI plugin (version 2 config). */
export function criPluginToml(options: CriPluginOptions): string[] {
  const section = '[plugins."io.containerd.grpc.v1.cri"]';
  return [
    section,
    `  sandbox_image = ${JSON.stringify(options.sandboxImage)}`,
    // No AppArmor/SELinux on the test machines; CRI would otherwise ask for its profile where the kernel has AppArmor.
    '  disable_apparmor = true',
    '  enable_selinux = false',
    // The build machine's root lacks CAP_SYS_RESOURCE, which lowering oom_score_adj needs: CRI asks for -998 for the
    // sandbox and runc init fails ("failed to update /proc/self/oom_score_adj: Permission denied"). This clamps
    // every container's value to containerd's own, as on rootless nodes.
    '  restrict_oom_score_adj = true',
    // The exec/attach streaming server on a free loopback port.
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    `[plugins."io.containerd.grpc.v1.cri".cni]`,
    `  bin_dir = ${JSON.stringify(options.cniBinDir)}`,
    `  conf_dir = ${JSON.stringify(options.cniConfDir)}`,
    `  max_conf_num = 1`,
    `[plugins."io.containerd.grpc.v1.cri".containerd]`,
    '  snapshotter = "overlayfs"',
  ];
}

/**
 * Imports the pause image next to the test image (both into CRI's namespace) and waits until CRI's image
 * store has both: it learns of images imported through containerd from containerd's events. Returns a CRI
 * client on the instance's socket.
 */
export async function prepareCri(containerd: Containerd): Promise<CriClient> {
  await buildTestImage(containerd, { namespace: CRI_NAMESPACE, image: PAUSE_IMAGE });
  const cri = new CriClient(containerd.address);
  for (const ref of [PAUSE_IMAGE.ref, TEST_IMAGE_REF]) {
    await waitFor(`CRI sees image ${ref}`, () => cri.imageStatus(ref).then((image) => image ?? undefined), { timeoutMs: 10_000 });
  }
  return cri;
}
