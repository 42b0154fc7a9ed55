import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../../src/agent/config.ts';
import { InvalidInputError } from '../../../src/lib/errors.ts';

describe('parseAgentConfig', () => {
  it('has node defaults', () => {
    expect(parseAgentConfig({}, [])).toEqual({
      socketPath: '/run/kybernate/agent.sock',
      containerdAddress: '/run/containerd/containerd.sock',
      storeRoot: '/var/lib/kybernate/checkpoints',
      logDir: '/var/log/kybernate/tasks',
      criuTimeoutMs: 600_000,
      criuBinary: 'criu',
      gpuHostCopy: 'agent',
    });
  });

  it('lets CRIU write the host copy of GPU memory instead of the agent, and names the choices of a wrong value', () => {
    expect(parseAgentConfig({ KYBERNATE_GPU_HOST_COPY: 'criu' }, []).gpuHostCopy).toBe('criu');
    expect(parseAgentConfig({ KYBERNATE_GPU_HOST_COPY: 'criu' }, ['--gpu-host-copy=agent']).gpuHostCopy).toBe('agent');
    expect(() => parseAgentConfig({}, ['--gpu-host-copy=parallel'])).toThrow(/--gpu-host-copy must be one of agent, criu, not "parallel"/);
  });

  it('takes flags over environment variables', () => {
    const config = parseAgentConfig({ KYBERNATE_CHECKPOINT_DIR: '/env/store', KYBERNATE_AGENT_SOCKET: '/env/sock' }, ['--store=/flag/store', '--criu-timeout=90s']);
    expect(config).toMatchObject({ storeRoot: '/flag/store', socketPath: '/env/sock', criuTimeoutMs: 90_000 });
  });

  it('refuses TCP without mutual TLS, unknown flags and bad durations', () => {
    expect(() => parseAgentConfig({}, ['--tcp=0.0.0.0:7443'])).toThrow(/mutual TLS/);
    expect(() => parseAgentConfig({}, ['--tcp=0.0.0.0:7443', '--tls-ca=/ca', '--tls-cert=/c'])).toThrow(InvalidInputError);
    expect(parseAgentConfig({}, ['--tcp=0.0.0.0:7443', '--tls-ca=/ca', '--tls-cert=/c', '--tls-key=/k']).tcp).toEqual({
      address: '0.0.0.0:7443',
      caFile: '/ca',
      certFile: '/c',
      keyFile: '/k',
    });
    expect(() => parseAgentConfig({}, ['--sock=/x'])).toThrow(/unknown flag --sock/);
    expect(() => parseAgentConfig({}, ['positional'])).toThrow(/expected --name=value/);
    expect(() => parseAgentConfig({}, ['--criu-timeout=soon'])).toThrow(/invalid duration/);
  });
});
