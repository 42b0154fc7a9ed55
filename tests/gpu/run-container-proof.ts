/**
 * Entry of tests/gpu/run.sh's container mode (KYBERNATE_GPU_RUN=container): a private containerd (the
 * test harness's, binaries from $KYBERNATE_CACHE/containerd/bin), the busybox test image, the agent in
 * this process, then the container proof for each size. Rows go to --out as JSON; exits 1 when a size
 * failed or a check did not hold. `--dry-run` runs it without a GPU (tests/gpu/container-proof.ts).
 */
import { cp, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { AgentClient } from '../../src/agent/client.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { ContainerdClient } from '../../src/agent/containerd/client.ts';
import { checkGpuAvailability } from '../../src/agent/cuda/availability.ts';
import { transparentHugePages } from '../../src/agent/node-info.ts';
import { startAgent } from '../../src/agent/start.ts';
import { errorMessage } from '../../src/lib/errors.ts';
import { createLogger } from '../../src/lib/log.ts';
import { buildTestImage, startContainerd } from '../harness/containerd/index.ts';
import { runContainerProof } from './container-proof.ts';

const { values } = parseArgs({
  options: {
    gib: { type: 'string', default: '2,16' },
    out: { type: 'string', default: 'gpu-container-results.json' },
    'work-dir': { type: 'string', default: '/var/tmp/kybernate-gpu' },
    /** the agent's checkpoint store; default <work-dir>/agent/store (e.g. /dev/shm/... for tmpfs against disk) */
    'store-dir': { type: 'string' },
    python: { type: 'string', default: '/usr/bin/python3' },
    workload: { type: 'string', default: 'tests/gpu/workload.py' },
    'dry-run': { type: 'boolean', default: false },
  },
});

const log = createLogger('gpu-container-proof');
const availability = values['dry-run'] ? null : await checkGpuAvailability();
const gpu = availability?.gpus[0] ?? null;
const workDir = values['work-dir'];
const containerd = await startContainerd({ logger: log });
const rows: Record<string, unknown>[] = [];
try {
  await buildTestImage(containerd);
  const agentDir = join(workDir, 'agent');
  const config = parseAgentConfig({}, [
    `--socket=${join(agentDir, 'agent.sock')}`,
    `--containerd=${containerd.address}`,
    `--store=${values['store-dir'] ?? join(agentDir, 'store')}`,
    `--log-dir=${join(agentDir, 'logs')}`,
    `--criu=${containerd.bin.criu}`,
    '--criu-timeout=5m',
  ]);
  const running = await startAgent(config, log);
  const agent = new AgentClient({ socketPath: config.socketPath, timeoutMs: 120_000 });
  const client = new ContainerdClient({ address: containerd.address });
  const machine = { date: new Date().toISOString(), thp: await transparentHugePages(), store: config.storeRoot, driver: availability?.driverVersion ?? null, cuda_driver_api: availability?.cudaDriverApiVersion ?? null, gpu_uuid: gpu?.uuid ?? null };
  try {
    for (const gib of values.gib.split(',').map(Number)) {
      try {
        const result = await runContainerProof(client, agent, {
          gib,
          workDir,
          python: values.python,
          workloadScript: resolve(values.workload),
          repoRoot: resolve('.'),
          namespace: containerd.namespace,
          containerdStateDir: join(containerd.dir, 'state'),
          gpu,
          log,
        });
        rows.push({ ...result, ...machine });
      } catch (err) {
        log.error({ gib, err }, 'container GPU proof failed');
        rows.push({ gib, level: 'container', error: errorMessage(err), ...machine });
      }
      await writeFile(values.out, JSON.stringify(rows, null, 2) + '\n');
    }
  } finally {
    agent.close();
    client.close();
    await running.stop();
  }
} finally {
  await containerd.stop({ keepLogs: true });
  // Beside the results, so that they come back from the GPU machine.
  const logsCopy = join(dirname(resolve(values.out)), 'containerd-logs');
  await cp(containerd.logsDir, logsCopy, { recursive: true });
  log.info({ logs: logsCopy }, 'containerd logs copied');
}
const ok = rows.length > 0 && rows.every((row) => row.counter_continued === true && row.checksum_ok === true);
log.info({ ok, out: values.out }, 'container GPU proof finished');
process.exitCode = ok ? 0 : 1;
