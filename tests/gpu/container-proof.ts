/**
 * The container-level GPU proof: workload.py as a containerd container (busybox test image with the
 * host's system directories bound read-only, the /dev/nvidia* devices in the spec), driven only through
 * the agent's API: Suspend/Resume (release in place), then Checkpoint with gpu=true (task stopped, GPU
 * freed) and Restore (counter continues, checksum of the data matches). Without a GPU (`device: 'cpu'`)
 * the same path runs with the CPU stand-in of the workload and a CRIU-only checkpoint, and the GPU
 * requests must fail with GpuUnavailable: a dry run of everything but the CUDA calls.
 */
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, realpathSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { AgentOperationError, type AgentClient } from '../../src/agent/client.ts';
import type { ContainerdClient } from '../../src/agent/containerd/client.ts';
import type { GpuInfo } from '../../src/agent/cuda/availability.ts';
import { KybernateError } from '../../src/lib/errors.ts';
import type { Logger } from '../../src/lib/log.ts';
import { createContainerWithSnapshot, removeTestContainer, testSpec } from '../agent/helpers/containers.ts';
import { TEST_IMAGE_REF } from '../harness/containerd/index.ts';
import { dropPageCache, ensureWeights, gpuUsedMib, seconds, timed, WorkloadFiles, type ProofConfig } from './proof.ts';

export interface ContainerProofConfig {
  gib: number;
  /** Weights, the workload's state dir and the agent's store live here (bound read-write into the container). */
  workDir: string;
  /** Absolute path of python3 on the host (the same path inside the container, whose /usr is the host's). */
  python: string;
  workloadScript: string;
  /** The repository on the host: bound read-only so the container sees workload.py at the same path. */
  repoRoot: string;
  namespace: string;
  /** containerd's state dir (removeTestContainer waits there for the old bundle to go). */
  containerdStateDir: string;
  /** null: no GPU here; the dry run described above. */
  gpu: GpuInfo | null;
  log: Logger;
}

/** One row of bench/results/gpu-<date>.json measured through the agent and containerd (wall time of each API call). */
export interface ContainerProofResult {
  gib: number;
  level: 'container';
  gpu: string;
  cold_start_s: number;
  release_s: number;
  resume_s: number;
  checkpoint_s: number;
  restore_s: number;
  counter_continued: boolean;
  checksum_ok: boolean;
  counter_frozen_while_released: boolean;
  task_stopped_after_checkpoint: boolean;
  image_bytes: number;
  gpu_used_mib: { loaded: number; released: number; resumed: number; dumped: number; restored: number } | null;
  /** The agent's own step timings (ms) of the checkpoint and the restore. */
  checkpoint_steps_ms: Record<string, number>;
  restore_steps_ms: Record<string, number>;
  /** What the manifest recorded of the GPUs and processes (null in the dry run). */
  manifest_gpu: unknown;
  /** Dry run only: the error codes the GPU requests got on this GPU-less node. */
  gpu_request_errors?: Record<string, string>;
}

/** Host directories the workload needs, bound read-only: the system's and wherever python and its packages live. */
async function hostDirsForPython(python: string): Promise<string[]> {
  const script = 'import json, os, sys\ntry:\n import torch; t = os.path.dirname(torch.__file__)\nexcept ImportError:\n t = None\nprint(json.dumps([sys.prefix, os.path.realpath(sys.executable), t]))';
  const { stdout } = await promisify(execFile)(python, ['-c', script]);
  const paths = (JSON.parse(stdout) as (string | null)[]).filter((p): p is string => p !== null);
  const tops = paths.map((p) => `/${p.split('/')[1]}`);
  return [...new Set(['/usr', '/lib', '/lib64', '/bin', '/sbin', '/etc', ...tops])].filter((dir) => existsSync(dir));
}

/**
 * The host's mount points below `dirs` (on the GPU machine the driver's squashfs at /usr/local/nvidia),
 * parents first. Each gets its own bind mount in the spec: runc hands spec bind mounts to CRIU as external
 * mounts, while a submount that an rbind brought along would have to be dumped, and CRIU cannot dump squashfs.
 */
async function mountPointsBelow(dirs: readonly string[]): Promise<string[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const points = mountinfo.split('\n').map((line) => line.split(' ')[4]).filter((point): point is string => point !== undefined);
  return [...new Set(points.filter((point) => dirs.some((dir) => point.startsWith(`${dir}/`))))].sort((a, b) => a.length - b.length);
}

