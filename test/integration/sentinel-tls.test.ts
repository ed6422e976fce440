/**
 * The sidecar, as its own process, on a master managed by Redis Sentinel where every link is
 * mutual TLS with a CA of our own: the Sentinels, the master and its replicas (which replicate over
 * TLS), logged in to the data nodes as the ACL user config/example.yaml documents
 * (IDEMPOTENCY_REDIS_USERNAME/PASSWORD). A first request executes once, its retry replays, a
 * reused key gets 422; after the master is SIGKILLed and a replica promoted, a new key executes
 * and an old one still replays.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freshKey, send, sleep, type Reply } from '../helpers/client';
import { redisCli } from '../helpers/redis-cluster';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startRedisSentinel, type RedisSentinelHandle } from '../helpers/redis-sentinel';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import { createCertificateAuthority, issueClientCertificate, issueServerCertificate, type ServerCertificate, type CertificateAuthority } from '../helpers/tls-certificates';

jest.setTimeout(120_000);

const PROBLEM = 'urn:idempotency-sidecar:problem:';
const STORE_PASSWORD = 'sentinel-store-secret-7d1e';

/** The store's `user` line of config/example.yaml, so that the documented rule is the one tested. */
function documentedStoreRule(): string {
  const example = fs.readFileSync(path.join(__dirname, '..', '..', 'config', 'example.yaml'), 'utf8');
  const line = /^#\s+user idempotency-store (.+)$/m.exec(example)?.[1];
  if (line === undefined) throw new Error('config/example.yaml documents no ACL rule for idempotency-store');
  expect(line).toContain('>STORE-PASSWORD');
  return `idempotency-store ${line.replace('>STORE-PASSWORD', `>${STORE_PASSWORD}`)}`;
}

let dir: string | undefined;
let ca: CertificateAuthority;
let client: ServerCertificate;
let upstream: PaymentUpstream | undefined;
let set: RedisSentinelHandle | undefined;
let sidecar: SidecarProcess | undefined;

