import fs from 'node:fs/promises';
import path from 'node:path';
import { errorMessage, InvalidInputError, KybernateError, NotFoundError } from '../lib/errors.ts';
import type { Logger } from '../lib/log.ts';
import type { ContainerdClient } from './containerd/client.ts';
import type { Container } from './containerd/types.ts';
import { encodeCheckpointOptions } from './containerd/runc-options.ts';
import { ContainerdError, FailedPreconditionError } from './errors.ts';
import { gpuSupportOf, type GpuSupport } from './gpu/support.ts';
import { checkpointTaskGpu, restoreTaskGpuInPlace, type CheckpointedGpuTask } from './gpu/task-gpu.ts';
import type { NodeInfo } from './node-info.ts';
import type { ReportStep } from './operations/registry.ts';
import { createStepTimer } from './operations/step-timer.ts';
import { namespaceOrigin, parseSpec } from './spec.ts';
import {
  CRIU_DIR,
  MANIFEST_KIND,
  MANIFEST_SCHEMA_VERSION,
  ROOTFS_DIFF_FILE,
  SPEC_FILE,
  isValidCheckpointId,
  type CheckpointManifest,
} from './store/manifest.ts';
import type { CheckpointStore } from './store/store.ts';

/** An uncompressed layer: the diff stays on the node, compression would only cost CPU on both ends. */
export const ROOTFS_DIFF_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar';
/** How long containerd keeps what a crashed agent's lease protected before collecting it. */
const LEASE_TTL_MS = 60 * 60 * 1000;
const SIGKILL = 9;

export interface AgentContext {
  containerd: ContainerdClient;
  store: CheckpointStore;
  log: Logger;
  nodeInfo: NodeInfo;
  /** deadline of the calls that run CRIU (dump, restore) */
  criuTimeoutMs: number;
  /** restored tasks' stdout+stderr go to <logDir>/<namespace>/<container>.log */
  logDir: string;
  /** the node's GPU driver and GPUs; default: this node's own, loaded on the first GPU request */
  gpu?: GpuSupport;
}

export interface CheckpointRequest {
  namespace: string;
  containerId: string;
  leaveRunning: boolean;
  checkpointId?: string;
  /** checkpoint the CUDA state of the container's processes too (GPU memory freed while CRIU dumps) */
  gpu?: boolean;
}

export function validateCheckpointRequest(request: CheckpointRequest): void {
  if (!request.namespace) throw new InvalidInputError('checkpoint: namespace is required');
  if (!request.containerId) throw new InvalidInputError('checkpoint: container_id is required', { namespace: request.namespace });
  if (request.checkpointId && !isValidCheckpointId(request.checkpointId)) {
    throw new InvalidInputError(`checkpoint: invalid checkpoint_id "${request.checkpointId}" (lower-case letters, digits, ".", "_", "-")`, {
      checkpoint: request.checkpointId,
    });
  }
}

/** The last lines of a CRIU log that say what failed, for error messages. */
export async function criuLogErrors(logFile: string, lines = 8): Promise<string> {
  const text = await fs.readFile(logFile, 'utf8').catch(() => '');
  const errors = text.split('\n').filter((line) => /Error|error|fail|File exists/.test(line));
  return errors.slice(-lines).join('\n');
}

/**
 * Checkpoints a running container into the store. The task is paused (cgroup freeze) for the whole
 * capture so that the rootfs diff and the CRIU image show the same instant; CRIU dumps with
 * leave-running, so until the artifact is committed any failure only needs a resume: the container
 * goes on as it was and nothing is reported as a checkpoint. With leaveRunning false the still-frozen
 * task is killed only after the commit.
 */
