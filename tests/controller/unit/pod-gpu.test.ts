import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { DEFAULT_GPU_POD_CONFIG, withGpuPodNeeds, type GpuPodConfig } from '../../../src/controller/gpu/pod-gpu.ts';

const container = (name: string, resources?: V1Container['resources']): V1Container => ({ name, image: 'registry.local/llm:1', ...(resources ? { resources } : {}) });
const spec = (...containers: V1Container[]): V1PodSpec => ({ containers });
const NO_CLASS: GpuPodConfig = { runtimeClassName: undefined, resourceName: 'nvidia.com/gpu' };

describe('withGpuPodNeeds', () => {
  it.each<[string, V1PodSpec, boolean, GpuPodConfig, V1PodSpec]>([
    ['a CPU workload stays as it is', spec(container('server')), false, DEFAULT_GPU_POD_CONFIG, spec(container('server'))],
    [
      'gpu.enabled: runtime class nvidia and one GPU on the first (checkpointed) container',
      spec(container('server', { limits: { memory: '8Gi' } }), container('sidecar')),
      true,
      DEFAULT_GPU_POD_CONFIG,
      { runtimeClassName: 'nvidia', containers: [container('server', { limits: { memory: '8Gi', 'nvidia.com/gpu': '1' } }), container('sidecar')] },
    ],
    [
      "the template's own runtime class is kept",
      { ...spec(container('server')), runtimeClassName: 'nvidia-cdi' },
      true,
      DEFAULT_GPU_POD_CONFIG,
      { runtimeClassName: 'nvidia-cdi', containers: [container('server', { limits: { 'nvidia.com/gpu': '1' } })] },
    ],
    [
      "the template's GPU count is kept (here on the second container)",
      spec(container('server'), container('worker', { limits: { 'nvidia.com/gpu': '2' } })),
      true,
      DEFAULT_GPU_POD_CONFIG,
      { runtimeClassName: 'nvidia', containers: [container('server'), container('worker', { limits: { 'nvidia.com/gpu': '2' } })] },
    ],
    [
      'a template that asks for GPUs without gpu.enabled still gets the runtime class',
      spec(container('server', { limits: { 'nvidia.com/gpu': '4' } })),
      false,
      DEFAULT_GPU_POD_CONFIG,
      { runtimeClassName: 'nvidia', containers: [container('server', { limits: { 'nvidia.com/gpu': '4' } })] },
    ],
    [
      'a GPU request without a limit gets the limit (extended resources need one)',
      spec(container('server', { requests: { 'nvidia.com/gpu': '2', cpu: '4' } })),
      true,
      DEFAULT_GPU_POD_CONFIG,
      { runtimeClassName: 'nvidia', containers: [container('server', { requests: { 'nvidia.com/gpu': '2', cpu: '4' }, limits: { 'nvidia.com/gpu': '2' } })] },
    ],
    [
      'no configured runtime class: none is set',
      spec(container('server')),
      true,
      NO_CLASS,
      { containers: [container('server', { limits: { 'nvidia.com/gpu': '1' } })] },
    ],
    [
      'a configured resource name (MIG slice)',
      spec(container('server')),
      true,
      { runtimeClassName: 'nvidia', resourceName: 'nvidia.com/mig-1g.10gb' },
      { runtimeClassName: 'nvidia', containers: [container('server', { limits: { 'nvidia.com/mig-1g.10gb': '1' } })] },
    ],
    [
      'another resource name in the template does not count as asking for this one',
      spec(container('server', { limits: { 'amd.com/gpu': '1' } })),
      false,
      DEFAULT_GPU_POD_CONFIG,
      spec(container('server', { limits: { 'amd.com/gpu': '1' } })),
    ],
  ])('%s', (_name, input, gpuEnabled, config, expected) => {
    const before = structuredClone(input);
    expect(withGpuPodNeeds(input, gpuEnabled, config)).toEqual(expected);
    expect(input).toEqual(before);
  });
});
