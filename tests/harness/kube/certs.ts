import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HarnessError } from './errors.ts';

const run = promisify(execFile);

/** PEM files of one control plane; every certificate is signed by `caCert`. */
export interface ControlPlaneCertificates {
  caCert: string;
  /** kube-apiserver's serving certificate, valid for 127.0.0.1 and localhost. */
  servingCert: string;
  servingKey: string;
  /** Client certificate of the `kybernate-admin` user in group `system:masters` (full access under RBAC). */
  adminCert: string;
  adminKey: string;
  serviceAccountPublicKey: string;
  serviceAccountSigningKey: string;
}

export const ADMIN_USER = 'kybernate-admin';

// Our own config, so the system's openssl.cnf defaults add no surprise extensions.
const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
`;

/** Writes a throw-away CA, the serving and admin certificates and a service-account key pair into `dir`. */
export async function generateCertificates(dir: string): Promise<ControlPlaneCertificates> {
  const file = (name: string) => join(dir, name);
  const certs: ControlPlaneCertificates = {
    caCert: file('ca.crt'),
    servingCert: file('apiserver.crt'),
    servingKey: file('apiserver.key'),
    adminCert: file('admin.crt'),
    adminKey: file('admin.key'),
    serviceAccountPublicKey: file('sa.pub'),
    serviceAccountSigningKey: file('sa.key'),
  };
  const config = file('openssl.cnf');
  await writeFile(config, OPENSSL_CONFIG);

  // EC P-256 keys: generated in milliseconds, unlike RSA; every Kubernetes component accepts them.
  const newCert = (subject: string, extensions: string, cert: string, key: string, signedByCa: boolean) =>
    openssl([
      'req', '-x509', '-new', '-noenc', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      ...(signedByCa ? ['-CA', certs.caCert, '-CAkey', file('ca.key')] : []),
      '-keyout', key, '-out', cert, '-days', '7', '-subj', subject, '-config', config, '-extensions', extensions,
    ]);
  await newCert('/CN=kybernate-test-ca', 'ca', certs.caCert, file('ca.key'), false);
  await Promise.all([
    newCert('/CN=kube-apiserver', 'serving', certs.servingCert, certs.servingKey, true),
    newCert(`/O=system:masters/CN=${ADMIN_USER}`, 'client', certs.adminCert, certs.adminKey, true),
  ]);

  const serviceAccount = generateKeyPairSync('ec', {
    namedCurve: 'prime256v1',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  await writeFile(certs.serviceAccountPublicKey, serviceAccount.publicKey);
  await writeFile(certs.serviceAccountSigningKey, serviceAccount.privateKey, { mode: 0o600 });
  return certs;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new HarnessError(`openssl ${args.slice(0, 2).join(' ')} failed (is openssl installed?): ${stderr.trim()}`, { args }, { cause: err });
  }
}
