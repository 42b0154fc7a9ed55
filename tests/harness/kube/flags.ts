import type { ControlPlaneCertificates } from './certs.ts';

export interface ApiServerSettings {
  port: number;
  etcdUrl: string;
  certs: ControlPlaneCertificates;
  certDir: string;
}

/**
 * kube-apiserver's command line, like envtest's: secure serving on 127.0.0.1 only, client-certificate
 * authentication, RBAC. `overrides` (`--name=value` or `--name`) replace the default of the same name
 * or add a flag.
 */
export function apiServerArgs(settings: ApiServerSettings, overrides: readonly string[] = []): string[] {
  const { certs } = settings;
  const flags = new Map<string, string | undefined>([
    ['--bind-address', '127.0.0.1'],
    ['--advertise-address', '127.0.0.1'],
    ['--secure-port', String(settings.port)],
    ['--cert-dir', settings.certDir],
    ['--tls-cert-file', certs.servingCert],
    ['--tls-private-key-file', certs.servingKey],
    ['--client-ca-file', certs.caCert],
    ['--etcd-servers', settings.etcdUrl],
    ['--authorization-mode', 'RBAC'],
    ['--service-account-issuer', 'https://kubernetes.default.svc.cluster.local'],
    ['--service-account-key-file', certs.serviceAccountPublicKey],
    ['--service-account-signing-key-file', certs.serviceAccountSigningKey],
    // Only an address range to allocate ClusterIPs from; nothing routes to it.
    ['--service-cluster-ip-range', '10.0.0.0/24'],
    ['--allow-privileged', 'true'],
    // No controller-manager creates the `default` ServiceAccount, so this plugin would reject every Pod.
    ['--disable-admission-plugins', 'ServiceAccount'],
    // The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints validation rejects.
    ['--endpoint-reconciler-type', 'none'],
    // On SIGTERM, end open watches and exit within ~2 s; without it kube-apiserver waits 60 s for
    // watch clients to leave, which would make every restartApiServer() a minute long.
    ['--shutdown-watch-termination-grace-period', '2s'],
  ]);
  for (const override of overrides) {
    const separator = override.indexOf('=');
    if (!override.startsWith('--')) throw new TypeError(`kube-apiserver flag must start with "--": ${override}`);
    if (separator < 0) flags.set(override, undefined);
    else flags.set(override.slice(0, separator), override.slice(separator + 1));
  }
  return [...flags].map(([name, value]) => (value === undefined ? name : `${name}=${value}`));
}

export interface EtcdSettings {
  dataDir: string;
  clientPort: number;
  peerPort: number;
}

export function etcdArgs(settings: EtcdSettings): string[] {
  const client = `http://127.0.0.1:${settings.clientPort}`;
  const peer = `http://127.0.0.1:${settings.peerPort}`;
  return [
    `--name=kybernate-test`,
    `--data-dir=${settings.dataDir}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=kybernate-test=${peer}`,
    // Test data is thrown away: skipping fsync makes every write (and so every API call) cheaper.
    '--unsafe-no-fsync',
    '--log-level=warn',
  ];
}
