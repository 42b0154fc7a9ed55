import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/agent/client.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import type { GpuAvailability } from '../../src/agent/cuda/availability.ts';
import { VERIFIED_DRIVER_API_VERSIONS } from '../../src/agent/cuda/driver.ts';
import { systemGpuSupport } from '../../src/agent/gpu/support.ts';
import { startAgent, type RunningAgent } from '../../src/agent/start.ts';
import { createLogger } from '../../src/lib/log.ts';

const hasNvidiaDriver = existsSync('/proc/driver/nvidia/version');

/**
 * GetStatus's GPU report from the real agent over its unix socket. The agent runs without containerd
 * (its socket does not exist): the GPU report does not depend on it, and the status answers anyway.
 */
describe('agent GetStatus: the GPU report', () => {
  let dir: string;
  let agent: RunningAgent;
  let client: AgentClient;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kyb-gpu-status-'));
    const flags = [`--socket=${path.join(dir, 'agent.sock')}`, `--containerd=${path.join(dir, 'no-containerd.sock')}`, `--store=${path.join(dir, 'store')}`, `--log-dir=${path.join(dir, 'logs')}`];
    agent = await startAgent(parseAgentConfig({}, flags), createLogger('agent-gpu-status'));
    client = new AgentClient({ socketPath: path.join(dir, 'agent.sock') });
  });

  afterAll(async () => {
    client?.close();
    await agent?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it.skipIf(hasNvidiaDriver)('on a node without an NVIDIA driver (this machine): usable false with the reason, the supported driver API versions, no GPUs', async () => {
    const status = await client.getStatus();
    expect(status.gpu).toEqual({
      usable: false,
      error: "no NVIDIA kernel driver on this node: ENOENT: no such file or directory, open '/proc/driver/nvidia/version'",
      driver_version: '',
      supported_cuda_driver_api_versions: [...VERIFIED_DRIVER_API_VERSIONS],
      gpus: [],
    });
  });

  it('reports the GPUs the GPU steps would use (TEST DOUBLE availability, as in the FakeCudaDriver tests), with or without libcuda', async () => {
    const gpu = { index: 0, uuid: 'GPU-00000000-0000-0000-0000-000000000001', name: 'Test GPU', memoryTotalBytes: 2 ** 36, memoryFreeBytes: 2 ** 35, memoryUsedBytes: 2 ** 35 };
    let availability: GpuAvailability = { driverVersion: '580.159.04', cudaDriverApiVersion: 13000, source: 'nvml', gpus: [gpu, { ...gpu, index: 1, uuid: 'GPU-00000000-0000-0000-0000-000000000002' }] };
    agent.agent.ctx.gpu = { ...systemGpuSupport(), availability: async () => availability };
    try {
      const device = { uuid: gpu.uuid, model: 'Test GPU', memory_total_bytes: 2 ** 36, memory_free_bytes: 2 ** 35 };
      expect((await client.getStatus()).gpu).toEqual({
        usable: true,
        error: '',
        driver_version: '580.159.04',
        cuda_driver_api_version: 13000,
        supported_cuda_driver_api_versions: [...VERIFIED_DRIVER_API_VERSIONS],
        gpus: [device, { ...device, uuid: 'GPU-00000000-0000-0000-0000-000000000002' }],
      });

      // libcuda missing (the GPUs are still listed): the version is absent, not 0.
      availability = { ...availability, cudaDriverApiVersion: null, gpus: [gpu] };
      const report = (await client.getStatus()).gpu;
      expect(report).toMatchObject({ usable: true, driver_version: '580.159.04', gpus: [device] });
      expect(report).not.toHaveProperty('cuda_driver_api_version');
    } finally {
      agent.agent.ctx.gpu = undefined;
    }
  });
});
