/**
 * Request shapes that once skipped the guard or broke what it promises, each pinned as an attacker
 * sends it (raw sockets where an HTTP client would normalise the bytes), against the sidecar as
 * its own process on Redis, with a recording upstream:
 *  1. an upgrade offer on a keyed request, and a declined upgrade that stayed a tunnel;
 *  2. targets undici refuses to send, which became unknown outcomes;
 *  3. keyed requests without any tenant header, which shared one tenant;
 *  4. waiters whose clients had left, and no bound on waiters;
 *  5. no bound on guarded bodies held in memory;
 *  6. route rules sidestepped by spellings of the path;
 *  7. credentials of an absolute-form target in the logs;
 *  8. a second Connection header, an undecoded transfer coding, a key past 2,000 headers, and
 *     a lower-case `bearer` on the admin API.
 */
import net from 'node:net';
import { freshKey, send, TEST_CLIENT, type Reply } from '../helpers/client';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { rawExchange, type RawResponse } from '../helpers/raw-http';
import { startRedis, type RedisHandle } from '../helpers/redis-server';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import { waitFor } from '../helpers/wait';

const PROBLEM = 'urn:idempotency-sidecar:problem:';
const ADMIN_TOKEN = 'guard-bypass-admin-token-0123';
const MAX_BODY = 1_024;
const MAX_BODY_MEMORY = 4 * MAX_BODY;
const MAX_WAITERS = 3;

const ROUTES = `
routes:
  - path: /health/*
    guard: false
  - path: /v/wait/*
    concurrent: wait
  - path: /payments/*
    requireKey: true
  - path: /v/express/*
    requireKey: true
    caseInsensitive: true
  - path: /v/legacy/payments
    key: { from: body, pointer: /order_id }
    caseInsensitive: true
    trailingSlash: true
`;

let redis: RedisHandle;
let upstream: PaymentUpstream;
let sidecar: SidecarProcess;

beforeAll(async () => {
  // The upstream reads as many headers as the sidecar lets through (a key past 2,000 headers).
  [redis, upstream] = await Promise.all([startRedis(), startPaymentUpstream({ maxHeaderSize: 64 * 1_024 })]);
  sidecar = await startSidecar({
    upstream: upstream.url,
    configYaml: ROUTES,
    env: {
      IDEMPOTENCY_REDIS_URL: redis.url,
      IDEMPOTENCY_ADMIN_TOKEN: ADMIN_TOKEN,
      IDEMPOTENCY_MAX_BODY: String(MAX_BODY),
      IDEMPOTENCY_MAX_BODY_MEMORY: String(MAX_BODY_MEMORY),
      IDEMPOTENCY_MAX_WAITERS: String(MAX_WAITERS),
      IDEMPOTENCY_MAX_HEADER_SIZE: String(64 * 1_024),
      // Pass-through lines too: what is logged of any request must never hold a credential.
      IDEMPOTENCY_LOG_LEVEL: 'debug',
    },
  });
});

afterAll(async () => {
  expect(await sidecar?.stop()).toBe(0);
  await Promise.all([upstream?.stop(), redis?.stop()]);
});

