/**
 * Tenant scoping, for each source the sidecar can take the tenant from: the Authorization header
 * (the default), a custom header, and a verified client certificate on the HTTPS listener. The
 * sidecar runs as its own process on a real Redis, in front of a counting upstream.
 *
 * What every source must show: a key guessed from (or shared with) another tenant is a fresh key
 * there. It executes once per tenant, each tenant's retry replays its own response, and nothing
 * the other tenant gets (status, headers, body, a 409 or a 422) differs from what a never-used key
 * would give. Only the admin API, behind its token, sees both records.
 */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import { Agent } from 'undici';
import { freshKey, send, type Reply, type SendOptions } from '../helpers/client';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startRedis, type RedisHandle } from '../helpers/redis-server';
import { runSidecarCommand, startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  type CertificateAuthority,
  type ServerCertificate,
} from '../helpers/tls-certificates';
import { waitFor } from '../helpers/wait';

jest.setTimeout(120_000);

const ADMIN_TOKEN = 'tenant-scope-admin-token-0123456789';
const PROBLEM = 'urn:idempotency-sidecar:problem:';

/** How a request presents itself as one tenant. */
type Identity = Pick<SendOptions, 'headers' | 'dispatcher'>;

interface Source {
  readonly sidecar: SidecarProcess;
  readonly alice: Identity;
  readonly bob: Identity;
  /** Alice again, on a different connection (and for certificates, a renewed certificate). */
  readonly aliceAgain: Identity;
  /** Raw identity text that must never reach the logs or Redis. */
  readonly secrets: readonly string[];
}

let redis: RedisHandle;
let upstream: PaymentUpstream;
let workDir: string;
const agents: Agent[] = [];
const sidecars: SidecarProcess[] = [];

beforeAll(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenant-scope-'));
  [redis, upstream] = await Promise.all([startRedis(), startPaymentUpstream()]);
});

afterAll(async () => {
  await Promise.all(agents.map((agent) => agent.close()));
  for (const sidecar of sidecars) expect(await sidecar.stop()).toBe(0);
  await upstream?.stop();
  await redis?.stop();
  fs.rmSync(workDir, { recursive: true, force: true });
});

async function sidecarWith(env: Record<string, string>): Promise<SidecarProcess> {
  const sidecar = await startSidecar({
    upstream: upstream.url,
    env: { IDEMPOTENCY_REDIS_URL: redis.url, IDEMPOTENCY_ADMIN_TOKEN: ADMIN_TOKEN, ...env },
  });
  sidecars.push(sidecar);
  return sidecar;
}

function payment(source: Source, who: Identity, key: string, body: string, target = '/payments'): Promise<Reply> {
  return send(source.sidecar.url, target, { key, body, ...who });
}

function expectProblem(reply: Reply, status: number, code: string): void {
  expect(reply.status).toBe(status);
  expect(reply.header('content-type')).toBe('application/problem+json');
  expect(reply.json()['type']).toBe(PROBLEM + code);
}

