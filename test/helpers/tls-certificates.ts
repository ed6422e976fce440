/**
 * Test certificates made with the `openssl` command: a throwaway CA, server certificates it
 * signs, valid for 127.0.0.1 and localhost, as cert-manager or a chart would issue them for the
 * webhook's Service, and client certificates for mutual TLS. EC P-256 keys, so making them takes
 * milliseconds.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface CertificateAuthority {
  readonly certPath: string;
  readonly keyPath: string;
  readonly cert: Buffer;
}

export interface ServerCertificate {
  readonly certPath: string;
  readonly keyPath: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA in `dir`, files `<name>.crt` and `<name>.key`. */
export function createCertificateAuthority(dir: string, name = 'test-ca'): CertificateAuthority {
  fs.mkdirSync(dir, { recursive: true });
  openssl(
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const certPath = path.join(dir, `${name}.crt`);
  return { certPath, keyPath: path.join(dir, `${name}.key`), cert: fs.readFileSync(certPath) };
}

let serial = 1000;

/**
 * A server certificate for 127.0.0.1 and localhost signed by `ca`, written to `dir` as
 * `<name>.crt` and `<name>.key`. Each has its own key and serial number, so a test can tell two
 * apart by what a client sees.
 */
export function issueServerCertificate(ca: CertificateAuthority, dir: string, name: string, commonName = name): ServerCertificate {
  return issue(ca, dir, name, `/CN=${commonName}`, [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
  ]);
}

/**
 * A client certificate for mutual TLS signed by `ca`, with the subject given in openssl's form
 * (`/O=acme/CN=billing`), written to `dir` as `<name>.crt` and `<name>.key`. Two CAs may issue the
 * same subject: that is what a test of issuer-scoped tenants needs. Default subject: `/CN=<name>`.
 */
export function issueClientCertificate(ca: CertificateAuthority, dir: string, name: string, subject = `/CN=${name}`): ServerCertificate {
  return issue(ca, dir, name, subject, ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth']);
}

function issue(ca: CertificateAuthority, dir: string, name: string, subject: string, extensionLines: readonly string[]): ServerCertificate {
  fs.mkdirSync(dir, { recursive: true });
  const extensions = path.join(dir, `${name}.ext`);
  fs.writeFileSync(extensions, [...extensionLines, ''].join('\n'));
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  serial += 1;
  openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', String(serial), '-days', '2', '-out', `${name}.crt`, '-extfile', extensions],
    dir,
  );
  const certPath = path.join(dir, `${name}.crt`);
  const keyPath = path.join(dir, `${name}.key`);
  return { certPath, keyPath, cert: fs.readFileSync(certPath), key: fs.readFileSync(keyPath) };
}
