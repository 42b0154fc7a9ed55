/**
 * The pure pod-level GPU needs of a workload: the runtime class that gives the container the NVIDIA
 * devices and driver libraries, and the GPU resource so the device plugin assigns (and the scheduler
 * counts) a GPU. The template decides where it says something; the controller fills in the rest.
 */
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';

export interface GpuPodConfig {
  /** Runtime class given to GPU pods whose template names none; undefined = none (the node's default runtime has the GPU hook). */
  runtimeClassName: string | undefined;
  /** Extended resource of one GPU, as the device plugin advertises it. */
  resourceName: string;
}

export const DEFAULT_GPU_POD_CONFIG: GpuPodConfig = { runtimeClassName: 'nvidia', resourceName: 'nvidia.com/gpu' };

/** Whether any container of the spec asks for the GPU resource (in limits or requests). */
export function requestsGpu(spec: V1PodSpec, resourceName: string): boolean {
  return spec.containers.some((c) => c.resources?.limits?.[resourceName] !== undefined || c.resources?.requests?.[resourceName] !== undefined);
}

/**
 * The pod spec with the GPU needs of a workload whose checkpoint.gpu.enabled is `gpuEnabled`. A GPU
 * workload is one with GPU checkpoints or whose template asks for GPUs; others are returned unchanged.
 * - runtimeClassName: the template's own, else the configured one.
 * - GPU count: the template's where a container asks for GPUs (a request without a limit gets the
 *   limit: Kubernetes accepts extended resources only with limits); else 1 GPU on the first container,
 *   the one the workload checkpoints.
 */
export function withGpuPodNeeds(spec: V1PodSpec, gpuEnabled: boolean, config: GpuPodConfig): V1PodSpec {
  const asked = requestsGpu(spec, config.resourceName);
  if (!gpuEnabled && !asked) return spec;
  const runtimeClassName = spec.runtimeClassName ?? config.runtimeClassName;
  const containers = asked
    ? spec.containers.map((container) => withGpuLimitFromRequest(container, config.resourceName))
    : spec.containers.map((container, index) => (index === 0 ? withGpuLimit(container, config.resourceName, '1') : container));
  return { ...spec, ...(runtimeClassName ? { runtimeClassName } : {}), containers };
}

function withGpuLimitFromRequest(container: V1Container, resourceName: string): V1Container {
  const requested = container.resources?.requests?.[resourceName];
  if (requested === undefined || container.resources?.limits?.[resourceName] !== undefined) return container;
  return withGpuLimit(container, resourceName, requested);
}

function withGpuLimit(container: V1Container, resourceName: string, count: string): V1Container {
  return { ...container, resources: { ...container.resources, limits: { ...container.resources?.limits, [resourceName]: count } } };
}
