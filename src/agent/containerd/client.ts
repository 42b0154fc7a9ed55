import * as grpc from '@grpc/grpc-js';
import { InvalidInputError, KybernateError, NotFoundError, UnavailableError } from '../../lib/errors.ts';
import {
  AlreadyExistsError,
  ContainerdError,
  DeadlineExceededError,
  FailedPreconditionError,
} from '../errors.ts';
import { containerdPackageDefinition } from './protos.ts';
import type { Any, Container, Descriptor, Image, Lease, Mount, Process, SnapshotInfo } from './types.ts';

export const DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock';
const NAMESPACE_HEADER = 'containerd-namespace';
const LEASE_HEADER = 'containerd-lease';
/** containerd's gRPC message limit (16 MiB); content reads come in smaller chunks anyway. */
const MAX_MESSAGE_BYTES = 16 << 20;
const WRITE_CHUNK_BYTES = 1 << 20;

/** Per call: which containerd namespace, which lease protects what the call creates, and how long it may take. */
export interface CallOptions {
  namespace: string;
  lease?: string;
  timeoutMs?: number;
}

export interface ContainerdClientOptions {
  /** unix socket path (or a `unix://` URI) */
  address?: string;
  /** deadline of calls that name none: short, since containerd answers metadata calls in milliseconds */
  defaultTimeoutMs?: number;
}

type UnaryMethod = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;

type ServiceClient = grpc.Client & Record<string, unknown>;

const SERVICES = {
  containers: 'containerd.services.containers.v1.Containers',
  content: 'containerd.services.content.v1.Content',
  diff: 'containerd.services.diff.v1.Diff',
  images: 'containerd.services.images.v1.Images',
  leases: 'containerd.services.leases.v1.Leases',
  namespaces: 'containerd.services.namespaces.v1.Namespaces',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  tasks: 'containerd.services.tasks.v1.Tasks',
  version: 'containerd.services.version.v1.Version',
} as const;
type ServiceName = keyof typeof SERVICES;

/** Maps a gRPC failure to the typed error of its meaning, keeping containerd's own message. */
export function containerdError(err: grpc.ServiceError, call: string, context: Record<string, unknown>): KybernateError {
  const details = err.details || err.message;
  const ctx = { ...context, call, grpcCode: grpc.status[err.code] };
  const message = `containerd ${call}: ${details}`;
  switch (err.code) {
    case grpc.status.NOT_FOUND:
      return new NotFoundError(message, ctx, { cause: err });
    case grpc.status.ALREADY_EXISTS:
      return new AlreadyExistsError(message, ctx, { cause: err });
    case grpc.status.FAILED_PRECONDITION:
      return new FailedPreconditionError(message, ctx, { cause: err });
    case grpc.status.INVALID_ARGUMENT:
      return new InvalidInputError(message, ctx, { cause: err });
    case grpc.status.UNAVAILABLE:
      return new UnavailableError(`containerd is unavailable (${call}): ${details}`, ctx, { cause: err });
    case grpc.status.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(message, ctx, { cause: err });
    default:
      return new ContainerdError(message, ctx, { cause: err });
  }
}

/**
 * Thin typed clients for the containerd services the agent uses. Every call carries the namespace
 * header, the lease header when given, and a deadline.
 */
export class ContainerdClient {
  readonly address: string;
  private readonly defaultTimeoutMs: number;
  private readonly clients: Record<ServiceName, ServiceClient>;

