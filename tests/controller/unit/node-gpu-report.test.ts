import { describe, expect, it } from 'vitest';
import { agentServiceDefinition, type AgentStatusMessage } from '../../../src/agent/api.ts';
import { nodeGpuReportFromMessage } from '../../../src/controller/agent/grpc-node-agent.ts';

/** An AgentStatus as it arrives over the wire: encoded and decoded with agent.proto, as the client does. */
function overTheWire(status: Partial<AgentStatusMessage>): AgentStatusMessage {
  const getStatus = agentServiceDefinition().GetStatus!;
  return getStatus.responseDeserialize(getStatus.responseSerialize(status)) as AgentStatusMessage;
}

describe('nodeGpuReportFromMessage', () => {
  it('an agent older than the GPU report (field absent): undefined, not "no GPUs"', () => {
    const status = overTheWire({ node: 'old', checkpoint_count: 1 });
    expect(status.gpu).toBeNull();
    expect(nodeGpuReportFromMessage(status.gpu)).toBeUndefined();
  });

  it('not usable: the agent\'s error', () => {
    const status = overTheWire({ gpu: { usable: false, error: 'no NVIDIA kernel driver on this node', driver_version: '', supported_cuda_driver_api_versions: [13000], gpus: [] } });
    expect(nodeGpuReportFromMessage(status.gpu)).toEqual({ usable: false, error: 'no NVIDIA kernel driver on this node' });
  });

  it('usable: driver, API versions and GPUs; a missing API version (no libcuda) is null', () => {
    const gpu = { uuid: 'GPU-a', model: 'NVIDIA H100 80GB HBM3', memory_total_bytes: 85_520_809_984, memory_free_bytes: 68_000_000_000 };
    const report = { usable: true, error: '', driver_version: '580.159.04', supported_cuda_driver_api_versions: [13000], gpus: [gpu] };
    expect(nodeGpuReportFromMessage(overTheWire({ gpu: { ...report, cuda_driver_api_version: 13000 } }).gpu)).toEqual({
      usable: true,
      driverVersion: '580.159.04',
      driverApiVersion: 13000,
      supportedDriverApiVersions: [13000],
      gpus: [{ uuid: 'GPU-a', model: 'NVIDIA H100 80GB HBM3', memoryTotalBytes: 85_520_809_984, memoryFreeBytes: 68_000_000_000 }],
    });
    expect(nodeGpuReportFromMessage(overTheWire({ gpu: report }).gpu)).toMatchObject({ usable: true, driverApiVersion: null });
  });
});
