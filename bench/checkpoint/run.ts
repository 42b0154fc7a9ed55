/**
 * Checkpoint/restore benchmark: a small container (the test image's counter) checkpointed and restored
 * through the agent API, and in the same run through the bare containerd calls that do the CRIU work
 * (Tasks.Checkpoint into a directory; Snapshots.Prepare + Containers.Create + Tasks.Create with
 * criu_image_path + Tasks.Start). Agent and raw rounds alternate so drift hits both alike.
 *
 * Two restore targets, each with its raw twin:
 * - pod: the counter runs in a pod-like sandbox (the network namespace and cgroup parent of a running
 *   "sandbox" container labelled as CRI labels one, the counter annotated with its sandbox id so the
 *   runc shim serves both, as CRI does) and is restored into it. This is the product's restore, and
 *   what the required keys (checkpoint_ms, restore_ms, raw_checkpoint_ms, raw_restore_ms) measure.
 * - standalone: the counter has its own network namespace, which CRIU dumps and recreates (`standalone`).
 *
 *   npm run bench:checkpoint [-- --quick] [-- --write]
 *
 * --quick: 3 rounds (under 60 s); default 10. --write: replace the "## Checkpoint / restore" section of
 * bench/RESULTS.md with this run. The last stdout line is one JSON object.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../../src/agent/client.ts';
import type { OperationMessage } from '../../src/agent/api.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import type { ContainerdClient } from '../../src/agent/containerd/client.ts';
import { encodeCheckpointOptions, encodeRestoreTaskOptions } from '../../src/agent/containerd/runc-options.ts';
import { SANDBOX_ID_ANNOTATION, SANDBOX_KIND, SANDBOX_KIND_LABEL } from '../../src/agent/spec.ts';
import { startAgent } from '../../src/agent/start.ts';
import { createLogger } from '../../src/lib/log.ts';
import { buildTestImage, startContainerd, TEST_IMAGE_REF, testImageArgs, type Containerd } from '../../tests/harness/containerd/index.ts';
import { containerdClient } from '../../tests/agent/helpers/agent.ts';
import { createContainerWithSnapshot, imageChainId, removeTestContainer, runTestContainer, testSpec } from '../../tests/agent/helpers/containers.ts';
import { createNetns, waitForCounter } from '../../tests/agent/helpers/observe.ts';

const quick = process.argv.includes('--quick');
const write = process.argv.includes('--write');
const rounds = quick ? 3 : 10;
const RESULTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../RESULTS.md');
const SECTION = '## Checkpoint / restore';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

/**
 * The counter with its numbers file on /dev/null: its rootfs stays as the image has it, so the raw path
 * (which carries no rootfs diff) restores the same process state the agent does.
 */
const COUNTER_ARGS = testImageArgs.counter('/dev/null');

/** Where the counter runs and is restored: standalone (undefined) or a pod sandbox. */
interface Pod {
  netnsPath: string;
  cgroupParent: string;
  sandboxId: string;
}

const podPlacement = (pod: Pod | undefined) =>
  pod ? { netnsPath: pod.netnsPath, cgroupParent: pod.cgroupParent, annotations: { [SANDBOX_ID_ANNOTATION]: pod.sandboxId } } : {};

/** A pod-like sandbox: a sleeping container in its own netns (by path) and cgroup parent, labelled as CRI labels sandboxes. */
async function startPod(ctrd: ContainerdClient, containerd: Containerd): Promise<{ pod: Pod; remove: () => Promise<void> }> {
  const netns = await createNetns(`kyb-bench-pod-${process.pid}`);
  const pod: Pod = { netnsPath: netns.path, cgroupParent: '/kybernate-bench-pod', sandboxId: 'bench-sandbox' };
  await runTestContainer(ctrd, {
    id: pod.sandboxId,
    image: TEST_IMAGE_REF,
    args: ['/bin/sleep', '100000'],
    namespace: containerd.namespace,
    netnsPath: pod.netnsPath,
    cgroupParent: pod.cgroupParent,
    labels: { [SANDBOX_KIND_LABEL]: SANDBOX_KIND },
    logPath: path.join(containerd.dir, 'sandbox.log'),
  });
  const remove = async (): Promise<void> => {
    await removeTestContainer(ctrd, pod.sandboxId, containerd.namespace);
    await netns.remove();
  };
  return { pod, remove };
}

