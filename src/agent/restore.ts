import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { InvalidInputError, KybernateError, NotFoundError } from '../lib/errors.ts';
import { ROOTFS_DIFF_MEDIA_TYPE, criuLogErrors, firstFailure, rollback, type AgentContext } from './checkpoint.ts';
import type { ContainerdClient } from './containerd/client.ts';
import { encodeRestoreTaskOptions } from './containerd/runc-options.ts';
import type { Mount } from './containerd/types.ts';
import { AlreadyExistsError, BaseImageMissingError, ContainerdError, FailedPreconditionError, PidCollisionError } from './errors.ts';
import type { GpuUuidPair } from './cuda/api.ts';
import { gpuSupportOf } from './gpu/support.ts';
import { restoreTaskGpu } from './gpu/task-gpu.ts';
import type { ReportStep } from './operations/registry.ts';
import { createStepTimer } from './operations/step-timer.ts';
import { SANDBOX_KIND, SANDBOX_KIND_LABEL, checkRestoreTarget, parseSpec, restoreSpec, sandboxHoldingNetns, type RestoreTarget, type TargetSandbox } from './spec.ts';
import { ROOTFS_DIFF_FILE, SPEC_FILE, isHostCopyPath, isValidCheckpointId, rootfsDiffFile, type CheckpointManifest } from './store/manifest.ts';

export const OCI_SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
const LEASE_TTL_MS = 60 * 60 * 1000;
const SIGKILL = 9;
/** The share of the store's hashing threads that verify host copies of GPU memory during a restore. */
const HOST_COPY_HASHING_SHARE = 0.3;
/** CRIU's words when a pid it must recreate is taken (clone3 with set_tid, or the older ns_last_pid path). */
const PID_COLLISION = /Can't fork for \d+|set_tid|Pid \d+ is already taken|File exists/;

export interface RestoreRequest {
  checkpointId: string;
  /** namespace and id of the new container; default: the checkpointed container's */
  namespace?: string;
  containerId?: string;
  target: RestoreTarget;
  /** for a GPU checkpoint: old -> new GPU UUIDs; empty = the recorded GPUs, or same-model ones of this node */
  gpuPairs?: GpuUuidPair[];
}

export interface RestoreResult {
  namespace: string;
  containerId: string;
  pid: number;
  logPath: string;
  timings: Record<string, number>;
}

/** The namespace and id a restore will create, as the request and the manifest decide them. */
export function restoreDestination(request: RestoreRequest, manifest: Pick<CheckpointManifest, 'source'>): { namespace: string; containerId: string } {
  return { namespace: request.namespace || manifest.source.namespace, containerId: request.containerId || manifest.source.containerId };
}

export function validateRestoreRequest(request: RestoreRequest): void {
  if (!request.checkpointId) throw new InvalidInputError('restore: checkpoint_id is required');
  if (!isValidCheckpointId(request.checkpointId)) throw new InvalidInputError(`restore: invalid checkpoint_id "${request.checkpointId}"`);
}

export function restoreLogPath(logDir: string, namespace: string, containerId: string): string {
  return path.join(logDir, namespace, `${containerId}.log`);
}

/**
 * Restores a stored checkpoint into a new container: verifies the artifact, prepares a snapshot from the
 * base image and applies the rootfs diff, creates the container with the checkpoint's spec placed into
 * the target, and lets runc/CRIU restore the task from a hard-linked copy of the image. On any failure
 * everything created so far (task, container, snapshot, lease, work dir) is removed again.
 */
