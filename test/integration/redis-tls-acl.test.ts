/**
 * The sidecar, as its own process, over TLS (mutual, with a CA of our own) to every Redis it uses,
 * logged in as ACL users that hold only the rules config/example.yaml documents: the record store,
 * its pub/sub, and a Redlock quorum of three masters. Then the ways it goes wrong: a wrong CA, no
 * client certificate, a wrong password, a file that is not PEM. Each leaves the sidecar up but not
 * ready (or stops the start, for the file), and says why in one log line naming the setting.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freshKey, send, sleep } from '../helpers/client';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startRedis, type RedisHandle } from '../helpers/redis-server';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import {
  type CertificateAuthority,
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  type ServerCertificate,
} from '../helpers/tls-certificates';

jest.setTimeout(60_000);

const PROBLEM = 'urn:idempotency-sidecar:problem:';
const STORE_PASSWORD = 'store-secret-9f2c';
const LOCK_PASSWORD = 'lock-secret-41aa';
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';

/** The `user` lines of config/example.yaml, so that the documented rule is the one tested. */
function documentedRule(name: 'idempotency-store' | 'idempotency-lock', password: string): string {
  const example = fs.readFileSync(path.join(__dirname, '..', '..', 'config', 'example.yaml'), 'utf8');
  const line = new RegExp(`^#\\s+user ${name} (.+)$`, 'm').exec(example)?.[1];
  if (line === undefined) throw new Error(`config/example.yaml documents no ACL rule for ${name}`);
  const placeholder = name === 'idempotency-store' ? '>STORE-PASSWORD' : '>LOCK-PASSWORD';
  expect(line).toContain(placeholder);
  return `${name} ${line.replace(placeholder, `>${password}`)}`;
}

function withCredentials(url: string, user: string, password: string): string {
  return url.replace('rediss://', `rediss://${user}:${password}@`);
}

let dir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let server: ServerCertificate;
let client: ServerCertificate;
let upstream: PaymentUpstream;
let store: RedisHandle;
let lockMasters: RedisHandle[];
const sidecars: SidecarProcess[] = [];

/** The sidecar's TLS files: the CA that signed the servers, and a client certificate it signed. */
function tlsEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    IDEMPOTENCY_REDIS_TLS_CA_FILE: ca.certPath,
    IDEMPOTENCY_REDIS_TLS_CERT_FILE: client.certPath,
    IDEMPOTENCY_REDIS_TLS_KEY_FILE: client.keyPath,
    IDEMPOTENCY_STORE_TIMEOUT: '1s',
    ...overrides,
  };
}

async function sidecarWith(env: Record<string, string>): Promise<SidecarProcess> {
  const sidecar = await startSidecar({ upstream: upstream.url, env });
  sidecars.push(sidecar);
  return sidecar;
}

async function readiness(sidecar: SidecarProcess): Promise<number> {
  return (await send(sidecar.adminUrl, '/readyz', { method: 'GET' })).status;
}

/** Waits until readiness answers `status`; the readiness probe itself takes up to the store timeout. */
async function untilReady(sidecar: SidecarProcess, status: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if ((await readiness(sidecar)) === status) return;
    await sleep(100);
  }
  throw new Error(`readiness never answered ${status}:\n${sidecar.output()}`);
}

/** Log lines that explain a Redis connection failure (redis-diagnosis.ts). */
function diagnoses(sidecar: SidecarProcess): Record<string, unknown>[] {
  return sidecar.logs().filter((line) => typeof line['problem'] === 'string' && typeof line['connection'] === 'string');
}

/** Waits for the first diagnosis, then long enough for several reconnect attempts to repeat it. */
async function diagnosisAfterRetries(sidecar: SidecarProcess): Promise<Record<string, unknown>[]> {
  for (let attempt = 0; attempt < 100 && diagnoses(sidecar).length === 0; attempt += 1) await sleep(100);
  // The reconnect delay grows 100 ms per attempt: 3 s hold several more attempts.
  await sleep(3_000);
  return diagnoses(sidecar);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idem-redis-tls-'));
  ca = createCertificateAuthority(dir, 'redis-ca');
  otherCa = createCertificateAuthority(dir, 'other-ca');
  server = issueServerCertificate(ca, dir, 'redis-server');
  client = issueClientCertificate(ca, dir, 'sidecar-client');
  const tls = { certFile: server.certPath, keyFile: server.keyPath, caFile: ca.certPath };
  upstream = await startPaymentUpstream();
  [store, ...lockMasters] = await Promise.all([
    startRedis({ tls, users: [documentedRule('idempotency-store', STORE_PASSWORD)] }),
    ...[1, 2, 3].map(() => startRedis({ tls, users: [documentedRule('idempotency-lock', LOCK_PASSWORD)] })),
  ]);
});

