// For debugging by hand: `npx tsx tests/harness/containerd/cli.ts` starts a private containerd with the test
// image imported and prints the environment for `ctr`, `runc` and `criu`; Ctrl-C stops it and removes its files.
import { startContainerd } from './containerd.ts';
import { buildTestImage } from './image.ts';

const containerd = await startContainerd();
try {
  const image = await buildTestImage(containerd);
  const names = ['CONTAINERD_ADDRESS', 'CONTAINERD_NAMESPACE', 'XDG_RUNTIME_DIR', 'CRIU_FAULT'];
  console.log(names.map((name) => `export ${name}=${containerd.env[name] ?? ''}`).join('\n'));
  console.log(`export PATH=${containerd.bin.binDir}:$PATH`);
  console.log(`# image ${image.ref} (${image.manifest.digest}); logs in ${containerd.logsDir}`);
  console.log(`# e.g. ctr run -d --null-io ${image.ref} c1   # Ctrl-C here stops containerd`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
} finally {
  await containerd.stop();
}