export async function restoreCheckpoint(ctx: AgentContext, request: RestoreRequest, step: ReportStep): Promise<RestoreResult> {
  validateRestoreRequest(request);
  const { containerd, store } = ctx;
  const { timings, measure, timed } = createStepTimer(step);

  // The manifest only says where the restore goes; nothing reaches CRIU before every file is verified.
  const unverified = await store.get(request.checkpointId);
  const { namespace, containerId } = restoreDestination(request, unverified);
  const { source } = unverified;
  const context = { checkpoint: unverified.id, namespace, container: containerId };
  const log = ctx.log.child(context);
  checkRestoreTarget(source.networkNamespace, request.target, context);
  const call = { namespace };
  const artifact = store.artifactPath(unverified.id);
  const leaseId = `kybernate-restore-${containerId}-${randomBytes(4).toString('hex')}`;
  const lease = { namespace, lease: leaseId };
  const logPath = restoreLogPath(ctx.logDir, namespace, containerId);
  const created = { lease: false, snapshot: false, container: false, task: false };
  let workspaceDir: string | undefined;
  let hostCopyVerification: Promise<unknown> = Promise.resolve();
  let succeeded = false;
  try {
    // Hashing every file takes longest, so it runs beside everything up to the task: the preflight, the
    // lease, the target pod's sandbox, the snapshot with the rootfs diff (containerd checks the diff's
    // digest itself), the container record and the image links. All of that is undone if the artifact
    // is corrupt, and the verify error is the one reported; no task (shim, runc, CRIU) starts before it passes.
    // Host copies of GPU memory (most of a GPU checkpoint's bytes) are hashed beside everything up to the
    // CUDA restore: the restored processes are unlocked only once they passed (restoreTaskGpu). Done by a
    // third of the hashing threads, they still finish before that (16 GiB: ~3.5 s of ~5), and the rest of
    // the cores go to what the restore waits for: this hashing, CRIU, and writing the copies back.
    const verification = measure('checksums', () => store.verify(request.checkpointId, { checksumsLater: isHostCopyPath }));
    verification.catch(() => undefined);
    const { maxWorkers } = store.hashingOptions;
    const hostCopyWorkers = Math.max(1, Math.round(maxWorkers * HOST_COPY_HASHING_SHARE));
    if (unverified.gpu?.hostCopies) {
      hostCopyVerification = measure('host-copy-checksums', () => store.verify(request.checkpointId, { checksumsLater: (rel) => !isHostCopyPath(rel), maxWorkers: hostCopyWorkers }));
    }
    hostCopyVerification.catch(() => undefined);
    const unlessCorrupt = async <T>(work: Promise<T>): Promise<T> => {
      try {
        return await work;
      } catch (err) {
        await verification;
        throw err;
      }
    };

    const [, specJson, sandbox] = await timed('preflight', () =>
      unlessCorrupt(
        firstFailure([
          preflight(containerd, source, containerId, context, call),
          fs.readFile(path.join(artifact, SPEC_FILE), 'utf8'),
          request.target.netnsPath ? measure('sandbox', () => findSandbox(containerd, request.target.netnsPath!, call, context)) : Promise.resolve(undefined),
          containerd.createLease(leaseId, new Date(Date.now() + LEASE_TTL_MS), { 'kybernate.io/checkpoint': unverified.id }, call).then(() => {
            created.lease = true;
          }),
        ] as const),
      ),
    );
    const spec = restoreSpec(parseSpec(specJson), containerId, namespace, request.target, sandbox, context);
    if (sandbox) log.debug({ sandbox: sandbox.id, sandboxPid: sandbox.pid }, 'restoring into the namespaces and shim of the target pod sandbox');

    // Snapshot + rootfs diff, the container record and the CRIU image links do not depend on each other.
    const [mounts, , workspace] = await timed('prepare', () =>
      unlessCorrupt(
        firstFailure([
          measure('rootfs', async () => {
            const mounts = await containerd.prepareSnapshot(source.snapshotter, containerId, source.snapshotParent, lease);
            created.snapshot = true;
            await applyRootfsDiff(ctx, unverified, artifact, mounts, lease);
            return mounts;
          }),
          measure('container', async () => {
            const options = source.runtime.options;
            await containerd.createContainer(
              {
                id: containerId,
                labels: { 'kybernate.io/checkpoint': unverified.id },
                image: source.image.ref,
                runtime: { name: source.runtime.name, options: options ? { type_url: options.typeUrl, value: Buffer.from(options.valueBase64, 'base64') } : null },
                spec: { type_url: OCI_SPEC_TYPE_URL, value: Buffer.from(JSON.stringify(spec)) },
                snapshotter: source.snapshotter,
                snapshot_key: containerId,
              },
              call,
            );
            created.container = true;
          }),
          measure('workspace', async () => {
            const [workspace] = await Promise.all([
              store.prepareRestoreWorkspace(unverified.id, `restore-${containerId}`),
              fs.mkdir(path.dirname(logPath), { recursive: true, mode: 0o700 }),
            ]);
            workspaceDir = workspace.dir;
            return workspace;
          }),
        ] as const),
      ),
    );

    // What is left of the hashing (usually nothing on a small image).
    const manifest = await timed('verify', () => verification);

    await timed('task-create', async () => {
      const runtimeOptions = source.runtime.options ? { type_url: source.runtime.options.typeUrl, value: Buffer.from(source.runtime.options.valueBase64, 'base64') } : null;
      const stdio = `file://${logPath}`;
      await containerd.createTask(
        { containerId, rootfs: mounts, stdout: stdio, stderr: stdio, options: encodeRestoreTaskOptions(runtimeOptions, workspace.imagePath, workspace.workPath) },
        { namespace, timeoutMs: ctx.criuTimeoutMs },
      );
      created.task = true;
    });

    const { pid } = await timed('criu-restore', async () => {
      try {
        return await containerd.startTask(containerId, { namespace, timeoutMs: ctx.criuTimeoutMs });
      } catch (err) {
        throw await explainRestoreFailure(err, path.join(workspace.workPath, 'restore.log'), context);
      }
    });
    if (manifest.gpu) {
      const gpuRecord = manifest.gpu;
      // A restored task whose GPU state cannot come back would stay frozen in CUDA: it is killed, not handed out.
      const hostCopies = { artifactDir: artifact, copies: gpuRecord.hostCopies ?? [], maxWorkers: Math.max(1, maxWorkers - hostCopyWorkers), verified: hostCopyVerification, onPhase: step };
      const restoreGpuAndVerify = async (): Promise<void> => {
        await restoreTaskGpu(gpuSupportOf(ctx), pid, gpuRecord, request.gpuPairs ?? [], log, hostCopies);
        const task = await containerd.getTask(containerId, call);
        if (task.status !== 'RUNNING') throw new ContainerdError(`restored task of ${containerId} is ${task.status} after the GPU restore`, context);
      };
      await timed(hostCopies.copies.length > 0 ? 'host-copy' : 'gpu-restore', restoreGpuAndVerify).catch(async (err: unknown) => {
        await containerd.killTask(containerId, SIGKILL, call).catch(() => undefined);
        await containerd.waitTask(containerId, { ...call, timeoutMs: 30_000 }).catch(() => undefined);
        throw err;
      });
    }
    succeeded = true;
    log.info({ pid, timings, logPath }, 'checkpoint restored');
    return { namespace, containerId, pid, logPath, timings };
  } finally {
    await rollback(log, [
      // Nothing of the operation keeps running after it ended (a failure before the GPU restore left it hashing).
      ['finish host copy checksums', true, () => hostCopyVerification.catch(() => undefined)],
      ['delete task', created.task && !succeeded, () => containerd.deleteTask(containerId, call)],
      ['delete container', created.container && !succeeded, () => containerd.deleteContainer(containerId, call)],
      ['remove snapshot', created.snapshot && !succeeded, () => containerd.removeSnapshot(source.snapshotter, containerId, call)],
      ['delete lease', created.lease, () => containerd.deleteLease(leaseId, call)],
      ['remove work dir', workspaceDir !== undefined, () => store.removeWorkDir(workspaceDir!)],
    ]);
  }
}