async function adminRecords(sidecar: SidecarProcess, key: string, token?: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${sidecar.adminUrl}/keys/${encodeURIComponent(key)}`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: response.status, body: await response.json() };
}

/** Every key name and value in the store Redis, as one text to search. */
async function redisContents(): Promise<string> {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  try {
    const parts: string[] = [];
    for (const name of await client.keys('*')) {
      parts.push(name);
      const type = await client.type(name);
      if (type === 'hash') parts.push(JSON.stringify(await client.hgetall(name)));
      else if (type === 'zset') parts.push(JSON.stringify(await client.zrange(name, 0, -1)));
      else if (type === 'string') parts.push((await client.get(name)) ?? '');
    }
    return parts.join('\n');
  } finally {
    client.disconnect();
  }
}

/** Header names of a response, without the ones that legitimately vary between two responses. */
function headerNames(reply: Reply): string[] {
  return Object.keys(reply.headers)
    .filter((name) => name !== 'date')
    .sort();
}

/** The tests every tenant source must pass. `setup` runs in beforeAll. */
function tenantScopeSuite(setup: () => Promise<Source>): void {
  let source: Source;
  beforeAll(async () => {
    source = await setup();
  });

  test('two tenants using one key with different bodies both execute once, and each retry replays its own response', async () => {
    const key = freshKey('shared');
    const before = upstream.countKey(key);
    const aliceFirst = await payment(source, source.alice, key, '{"amount":100}');
    const bobFirst = await payment(source, source.bob, key, '{"amount":999}');
    expect(aliceFirst.status).toBe(201);
    expect(bobFirst.status).toBe(201);
    expect(upstream.countKey(key) - before).toBe(2);
    // Bob's first use of Alice's key is a first request: nothing marks it as anything else.
    expect(bobFirst.header('idempotent-replayed')).toBeUndefined();
    expect(bobFirst.json()['amount']).toBe(999);
    expect(bobFirst.header('x-payment-id')).not.toBe(aliceFirst.header('x-payment-id'));

    const aliceRetry = await payment(source, source.alice, key, '{"amount":100}');
    const bobRetry = await payment(source, source.bob, key, '{"amount":999}');
    expect(aliceRetry.status).toBe(201);
    expect(aliceRetry.header('idempotent-replayed')).toBe('true');
    expect(aliceRetry.body.equals(aliceFirst.body)).toBe(true);
    expect(bobRetry.status).toBe(201);
    expect(bobRetry.header('idempotent-replayed')).toBe('true');
    expect(bobRetry.body.equals(bobFirst.body)).toBe(true);
    expect(upstream.countKey(key) - before).toBe(2);
  });

  test('the same tenant reusing its key with another body gets 422, and is not forwarded', async () => {
    const key = freshKey('reuse');
    expect((await payment(source, source.alice, key, '{"amount":1}')).status).toBe(201);
    expectProblem(await payment(source, source.alice, key, '{"amount":2}'), 422, 'key-reused');
    // The other tenant's same key with that other body is still its own first request.
    expect((await payment(source, source.bob, key, '{"amount":2}')).status).toBe(201);
    expect(upstream.countKey(key)).toBe(2);
  });

  test('the tenant is the identity, not the connection: the same tenant on a new connection replays', async () => {
    const key = freshKey('again');
    const first = await payment(source, source.alice, key, '{"amount":5}');
    const again = await payment(source, source.aliceAgain, key, '{"amount":5}');
    expect(again.status).toBe(201);
    expect(again.header('idempotent-replayed')).toBe('true');
    expect(again.body.equals(first.body)).toBe(true);
    expect(upstream.countKey(key)).toBe(1);
  });

  test("a key another tenant holds in flight neither makes this tenant wait nor answers 409", async () => {
    const key = freshKey('inflight');
    const aliceSlow = payment(source, source.alice, key, '{"amount":7}', '/slow?ms=1500');
    // Until the upstream has Alice's request, her key is claimed.
    await waitFor(() => upstream.countKey(key) > 0, { intervalMs: 20, what: "Alice's request at the upstream" });
    const bob = await payment(source, source.bob, key, '{"amount":7}', '/slow?ms=1500');
    expect(bob.status).toBe(201);
    expect(bob.header('idempotent-replayed')).toBeUndefined();
    expect((await aliceSlow).status).toBe(201);
    expect(upstream.countKey(key)).toBe(2);
  });

  test("a guessed key answers exactly as a never-used key does: same status, same headers", async () => {
    const taken = freshKey('taken');
    const unused = freshKey('unused');
    expect((await payment(source, source.alice, taken, '{"amount":3}')).status).toBe(201);
    const guessed = await payment(source, source.bob, taken, '{"amount":3}');
    const fresh = await payment(source, source.bob, unused, '{"amount":3}');
    expect(guessed.status).toBe(fresh.status);
    expect(headerNames(guessed)).toEqual(headerNames(fresh));
    expect(Object.keys(guessed.json()).sort()).toEqual(Object.keys(fresh.json()).sort());
  });

  test('only the admin API, behind its token, shows both records; the tenant ids are the ones the logs show', async () => {
    const key = freshKey('admin');
    await payment(source, source.alice, key, '{"amount":11}');
    await payment(source, source.bob, key, '{"amount":12}');

    expect((await adminRecords(source.sidecar, key)).status).toBe(401);
    expect((await adminRecords(source.sidecar, key, 'not-the-admin-token-0123456789')).status).toBe(401);
    const listed = await adminRecords(source.sidecar, key, ADMIN_TOKEN);
    expect(listed.status).toBe(200);
    const records = listed.body as { tenant: string; state: string; status: number }[];
    expect(records).toHaveLength(2);
    expect(records.map((r) => [r.state, r.status])).toEqual([
      ['completed', 201],
      ['completed', 201],
    ]);
    const tenants = records.map((r) => r.tenant);
    expect(new Set(tenants).size).toBe(2);
    for (const tenant of tenants) expect(tenant).toMatch(/^[0-9a-f]{16}$/);

    // Each request line carries its tenant's id; no line carries the identity itself.
    const logged = new Set(source.sidecar.logs().filter((line) => line['msg'] === 'request' && line['outcome'] === 'executed').map((line) => line['tenant']));
    for (const tenant of tenants) expect(logged).toContain(tenant);
  });

  test('the raw identity reaches neither the logs nor the store', async () => {
    const output = source.sidecar.output();
    const stored = await redisContents();
    expect(stored.length).toBeGreaterThan(0);
    for (const secret of source.secrets) {
      expect(output).not.toContain(secret);
      expect(stored).not.toContain(secret);
    }
  });
}

describe('tenant from the Authorization header (the default)', () => {
  tenantScopeSuite(async () => {
    const sidecar = await sidecarWith({});
    return {
      sidecar,
      alice: { headers: { authorization: 'Bearer alice-secret-token-4f1c' } },
      bob: { headers: { authorization: 'Bearer bob-secret-token-9a2e' } },
      aliceAgain: { headers: { authorization: 'Bearer alice-secret-token-4f1c' } },
      secrets: ['alice-secret-token-4f1c', 'bob-secret-token-9a2e'],
    };
  });
});

describe('tenant from a custom header (X-Tenant-Id)', () => {
  tenantScopeSuite(async () => {
    const sidecar = await sidecarWith({ IDEMPOTENCY_TENANT_HEADERS: 'X-Tenant-Id' });
    return {
      sidecar,
      // Authorization is not a tenant header here: it differs, and Alice is still Alice.
      alice: { headers: { 'x-tenant-id': 'tenant-alice-7c3d', authorization: 'Bearer one' } },
      bob: { headers: { 'x-tenant-id': 'tenant-bob-1b8f', authorization: 'Bearer one' } },
      aliceAgain: { headers: { 'x-tenant-id': 'tenant-alice-7c3d', authorization: 'Bearer two' } },
      secrets: ['tenant-alice-7c3d', 'tenant-bob-1b8f'],
    };
  });
});

describe('tenant from the client certificate, on the HTTPS listener', () => {
  let serverCa: CertificateAuthority;
  let clientCaA: CertificateAuthority;
  let clientCaB: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let tlsDir: string;
  let certDir: string;
  let sidecar: SidecarProcess;
  let alice: ServerCertificate;

  /** A client with its own connection pool, trusting the server CA, with or without a certificate. */
  function clientAgent(certificate?: ServerCertificate): Agent {
    const agent = new Agent({
      connect: { ca: serverCa.cert, ...(certificate === undefined ? {} : { cert: certificate.cert, key: certificate.key }) },
    });
    agents.push(agent);
    return agent;
  }

  function writeCaBundle(cas: readonly CertificateAuthority[]): void {
    fs.writeFileSync(path.join(tlsDir, 'ca.crt'), Buffer.concat(cas.map((ca) => ca.cert)));
  }

  function installServerCertificate(certificate: ServerCertificate): void {
    fs.copyFileSync(certificate.certPath, path.join(tlsDir, 'tls.crt'));
    fs.copyFileSync(certificate.keyPath, path.join(tlsDir, 'tls.key'));
  }

  /** The serial number of the certificate the listener presents to a new connection. */
  function servedSerial(client: ServerCertificate): Promise<string> {
    const url = new URL(sidecar.url);
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: serverCa.cert, cert: client.cert, key: client.key }, () => {
        const serial = socket.getPeerX509Certificate()?.serialNumber ?? '';
        socket.end();
        resolve(serial);
      });
      socket.on('error', reject);
    });
  }

  tenantScopeSuite(async () => {
    const dir = path.join(workDir, 'mtls');
    certDir = path.join(dir, 'issued');
    tlsDir = path.join(dir, 'mounted');
    fs.mkdirSync(tlsDir, { recursive: true });
    serverCa = createCertificateAuthority(dir, 'server-ca');
    clientCaA = createCertificateAuthority(dir, 'client-ca-a');
    clientCaB = createCertificateAuthority(dir, 'client-ca-b');
    otherCa = createCertificateAuthority(dir, 'untrusted-ca');
    installServerCertificate(issueServerCertificate(serverCa, certDir, 'listener-1'));
    writeCaBundle([clientCaA, clientCaB]);

    alice = issueClientCertificate(clientCaA, certDir, 'alice', '/O=acme/CN=alice-billing-5e7a');
    const bob = issueClientCertificate(clientCaA, certDir, 'bob', '/O=acme/CN=bob-billing-3d9c');
    // A renewal: a new key and serial number, the same subject and issuer.
    const aliceRenewed = issueClientCertificate(clientCaA, certDir, 'alice-renewed', '/O=acme/CN=alice-billing-5e7a');

    sidecar = await sidecarWith({
      IDEMPOTENCY_TLS_CERT_FILE: path.join(tlsDir, 'tls.crt'),
      IDEMPOTENCY_TLS_KEY_FILE: path.join(tlsDir, 'tls.key'),
      IDEMPOTENCY_TLS_CLIENT_CA_FILE: path.join(tlsDir, 'ca.crt'),
      IDEMPOTENCY_TENANT_FROM: 'client-certificate',
    });
    expect(sidecar.url.startsWith('https://')).toBe(true);
    return {
      sidecar,
      // Both present the same Authorization: with certificate tenants it plays no part.
      alice: { dispatcher: clientAgent(alice), headers: { authorization: 'Bearer shared' } },
      bob: { dispatcher: clientAgent(bob), headers: { authorization: 'Bearer shared' } },
      aliceAgain: { dispatcher: clientAgent(aliceRenewed), headers: { authorization: 'Bearer shared' } },
      secrets: ['alice-billing-5e7a', 'bob-billing-3d9c'],
    };
  });

  test('the same subject from another trusted CA is another tenant', async () => {
    const impostor = issueClientCertificate(clientCaB, certDir, 'alice-from-b', '/O=acme/CN=alice-billing-5e7a');
    const key = freshKey('issuer');
    const original = await send(sidecar.url, '/payments', { key, body: '{"amount":40}', dispatcher: clientAgent(alice) });
    const other = await send(sidecar.url, '/payments', { key, body: '{"amount":41}', dispatcher: clientAgent(impostor) });
    expect(original.status).toBe(201);
    expect(other.status).toBe(201);
    expect(other.header('idempotent-replayed')).toBeUndefined();
    expect(other.json()['amount']).toBe(41);
    expect(upstream.countKey(key)).toBe(2);
  });

  test.each([
    ['no certificate', (): ServerCertificate | undefined => undefined],
    ['a certificate from a CA the listener does not trust', (): ServerCertificate | undefined =>
      issueClientCertificate(otherCa, certDir, 'stranger', '/O=acme/CN=alice-billing-5e7a')],
  ])('a client with %s is refused at the TLS handshake, and the upstream sees nothing', async (_label, certificate) => {
    const key = freshKey('refused');
    const executionsBefore = upstream.executions.length;
    const refusalsBefore = sidecar.logs().filter((line) => line['msg'] === 'TLS handshake refused on the proxy listener').length;
    await expect(send(sidecar.url, '/payments', { key, body: '{"amount":1}', dispatcher: clientAgent(certificate()) })).rejects.toThrow();
    // Unguarded traffic is refused just the same: the handshake comes before any request.
    await expect(send(sidecar.url, '/payments', { method: 'GET', dispatcher: clientAgent(certificate()) })).rejects.toThrow();
    expect(upstream.executions.length).toBe(executionsBefore);
    expect(upstream.countKey(key)).toBe(0);
    await waitFor(() => sidecar.logs().filter((line) => line['msg'] === 'TLS handshake refused on the proxy listener').length >= refusalsBefore + 2, { timeoutMs: 60_000, intervalMs: 200 });
  });

  test('an upgrade passes through the HTTPS listener as a tunnel', async () => {
    const url = new URL(sidecar.url);
    const echoed = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: serverCa.cert, cert: alice.cert, key: alice.key }, () => {
        socket.write('GET /socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
      });
      let received = '';
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
        if (received.includes('\r\n\r\n') && !received.includes('ping-over-tls')) socket.write('ping-over-tls');
        if (received.includes('ping-over-tls')) {
          socket.end();
          resolve(received);
        }
      });
      socket.on('error', reject);
    });
    expect(echoed.startsWith('HTTP/1.1 101')).toBe(true);
    expect(echoed).toContain('ping-over-tls');
  });

  // Last: it changes the files the listener serves.
  test('rotated certificate and CA files are picked up without a restart; a pair that does not load is refused', async () => {
    const firstSerial = await servedSerial(alice);

    // A half-written rotation (the new certificate, the old key) is refused; the old pair serves.
    const next = issueServerCertificate(serverCa, certDir, 'listener-2');
    fs.copyFileSync(next.certPath, path.join(tlsDir, 'tls.crt'));
    await waitFor(() => sidecar.logs().some((line) => line['msg'] === 'new TLS certificate or key refused; still serving the previous pair'), { timeoutMs: 60_000, intervalMs: 200 });
    expect(await servedSerial(alice)).toBe(firstSerial);

    // A CA bundle that now trusts the CA it refused before, then the rest of the rotation: the
    // set is inconsistent (and refused) until the key lands, so the first set served has both.
    writeCaBundle([clientCaA, clientCaB, otherCa]);
    fs.copyFileSync(next.keyPath, path.join(tlsDir, 'tls.key'));
    const nextSerial = new X509Certificate(next.cert).serialNumber;
    await waitFor(async () => (await servedSerial(alice)) === nextSerial, { timeoutMs: 60_000, intervalMs: 200 });

    const newcomer = issueClientCertificate(otherCa, certDir, 'newcomer', '/O=acme/CN=newcomer-8b21');
    const key = freshKey('rotated');
    const reply = await send(sidecar.url, '/payments', { key, body: '{"amount":9}', dispatcher: clientAgent(newcomer) });
    expect(reply.status).toBe(201);
    expect(upstream.countKey(key)).toBe(1);
    // The sidecar kept running the whole time: the same process answers.
    expect(sidecar.process.exitCode).toBeNull();
  });
});

describe('listener TLS files that do not load', () => {
  let dir: string;
  let good: ServerCertificate;
  let otherKey: string;
  let ca: CertificateAuthority;

  beforeAll(() => {
    dir = path.join(workDir, 'bad-files');
    ca = createCertificateAuthority(dir, 'ca');
    good = issueServerCertificate(ca, dir, 'listener');
    otherKey = issueServerCertificate(ca, dir, 'other').keyPath;
    fs.writeFileSync(path.join(dir, 'not-pem.txt'), 'this is not a certificate\n');
  });

  test.each([
    ['a certificate file that is not PEM', (): Record<string, string> => ({ IDEMPOTENCY_TLS_CERT_FILE: path.join(dir, 'not-pem.txt') }), /^idempotency-sidecar: IDEMPOTENCY_TLS_CERT_FILE: ".*not-pem\.txt" is not a PEM certificate/],
    ['a key that belongs to another certificate', (): Record<string, string> => ({ IDEMPOTENCY_TLS_KEY_FILE: otherKey }), /^idempotency-sidecar: IDEMPOTENCY_TLS_CERT_FILE and IDEMPOTENCY_TLS_KEY_FILE: the key does not belong to the certificate/],
    ['a client CA bundle with no certificate in it', (): Record<string, string> => ({ IDEMPOTENCY_TLS_CLIENT_CA_FILE: path.join(dir, 'not-pem.txt') }), /^idempotency-sidecar: IDEMPOTENCY_TLS_CLIENT_CA_FILE: ".*not-pem\.txt" holds no PEM certificate/],
  ])('%s stops the start: exit 2, one line naming the setting', async (_label, override, expected) => {
    const result = await runSidecarCommand([], {
      IDEMPOTENCY_UPSTREAM: upstream.url,
      IDEMPOTENCY_PORT: '0',
      IDEMPOTENCY_ADMIN_PORT: '0',
      IDEMPOTENCY_HOST: '127.0.0.1',
      IDEMPOTENCY_TLS_CERT_FILE: good.certPath,
      IDEMPOTENCY_TLS_KEY_FILE: good.keyPath,
      IDEMPOTENCY_TLS_CLIENT_CA_FILE: ca.certPath,
      ...override(),
    });
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(expected);
  });
});

/** Polls until `condition` holds; the files are re-read every 10 s, so allow several rounds. */