afterAll(async () => {
  for (const sidecar of sidecars) {
    if (sidecar.process.exitCode === null) await sidecar.stop();
  }
  await upstream?.stop();
  await Promise.all([store, ...(lockMasters ?? [])].map((redis) => redis?.stop()));
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

function storeUrl(password = STORE_PASSWORD): string {
  return withCredentials(store.tlsUrl as string, 'idempotency-store', password);
}

/** Calls of `command` a server counted (INFO commandstats, read as the default user on the plain port). */
async function commandCalls(redis: RedisHandle, commands: readonly string[]): Promise<number> {
  const admin = new Redis(redis.url, { lazyConnect: true });
  await admin.connect();
  try {
    const stats = await admin.info('commandstats');
    return commands.reduce((sum, command) => sum + Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0), 0);
  } finally {
    admin.disconnect();
  }
}

function expectNoPermissionProblems(sidecar: SidecarProcess): void {
  const output = sidecar.output();
  expect(output).not.toMatch(/NOPERM|no permissions|Skipping the ready check/);
  expect(diagnoses(sidecar)).toEqual([]);
}

describe('the record store over mutual TLS, as an ACL user with the documented rule', () => {
  let sidecar: SidecarProcess;

  beforeAll(async () => {
    // wait mode: a duplicate in flight waits for the settle message, over SUBSCRIBE.
    sidecar = await sidecarWith(
      tlsEnv({ IDEMPOTENCY_REDIS_URL: storeUrl(), IDEMPOTENCY_ADMIN_TOKEN: ADMIN_TOKEN, IDEMPOTENCY_CONCURRENT: 'wait', IDEMPOTENCY_WAIT_TIMEOUT: '20s' }),
    );
    await untilReady(sidecar, 200);
  });

  test('a first request executes, its retry replays, and the key reused with another body gets 422', async () => {
    const key = freshKey('tls');
    const first = await send(sidecar.url, '/payments', { key, body: '{"amount":100}' });
    expect(first.status).toBe(201);
    const retry = await send(sidecar.url, '/payments', { key, body: '{"amount":100}' });
    expect(retry.status).toBe(201);
    expect(retry.header('idempotent-replayed')).toBe('true');
    expect(retry.body.equals(first.body)).toBe(true);
    const reused = await send(sidecar.url, '/payments', { key, body: '{"amount":999}' });
    expect(reused.status).toBe(422);
    expect(reused.json()['type']).toBe(`${PROBLEM}key-reused`);
    expect(upstream.countKey(key)).toBe(1);
    expectNoPermissionProblems(sidecar);
  });

  test('a duplicate that waits is woken by the settle message (SUBSCRIBE and PUBLISH on its channel)', async () => {
    const key = freshKey('tls-wait');
    const subscribesBefore = await commandCalls(store, ['subscribe']);
    const running = send(sidecar.url, '/slow?ms=1500', { key, body: '{}' });
    // The duplicate must arrive while the first is in flight: once the upstream has it.
    for (let attempt = 0; attempt < 100 && upstream.countKey(key) === 0; attempt += 1) await sleep(20);
    const duplicate = await send(sidecar.url, '/slow?ms=1500', { key, body: '{}' });
    const original = await running;
    expect(original.status).toBe(201);
    expect(duplicate.status).toBe(201);
    expect(duplicate.header('idempotent-replayed')).toBe('true');
    expect(upstream.countKey(key)).toBe(1);
    expect(await commandCalls(store, ['subscribe'])).toBeGreaterThan(subscribesBefore);
    expectNoPermissionProblems(sidecar);
  });

  test('the admin API lists and removes a record (the list and remove scripts)', async () => {
    const key = freshKey('tls-admin');
    expect((await send(sidecar.url, '/payments', { key, body: '{}' })).status).toBe(201);
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const listed = await send(sidecar.adminUrl, `/keys/${key}`, { method: 'GET', headers: auth });
    expect(listed.status).toBe(200);
    const records = JSON.parse(listed.body.toString()) as { tenant: string; state: string }[];
    expect(records).toHaveLength(1);
    expect(records[0]?.state).toBe('completed');
    const removed = await send(sidecar.adminUrl, `/keys/${key}?tenant=${records[0]?.tenant ?? ''}`, { method: 'DELETE', headers: auth });
    expect(removed.status).toBe(204);
    expectNoPermissionProblems(sidecar);
  });

  test('the documented rule is really all the user may do: a command outside it is refused', async () => {
    const probe = new Redis(storeUrl(), { tls: { ca: ca.cert, cert: client.cert, key: client.key }, lazyConnect: true });
    await probe.connect();
    try {
      await expect(probe.lpush('idem:probe', '1')).rejects.toThrow(/NOPERM/);
      await expect(probe.hgetall('other:key')).rejects.toThrow(/NOPERM/);
      await expect(probe.keys('*')).rejects.toThrow(/NOPERM/);
    } finally {
      probe.disconnect();
    }
  });
});

describe('a Redlock quorum of three masters over TLS, each with the documented lock user', () => {
  test('a first request executes with the locks on the masters, its retry replays, a reused key gets 422', async () => {
    const sidecar = await sidecarWith(
      tlsEnv({
        IDEMPOTENCY_REDIS_URL: storeUrl(),
        IDEMPOTENCY_REDLOCK_URLS: lockMasters.map((m) => withCredentials(m.tlsUrl as string, 'idempotency-lock', LOCK_PASSWORD)).join(','),
      }),
    );
    await untilReady(sidecar, 200);
    const scriptsBefore = await Promise.all(lockMasters.map((m) => commandCalls(m, ['evalsha', 'eval'])));
    const key = freshKey('tls-lock');
    expect((await send(sidecar.url, '/payments', { key, body: '{"amount":5}' })).status).toBe(201);
    const retry = await send(sidecar.url, '/payments', { key, body: '{"amount":5}' });
    expect(retry.header('idempotent-replayed')).toBe('true');
    expect((await send(sidecar.url, '/payments', { key, body: '{"amount":6}' })).status).toBe(422);
    expect(upstream.countKey(key)).toBe(1);
    // Each master ran the lock scripts (acquire, release) for this request.
    const scriptsAfter = await Promise.all(lockMasters.map((m) => commandCalls(m, ['evalsha', 'eval'])));
    scriptsAfter.forEach((after, i) => expect(after).toBeGreaterThanOrEqual((scriptsBefore[i] ?? 0) + 2));
    expectNoPermissionProblems(sidecar);
    expect(await sidecar.stop()).toBe(0);
  });

  test('a wrong lock password: guarded requests get 503, and one line names IDEMPOTENCY_REDLOCK_URLS', async () => {
    const sidecar = await sidecarWith(
      tlsEnv({
        IDEMPOTENCY_REDIS_URL: storeUrl(),
        IDEMPOTENCY_REDLOCK_URLS: lockMasters.map((m) => withCredentials(m.tlsUrl as string, 'idempotency-lock', 'wrong-one')).join(','),
      }),
    );
    const key = freshKey('tls-lock-down');
    const reply = await send(sidecar.url, '/payments', { key, body: '{}' });
    expect(reply.status).toBe(503);
    expect(upstream.countKey(key)).toBe(0);
    const lines = await diagnosisAfterRetries(sidecar);
    // One line per lock master, each said once however often it reconnects.
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      expect(line['problem']).toBe('auth');
      expect(line['msg']).toMatch(/WRONGPASS/);
      expect(line['settings']).toEqual(['IDEMPOTENCY_REDLOCK_URLS']);
    }
    expect(sidecar.output()).not.toContain('wrong-one');
    expect(await sidecar.stop()).toBe(0);
  });
});