/** The checkpoint's base image (with the recorded digest) and its unpacked snapshot exist, and the new container id is free. */
async function preflight(
  containerd: ContainerdClient,
  source: CheckpointManifest['source'],
  containerId: string,
  context: Record<string, unknown>,
  call: { namespace: string },
): Promise<void> {
  const { namespace } = call;
  const checkImage = async (): Promise<void> => {
    if (!source.image.ref) return;
    const image = await containerd.getImage(source.image.ref, call).catch((err: unknown): never => {
      if (err instanceof NotFoundError) throw new BaseImageMissingError(`base image ${source.image.ref} is not on this node (namespace ${namespace})`, context);
      throw err;
    });
    if (source.image.digest && image.target?.digest !== source.image.digest) {
      throw new BaseImageMissingError(`base image ${source.image.ref} is ${image.target?.digest}, the checkpoint needs ${source.image.digest}`, context);
    }
  };
  const checkSnapshot = async (): Promise<void> => {
    if (!source.snapshotParent) return;
    await containerd.statSnapshot(source.snapshotter, source.snapshotParent, call).catch((err: unknown): never => {
      if (err instanceof NotFoundError) {
        throw new BaseImageMissingError(`base image ${source.image.ref} is not unpacked for snapshotter ${source.snapshotter} (no snapshot ${source.snapshotParent})`, context);
      }
      throw err;
    });
  };
  const checkContainerIdFree = async (): Promise<void> => {
    const existing = await containerd.getContainer(containerId, call).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    if (existing) throw new AlreadyExistsError(`container ${containerId} exists already in namespace ${namespace}`, context);
  };
  // In this order of importance when several fail: the image is the first thing an operator must fix.
  await firstFailure([checkImage(), checkSnapshot(), checkContainerIdFree()] as const);
}