function head(lines: readonly string[]): string {
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** A keyed POST, as raw bytes, from the test client. */
function keyedPost(target: string, key: string, body: string, extra: readonly string[] = []): string {
  return head([`POST ${target} HTTP/1.1`, 'Host: sidecar', `Authorization: ${TEST_CLIENT}`, `Idempotency-Key: ${key}`, `Content-Length: ${Buffer.byteLength(body)}`, ...extra]) + body;
}

function problemType(response: RawResponse | Reply | undefined): unknown {
  if (response === undefined) return undefined;
  const body = response.body.toString('utf8');
  return (JSON.parse(body) as { type?: unknown }).type;
}

function expectProblem(response: RawResponse | undefined, status: number, code: string): void {
  expect(response?.status).toBe(status);
  expect(response?.headers['content-type']).toBe('application/problem+json');
  expect(problemType(response)).toBe(PROBLEM + code);
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}

async function recordsOf(key: string): Promise<unknown[]> {
  const response = await fetch(`${sidecar.adminUrl}/keys/${encodeURIComponent(key)}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(response.status).toBe(200);
  return (await response.json()) as unknown[];
}

describe('1. upgrades', () => {
  test('a keyed POST offering h2c (curl --http2) is guarded: executed once, replayed, the offer never reaches the upstream', async () => {
    const key = freshKey('h2c');
    const offer = ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'];
    const first = await rawExchange(sidecar.url, [keyedPost('/payments/h2c', key, '{"amount":1}', offer)], { settle: { responses: 1, quietMs: 100 } });
    const second = await rawExchange(sidecar.url, [keyedPost('/payments/h2c', key, '{"amount":1}', offer)], { settle: { responses: 1, quietMs: 100 } });
    expect(first.responses.map((r) => r.status)).toEqual([201]);
    expect(second.responses.map((r) => [r.status, r.headers['idempotent-replayed']])).toEqual([[201, 'true']]);
    expect(upstream.countKey(key)).toBe(1);
    const forwarded = upstream.executions.find((e) => e.key === key);
    expect(forwarded?.headers['upgrade']).toBeUndefined();
    expect(forwarded?.headers['http2-settings']).toBeUndefined();
  });

  test('bytes pipelined behind an upgrade offer are never forwarded: the answer closes the connection', async () => {
    const key = freshKey('h2c-then');
    const behind = keyedPost('/payments/behind', freshKey('behind'), '{}') + head(['POST /payments/smuggled HTTP/1.1', 'Host: sidecar', 'Content-Length: 5', 'Transfer-Encoding: chunked']) + '0\r\n\r\n';
    const before = upstream.executions.length;
    const result = await rawExchange(sidecar.url, [keyedPost('/payments/h2c-then', key, '{}', ['Connection: Upgrade', 'Upgrade: h2c']) + behind]);
    expect(result.responses.map((r) => [r.status, r.headers['connection']])).toEqual([[201, 'close']]);
    expect(result.closed).toBe(true);
    expect(upstream.executions.slice(before).map((e) => e.route)).toEqual(['/payments/h2c-then']);
  });

  test('a keyless guarded POST offering an upgrade passes through as plain HTTP, the offer dropped', async () => {
    const path = `/payments-open/${freshKey('nokey-upgrade')}`;
    const result = await rawExchange(sidecar.url, [
      head([`POST ${path} HTTP/1.1`, 'Host: sidecar', 'Connection: Upgrade, close', 'Upgrade: h2c', 'Content-Length: 2']) + '{}',
    ]);
    expect(result.responses.map((r) => r.status)).toEqual([201]);
    expect(upstream.executions.find((e) => e.url === path)?.headers['upgrade']).toBeUndefined();
  });

  test('an upgrade the upstream declines ends as plain HTTP: the connection closes and nothing sent after it is forwarded', async () => {
    const key = freshKey('after-decline');
    const result = await rawExchange(sidecar.url, [
      head(['GET /decline HTTP/1.1', 'Host: sidecar', 'Connection: Upgrade', 'Upgrade: websocket']),
      keyedPost('/payments/after-decline', key, '{"amount":2}'),
      keyedPost('/payments/after-decline', key, '{"amount":2}'),
    ]);
    expect(result.responses[0]?.status).toBe(200);
    expect(result.responses[0]?.body.toString()).toBe('declined');
    expect(result.closed).toBe(true);
    expect(upstream.executions.filter((e) => e.route === '(after declined upgrade)')).toEqual([]);
    // Sent properly, the same payment executes once.
    const retried = await send(sidecar.url, '/payments/after-decline', { key, body: '{"amount":2}' });
    expect(retried.status).toBe(201);
    expect(upstream.countKey(key)).toBe(1);
  });
});

describe('2. requests that cannot be forwarded as they stand: 400 before any claim, never an unknown outcome', () => {
  test.each([
    ['two Host headers', (key: string) => head(['POST /payments/two-hosts HTTP/1.1', 'Host: a', 'Host: b', `Authorization: ${TEST_CLIENT}`, `Idempotency-Key: ${key}`, 'Content-Length: 2']) + '{}'],
    ['an asterisk target', (key: string) => keyedPost('*', key, '{}')],
    ['another scheme', (key: string) => keyedPost('ftp://a/payments/x', key, '{}')],
    ['credentials in the target', (key: string) => keyedPost('http://user:pw@a/payments/x', key, '{}')],
    ['an empty authority', (key: string) => keyedPost('http:///payments/x', key, '{}')],
  ])('%s', async (_name, build) => {
    const key = freshKey('unforwardable');
    const before = upstream.executions.length;
    const result = await rawExchange(sidecar.url, [build(key)]);
    expectProblem(result.responses[0], 400, 'bad-request');
    expect(upstream.executions.length).toBe(before);
    expect(await recordsOf(key)).toEqual([]);
    expect(sidecar.output()).not.toContain('"alert":"unknown_outcome"');
    // Nothing was claimed: the key sent properly executes at once.
    const proper = await send(sidecar.url, '/payments/x', { key, body: '{}' });
    expect([proper.status, proper.header('idempotent-replayed')]).toEqual([201, undefined]);
  });

  test('an absolute-form target in any case of scheme is the same request as its path: executed once, replayed', async () => {
    const key = freshKey('absolute');
    const absolute = await rawExchange(sidecar.url, [keyedPost('HTTP://api.example/payments/abs?x=1', key, '{"amount":3}')], { settle: { responses: 1, quietMs: 100 } });
    expect(absolute.responses.map((r) => r.status)).toEqual([201]);
    const retry = await send(sidecar.url, '/payments/abs?x=1', { key, body: '{"amount":3}' });
    expect([retry.status, retry.header('idempotent-replayed')]).toEqual([201, 'true']);
    expect(upstream.executions.filter((e) => e.key === key).map((e) => e.url)).toEqual(['/payments/abs?x=1']);
  });
});

describe('3. keyed requests without a tenant header', () => {
  test('get 400 tenant-missing and are not forwarded (IDEMPOTENCY_TENANT_MISSING=reject, the default)', async () => {
    const key = freshKey('no-tenant');
    const reply = await send(sidecar.url, '/payments/x', { key, body: '{}', tenant: null });
    expect(reply.status).toBe(400);
    expect(reply.json()['type']).toBe(`${PROBLEM}tenant-missing`);
    expect(reply.json()['detail']).toMatch(/authorization/);
    expect(upstream.countKey(key)).toBe(0);
  });

  test('two tenant-less clients never meet: neither a replay nor a 422 tells one of the other', async () => {
    const key = freshKey('shared-key');
    const first = await send(sidecar.url, '/payments/x', { key, body: '{"amount":1}', tenant: null });
    const second = await send(sidecar.url, '/payments/x', { key, body: '{"amount":2}', tenant: null });
    expect([first.status, second.status]).toEqual([400, 400]);
    expect(upstream.countKey(key)).toBe(0);
  });

  test('with IDEMPOTENCY_TENANT_MISSING=shared, such requests share one tenant, as the operator declared', async () => {
    const shared = await startSidecar({ upstream: upstream.url, env: { IDEMPOTENCY_TENANT_MISSING: 'shared' } });
    try {
      const key = freshKey('declared-shared');
      const first = await send(shared.url, '/payments/x', { key, body: '{}', tenant: null });
      const second = await send(shared.url, '/payments/x', { key, body: '{}', tenant: null });
      expect([first.status, second.status, second.header('idempotent-replayed')]).toEqual([201, 201, 'true']);
      expect(upstream.countKey(key)).toBe(1);
    } finally {
      expect(await shared.stop()).toBe(0);
    }
  });
});

describe('4. waiters', () => {
  test('stop with their client, are bounded, and are never counted as replayed', async () => {
    const key = freshKey('waiters');
    const body = '{"amount":4}';
    const replayedBefore = await counter('idempotency_requests_total{outcome="replayed"}');
    const goneBefore = await counter('idempotency_requests_total{outcome="client_gone"}');
    const shedBefore = await counter('idempotency_shed_total{reason="waiters"}');
    let ownerDone = false;
    const owner = send(sidecar.url, '/v/wait/slow?ms=8000', { key, body }).finally(() => {
      ownerDone = true;
    });
    await waitFor(() => upstream.countKey(key) === 1, { what: 'the first request reaching the upstream' });

    // As many duplicates as may wait, each on a connection of its own that stays open.
    const waiters = Array.from({ length: MAX_WAITERS }, () => net.connect(Number(new URL(sidecar.url).port), '127.0.0.1'));
    for (const socket of waiters) {
      socket.on('error', () => undefined);
      socket.write(keyedPost('/v/wait/slow?ms=8000', key, body));
    }
    await waitFor(async () => (await metric('idempotency_guarded_in_flight')) === 1 + MAX_WAITERS, { what: 'the duplicates waiting' });

    // One more is not kept waiting.
    const overflow = await send(sidecar.url, '/v/wait/slow?ms=8000', { key, body });
    expect(overflow.status).toBe(409);
    expect(overflow.json()['type']).toBe(`${PROBLEM}request-in-flight`);
    expect(Number(overflow.header('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(ownerDone).toBe(false);
    expect(await counter('idempotency_shed_total{reason="waiters"}')).toBe(shedBefore + 1);

    // Their clients leave: they stop waiting while the first request is still in flight.
    for (const socket of waiters) socket.destroy();
    await waitFor(async () => (await metric('idempotency_guarded_in_flight')) === 1, { what: 'the waiters stopping' });
    expect(ownerDone).toBe(false);

    expect((await owner).status).toBe(201);
    expect(await counter('idempotency_requests_total{outcome="client_gone"}')).toBe(goneBefore + MAX_WAITERS);
    expect(await counter('idempotency_requests_total{outcome="replayed"}')).toBe(replayedBefore);
    expect(upstream.countKey(key)).toBe(1);
  }, 30_000);
});

describe('5. guarded bodies held in memory', () => {
  test('past IDEMPOTENCY_MAX_BODY_MEMORY a guarded request gets 503 overloaded, unread; the room comes back', async () => {
    const shedBefore = await counter('idempotency_shed_total{reason="body_memory"}');
    const port = Number(new URL(sidecar.url).port);
    // Clients that announce a body of the largest size and send only its first bytes.
    const slow = Array.from({ length: MAX_BODY_MEMORY / MAX_BODY }, () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write(head(['POST /payments/slow-body HTTP/1.1', 'Host: sidecar', `Authorization: ${TEST_CLIENT}`, `Idempotency-Key: ${freshKey('held')}`, `Content-Length: ${MAX_BODY}`]) + '{"amount":');
      return socket;
    });
    try {
      await waitFor(async () => (await metric('idempotency_body_memory_bytes')) === MAX_BODY_MEMORY, { what: 'the slow bodies held' });
      const key = freshKey('no-room');
      const refused = await rawExchange(sidecar.url, [keyedPost('/payments/no-room', key, '{"amount":5}')]);
      expectProblem(refused.responses[0], 503, 'overloaded');
      expect(Number(refused.responses[0]?.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(refused.closed).toBe(true);
      expect(upstream.countKey(key)).toBe(0);
      expect(await counter('idempotency_shed_total{reason="body_memory"}')).toBe(shedBefore + 1);
    } finally {
      for (const socket of slow) socket.destroy();
    }
    await waitFor(async () => (await metric('idempotency_body_memory_bytes')) === 0, { what: 'the bodies given back' });
    const key = freshKey('room-again');
    expect((await send(sidecar.url, '/payments/room', { key, body: '{}' })).status).toBe(201);
  });
});

describe('6. route rules and the spellings of a path', () => {
  test.each(['/payments;x=1', '/payments;x=1/charge'])('%s is /payments with a parameter: the requireKey rule applies (400)', async (path) => {
    const result = await rawExchange(sidecar.url, [head([`POST ${path} HTTP/1.1`, 'Host: sidecar', `Authorization: ${TEST_CLIENT}`, 'Content-Length: 2', 'Connection: close']) + '{}']);
    expectProblem(result.responses[0], 400, 'key-required');
  });

  test.each(['/payments%2Fx', '/payments%2fx', '/payments\\x', '/payments%5Cx', '/payments%00', '/health/..%2Fpayments', '/health/%2e%2e/payments', '/health/../payments', '/health/.%2E/payments'])(
    'a guarded method on %s gets 400 path-ambiguous, never forwarded',
    async (path) => {
      const before = upstream.executions.length;
      const result = await rawExchange(sidecar.url, [head([`POST ${path} HTTP/1.1`, 'Host: sidecar', `Authorization: ${TEST_CLIENT}`, 'Content-Length: 2', 'Connection: close']) + '{}']);
      expectProblem(result.responses[0], 400, 'path-ambiguous');
      expect(upstream.executions.length).toBe(before);
    },
  );

  test('a GET with such a path is not the guard\'s business: it passes through', async () => {
    const result = await rawExchange(sidecar.url, [head(['GET /health/..%2Fpayments HTTP/1.1', 'Host: sidecar', 'Connection: close'])]);
    expect(result.responses[0]?.headers['content-type']).not.toBe('application/problem+json');
  });

  test.each(['/V/Express/payments', '/v/EXPRESS/x'])('a caseInsensitive rule matches %s', async (path) => {
    const reply = await send(sidecar.url, path, { body: '{}' });
    expect(reply.status).toBe(400);
    expect(reply.json()['type']).toBe(`${PROBLEM}key-required`);
  });

  test('on a body-key route the spellings an Express upstream routes alike never execute twice', async () => {
    const body = JSON.stringify({ order_id: freshKey('order'), amount: 6 });
    const first = await send(sidecar.url, '/v/legacy/payments', { body });
    expect(first.status).toBe(201);
    for (const spelling of ['/v/legacy/payments/', '/V/Legacy/Payments', '/v/legacy/payments;v=1']) {
      const reply = await send(sidecar.url, spelling, { body });
      expect([spelling, reply.status, reply.json()['type']]).toEqual([spelling, 422, `${PROBLEM}key-reused`]);
    }
    expect(upstream.executions.filter((e) => e.body.toString() === body)).toHaveLength(1);
  });
});

describe('7. credentials in an absolute-form target', () => {
  test('are never logged, whether the request is refused or passed through', async () => {
    const secret = 'pw-8e1f-never-logged';
    await rawExchange(sidecar.url, [keyedPost(`http://user:${secret}@a/payments/x`, freshKey('cred'), '{}')]);
    await rawExchange(sidecar.url, [head([`GET http://user:${secret}@a/health/x?token=${secret} HTTP/1.1`, 'Host: sidecar', 'Connection: close'])]);
    await waitFor(() => sidecar.logs().some((line) => line['path'] === '/health/x'), { what: 'the pass-through log line' });
    expect(sidecar.output()).not.toContain(secret);
  });
});