export async function checkpointContainer(ctx: AgentContext, request: CheckpointRequest, step: ReportStep): Promise<CheckpointManifest> {
  validateCheckpointRequest(request);
  const { containerd, store } = ctx;
  const { namespace, containerId } = request;
  const log = ctx.log.child({ namespace, container: containerId });
  const call = { namespace };
  const started = Date.now();
  const { timings, measure, timed } = createStepTimer(step);

  const id = request.checkpointId ?? store.newCheckpointId(containerId);
  const leaseId = `kybernate-checkpoint-${id}`;
  const lease = { namespace, lease: leaseId };
  const viewKey = `kybernate-diff-lower-${id}`;
  let staging: string | undefined;
  let workDir: string | undefined;
  let leaseCreated = false;
  let viewCreated = false;
  let paused = false;
  let committed = false;
  let gpuTask: CheckpointedGpuTask | undefined;
  // true while the container's CUDA processes are checkpointed and nothing else will bring them back
  let gpuHeld = false;
  const gpu = gpuSupportOf(ctx);
  let container: Container | undefined;
  try {
    // The containerd reads, the staging directories and the lease do not depend on each other; what was
    // made is undone below if any of them fails. The inspect error wins when several fail.
    const [inspected] = await timed('inspect', () =>
      firstFailure([
        inspectTask(containerd, containerId, call),
        store.beginStaging(id).then((dir) => (staging = dir)),
        store.createWorkDir(`checkpoint-${id}`).then((dir) => (workDir = dir)),
        containerd.createLease(leaseId, new Date(Date.now() + LEASE_TTL_MS), { 'kybernate.io/checkpoint': id }, call).then(() => {
          leaseCreated = true;
        }),
      ] as const),
    );
    container = inspected.container;
    const stagingDir = staging!;
    const criuWorkDir = workDir!;

    // Before the freeze: the CUDA lock waits for the processes' running GPU work, which a frozen process never finishes.
    if (request.gpu) {
      const hostCopyTo = { artifactDir: stagingDir, hashing: store.hashingOptions, onPhase: step };
      gpuTask = await timed('gpu-checkpoint', () => checkpointTaskGpu(gpu, inspected.task.pid, log, hostCopyTo));
      gpuHeld = true;
    }

    await timed('pause', () => containerd.pauseTask(containerId, call));
    paused = true;

    // Both read the frozen task's state and neither changes it, so they run side by side.
    const captured = await timed('capture', () =>
      Promise.allSettled([
        measure('rootfs-diff', async () => {
          const lower = inspected.snapshot.parent ? await containerd.viewSnapshot(inspected.container.snapshotter, viewKey, inspected.snapshot.parent, lease) : [];
          viewCreated = lower.length > 0;
          const upper = await containerd.snapshotMounts(inspected.container.snapshotter, inspected.container.snapshot_key, call);
          const diff = await containerd.diff(lower, upper, ROOTFS_DIFF_MEDIA_TYPE, lease);
          const out = await fs.open(path.join(stagingDir, ROOTFS_DIFF_FILE), 'wx', 0o600);
          try {
            for await (const chunk of containerd.readContent(diff.digest, lease)) await out.write(chunk);
          } finally {
            await out.close();
          }
        }),
        measure('criu-dump', async () => {
          const options = encodeCheckpointOptions({ exit: false, imagePath: path.join(stagingDir, CRIU_DIR), workPath: criuWorkDir, fileLocks: true });
          try {
            await containerd.checkpointTask(containerId, options, { namespace, timeoutMs: ctx.criuTimeoutMs });
          } catch (err) {
            const criuErrors = await criuLogErrors(path.join(criuWorkDir, 'dump.log'));
            if (!criuErrors || !(err instanceof KybernateError)) throw err;
            throw new ContainerdError(`${err.message}\nCRIU dump.log:\n${criuErrors}`, { ...err.context, namespace, container: containerId }, { cause: err });
          }
        }),
      ]),
    );
    const failed = captured.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;

    const manifest = await timed('commit', async () => {
      await fs.writeFile(path.join(stagingDir, SPEC_FILE), inspected.specJson, { mode: 0o600, flag: 'wx' });
      // Host copies were hashed from the bytes written while they were saved.
      const files = await store.sealStaging(id, new Map(gpuTask?.hostCopies.map((copy) => [copy.file, { chunkBytes: copy.digest.chunkBytes, chunkSha256: copy.digest.chunkSha256 }])));
      const { container } = inspected;
      const options = container.runtime!.options;
      const manifest: CheckpointManifest = {
        kind: MANIFEST_KIND,
        schemaVersion: MANIFEST_SCHEMA_VERSION,
        id,
        createdAt: new Date().toISOString(),
        node: ctx.nodeInfo.node,
        versions: { kernel: ctx.nodeInfo.kernel, criu: ctx.nodeInfo.criu, containerd: ctx.nodeInfo.containerd },
        source: {
          namespace,
          containerId,
          image: { ref: container.image, digest: inspected.image?.target?.digest ?? '' },
          snapshotter: container.snapshotter,
          snapshotParent: inspected.snapshot.parent,
          runtime: {
            name: container.runtime!.name,
            options: options ? { typeUrl: options.type_url, valueBase64: options.value.toString('base64') } : null,
          },
          networkNamespace: namespaceOrigin(inspected.spec, 'network'),
          pidNamespace: namespaceOrigin(inspected.spec, 'pid'),
          labels: container.labels,
        },
        leaveRunning: request.leaveRunning,
        ...(gpuTask ? { gpu: gpuTask.record } : {}),
        files,
        timings,
      };
      return manifest;
    });
    manifest.timings.totalMs = Date.now() - started;
    await store.commit(manifest);
    committed = true;
    log.info({ checkpoint: id, timings: manifest.timings }, 'checkpoint stored');

    if (request.leaveRunning) {
      await timed('resume', () => containerd.resumeTask(containerId, call));
      paused = false;
      if (gpuTask) await timed('gpu-restore', () => restoreTaskGpuInPlace(gpu, gpuTask!, log, store.artifactPath(id), store.hashingOptions));
    } else {
      await timed('stop', () => stopFrozenTask(containerd, containerId, call));
    }
    paused = false;
    gpuHeld = false;
    return manifest;
  } catch (err) {
    if (!committed) log.warn({ err: errorMessage(err) }, 'checkpoint failed; rolling back');
    throw err;
  } finally {
    await rollback(log, [
      ['resume task', paused, () => containerd.resumeTask(containerId, call)],
      ['restore GPU state', gpuHeld, () => restoreTaskGpuInPlace(gpu, gpuTask!, log, committed ? store.artifactPath(id) : store.stagingPath(id), store.hashingOptions)],
      ['remove diff view', viewCreated, () => containerd.removeSnapshot(container!.snapshotter, viewKey, call)],
      ['delete lease', leaseCreated, () => containerd.deleteLease(leaseId, call)],
      ['discard staging', staging !== undefined && !committed, () => store.discardStaging(id)],
      ['remove work dir', workDir !== undefined, () => store.removeWorkDir(workDir!)],
    ]);
  }
}