async function startCounter(ctrd: ContainerdClient, containerd: Containerd, id: string, pod: Pod | undefined): Promise<void> {
  const logPath = path.join(containerd.dir, `${id}.log`);
  await runTestContainer(ctrd, { id, image: TEST_IMAGE_REF, args: COUNTER_ARGS, namespace: containerd.namespace, logPath, ...podPlacement(pod) });
  await waitForCounter(logPath, 2);
}

/** The agent's path: Checkpoint (leaveRunning false) and Restore, each until its operation SUCCEEDED. */
interface AgentRound {
  checkpoint: number;
  restore: number;
  /** step name -> ms, as the operations reported them */
  steps: Record<string, number>;
}

function stepTimes(prefix: string, op: OperationMessage): Record<string, number> {
  return Object.fromEntries(op.steps.map((s) => [`${prefix}.${s.name}`, s.duration_ms ?? 0]));
}

async function agentRound(client: AgentClient, ctrd: ContainerdClient, containerd: Containerd, id: string, pod: Pod | undefined): Promise<AgentRound> {
  const ns = containerd.namespace;
  await startCounter(ctrd, containerd, id, pod);
  let t = performance.now();
  const op = await client.checkpointAndWait({ namespace: ns, containerId: id, leaveRunning: false });
  const checkpoint = performance.now() - t;
  await removeTestContainer(ctrd, id, ns, path.join(containerd.dir, 'state'));
  const target = pod ? { netnsPath: pod.netnsPath, cgroupParent: pod.cgroupParent } : undefined;
  t = performance.now();
  const restored = await client.restoreAndWait({ checkpointId: op.checkpoint_id, ...(target ? { target } : {}) });
  const restore = performance.now() - t;
  await removeTestContainer(ctrd, id, ns, path.join(containerd.dir, 'state'));
  await client.deleteCheckpoint(op.checkpoint_id);
  return { checkpoint, restore, steps: { ...stepTimes('checkpoint', op), ...stepTimes('restore', restored) } };
}

interface RawRound {
  checkpoint: number;
  restore: number;
  /** CRIU's own share: the last timestamp of its dump.log / restore.log (runc logs at level 4, with times). */
  criuDump: number;
  criuRestore: number;
}

/** Seconds since CRIU started, as the last "(SS.ffffff)" line of its log says, in ms. */
async function criuLogMs(logFile: string): Promise<number> {
  const stamps = [...(await fs.readFile(logFile, 'utf8')).matchAll(/^\((\d+\.\d+)\)/gm)];
  const last = stamps.at(-1);
  if (!last) throw new Error(`${logFile} has no timestamped line`);
  return Number(last[1]) * 1000;
}