/**
 * The pod sandbox container (CRI's label) that holds the target netns, whose shim, namespaces and CRI files
 * the restored task gets, with its task's pid; none when no sandbox container names that netns, e.g.
 * outside Kubernetes. A sandbox without a running task is refused: its pod is stopped, and its pid may be
 * anyone's now.
 */
async function findSandbox(
  containerd: ContainerdClient,
  netnsPath: string,
  call: { namespace: string },
  context: Record<string, unknown>,
): Promise<TargetSandbox | undefined> {
  const sandboxes = await containerd.listContainers(call, [`labels."${SANDBOX_KIND_LABEL}"==${SANDBOX_KIND}`]);
  const parsed = sandboxes.flatMap((container) => {
    if (!container.spec) return [];
    try {
      return [{ id: container.id, spec: parseSpec(container.spec.value.toString('utf8')) }];
    } catch {
      return [];
    }
  });
  const id = sandboxHoldingNetns(parsed, netnsPath);
  if (!id) return undefined;
  const task = await containerd.getTask(id, call).catch((err: unknown) => {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  });
  if (task?.status !== 'RUNNING') {
    throw new FailedPreconditionError(`the pod sandbox ${id} that holds ${netnsPath} has no running task (${task?.status ?? 'none'}): its pod is stopped`, { ...context, sandbox: id });
  }
  return { id, pid: task.pid };
}

/** An uncompressed tar that holds no entry is only its end-of-archive zero blocks. */
const EMPTY_TAR_MAX_BYTES = 10_240;

async function isEmptyTar(file: string, size: number): Promise<boolean> {
  if (size > EMPTY_TAR_MAX_BYTES) return false;
  return (await fs.readFile(file)).every((byte) => byte === 0);
}

/**
 * Puts the artifact's rootfs diff into the content store (under the restore's lease) and applies it to
 * the new snapshot. A diff without entries (the container changed nothing) is skipped: applying it
 * would mount the snapshot and change nothing.
 */
async function applyRootfsDiff(ctx: AgentContext, manifest: CheckpointManifest, artifact: string, mounts: Mount[], lease: { namespace: string; lease: string }): Promise<void> {
  const diffFile = rootfsDiffFile(manifest);
  const diffPath = path.join(artifact, ROOTFS_DIFF_FILE);
  if (await isEmptyTar(diffPath, diffFile.size)) return;
  const digest = `sha256:${diffFile.sha256}`;
  const chunks = createReadStream(diffPath, { highWaterMark: 1 << 20 });
  await ctx.containerd.writeContent(`kybernate-rootfs-${manifest.id}`, chunks as AsyncIterable<Buffer>, diffFile.size, digest, lease);
  await ctx.containerd.applyDiff({ media_type: ROOTFS_DIFF_MEDIA_TYPE, digest, size: diffFile.size }, mounts, lease);
}

/** Turns runc's "criu failed" into an error that carries CRIU's own explanation, and names pid collisions. */
async function explainRestoreFailure(err: unknown, restoreLog: string, context: Record<string, unknown>): Promise<unknown> {
  if (!(err instanceof KybernateError)) return err;
  const criuErrors = await criuLogErrors(restoreLog);
  if (PID_COLLISION.test(criuErrors)) {
    return new PidCollisionError(`CRIU could not recreate the checkpointed pids: they are in use in the target pid namespace\n${criuErrors}`, context, { cause: err });
  }
  if (!criuErrors) return err;
  return new ContainerdError(`${err.message}\nCRIU restore.log:\n${criuErrors}`, { ...err.context, ...context }, { cause: err });
}