describe('8. smaller things', () => {
  test('every Connection header names hop-by-hop headers, not only the last one', async () => {
    const key = freshKey('two-connection');
    const result = await rawExchange(
      sidecar.url,
      [keyedPost('/payments/hop', key, '{}', ['Connection: x-private-hop', 'Connection: keep-alive', 'X-Private-Hop: secret', 'X-Kept: yes'])],
      { settle: { responses: 1, quietMs: 100 } },
    );
    expect(result.responses[0]?.status).toBe(201);
    const forwarded = upstream.executions.find((e) => e.key === key);
    expect(forwarded?.headers['x-kept']).toBe('yes');
    expect(forwarded?.headers['x-private-hop']).toBeUndefined();
  });

  test('a guarded body in a transfer coding the sidecar does not decode gets 501, not forwarded', async () => {
    const key = freshKey('gzip');
    const result = await rawExchange(sidecar.url, [
      head(['POST /payments/gzip HTTP/1.1', 'Host: sidecar', `Authorization: ${TEST_CLIENT}`, `Idempotency-Key: ${key}`, 'Transfer-Encoding: gzip, chunked']) + '2\r\n{}\r\n0\r\n\r\n',
    ]);
    expectProblem(result.responses[0], 501, 'transfer-coding-unsupported');
    expect(upstream.countKey(key)).toBe(0);
    expect(await recordsOf(key)).toEqual([]);
  });

  test('a key sent after 2,000 other headers still guards the request', async () => {
    const key = freshKey('header-2002');
    const filler = Array.from({ length: 2_001 }, (_, i) => `X-F${i}: v`);
    const request = (): string => head(['POST /payments/many-headers HTTP/1.1', 'Host: sidecar', `Authorization: ${TEST_CLIENT}`, ...filler, `Idempotency-Key: ${key}`, 'Content-Length: 2']) + '{}';
    const first = await rawExchange(sidecar.url, [request()], { settle: { responses: 1, quietMs: 100 } });
    const second = await rawExchange(sidecar.url, [request()], { settle: { responses: 1, quietMs: 100 } });
    expect(first.responses.map((r) => r.status)).toEqual([201]);
    expect(second.responses.map((r) => [r.status, r.headers['idempotent-replayed']])).toEqual([[201, 'true']]);
    expect(upstream.countKey(key)).toBe(1);
  });

  test.each(['bearer', 'BEARER', 'Bearer'])('the admin API takes the %s scheme (RFC 9110: case-insensitive)', async (scheme) => {
    const response = await fetch(`${sidecar.adminUrl}/keys/anything`, { headers: { authorization: `${scheme} ${ADMIN_TOKEN}` } });
    expect(response.status).toBe(200);
  });
});

/** A counter's value; 0 when the series does not exist yet. */
async function counter(series: string): Promise<number> {
  const value = await metric(series);
  return Number.isNaN(value) ? 0 : value;
}