  constructor(options: ContainerdClientOptions = {}) {
    const address = options.address ?? DEFAULT_CONTAINERD_ADDRESS;
    this.address = address.startsWith('unix:') ? address : `unix://${address}`;
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 10_000;
    const loaded = grpc.loadPackageDefinition(containerdPackageDefinition());
    const channelOptions = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    };
    const credentials = grpc.credentials.createInsecure();
    const make = (name: ServiceName): ServiceClient => {
      const ctor = lookup(loaded, SERVICES[name]) as grpc.ServiceClientConstructor;
      return new ctor(this.address, credentials, channelOptions) as unknown as ServiceClient;
    };
    this.clients = {
      containers: make('containers'),
      content: make('content'),
      diff: make('diff'),
      images: make('images'),
      leases: make('leases'),
      namespaces: make('namespaces'),
      snapshots: make('snapshots'),
      tasks: make('tasks'),
      version: make('version'),
    };
  }

  close(): void {
    for (const client of Object.values(this.clients)) client.close();
  }

  private metadata(options: Pick<CallOptions, 'namespace' | 'lease'>): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set(NAMESPACE_HEADER, options.namespace);
    if (options.lease) metadata.set(LEASE_HEADER, options.lease);
    return metadata;
  }

  private deadline(options: Pick<CallOptions, 'timeoutMs'>): Date {
    return new Date(Date.now() + (options.timeoutMs ?? this.defaultTimeoutMs));
  }

  private unary<Res>(service: ServiceName, method: string, request: unknown, options: CallOptions, context: Record<string, unknown> = {}): Promise<Res> {
    const call = `${service}.${method}`;
    const fn = this.clients[service][method] as UnaryMethod;
    return new Promise<Res>((resolve, reject) => {
      fn.call(this.clients[service], request, this.metadata(options), { deadline: this.deadline(options) }, (err, response) => {
        if (err) reject(containerdError(err, call, { namespace: options.namespace, ...context }));
        else resolve(response as Res);
      });
    });
  }

  // --- Version / Namespaces -------------------------------------------------------------------

  async version(timeoutMs?: number): Promise<{ version: string; revision: string }> {
    return this.unary('version', 'Version', {}, { namespace: 'default', timeoutMs });
  }

  async createNamespace(namespace: string): Promise<void> {
    try {
      await this.unary('namespaces', 'Create', { namespace: { name: namespace, labels: {} } }, { namespace });
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
    }
  }

  // --- Containers -----------------------------------------------------------------------------

  async getContainer(id: string, options: CallOptions): Promise<Container> {
    const res = await this.unary<{ container: Container }>('containers', 'Get', { id }, options, { container: id });
    return res.container;
  }

  /** `filters` in containerd's syntax, e.g. `labels."io.cri-containerd.kind"==sandbox` (any one may match). */
  async listContainers(options: CallOptions, filters: string[] = []): Promise<Container[]> {
    const res = await this.unary<{ containers: Container[] }>('containers', 'List', { filters }, options);
    return res.containers;
  }

  async createContainer(container: Omit<Container, 'extensions' | 'sandbox'>, options: CallOptions): Promise<Container> {
    const res = await this.unary<{ container: Container }>('containers', 'Create', { container }, options, { container: container.id });
    return res.container;
  }

  async deleteContainer(id: string, options: CallOptions): Promise<void> {
    await this.unary('containers', 'Delete', { id }, options, { container: id });
  }

  // --- Tasks ----------------------------------------------------------------------------------

  async getTask(containerId: string, options: CallOptions): Promise<Process> {
    const res = await this.unary<{ process: Process }>('tasks', 'Get', { container_id: containerId }, options, { container: containerId });
    return res.process;
  }

  async listTasks(options: CallOptions): Promise<Process[]> {
    const res = await this.unary<{ tasks: Process[] }>('tasks', 'List', { filter: '' }, options);
    return res.tasks;
  }

  async createTask(
    request: { containerId: string; rootfs: Mount[]; stdout?: string; stderr?: string; options?: Any },
    options: CallOptions,
  ): Promise<{ pid: number }> {
    return this.unary(
      'tasks',
      'Create',
      {
        container_id: request.containerId,
        rootfs: request.rootfs,
        stdout: request.stdout ?? '',
        stderr: request.stderr ?? '',
        options: request.options ?? null,
      },
      options,
      { container: request.containerId },
    );
  }

  async startTask(containerId: string, options: CallOptions): Promise<{ pid: number }> {
    return this.unary('tasks', 'Start', { container_id: containerId, exec_id: '' }, options, { container: containerId });
  }

  async deleteTask(containerId: string, options: CallOptions): Promise<{ exit_status: number }> {
    return this.unary('tasks', 'Delete', { container_id: containerId }, options, { container: containerId });
  }

  async killTask(containerId: string, signal: number, options: CallOptions): Promise<void> {
    await this.unary('tasks', 'Kill', { container_id: containerId, exec_id: '', signal, all: true }, options, { container: containerId });
  }

  async waitTask(containerId: string, options: CallOptions): Promise<{ exit_status: number }> {
    return this.unary('tasks', 'Wait', { container_id: containerId, exec_id: '' }, options, { container: containerId });
  }

  async pauseTask(containerId: string, options: CallOptions): Promise<void> {
    await this.unary('tasks', 'Pause', { container_id: containerId }, options, { container: containerId });
  }

  async resumeTask(containerId: string, options: CallOptions): Promise<void> {
    await this.unary('tasks', 'Resume', { container_id: containerId }, options, { container: containerId });
  }

  async checkpointTask(containerId: string, runcOptions: Any, options: CallOptions): Promise<Descriptor[]> {
    const res = await this.unary<{ descriptors: Descriptor[] }>(
      'tasks',
      'Checkpoint',
      { container_id: containerId, parent_checkpoint: '', options: runcOptions },
      options,
      { container: containerId },
    );
    return res.descriptors;
  }

  // --- Snapshots ------------------------------------------------------------------------------

  async statSnapshot(snapshotter: string, key: string, options: CallOptions): Promise<SnapshotInfo> {
    const res = await this.unary<{ info: SnapshotInfo }>('snapshots', 'Stat', { snapshotter, key }, options, { snapshot: key });
    return res.info;
  }

  async prepareSnapshot(snapshotter: string, key: string, parent: string, options: CallOptions): Promise<Mount[]> {
    const res = await this.unary<{ mounts: Mount[] }>('snapshots', 'Prepare', { snapshotter, key, parent, labels: {} }, options, { snapshot: key });
    return res.mounts;
  }

  async viewSnapshot(snapshotter: string, key: string, parent: string, options: CallOptions): Promise<Mount[]> {
    const res = await this.unary<{ mounts: Mount[] }>('snapshots', 'View', { snapshotter, key, parent, labels: {} }, options, { snapshot: key });
    return res.mounts;
  }

  async snapshotMounts(snapshotter: string, key: string, options: CallOptions): Promise<Mount[]> {
    const res = await this.unary<{ mounts: Mount[] }>('snapshots', 'Mounts', { snapshotter, key }, options, { snapshot: key });
    return res.mounts;
  }

  async removeSnapshot(snapshotter: string, key: string, options: CallOptions): Promise<void> {
    await this.unary('snapshots', 'Remove', { snapshotter, key }, options, { snapshot: key });
  }

  // --- Images / Leases ------------------------------------------------------------------------

  async getImage(name: string, options: CallOptions): Promise<Image> {
    const res = await this.unary<{ image: Image }>('images', 'Get', { name }, options, { image: name });
    return res.image;
  }

  /** A lease whose `containerd.io/gc.expire` label lets containerd collect it even if the agent dies holding it. */
  async createLease(id: string, expiresAt: Date, labels: Record<string, string>, options: CallOptions): Promise<Lease> {
    const res = await this.unary<{ lease: Lease }>(
      'leases',
      'Create',
      { id, labels: { ...labels, 'containerd.io/gc.expire': expiresAt.toISOString() } },
      options,
      { lease: id },
    );
    return res.lease;
  }

  async deleteLease(id: string, options: CallOptions): Promise<void> {
    await this.unary('leases', 'Delete', { id, sync: false }, options, { lease: id });
  }

  async listLeases(filter: string, options: CallOptions): Promise<Lease[]> {
    const res = await this.unary<{ leases: Lease[] }>('leases', 'List', { filters: filter ? [filter] : [] }, options);
    return res.leases;
  }

  // --- Diff -----------------------------------------------------------------------------------

  /** Writes the difference lower -> upper as a tar layer into the content store (keep it under a lease). */
  async diff(lower: Mount[], upper: Mount[], mediaType: string, options: CallOptions): Promise<Descriptor> {
    const res = await this.unary<{ diff: Descriptor }>('diff', 'Diff', { left: lower, right: upper, media_type: mediaType, ref: '', labels: {} }, options);
    return res.diff;
  }

  async applyDiff(diff: Descriptor, mounts: Mount[], options: CallOptions): Promise<Descriptor> {
    const res = await this.unary<{ applied: Descriptor }>('diff', 'Apply', { diff, mounts, payloads: {} }, options);
    return res.applied;
  }

  // --- Content --------------------------------------------------------------------------------

  /** Streams a blob out of the content store in containerd's chunks. */
  async *readContent(digest: string, options: CallOptions): AsyncGenerator<Buffer> {
    const call = (this.clients.content.Read as (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<{ data: Buffer }>).call(
      this.clients.content,
      { digest, offset: 0, size: 0 },
      this.metadata(options),
      { deadline: this.deadline(options) },
    );
    try {
      for await (const chunk of call) yield (chunk as { data: Buffer }).data;
    } catch (err) {
      throw containerdError(err as grpc.ServiceError, 'content.Read', { namespace: options.namespace, digest });
    }
  }

  /**
   * Writes a blob into the content store and commits it with its expected digest. A blob that exists
   * already counts as written (containerd then adds it to the call's lease).
   */
  async writeContent(ref: string, chunks: AsyncIterable<Buffer>, total: number, expected: string, options: CallOptions): Promise<void> {
    const call = (this.clients.content.Write as (md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientDuplexStream<unknown, unknown>).call(
      this.clients.content,
      this.metadata(options),
      { deadline: this.deadline(options) },
    );
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (res: { action: string }) => {
        if (res.action === 'COMMIT') resolve();
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
    done.catch(() => undefined);
    try {
      let offset = 0;
      for await (const chunk of chunks) {
        for (let start = 0; start < chunk.length; start += WRITE_CHUNK_BYTES) {
          const data = chunk.subarray(start, start + WRITE_CHUNK_BYTES);
          call.write({ action: 'WRITE', ref, total, expected, offset, data, labels: {} });
          offset += data.length;
        }
      }
      call.write({ action: 'COMMIT', ref, total, expected, offset, data: Buffer.alloc(0), labels: {} });
      call.end();
      await done;
    } catch (err) {
      call.cancel();
      const typed = err instanceof KybernateError ? err : containerdError(err as grpc.ServiceError, 'content.Write', { namespace: options.namespace, digest: expected });
      if (typed instanceof AlreadyExistsError) return;
      throw typed;
    }
  }
}

function lookup(root: grpc.GrpcObject, name: string): unknown {
  let node: unknown = root;
  for (const part of name.split('.')) node = (node as Record<string, unknown>)[part];
  if (!node) throw new Error(`containerd proto service ${name} not found in proto/vendor`);
  return node;
}
