/**
 * The Redis TLS files: read once, with the rest of the configuration, checked as what their
 * settings say they are, and every problem reported at once as one line per setting
 * (ConfigError: exit 2).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { ConfigError } from '../../src/errors';
import { loadConfig } from '../../src/config/load';
import type { RedisStoreConfig } from '../../src/config/settings';
import type { RedisTlsFiles } from '../../src/tls/redis-tls-files';
import { createCertificateAuthority, issueClientCertificate, issueServerCertificate } from '../helpers/tls-certificates';

let dir: string;
let caPath: string;
let client: { certPath: string; keyPath: string };
let otherKeyPath: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idem-redis-tls-unit-'));
  const ca = createCertificateAuthority(dir, 'unit-ca');
  caPath = ca.certPath;
  client = issueClientCertificate(ca, dir, 'unit-client');
  otherKeyPath = issueServerCertificate(ca, dir, 'unit-other').keyPath;
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

const VARIABLES = { redisTlsCaFile: 'IDEMPOTENCY_REDIS_TLS_CA_FILE', redisTlsCertFile: 'IDEMPOTENCY_REDIS_TLS_CERT_FILE', redisTlsKeyFile: 'IDEMPOTENCY_REDIS_TLS_KEY_FILE' } as const;

/** The store of a configuration with these files and a rediss:// URL. */
function storeWith(files: RedisTlsFiles): RedisStoreConfig {
  const env: Record<string, string> = { IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000', IDEMPOTENCY_REDIS_URL: 'rediss://127.0.0.1:6380' };
  for (const [setting, file] of Object.entries(files)) if (file !== undefined) env[VARIABLES[setting as keyof RedisTlsFiles]] = file;
  const { store } = loadConfig({ argv: [], env });
  if (store.kind === 'memory') throw new Error('expected a Redis store');
  return store;
}

const loadRedisTls = (files: RedisTlsFiles) => storeWith(files).tls;

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

test('no files: no options, and Node verifies against its own CAs', () => {
  expect(loadRedisTls({})).toEqual({});
  expect(storeWith({}).tlsFilesGiven).toBe(false);
});

test('a CA, a client certificate and its key load as the bytes of the files, and make a usable TLS context', () => {
  const options = loadRedisTls({ redisTlsCaFile: caPath, redisTlsCertFile: client.certPath, redisTlsKeyFile: client.keyPath });
  expect(Buffer.isBuffer(options.ca) && options.ca.equals(fs.readFileSync(caPath))).toBe(true);
  expect(Buffer.isBuffer(options.cert) && options.cert.equals(fs.readFileSync(client.certPath))).toBe(true);
  expect(Buffer.isBuffer(options.key) && options.key.equals(fs.readFileSync(client.keyPath))).toBe(true);
  expect(() => tls.createSecureContext({ ...options })).not.toThrow();
  expect(storeWith({ redisTlsCaFile: caPath }).tlsFilesGiven).toBe(true);
});

test('a CA bundle of several certificates is accepted', () => {
  const bundle = write('bundle.crt', fs.readFileSync(caPath, 'utf8') + fs.readFileSync(client.certPath, 'utf8'));
  expect(loadRedisTls({ redisTlsCaFile: bundle }).ca).toBeDefined();
});

test('a file that is not PEM names its setting', () => {
  const problems = problemsOf(() => loadRedisTls({ redisTlsCaFile: write('text.crt', 'hello\n') }));
  expect(problems).toEqual([expect.stringMatching(/^IDEMPOTENCY_REDIS_TLS_CA_FILE: ".*text\.crt" holds no PEM certificate/)]);
});

test('a PEM block that does not parse names its setting', () => {
  const damaged = write('damaged.crt', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  const problems = problemsOf(() => loadRedisTls({ redisTlsCertFile: damaged, redisTlsKeyFile: client.keyPath }));
  expect(problems).toEqual([expect.stringMatching(/^IDEMPOTENCY_REDIS_TLS_CERT_FILE: .* cannot be parsed/)]);
});

test('every problem at once: an unreadable CA, a key that is not a key', () => {
  const problems = problemsOf(() =>
    loadRedisTls({
      redisTlsCaFile: path.join(dir, 'missing.crt'),
      redisTlsCertFile: client.certPath,
      redisTlsKeyFile: write('not-a-key.key', 'secret\n'),
    }),
  );
  expect(problems).toEqual([
    expect.stringMatching(/^IDEMPOTENCY_REDIS_TLS_CA_FILE: .*missing\.crt" cannot be read \(ENOENT/),
    expect.stringMatching(/^IDEMPOTENCY_REDIS_TLS_KEY_FILE: .* is not an unencrypted PEM private key/),
  ]);
});

test('a key that belongs to another certificate is refused', () => {
  const problems = problemsOf(() => loadRedisTls({ redisTlsCertFile: client.certPath, redisTlsKeyFile: otherKeyPath }));
  expect(problems).toEqual([expect.stringMatching(/^IDEMPOTENCY_REDIS_TLS_KEY_FILE and IDEMPOTENCY_REDIS_TLS_CERT_FILE: .* is not the key of that certificate/)]);
});
