// For debugging by hand: `npx tsx tests/harness/kube/cli.ts up` starts a control plane, prints its
// kubeconfig and waits; Ctrl-C stops it and removes its files (`up --keep` keeps them).
import { startControlPlane } from './control-plane.ts';

const USAGE = 'usage: tsx tests/harness/kube/cli.ts up [--keep]';

async function up(keepFiles: boolean): Promise<void> {
  const plane = await startControlPlane();
  console.log(`kube-apiserver: ${plane.server}`);
  console.log(`logs:           ${plane.logsDir}`);
  console.log(`export KUBECONFIG=${plane.kubeconfigPath}`);
  console.log('Ctrl-C stops it.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await plane.stop({ keepLogs: keepFiles });
  console.log(keepFiles ? `stopped; files kept in ${plane.rootDir}` : 'stopped');
}

const [command, ...flags] = process.argv.slice(2);
if (command !== 'up' || flags.some((flag) => flag !== '--keep')) {
  console.error(USAGE);
  process.exit(2);
}
up(flags.includes('--keep')).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
