import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { HarnessError } from '../kube/errors.ts';

/**
 * A typed client of Kubernetes' CRI (runtime.v1, k8s.io/cri-api as containerd 1.7.24 pins it, vendored in
 * proto/vendor by scripts/vendor-protos.sh): the calls the kubelet makes to containerd's CRI plugin, for
 * tests that need containers exactly as Kubernetes creates them. Only the fields the tests set or read are
 * typed (proto field names, int64 as string, enums as their names).
 */

const VENDOR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../proto/vendor');
const CRI_PROTO = 'k8s.io/cri-api/pkg/apis/runtime/v1/api.proto';

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export interface NamespaceOptions {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  /** where CRI writes the containers' logs (their `log_path` is relative to it) */
  log_directory?: string;
  labels?: Record<string, string>;
  linux?: {
    cgroup_parent?: string;
    security_context?: { namespace_options?: NamespaceOptions };
  };
}

export interface CriMount {
  container_path: string;
  host_path: string;
  readonly?: boolean;
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  /** the image's Entrypoint replaced (Kubernetes' `command`) */
  command?: string[];
  /** the image's Cmd replaced (Kubernetes' `args`) */
  args?: string[];
  log_path?: string;
  mounts?: CriMount[];
  labels?: Record<string, string>;
  /** the container's own namespace options decide its namespaces (unset = POD for all: the pod's pid namespace too) */
  linux?: { security_context?: { namespace_options?: NamespaceOptions } };
}

export interface PodSandboxStatus {
  id: string;
  state: PodSandboxState;
  network: { ip: string } | null;
  linux: { namespaces: { options: { network: NamespaceMode; pid: NamespaceMode; ipc: NamespaceMode } | null } | null } | null;
}

export interface ContainerStatus {
  id: string;
  state: ContainerState;
  exit_code: number;
  reason: string;
  image_ref: string;
  log_path: string;
}

export interface CriContainer {
  id: string;
  pod_sandbox_id: string;
  state: ContainerState;
  metadata: { name: string } | null;
}

/** A service client as proto-loader builds it: every method a unary call by name. */
type ServiceClient = grpc.Client & Record<string, (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<unknown>) => grpc.ClientUnaryCall>;

let packageDefinition: protoLoader.PackageDefinition | undefined;

function criPackageDefinition(): protoLoader.PackageDefinition {
  packageDefinition ??= protoLoader.loadSync([CRI_PROTO], {
    includeDirs: [VENDOR],
    keepCase: true,
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  return packageDefinition;
}

export class CriClient {
  private readonly runtime: ServiceClient;
  private readonly images: ServiceClient;

  /** `socket`: containerd's gRPC socket (its CRI plugin serves on the same one). */
  constructor(
    socket: string,
    private readonly timeoutMs = 30_000,
  ) {
    const loaded = grpc.loadPackageDefinition(criPackageDefinition()) as unknown as {
      runtime: { v1: Record<'RuntimeService' | 'ImageService', grpc.ServiceClientConstructor> };
    };
    const address = `unix://${socket}`;
    const credentials = grpc.credentials.createInsecure();
    this.runtime = new loaded.runtime.v1.RuntimeService(address, credentials) as unknown as ServiceClient;
    this.images = new loaded.runtime.v1.ImageService(address, credentials) as unknown as ServiceClient;
  }

  close(): void {
    this.runtime.close();
    this.images.close();
  }

  private call<T>(client: ServiceClient, method: string, request: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = client[method]!.bind(client);
      fn(request, new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, response) => {
        if (err) reject(new HarnessError(`CRI ${method}: ${err.details || err.message}`, { call: method, grpcCode: grpc.status[err.code] }, { cause: err }));
        else resolve(response as T);
      });
    });
  }

  async version(): Promise<{ runtime_name: string; runtime_version: string; runtime_api_version: string }> {
    return this.call(this.runtime, 'Version', { version: 'v1' });
  }

  /** The image as CRI's image store knows it, or null (CRI learns of imported images from containerd's events). */
  async imageStatus(ref: string): Promise<{ id: string; repo_tags: string[] } | null> {
    const response = await this.call<{ image: { id: string; repo_tags: string[] } | null }>(this.images, 'ImageStatus', { image: { image: ref } });
    return response.image;
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    return (await this.call<{ pod_sandbox_id: string }>(this.runtime, 'RunPodSandbox', { config })).pod_sandbox_id;
  }

  /** The status, and with `verbose` CRI's `info` (containerd 1.7: key "info", JSON with `pid`, `netNamespacePath`, `runtimeSpec`, ...). */
  async podSandboxStatus(id: string, verbose = false): Promise<{ status: PodSandboxStatus; info: Record<string, string> }> {
    return this.call(this.runtime, 'PodSandboxStatus', { pod_sandbox_id: id, verbose });
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call(this.runtime, 'StopPodSandbox', { pod_sandbox_id: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call(this.runtime, 'RemovePodSandbox', { pod_sandbox_id: id });
  }

  async listPodSandboxes(): Promise<{ id: string; state: PodSandboxState }[]> {
    return (await this.call<{ items: { id: string; state: PodSandboxState }[] }>(this.runtime, 'ListPodSandbox', {})).items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const response = await this.call<{ container_id: string }>(this.runtime, 'CreateContainer', {
      pod_sandbox_id: podSandboxId,
      config,
      sandbox_config: sandboxConfig,
    });
    return response.container_id;
  }

  async startContainer(id: string): Promise<void> {
    await this.call(this.runtime, 'StartContainer', { container_id: id });
  }

  async containerStatus(id: string): Promise<ContainerStatus> {
    return (await this.call<{ status: ContainerStatus }>(this.runtime, 'ContainerStatus', { container_id: id })).status;
  }

  /** Every container CRI knows, or those of one pod sandbox. */
  async listContainers(podSandboxId?: string): Promise<CriContainer[]> {
    const filter = podSandboxId ? { pod_sandbox_id: podSandboxId } : null;
    return (await this.call<{ containers: CriContainer[] }>(this.runtime, 'ListContainers', { filter })).containers;
  }
}
