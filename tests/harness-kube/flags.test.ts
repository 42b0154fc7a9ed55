import { describe, expect, it } from 'vitest';
import type { ControlPlaneCertificates } from '../harness/kube/certs.ts';
import { apiServerArgs, etcdArgs } from '../harness/kube/flags.ts';

const certs: ControlPlaneCertificates = {
  caCert: '/pki/ca.crt',
  servingCert: '/pki/apiserver.crt',
  servingKey: '/pki/apiserver.key',
  adminCert: '/pki/admin.crt',
  adminKey: '/pki/admin.key',
  serviceAccountPublicKey: '/pki/sa.pub',
  serviceAccountSigningKey: '/pki/sa.key',
};
const settings = { port: 6443, etcdUrl: 'http://127.0.0.1:2379', certs, certDir: '/pki' };

describe('apiServerArgs', () => {
  it('serves on loopback only, with the generated certificates, etcd and RBAC', () => {
    const args = apiServerArgs(settings);
    expect(args).toEqual(
      expect.arrayContaining([
        '--bind-address=127.0.0.1',
        '--secure-port=6443',
        '--etcd-servers=http://127.0.0.1:2379',
        '--client-ca-file=/pki/ca.crt',
        '--tls-cert-file=/pki/apiserver.crt',
        '--service-account-signing-key-file=/pki/sa.key',
        '--authorization-mode=RBAC',
      ]),
    );
  });

  it('an override replaces the default of the same flag and keeps one occurrence', () => {
    const args = apiServerArgs(settings, ['--authorization-mode=AlwaysAllow']);
    expect(args.filter((arg) => arg.startsWith('--authorization-mode'))).toEqual(['--authorization-mode=AlwaysAllow']);
  });

  it('an override adds a new flag, with or without a value', () => {
    const args = apiServerArgs(settings, ['--feature-gates=Foo=true', '--profiling']);
    expect(args).toContain('--feature-gates=Foo=true');
    expect(args).toContain('--profiling');
  });

  it('rejects an override that is not a flag', () => {
    expect(() => apiServerArgs(settings, ['v=4'])).toThrow('must start with "--": v=4');
  });
});

describe('etcdArgs', () => {
  it('listens for clients and peers on the given loopback ports only', () => {
    const args = etcdArgs({ dataDir: '/tmp/x/etcd', clientPort: 5000, peerPort: 5001 });
    expect(args).toContain('--listen-client-urls=http://127.0.0.1:5000');
    expect(args).toContain('--listen-peer-urls=http://127.0.0.1:5001');
    expect(args).toContain('--data-dir=/tmp/x/etcd');
  });
});