/** The host's /dev/nvidia* character devices as OCI devices (the container gets the same nodes). */
function nvidiaDevices(): { path: string; type: 'c'; major: number; minor: number; fileMode: number; uid: number; gid: number }[] {
  return readdirSync('/dev')
    .filter((name) => name.startsWith('nvidia'))
    .map((name) => ({ path: `/dev/${name}`, stat: lstatSync(`/dev/${name}`) }))
    .filter(({ stat }) => stat.isCharacterDevice())
    .map(({ path, stat }) => ({
      path,
      type: 'c' as const,
      // glibc's major()/minor() encoding of dev_t
      major: Math.floor(stat.rdev / 256) & 0xfff,
      minor: (stat.rdev & 0xff) | ((Math.floor(stat.rdev / 4096) & 0xfff00)),
      fileMode: 0o666,
      uid: 0,
      gid: 0,
    }));
}

export async function workloadSpec(cfg: ContainerProofConfig, id: string, stateDir: string, weights: string): Promise<Record<string, unknown>> {
  const spec = testSpec({
    id,
    image: TEST_IMAGE_REF,
    namespace: cfg.namespace,
    args: [cfg.python, cfg.workloadScript, 'serve', weights, stateDir],
    logPath: join(stateDir, 'workload.log'),
    binds: [{ destination: cfg.workDir, source: cfg.workDir }],
  }) as { process: { env: string[] }; mounts: Record<string, unknown>[]; linux: { namespaces: { type: string }[]; devices?: unknown[]; resources: { devices: Record<string, unknown>[] } } };
  if (!cfg.gpu) spec.process.env.push('KYBERNATE_WORKLOAD_DEVICE=cpu');
  // The host's network (a hostNetwork pod): CRIU locks a container's own or joined network namespace with
  // iptables-restore, which the GPU machine lacks; the workload holds no connections.
  spec.linux.namespaces = spec.linux.namespaces.filter((ns) => ns.type !== 'network');
  const hostDirs = [...(await hostDirsForPython(cfg.python)), cfg.repoRoot];
  const readOnly = [...hostDirs, ...(await mountPointsBelow(hostDirs.map((dir) => realpathSync(dir))))];
  spec.mounts.push(
    // The real path as source: CRIU cannot restore a bind mount whose source is a symlink (merged /usr: /lib -> usr/lib).
    ...readOnly.map((dir) => ({ destination: dir, source: realpathSync(dir), type: 'bind', options: ['bind', 'ro'] })),
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=65536k'] },
  );
  const devices = cfg.gpu ? nvidiaDevices() : [];
  spec.linux.devices = devices;
  spec.linux.resources.devices.push(...devices.map((d) => ({ allow: true, type: 'c', major: d.major, minor: d.minor, access: 'rwm' })));
  return spec;
}

/** Creates and starts the workload container; its stdout/stderr go to the state dir's workload.log. */
async function startWorkloadContainer(containerd: ContainerdClient, cfg: ContainerProofConfig, id: string, stateDir: string, weights: string): Promise<number> {
  const call = { namespace: cfg.namespace };
  const spec = await workloadSpec(cfg, id, stateDir, weights);
  const mounts = await createContainerWithSnapshot(containerd, { id, image: TEST_IMAGE_REF, namespace: cfg.namespace, spec });
  const log = `file://${join(stateDir, 'workload.log')}`;
  await containerd.createTask({ containerId: id, rootfs: mounts, stdout: log, stderr: log }, call);
  return (await containerd.startTask(id, call)).pid;
}

/** The error code a GPU request got; the dry run expects GpuUnavailable for each. */
async function errorCodeOf(action: () => Promise<unknown>): Promise<string> {
  try {
    await action();
    return 'none';
  } catch (err) {
    return err instanceof KybernateError ? err.code : String(err);
  }
}

async function waitForSuccess(agent: AgentClient, operationId: string): Promise<{ checkpointId: string; steps: Record<string, number> }> {
  const op = await agent.waitForOperation(operationId);
  if (op.state !== 'SUCCEEDED') throw new AgentOperationError(op);
  return { checkpointId: op.checkpoint_id, steps: Object.fromEntries(op.steps.map((s) => [s.name, s.duration_ms ?? -1])) };
}