/** The running task to checkpoint, with its container, spec, snapshot (the diff's parent) and image. */
async function inspectTask(containerd: ContainerdClient, containerId: string, call: { namespace: string }) {
  const { namespace } = call;
  const [container, task] = await firstFailure([
    containerd.getContainer(containerId, call),
    containerd.getTask(containerId, call).catch((err: unknown): never => {
      if (err instanceof NotFoundError) throw new FailedPreconditionError(`container ${containerId} has no task to checkpoint`, { namespace, container: containerId });
      throw err;
    }),
  ] as const);
  if (task.status !== 'RUNNING') {
    throw new FailedPreconditionError(`container ${containerId} task is ${task.status}, not RUNNING`, { namespace, container: containerId });
  }
  if (!container.spec || !container.runtime) throw new ContainerdError(`container ${containerId} has no spec or runtime`, { namespace, container: containerId });
  const specJson = container.spec.value.toString('utf8');
  const spec = parseSpec(specJson);
  const [snapshot, image] = await Promise.all([
    containerd.statSnapshot(container.snapshotter, container.snapshot_key, call),
    container.image ? containerd.getImage(container.image, call) : undefined,
  ]);
  return { container, task, specJson, spec, snapshot, image };
}

/**
 * Kills a frozen task: the signal is queued while frozen and delivered on thaw, before the task runs
 * any more of its own code, so nothing happens after the checkpointed instant. runc thaws when it
 * signals all processes; the explicit resume covers runtimes that do not. The stopped task stays, like
 * the container record, for its owner to delete (as after containerd's own checkpoint with exit).
 */
async function stopFrozenTask(containerd: ContainerdClient, containerId: string, call: { namespace: string }): Promise<void> {
  await containerd.killTask(containerId, SIGKILL, call);
  await containerd.resumeTask(containerId, call).catch(() => undefined);
  await containerd.waitTask(containerId, { ...call, timeoutMs: 30_000 });
}

/**
 * Awaits all of `work` (so that nothing is still running when the caller rolls back) and then throws
 * the first failure in list order, the order of importance; else resolves to all results.
 */
export async function firstFailure<T extends readonly unknown[]>(work: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(work);
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/** Runs the undo steps whose condition holds, in order, logging (not throwing) their failures. */
export async function rollback(log: Logger, steps: [string, boolean, () => Promise<unknown>][]): Promise<void> {
  for (const [name, needed, undo] of steps) {
    if (!needed) continue;
    try {
      await undo();
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      log.error({ err: errorMessage(err), step: name }, 'cleanup step failed');
    }
  }
}
