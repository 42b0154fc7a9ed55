import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inClusterConnection, parseKubeconfig } from '../../../src/lib/kube/kubeconfig.ts';
import { InvalidInputError } from '../../../src/lib/errors.ts';

const b64 = (text: string) => Buffer.from(text).toString('base64');

function kubeconfig(user: string, cluster = `certificate-authority-data: ${b64('CA')}`): string {
  return `
current-context: test
contexts:
  - name: test
    context: { cluster: c, user: u }
clusters:
  - name: c
    cluster:
      server: https://127.0.0.1:6443
      ${cluster}
users:
  - name: u
    user:
      ${user}
`;
}

describe('parseKubeconfig', () => {
  it('reads embedded certificates of the current context', () => {
    const connection = parseKubeconfig(kubeconfig(`client-certificate-data: ${b64('CERT')}\n      client-key-data: ${b64('KEY')}`), '/');
    expect(connection.server.toString()).toBe('https://127.0.0.1:6443/');
    expect(connection.ca?.toString()).toBe('CA');
    expect(connection.cert?.toString()).toBe('CERT');
    expect(connection.key?.toString()).toBe('KEY');
    expect(connection.token).toBeUndefined();
    expect(connection.insecureSkipTlsVerify).toBe(false);
  });

  it('reads files relative to the kubeconfig, and tokens', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
    writeFileSync(join(dir, 'ca.crt'), 'FILE-CA');
    writeFileSync(join(dir, 'token'), 'rotating\n');
    const connection = parseKubeconfig(kubeconfig(`tokenFile: ${join(dir, 'token')}`, 'certificate-authority: ca.crt'), dir);
    expect(connection.ca?.toString()).toBe('FILE-CA');
    expect(connection.token?.()).toBe('rotating');
    writeFileSync(join(dir, 'token'), 'rotated\n');
    expect(connection.token?.()).toBe('rotated');
    expect(parseKubeconfig(kubeconfig('token: abc'), dir).token?.()).toBe('abc');
  });

  it.each([
    ['', 'no current-context'],
    ['current-context: x\ncontexts: []', 'context "x" not found'],
    [kubeconfig('exec: { command: aws }'), 'exec and auth-provider credentials are not supported'],
    [kubeconfig('token: a').replace('server: https://127.0.0.1:6443', ''), 'has no server'],
  ])('rejects %j clearly', (text, message) => {
    expect(() => parseKubeconfig(text, '/', 'my-kubeconfig')).toThrow(InvalidInputError);
    expect(() => parseKubeconfig(text, '/', 'my-kubeconfig')).toThrow(message);
  });

  it('builds the in-cluster connection from the service account', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sa-'));
    writeFileSync(join(dir, 'ca.crt'), 'SA-CA');
    writeFileSync(join(dir, 'token'), 'sa-token');
    const connection = inClusterConnection({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir);
    expect(connection.server.toString()).toBe('https://10.96.0.1/');
    expect(connection.ca?.toString()).toBe('SA-CA');
    expect(connection.token?.()).toBe('sa-token');
  });
});