describe('what goes wrong says so in one line, and the sidecar is up but not ready', () => {
  async function expectNotReadyWith(env: Record<string, string>, problem: string, setting: string, words: RegExp): Promise<SidecarProcess> {
    const sidecar = await sidecarWith(env);
    expect(await readiness(sidecar)).toBe(503);
    const key = freshKey('tls-down');
    const reply = await send(sidecar.url, '/payments', { key, body: '{}' });
    expect(reply.status).toBe(503);
    expect(reply.json()['type']).toBe(`${PROBLEM}store-unavailable`);
    expect(upstream.countKey(key)).toBe(0);
    const lines = await diagnosisAfterRetries(sidecar);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.['level']).toBe('error');
    expect(lines[0]?.['problem']).toBe(problem);
    expect(lines[0]?.['settings']).toContain(setting);
    expect(lines[0]?.['msg']).toMatch(words);
    expect(await readiness(sidecar)).toBe(503);
    expect(sidecar.process.exitCode).toBeNull();
    return sidecar;
  }

  test('a CA that did not sign the server: TLS, naming IDEMPOTENCY_REDIS_TLS_CA_FILE', async () => {
    await expectNotReadyWith(
      tlsEnv({ IDEMPOTENCY_REDIS_URL: storeUrl(), IDEMPOTENCY_REDIS_TLS_CA_FILE: otherCa.certPath }),
      'tls',
      'IDEMPOTENCY_REDIS_TLS_CA_FILE',
      /^TLS: .*not signed by a trusted CA/,
    );
  });

  test('no client certificate where the server requires one: TLS, naming IDEMPOTENCY_REDIS_TLS_CERT_FILE', async () => {
    await expectNotReadyWith(
      { IDEMPOTENCY_REDIS_URL: storeUrl(), IDEMPOTENCY_REDIS_TLS_CA_FILE: ca.certPath, IDEMPOTENCY_STORE_TIMEOUT: '1s' },
      'tls',
      'IDEMPOTENCY_REDIS_TLS_CERT_FILE',
      /^TLS: .*refused the client certificate/,
    );
  });

  test('a client certificate from a CA the server does not trust: TLS, naming IDEMPOTENCY_REDIS_TLS_CERT_FILE', async () => {
    const stranger = issueClientCertificate(otherCa, dir, 'stranger');
    await expectNotReadyWith(
      tlsEnv({ IDEMPOTENCY_REDIS_URL: storeUrl(), IDEMPOTENCY_REDIS_TLS_CERT_FILE: stranger.certPath, IDEMPOTENCY_REDIS_TLS_KEY_FILE: stranger.keyPath }),
      'tls',
      'IDEMPOTENCY_REDIS_TLS_CERT_FILE',
      /^TLS: .*refused the client certificate/,
    );
  });

  test('a wrong password: WRONGPASS, naming IDEMPOTENCY_REDIS_URL, and the password is never logged', async () => {
    const sidecar = await expectNotReadyWith(
      tlsEnv({ IDEMPOTENCY_REDIS_URL: storeUrl('not-the-password') }),
      'auth',
      'IDEMPOTENCY_REDIS_URL',
      /^ACL: .*WRONGPASS/,
    );
    expect(sidecar.output()).not.toContain('not-the-password');
  });

  test('with storeUnavailable=passthrough a TLS failure lets requests through unguarded', async () => {
    const sidecar = await sidecarWith(
      tlsEnv({ IDEMPOTENCY_REDIS_URL: storeUrl(), IDEMPOTENCY_REDIS_TLS_CA_FILE: otherCa.certPath, IDEMPOTENCY_STORE_UNAVAILABLE: 'passthrough' }),
    );
    const key = freshKey('tls-pass');
    expect((await send(sidecar.url, '/payments', { key, body: '{}' })).status).toBe(201);
    expect(upstream.countKey(key)).toBe(1);
    expect(await readiness(sidecar)).toBe(503);
  });
});

