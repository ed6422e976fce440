/**
 * The CA bundle check: OpenSSL accepts a `ca` option it cannot parse without a word (and then
 * refuses every client), so the sidecar parses each block itself and says which one is wrong.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkCaBundle, checkKeyPair, readKeyPairSync } from '../../src/tls/key-pair';
import { createCertificateAuthority, issueServerCertificate, type CertificateAuthority, type ServerCertificate } from '../helpers/tls-certificates';

let dir: string;
let ca: CertificateAuthority;
let other: CertificateAuthority;
let listener: ServerCertificate;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'key-pair-'));
  ca = createCertificateAuthority(dir, 'ca');
  other = createCertificateAuthority(dir, 'other');
  listener = issueServerCertificate(ca, dir, 'listener');
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('checkCaBundle', () => {
  it('accepts one CA and a bundle of several', () => {
    expect(checkCaBundle(ca.cert)).toEqual([]);
    expect(checkCaBundle(Buffer.concat([ca.cert, other.cert]))).toEqual([]);
  });

  it('refuses a file with no certificate in it', () => {
    expect(checkCaBundle(Buffer.from('not a certificate\n'))).toEqual([{ file: 'ca', message: expect.stringContaining('holds no PEM certificate') }]);
    expect(checkCaBundle(listener.key)).toEqual([{ file: 'ca', message: expect.stringContaining('holds no PEM certificate') }]);
  });

  it('names the block that does not parse', () => {
    const broken = Buffer.from('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(checkCaBundle(Buffer.concat([ca.cert, broken]))).toEqual([{ file: 'ca', message: expect.stringMatching(/^certificate 2 of 2 does not parse/) }]);
  });
});

describe('readKeyPairSync with a CA bundle', () => {
  it('reads the CA beside the pair', () => {
    const read = readKeyPairSync({ certPath: listener.certPath, keyPath: listener.keyPath, caPath: ca.certPath });
    expect('pair' in read && read.pair.ca?.equals(ca.cert)).toBe(true);
  });

  it('reports an unreadable CA file as the CA', () => {
    const read = readKeyPairSync({ certPath: listener.certPath, keyPath: listener.keyPath, caPath: path.join(dir, 'missing.crt') });
    expect(read).toEqual({ problems: [{ file: 'ca', message: expect.stringContaining('cannot be read') }] });
  });

  it('checks the pair and the bundle together', () => {
    expect(checkKeyPair({ cert: listener.cert, key: listener.key, ca: Buffer.from('junk') })).toEqual([
      { file: 'ca', message: expect.stringContaining('holds no PEM certificate') },
    ]);
  });
});
