/**
 * What follows from the settings table: every row is named, helped and redacted the same way,
 * the store comes out as exactly one kind, and one pass reports problems of values and of the
 * files they name together.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatHelp, loadConfig, loadSettings, redactSettings, unknownEnvironmentVariables } from '../../src/config/load';
import { SIDECAR_SETTINGS, WEBHOOK_SETTINGS, envName, flagName } from '../../src/config/table';
import { ConfigError } from '../../src/errors';
import { formatWebhookHelp } from '../../src/webhook/settings';
import { createCertificateAuthority, issueServerCertificate } from '../helpers/tls-certificates';

const UPSTREAM = { IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000' };

function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    loadConfig({ argv: [], env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('every row', () => {
  test.each(Object.entries(SIDECAR_SETTINGS).filter(([, row]) => row.commands.includes('proxy')))(
    '%s is in --help by flag and variable (or as YAML only), with its default',
    (name, row) => {
      const help = formatHelp();
      if (row.fileOnly) expect(help).toContain(`${name}: (YAML file only)  (default: ${row.shownDefault})`);
      else expect(help).toContain(`${flagName(name)}${row.flagIsBoolean ? '[=true|false]' : ' VALUE'}, ${envName(name)}  (default: ${row.shownDefault})`);
      expect(help).toContain(row.help);
      if (!row.fileOnly) expect(unknownEnvironmentVariables({ [envName(name)]: 'x' })).toEqual([]);
    },
  );

  test.each(Object.keys(WEBHOOK_SETTINGS))('the webhook row %s is in webhook --help by its own variable', (name) => {
    expect(formatWebhookHelp()).toContain(`${flagName(name)} VALUE, ${envName(name, 'IDEMPOTENCY_WEBHOOK_')}`);
  });
});

describe('secret rows', () => {
  const KEY = Buffer.alloc(32, 5).toString('base64');
  // For each secret row: settings it is accepted with, and the secret that must not be printed.
  const CASES: Readonly<Record<string, { readonly env: Record<string, string>; readonly secret: string }>> = {
    redisPassword: {
      env: { IDEMPOTENCY_REDIS_SENTINELS: 's0:26379', IDEMPOTENCY_REDIS_SENTINEL_MASTER: 'm', IDEMPOTENCY_REDIS_PASSWORD: 'pw-secret-5511' },
      secret: 'pw-secret-5511',
    },
    encryptionKeys: { env: { IDEMPOTENCY_ENCRYPTION_KEYS: `k1:${KEY}` }, secret: KEY },
    adminToken: { env: { IDEMPOTENCY_ADMIN_TOKEN: 'token-secret-0123456789' }, secret: 'token-secret-0123456789' },
    redisUrl: { env: { IDEMPOTENCY_REDIS_URL: 'redis://:url-secret-77@redis:6379' }, secret: 'url-secret-77' },
    redlockUrls: {
      env: { IDEMPOTENCY_REDIS_URL: 'redis://redis:6379', IDEMPOTENCY_REDLOCK_URLS: 'redis://:lock-secret-88@lock:6379' },
      secret: 'lock-secret-88',
    },
  };
  const secretRows = Object.entries(SIDECAR_SETTINGS).filter(([, row]) => 'secret' in row);

  test('every secret row has a case here', () => {
    expect(secretRows.map(([name]) => name).sort()).toEqual(Object.keys(CASES).sort());
  });

  test.each(secretRows)('%s never reaches --config-test', (name) => {
    const given = CASES[name];
    if (given === undefined) throw new Error(`no case for ${name}`);
    const printed = JSON.stringify(redactSettings(loadSettings({ argv: [], env: { ...UPSTREAM, ...given.env } })));
    expect(printed).not.toContain(given.secret);
    expect(printed).toContain('REDACTED');
  });
});

describe('the store, as one kind', () => {
  test('memory, redis, cluster and sentinel each carry what they need and nothing else', () => {
    expect(loadConfig({ argv: [], env: UPSTREAM }).store).toEqual({ kind: 'memory', maxRecords: 100_000 });
    expect(loadConfig({ argv: [], env: { ...UPSTREAM, IDEMPOTENCY_REDIS_URL: 'redis://r:6379', IDEMPOTENCY_REDIS_WAIT_REPLICAS: '1' } }).store).toEqual({
      kind: 'redis',
      url: 'redis://r:6379',
      waitReplicas: 1,
      waitTimeoutMs: 500,
      tls: {},
      tlsFilesGiven: false,
    });
    expect(
      loadConfig({ argv: [], env: { ...UPSTREAM, IDEMPOTENCY_REDIS_CLUSTER_NODES: 'a:1,b:2', IDEMPOTENCY_REDIS_USERNAME: 'u', IDEMPOTENCY_REDIS_TLS: 'true' } }).store,
    ).toMatchObject({ kind: 'cluster', nodes: ['a:1', 'b:2'], auth: { username: 'u' }, nodeTls: true });
    expect(
      loadConfig({
        argv: [],
        env: { ...UPSTREAM, IDEMPOTENCY_REDIS_SENTINELS: 's:26379', IDEMPOTENCY_REDIS_SENTINEL_MASTER: 'mymaster', IDEMPOTENCY_REDLOCK_URLS: 'redis://l:6379' },
      }).store,
    ).toMatchObject({ kind: 'sentinel', sentinels: ['s:26379'], masterName: 'mymaster', redlockUrls: ['redis://l:6379'] });
  });
});

describe('one pass', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'settings-table-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a bad value and files that do not hold what their settings say are reported together', () => {
    const notPem = path.join(dir, 'not-pem.txt');
    fs.writeFileSync(notPem, 'hello\n');
    const keys = path.join(dir, 'keys');
    fs.writeFileSync(keys, '# nothing here\n');
    const ca = createCertificateAuthority(dir, 'ca');
    const pair = issueServerCertificate(ca, dir, 'listener');
    const problems = problemsOf({
      ...UPSTREAM,
      IDEMPOTENCY_TTL: '24',
      IDEMPOTENCY_TLS_CERT_FILE: pair.certPath,
      IDEMPOTENCY_TLS_KEY_FILE: pair.keyPath,
      IDEMPOTENCY_TLS_CLIENT_CA_FILE: notPem,
      IDEMPOTENCY_REDIS_URL: 'rediss://r:6380',
      IDEMPOTENCY_REDIS_TLS_CA_FILE: notPem,
      IDEMPOTENCY_ENCRYPTION_KEYS_FILE: keys,
    });
    expect(problems).toEqual([
      expect.stringMatching(/^IDEMPOTENCY_TTL: "24" is not a duration/),
      expect.stringMatching(/^IDEMPOTENCY_TLS_CLIENT_CA_FILE: ".*not-pem\.txt" holds no PEM certificate/),
      expect.stringMatching(/^IDEMPOTENCY_REDIS_TLS_CA_FILE: ".*not-pem\.txt" holds no PEM certificate/),
      expect.stringMatching(/^IDEMPOTENCY_ENCRYPTION_KEYS_FILE: ".*keys" holds no key/),
    ]);
  });

  test('the Config carries what the files hold, read once', () => {
    const ca = createCertificateAuthority(dir, 'ca2');
    const pair = issueServerCertificate(ca, dir, 'listener2');
    const config = loadConfig({
      argv: [],
      env: { ...UPSTREAM, IDEMPOTENCY_TLS_CERT_FILE: pair.certPath, IDEMPOTENCY_TLS_KEY_FILE: pair.keyPath, IDEMPOTENCY_TLS_CLIENT_CA_FILE: ca.certPath },
    });
    expect(config.listenerTls?.pair.cert.equals(pair.cert)).toBe(true);
    expect(config.listenerTls?.pair.ca?.equals(ca.cert)).toBe(true);
    expect(config.listenerTls?.paths).toEqual({ certPath: pair.certPath, keyPath: pair.keyPath, caPath: ca.certPath });
  });
});