/** The same CRIU work with the fewest containerd calls: no rootfs diff, checksums, manifest or lease. */
async function rawRound(ctrd: ContainerdClient, containerd: Containerd, id: string, workDir: string, pod: Pod | undefined): Promise<RawRound> {
  const call = { namespace: containerd.namespace, timeoutMs: 120_000 };
  await startCounter(ctrd, containerd, id, pod);
  const imagePath = path.join(workDir, id, 'image');
  const criuWork = path.join(workDir, id, 'work');
  await fs.mkdir(imagePath, { recursive: true });
  await fs.mkdir(criuWork, { recursive: true });
  const parent = await imageChainId(ctrd, TEST_IMAGE_REF, containerd.namespace);

  let t = performance.now();
  await ctrd.checkpointTask(id, encodeCheckpointOptions({ exit: true, imagePath, workPath: criuWork, fileLocks: true }), call);
  const checkpoint = performance.now() - t;
  await removeTestContainer(ctrd, id, containerd.namespace, path.join(containerd.dir, 'state'));

  const spec = testSpec({ id, image: TEST_IMAGE_REF, args: COUNTER_ARGS, namespace: containerd.namespace, logPath: '', ...podPlacement(pod) });
  const logPath = path.join(containerd.dir, `${id}-raw-restored.log`);
  t = performance.now();
  const mounts = await createContainerWithSnapshot(ctrd, { id, image: TEST_IMAGE_REF, namespace: containerd.namespace, spec, parent });
  await ctrd.createTask({ containerId: id, rootfs: mounts, stdout: `file://${logPath}`, stderr: `file://${logPath}`, options: encodeRestoreTaskOptions(null, imagePath, criuWork) }, call);
  await ctrd.startTask(id, call);
  const restore = performance.now() - t;
  const [criuDump, criuRestore] = await Promise.all([criuLogMs(path.join(criuWork, 'dump.log')), criuLogMs(path.join(criuWork, 'restore.log'))]);
  await removeTestContainer(ctrd, id, containerd.namespace, path.join(containerd.dir, 'state'));
  await fs.rm(path.join(workDir, id), { recursive: true, force: true });
  return { checkpoint, restore, criuDump, criuRestore };
}

/** Medians of one restore target's agent and raw rounds. */
function summarize(agentRuns: AgentRound[], rawRuns: RawRound[]) {
  const summary = {
    checkpoint_ms: round1(median(agentRuns.map((r) => r.checkpoint))),
    restore_ms: round1(median(agentRuns.map((r) => r.restore))),
    raw_checkpoint_ms: round1(median(rawRuns.map((r) => r.checkpoint))),
    raw_restore_ms: round1(median(rawRuns.map((r) => r.restore))),
    raw_criu_dump_ms: round1(median(rawRuns.map((r) => r.criuDump))),
    raw_criu_restore_ms: round1(median(rawRuns.map((r) => r.criuRestore))),
    checkpoint_overhead_pct: 0,
    restore_overhead_pct: 0,
    // Median of each round's agent/raw ratio: agent and raw of one round ran back to back, so this
    // cancels much of the drift of a shared machine's load that the ratio of medians keeps.
    paired_checkpoint_overhead_pct: round1(median(agentRuns.map((r, i) => (r.checkpoint / rawRuns[i]!.checkpoint - 1) * 100))),
    paired_restore_overhead_pct: round1(median(agentRuns.map((r, i) => (r.restore / rawRuns[i]!.restore - 1) * 100))),
    agent_steps_ms: Object.fromEntries(Object.keys(agentRuns[0]!.steps).map((name) => [name, round1(median(agentRuns.map((r) => r.steps[name] ?? 0)))])),
  };
  summary.checkpoint_overhead_pct = round1((summary.checkpoint_ms / summary.raw_checkpoint_ms - 1) * 100);
  summary.restore_overhead_pct = round1((summary.restore_ms / summary.raw_restore_ms - 1) * 100);
  return summary;
}

type Summary = ReturnType<typeof summarize>;