export async function runContainerProof(containerd: ContainerdClient, agent: AgentClient, cfg: ContainerProofConfig): Promise<ContainerProofResult> {
  const log = cfg.log.child({ gib: cfg.gib, level: 'container' });
  const id = `gpu-workload-${String(cfg.gib).replace('.', '-')}g`;
  const stateDir = join(cfg.workDir, `state-${id}`);
  const weights = join(cfg.workDir, `weights-${cfg.gib}g.bin`);
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { recursive: true });
  const proofConfig: ProofConfig = { gib: cfg.gib, workDir: cfg.workDir, python: cfg.python, workloadScript: cfg.workloadScript, criu: 'criu', lockTimeoutMs: 10_000, log };
  await ensureWeights(proofConfig, weights);
  const usedMib = async (): Promise<number> => (cfg.gpu ? gpuUsedMib(cfg.gpu.uuid) : -1);
  const workload = new WorkloadFiles(stateDir);
  const call = { namespace: cfg.namespace };

  await dropPageCache(log);
  const started = performance.now();
  workload.pid = await startWorkloadContainer(containerd, cfg, id, stateDir, weights);
  const initial = await workload.waitFor((s) => s.ready, 600_000, 'ready');
  const coldStartS = seconds(started);
  log.info({ pid: workload.pid, coldStartS }, 'workload container ready');
  const used = { loaded: await usedMib(), released: 0, resumed: 0, dumped: 0, restored: 0 };
  const ref = { namespace: cfg.namespace, containerId: id };
  try {
    let releaseS = 0;
    let resumeS = 0;
    let counterFrozen = true;
    let gpuRequestErrors: Record<string, string> | undefined;
    let afterResumeOk = true;
    if (cfg.gpu) {
      [, releaseS] = await timed(() => agent.suspend(cfg.namespace, id, 120_000));
      used.released = await usedMib();
      const frozenAt = (await workload.status())!.counter;
      await sleep(500);
      counterFrozen = (await workload.status())!.counter === frozenAt;
      [, resumeS] = await timed(() => agent.resume(cfg.namespace, id, [], 120_000));
      const resumed = await workload.waitFor((s) => s.counter > frozenAt + 5, 30_000, 'counting after resume');
      used.resumed = await usedMib();
      afterResumeOk = resumed.counter > frozenAt && (await workload.checksum()) === initial.checksum;
      log.info({ releaseS, resumeS, used }, 'suspend + resume through the agent done');
    } else {
      gpuRequestErrors = {
        suspend: await errorCodeOf(() => agent.suspend(cfg.namespace, id)),
        resume: await errorCodeOf(() => agent.resume(cfg.namespace, id)),
        checkpoint: await errorCodeOf(async () => waitForSuccess(agent, (await agent.checkpoint({ ...ref, leaveRunning: true, gpu: true })).id)),
      };
    }

    const [checkpointed, checkpointS] = await timed(async () => waitForSuccess(agent, (await agent.checkpoint({ ...ref, leaveRunning: false, gpu: cfg.gpu !== null })).id));
    const beforeDump = (await workload.status())!.counter;
    const taskStopped = (await containerd.getTask(id, call)).status === 'STOPPED';
    used.dumped = await usedMib();
    const checkpoint = await agent.getCheckpoint(checkpointed.checkpointId);
    const manifest = JSON.parse(checkpoint.manifest_json) as { gpu?: unknown };
    log.info({ checkpointS, steps: checkpointed.steps, used }, 'checkpoint through the agent done');
    await removeTestContainer(containerd, id, cfg.namespace, cfg.containerdStateDir);

    const [restored, restoreS] = await timed(async () => waitForSuccess(agent, (await agent.restore({ checkpointId: checkpointed.checkpointId })).id));
    const afterRestore = await workload.waitFor((s) => s.counter > beforeDump + 5, 60_000, 'counting after restore');
    used.restored = await usedMib();
    const checksumAfterRestore = await workload.checksum(120_000);
    log.info({ restoreS, steps: restored.steps, used }, 'restore through the agent done');
    await agent.deleteCheckpoint(checkpointed.checkpointId);

    return {
      gib: cfg.gib,
      level: 'container',
      gpu: cfg.gpu?.name ?? 'none (dry run)',
      cold_start_s: coldStartS,
      release_s: releaseS,
      resume_s: resumeS,
      checkpoint_s: checkpointS,
      restore_s: restoreS,
      counter_continued: afterResumeOk && afterRestore.counter > beforeDump,
      checksum_ok: afterResumeOk && checksumAfterRestore === initial.checksum,
      counter_frozen_while_released: counterFrozen,
      task_stopped_after_checkpoint: taskStopped,
      image_bytes: checkpoint.size_bytes,
      gpu_used_mib: cfg.gpu ? used : null,
      checkpoint_steps_ms: checkpointed.steps,
      restore_steps_ms: restored.steps,
      manifest_gpu: manifest.gpu ?? null,
      ...(gpuRequestErrors ? { gpu_request_errors: gpuRequestErrors } : {}),
    };
  } finally {
    await removeTestContainer(containerd, id, cfg.namespace, cfg.containerdStateDir);
  }
}
