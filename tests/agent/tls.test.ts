import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/agent/client.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { startAgent, type RunningAgent } from '../../src/agent/start.ts';
import { createLogger } from '../../src/lib/log.ts';

const run = promisify(execFile);

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
async function makeCertificates(dir: string): Promise<void> {
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=kybernate-test-ca');
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    await fs.writeFile(path.join(dir, `${name}.ext`), `${ext}\n`);
    await openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`);
  }
}

describe('agent API over TCP', () => {
  let dir: string;
  let agent: RunningAgent;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kyb-agent-tls-'));
    await makeCertificates(dir);
    // No containerd behind it: the transport is what is tested; Health answers NOT_SERVING.
    const flags = [
      `--socket=${dir}/agent.sock`,
      `--containerd=${dir}/no-containerd.sock`,
      `--store=${dir}/store`,
      `--log-dir=${dir}/logs`,
      '--tcp=127.0.0.1:0',
      `--tls-ca=${dir}/ca.pem`,
      `--tls-cert=${dir}/server.pem`,
      `--tls-key=${dir}/server.key`,
    ];
    agent = await startAgent(parseAgentConfig({}, flags), createLogger('agent-tls'));
  });

  afterAll(async () => {
    await agent?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('serves a client with a certificate of the CA', async () => {
    const read = (name: string) => fs.readFile(path.join(dir, name));
    const client = new AgentClient({ address: `127.0.0.1:${agent.tcpPort}`, caPem: await read('ca.pem'), certPem: await read('client.pem'), keyPem: await read('client.key') });
    try {
      expect((await client.health()).status).toBe('NOT_SERVING');
    } finally {
      client.close();
    }
  });

  it('refuses a client without a client certificate', async () => {
    const ca = await fs.readFile(path.join(dir, 'ca.pem'));
    const { credentials } = await import('@grpc/grpc-js');
    const { agentClientConstructor } = await import('../../src/agent/api.ts');
    const Ctor = agentClientConstructor();
    const bare = new Ctor(`127.0.0.1:${agent.tcpPort}`, credentials.createSsl(ca));
    const call = (bare as unknown as { Health: (req: unknown, opts: unknown, cb: (err: Error | null) => void) => void }).Health;
    const err = await new Promise<Error | null>((resolve) => call.call(bare, {}, { deadline: new Date(Date.now() + 5_000) }, resolve));
    bare.close();
    expect(err).not.toBeNull();
  });

  it('keeps the unix socket root-only', async () => {
    expect((await fs.stat(agent.socketPath)).mode & 0o777).toBe(0o600);
  });
});