function running<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} did not start`);
  return value;
}

async function readiness(target: SidecarProcess): Promise<number> {
  return (await send(target.adminUrl, '/readyz', { method: 'GET' })).status;
}

/** Sends until the answer is not 503 (the store still reconnecting): the first other answer. */
async function sendPastOutage(target: SidecarProcess, key: string, body: string): Promise<Reply> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const reply = await send(target.url, '/payments', { key, body });
    if (reply.status !== 503 || Date.now() > deadline) return reply;
    await sleep(200);
  }
}

/**
 * The sidecar's store connections on a data node (CLIENT SETNAME store, read as the default user
 * on the plain port), each with its ACL user: the default user would pass every test above it.
 */
async function storeConnectionUsers(port: number): Promise<string[]> {
  const list = await redisCli(port, 'CLIENT', 'LIST');
  return list
    .split('\n')
    .filter((line) => / name=store /.test(line))
    .map((line) => / user=(\S+)/.exec(line)?.[1] ?? '');
}

function expectNoStoreProblems(target: SidecarProcess): void {
  expect(target.output()).not.toMatch(/NOPERM|no permissions|WRONGPASS|Skipping the ready check/);
  const diagnoses = target.logs().filter((line) => typeof line['problem'] === 'string' && typeof line['connection'] === 'string');
  expect(diagnoses).toEqual([]);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idem-sentinel-tls-'));
  ca = createCertificateAuthority(dir, 'redis-ca');
  const server = issueServerCertificate(ca, dir, 'redis-server');
  // What the nodes and Sentinels present to each other on their own outgoing TLS links.
  const peer = issueClientCertificate(ca, dir, 'redis-peer');
  client = issueClientCertificate(ca, dir, 'sidecar-client');
  upstream = await startPaymentUpstream();
  set = await startRedisSentinel({
    tls: { certFile: server.certPath, keyFile: server.keyPath, caFile: ca.certPath, clientCertFile: peer.certPath, clientKeyFile: peer.keyPath },
    users: [documentedStoreRule()],
  });
  sidecar = await startSidecar({
    upstream: upstream.url,
    env: {
      IDEMPOTENCY_REDIS_SENTINELS: set.sentinelList,
      IDEMPOTENCY_REDIS_SENTINEL_MASTER: set.masterName,
      IDEMPOTENCY_REDIS_TLS: 'true',
      IDEMPOTENCY_REDIS_TLS_CA_FILE: ca.certPath,
      IDEMPOTENCY_REDIS_TLS_CERT_FILE: client.certPath,
      IDEMPOTENCY_REDIS_TLS_KEY_FILE: client.keyPath,
      IDEMPOTENCY_REDIS_USERNAME: 'idempotency-store',
      IDEMPOTENCY_REDIS_PASSWORD: STORE_PASSWORD,
      IDEMPOTENCY_STORE_TIMEOUT: '1s',
    },
  });
  const deadline = Date.now() + 30_000;
  while ((await readiness(sidecar)) !== 200) {
    if (Date.now() > deadline) throw new Error(`the sidecar never became ready:\n${sidecar.output()}`);
    await sleep(100);
  }
});

afterAll(async () => {
  if (sidecar !== undefined && sidecar.process.exitCode === null) await sidecar.stop();
  await upstream?.stop();
  await set?.stop();
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

describe('a Sentinel-managed master, every link over mutual TLS, as the documented ACL user', () => {
  const firstKey = freshKey('sentinel-tls');
  let firstBody: Buffer | undefined;

  test('the set really runs over TLS: the Sentinels name TLS ports, and the replicas replicate on theirs', async () => {
    const current = running(set, 'the Sentinel set');
    const master = await current.master();
    const tlsPorts = current.dataNodes.map((n) => n.tlsPort);
    for (const sentinel of current.sentinels) {
      const named = await redisCli(sentinel.port, 'SENTINEL', 'get-master-addr-by-name', current.masterName);
      expect(Number(named.split('\n')[1])).toBe(master.tlsPort);
      // The other Sentinels, found by their hello messages: on their TLS ports.
      const others = await redisCli(sentinel.port, 'SENTINEL', 'sentinels', current.masterName);
      const otherPorts = [...others.matchAll(/^port\n(\d+)$/gm)].map((m) => Number(m[1]));
      expect(otherPorts).toHaveLength(2);
      for (const port of otherPorts) expect(current.sentinels.map((s) => s.tlsPort)).toContain(port);
    }
    const replication = await redisCli(master.port, 'INFO', 'replication');
    const replicaPorts = [...replication.matchAll(/^slave\d+:ip=[^,]+,port=(\d+),state=online/gm)].map((m) => Number(m[1]));
    expect(replicaPorts).toHaveLength(2);
    for (const port of replicaPorts) expect(tlsPorts).toContain(port);
    // The sidecar was given the Sentinels' TLS ports.
    expect(current.sentinelList).toBe(current.sentinels.map((s) => `127.0.0.1:${s.tlsPort ?? 0}`).join(','));
  });

  test('a first request executes, its retry replays, and the key reused with another body gets 422', async () => {
    const target = running(sidecar, 'the sidecar');
    const counting = running(upstream, 'the upstream');
    const first = await send(target.url, '/payments', { key: firstKey, body: '{"amount":100}' });
    expect(first.status).toBe(201);
    firstBody = first.body;
    const retry = await send(target.url, '/payments', { key: firstKey, body: '{"amount":100}' });
    expect(retry.status).toBe(201);
    expect(retry.header('idempotent-replayed')).toBe('true');
    expect(retry.body.equals(first.body)).toBe(true);
    const reused = await send(target.url, '/payments', { key: firstKey, body: '{"amount":999}' });
    expect(reused.status).toBe(422);
    expect(reused.json()['type']).toBe(`${PROBLEM}key-reused`);
    expect(counting.countKey(firstKey)).toBe(1);
    const users = await storeConnectionUsers((await running(set, 'the Sentinel set').master()).port);
    expect(users.length).toBeGreaterThan(0);
    expect(new Set(users)).toEqual(new Set(['idempotency-store']));
    expectNoStoreProblems(target);
  });

  test('after the master is SIGKILLed and a replica promoted, a new key executes and the old one still replays', async () => {
    const target = running(sidecar, 'the sidecar');
    const counting = running(upstream, 'the upstream');
    const current = running(set, 'the Sentinel set');
    expect(firstBody).toBeDefined();
    // Asynchronous replication: the record must be on the replicas before the master dies.
    await current.waitReplicated();
    const master = await current.master();
    await master.kill();
    const promoted = await current.waitForNewMaster(master.port);
    expect(promoted.port).not.toBe(master.port);

    const newKey = freshKey('sentinel-tls-after');
    const fresh = await sendPastOutage(target, newKey, '{"amount":7}');
    expect(fresh.status).toBe(201);
    expect(fresh.header('idempotent-replayed')).toBeUndefined();
    expect(counting.countKey(newKey)).toBe(1);
    // The new key's record is on the promoted master.
    expect(await redisCli(promoted.port, 'DBSIZE')).not.toBe('0');
    expect(new Set(await storeConnectionUsers(promoted.port))).toEqual(new Set(['idempotency-store']));

    const old = await sendPastOutage(target, firstKey, '{"amount":100}');
    expect(old.status).toBe(201);
    expect(old.header('idempotent-replayed')).toBe('true');
    expect(old.body.equals(firstBody as Buffer)).toBe(true);
    expect(counting.countKey(firstKey)).toBe(1);
    expect((await send(target.url, '/payments', { key: firstKey, body: '{"amount":999}' })).status).toBe(422);
    expect(await readiness(target)).toBe(200);
    expect(target.output()).not.toMatch(/NOPERM|WRONGPASS/);
  });
});
