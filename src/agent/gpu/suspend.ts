import { performance } from 'node:perf_hooks';
import { InvalidInputError, NotFoundError } from '../../lib/errors.ts';
import type { AgentContext } from '../checkpoint.ts';
import type { GpuUuidPair } from '../cuda/api.ts';
import { FailedPreconditionError } from '../errors.ts';
import { gpuSupportOf } from './support.ts';
import { resumeTaskGpu, suspendTaskGpu } from './task-gpu.ts';

export interface SuspendRequest {
  namespace: string;
  containerId: string;
}

export interface ResumeRequest extends SuspendRequest {
  gpuPairs?: GpuUuidPair[];
}

export interface SuspendResult {
  pids: number[];
  durationMs: number;
}

/** The init pid of the container's running task, or a clear error. */
async function runningTaskPid(ctx: AgentContext, request: SuspendRequest, verb: string): Promise<number> {
  if (!request.namespace) throw new InvalidInputError(`${verb}: namespace is required`);
  if (!request.containerId) throw new InvalidInputError(`${verb}: container_id is required`, { namespace: request.namespace });
  const context = { namespace: request.namespace, container: request.containerId };
  const task = await ctx.containerd.getTask(request.containerId, { namespace: request.namespace }).catch((err: unknown): never => {
    if (err instanceof NotFoundError) throw new FailedPreconditionError(`${verb}: container ${request.containerId} has no task`, context);
    throw err;
  });
  if (task.status !== 'RUNNING') throw new FailedPreconditionError(`${verb}: container ${request.containerId} task is ${task.status}, not RUNNING`, context);
  return task.pid;
}

async function measured(action: () => Promise<number[]>): Promise<SuspendResult> {
  const started = performance.now();
  const pids = await action();
  return { pids, durationMs: Math.round((performance.now() - started) * 100) / 100 };
}

/** Release in place of a container's GPU state (no CRIU): the processes stay, the GPU is free. */
export async function suspendContainer(ctx: AgentContext, request: SuspendRequest): Promise<SuspendResult> {
  const pid = await runningTaskPid(ctx, request, 'suspend');
  const log = ctx.log.child({ namespace: request.namespace, container: request.containerId });
  return measured(() => suspendTaskGpu(gpuSupportOf(ctx), pid, log));
}

/** Brings a suspended container's GPU state back and lets its processes run on. */
export async function resumeContainer(ctx: AgentContext, request: ResumeRequest): Promise<SuspendResult> {
  const pid = await runningTaskPid(ctx, request, 'resume');
  const log = ctx.log.child({ namespace: request.namespace, container: request.containerId });
  return measured(() => resumeTaskGpu(gpuSupportOf(ctx), pid, request.gpuPairs ?? [], log));
}