async function main(): Promise<void> {
  const log = createLogger('bench-checkpoint', { level: process.env.KYBERNATE_LOG_LEVEL ?? 'warn' });
  const containerd = await startContainerd({ logger: log });
  const base = path.join(containerd.dir, 'bench');
  const ctrd = containerdClient(containerd);
  let agent: Awaited<ReturnType<typeof startAgent>> | undefined;
  let client: AgentClient | undefined;
  let removePod: (() => Promise<void>) | undefined;
  let failed = true;
  try {
    await buildTestImage(containerd);
    const flags = [`--socket=${base}/agent.sock`, `--containerd=${containerd.address}`, `--store=${base}/store`, `--log-dir=${base}/logs`, `--criu=${containerd.bin.criu}`];
    agent = await startAgent(parseAgentConfig({}, flags), log);
    client = new AgentClient({ socketPath: `${base}/agent.sock` });
    const started = await startPod(ctrd, containerd);
    removePod = started.remove;
    const targets = [
      { name: 'pod', pod: started.pod },
      { name: 'standalone', pod: undefined },
    ] as const;
    // One unmeasured round of each warms the page cache, the shim binary and the gRPC channels.
    for (const { name, pod } of targets) {
      await agentRound(client, ctrd, containerd, `warm-agent-${name}`, pod);
      await rawRound(ctrd, containerd, `warm-raw-${name}`, path.join(base, 'raw'), pod);
    }

    const runs = { pod: { agent: [] as AgentRound[], raw: [] as RawRound[] }, standalone: { agent: [] as AgentRound[], raw: [] as RawRound[] } };
    for (let i = 0; i < rounds; i++) {
      const line: string[] = [];
      for (const { name, pod } of targets) {
        const agentRun = await agentRound(client, ctrd, containerd, `agent-${name}-${i}`, pod);
        const rawRun = await rawRound(ctrd, containerd, `raw-${name}-${i}`, path.join(base, 'raw'), pod);
        runs[name].agent.push(agentRun);
        runs[name].raw.push(rawRun);
        line.push(`${name}: agent ${agentRun.checkpoint.toFixed(0)}/${agentRun.restore.toFixed(0)}, raw ${rawRun.checkpoint.toFixed(0)}/${rawRun.restore.toFixed(0)}`);
      }
      console.log(`round ${i + 1}/${rounds} (checkpoint/restore ms): ${line.join('; ')}`);
    }
    const result = {
      // The required keys: the restore into a pod sandbox (the product's path).
      ...summarize(runs.pod.agent, runs.pod.raw),
      target: 'pod sandbox',
      standalone: summarize(runs.standalone.agent, runs.standalone.raw),
      rounds,
      machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, kernel ${os.release()}`,
      load_avg_1m: round1(os.loadavg()[0]!),
      criu: (await agent.agent.status()).criu,
      date: new Date().toISOString(),
    };
    if (write) await writeResults(result);
    failed = false;
    console.log(JSON.stringify(result));
  } finally {
    client?.close();
    await agent?.stop();
    await removePod?.().catch(() => undefined);
    ctrd.close();
    await containerd.stop({ keepLogs: failed });
    if (failed) console.error(`containerd logs kept in ${containerd.logsDir}`);
  }
}

function stepList(summary: Summary): string {
  return Object.entries(summary.agent_steps_ms).map(([name, ms]) => `${name} ${ms}`).join(', ');
}

async function writeResults(r: Summary & { standalone: Summary; rounds: number; machine: string; load_avg_1m: number; criu: string; date: string }): Promise<void> {
  const met = (ok: boolean): string => (ok ? 'met' : 'not met');
  const steps = new Map(Object.entries(r.agent_steps_ms));
  const pauseCommitStop = round1(['checkpoint.pause', 'checkpoint.commit', 'checkpoint.stop'].reduce((sum, name) => sum + (steps.get(name) ?? 0), 0));
  const row = (label: string, s: Summary): string[] => [
    `| ${label}: agent API | ${s.checkpoint_ms} | ${s.restore_ms} |`,
    `| ${label}: raw containerd | ${s.raw_checkpoint_ms} | ${s.raw_restore_ms} |`,
    `| ${label}: of which CRIU itself (its log's last timestamp) | ${s.raw_criu_dump_ms} | ${s.raw_criu_restore_ms} |`,
    `| ${label}: agent overhead (ratio of the medians) | ${s.checkpoint_overhead_pct} % | ${s.restore_overhead_pct} % |`,
    `| ${label}: agent overhead (median of the rounds' ratios) | ${s.paired_checkpoint_overhead_pct} % | ${s.paired_restore_overhead_pct} % |`,
  ];
  const section = [
    SECTION,
    '',
    `\`npm run bench:checkpoint${quick ? ' -- --quick' : ''}\` (bench/checkpoint/run.ts), ${r.date}: ${r.machine}, load average ${r.load_avg_1m} at the end`,
    `(the machine is shared with other builds), containerd 1.7.24, CRIU ${r.criu}, ${r.rounds} rounds of the busybox counter`,
    'container per target; medians in ms. "raw" = the bare containerd calls doing the same CRIU work in the same run',
    '(checkpoint: Tasks.Checkpoint into a directory with exit; restore: Snapshots.Prepare, Containers.Create,',
    'Tasks.Create with criu_image_path, Tasks.Start, with the same spec the agent makes); the agent adds the',
    'rootfs diff, checksums, fsync, the manifest, the lease, the pause, stopping the task after the commit and',
    'the operation bookkeeping.',
    '',
    'Targets: **pod** = the counter runs in, and is restored into, a pod-like sandbox (the netns and cgroup',
    'parent of a running sandbox container that carries CRI\'s sandbox label; the counter carries CRI\'s',
    'sandbox-id annotation, so the sandbox\'s runc shim serves it, as in Kubernetes). This is the product\'s',
    'restore and what the JSON keys `checkpoint_ms`, `restore_ms`, `raw_checkpoint_ms`, `raw_restore_ms`',
    'measure. **standalone** = the counter has its own network namespace, which CRIU dumps and recreates',
    '(JSON `standalone`).',
    '',
    '| path | checkpoint | restore |',
    '|---|---|---|',
    ...row('pod', r),
    ...row('standalone', r.standalone),
    '',
    `Agent steps, pod (medians, ms, as the operations report them): ${stepList(r)}.`,
    '',
    `Agent steps, standalone: ${stepList(r.standalone)}.`,
    '',
    `Against the targets (pod): restore <= 150 ms median ${met(r.restore_ms <= 150)} (${r.restore_ms}); agent overhead <= 10 %: restore ` +
      `${met(r.restore_overhead_pct <= 10)} (${r.restore_overhead_pct} %), checkpoint ${met(r.checkpoint_overhead_pct <= 10)} (${r.checkpoint_overhead_pct} %).`,
    '',
    `Why (docs/agent.md, "Where checkpoint/restore time goes", has the measurements of each change): of raw's pod restore (${r.raw_restore_ms}),`,
    `CRIU itself is ${r.raw_criu_restore_ms} (a good part of it tarring and untarring four tmpfs mounts), \`runc restore\` around it and`,
    `Tasks.Create (${steps.get('restore.task-create')} in the agent, in the sandbox's running shim) the rest: with runc + CRIU on this VM the`,
    "restore cannot reach 150 ms. The agent's checkpoint overhead is the pause before the dump, the commit (hashing, fsync) and",
    `stopping the task after the commit (${pauseCommitStop} together): the price of "a failed checkpoint leaves the container running`,
    'as it was"; raw lets CRIU kill the task inside the dump. Raw checkpoints are bimodal (~100 ms apart): CRIU freezes a running',
    "task itself and polls cgroup v1's freezer.state every 100 ms, where the agent pauses the task first. The test stack's CRIU",
    "keeps its kernel-probe cache on /dev/shm (a node's /run is a tmpfs, this VM's is not); runs before 2026-11-27 23:17",
    'paid ~45 ms or more per CRIU run for re-probing.',
    '',
  ].join('\n');
  const text = await fs.readFile(RESULTS, 'utf8').catch(() => '');
  const start = text.indexOf(SECTION);
  let next = start < 0 ? -1 : text.indexOf('\n## ', start + SECTION.length);
  if (next >= 0) next += 1;
  const updated = start < 0 ? `${text.trimEnd()}\n\n${section}` : `${text.slice(0, start)}${section}${next >= 0 ? `\n${text.slice(next)}` : ''}`;
  await fs.writeFile(RESULTS, updated);
}

await main();