describe('TLS files are read once at start', () => {
  async function startFails(env: Record<string, string>): Promise<string> {
    const failed = startSidecar({ upstream: upstream.url, env: { IDEMPOTENCY_REDIS_URL: storeUrl(), ...env } });
    await expect(failed).rejects.toThrow(/exited with 2/);
    return ((await failed.catch((error: unknown) => error)) as Error).message;
  }

  test('a CA file that is not PEM stops the start with exit 2 and one line naming the setting', async () => {
    const notPem = path.join(dir, 'not-a-ca.crt');
    fs.writeFileSync(notPem, 'this is not a certificate\n');
    const output = await startFails(tlsEnv({ IDEMPOTENCY_REDIS_TLS_CA_FILE: notPem }));
    const lines = output.split('\n').filter((line) => line.startsWith('idempotency-sidecar: '));
    expect(lines).toEqual([expect.stringMatching(/^idempotency-sidecar: IDEMPOTENCY_REDIS_TLS_CA_FILE: ".*not-a-ca.crt" holds no PEM certificate/)]);
  });

  test('a damaged certificate, and a key of another certificate, are each named', async () => {
    const damaged = path.join(dir, 'damaged.crt');
    fs.writeFileSync(damaged, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const output = await startFails(tlsEnv({ IDEMPOTENCY_REDIS_TLS_CERT_FILE: damaged }));
    expect(output).toMatch(/^idempotency-sidecar: IDEMPOTENCY_REDIS_TLS_CERT_FILE: .* cannot be parsed/m);
    const mismatched = await startFails(tlsEnv({ IDEMPOTENCY_REDIS_TLS_KEY_FILE: server.keyPath }));
    expect(mismatched).toMatch(/^idempotency-sidecar: IDEMPOTENCY_REDIS_TLS_KEY_FILE and IDEMPOTENCY_REDIS_TLS_CERT_FILE: .* is not the key of that certificate/m);
  });
});

describe('a Redis Cluster over mutual TLS, as the ACL user of IDEMPOTENCY_REDIS_USERNAME/PASSWORD', () => {
  let cluster: RedisHandle;

  beforeAll(async () => {
    const rule = `${documentedRule('idempotency-store', STORE_PASSWORD)} ${documentedClusterAddition()}`;
    cluster = await startRedis({ cluster: true, tls: { certFile: server.certPath, keyFile: server.keyPath, caFile: ca.certPath }, users: [rule] });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test('a first request executes, its retry replays, a reused key gets 422', async () => {
    const sidecar = await sidecarWith(
      tlsEnv({
        IDEMPOTENCY_REDIS_CLUSTER_NODES: `127.0.0.1:${cluster.tlsPort ?? 0}`,
        IDEMPOTENCY_REDIS_TLS: 'true',
        IDEMPOTENCY_REDIS_USERNAME: 'idempotency-store',
        IDEMPOTENCY_REDIS_PASSWORD: STORE_PASSWORD,
      }),
    );
    await untilReady(sidecar, 200);
    const key = freshKey('tls-cluster');
    expect((await send(sidecar.url, '/payments', { key, body: '{"n":1}' })).status).toBe(201);
    expect((await send(sidecar.url, '/payments', { key, body: '{"n":1}' })).header('idempotent-replayed')).toBe('true');
    expect((await send(sidecar.url, '/payments', { key, body: '{"n":2}' })).status).toBe(422);
    expect(upstream.countKey(key)).toBe(1);
    expectNoPermissionProblems(sidecar);
    expect(await sidecar.stop()).toBe(0);
  });

  test('a wrong password: WRONGPASS, naming IDEMPOTENCY_REDIS_PASSWORD, and not ready', async () => {
    const sidecar = await sidecarWith(
      tlsEnv({
        IDEMPOTENCY_REDIS_CLUSTER_NODES: `127.0.0.1:${cluster.tlsPort ?? 0}`,
        IDEMPOTENCY_REDIS_TLS: 'true',
        IDEMPOTENCY_REDIS_USERNAME: 'idempotency-store',
        IDEMPOTENCY_REDIS_PASSWORD: 'not-the-cluster-password',
      }),
    );
    expect(await readiness(sidecar)).toBe(503);
    const lines = await diagnosisAfterRetries(sidecar);
    // The Cluster's seed and node connections fail in turn: each problem is still said once.
    const wrongPass = lines.filter((line) => /WRONGPASS/.test(String(line['msg'])));
    expect(wrongPass).toHaveLength(1);
    expect(wrongPass[0]?.['settings']).toEqual(['IDEMPOTENCY_REDIS_USERNAME', 'IDEMPOTENCY_REDIS_PASSWORD']);
    expect(new Set(lines.map((line) => line['msg'])).size).toBe(lines.length);
    expect(sidecar.output()).not.toContain('not-the-cluster-password');
    expect(await sidecar.stop()).toBe(0);
  });
});

/** What config/example.yaml says a Cluster user needs on top of the store's rule. */
function documentedClusterAddition(): string {
  const example = fs.readFileSync(path.join(__dirname, '..', '..', 'config', 'example.yaml'), 'utf8');
  const addition = /On a Redis Cluster, add ((?:\+\S+ ?)+)/.exec(example)?.[1]?.trim();
  if (addition === undefined) throw new Error('config/example.yaml documents no Cluster addition to the store rule');
  return addition;
}
