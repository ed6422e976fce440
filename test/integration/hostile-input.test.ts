/**
 * Hostile input against the sidecar as its own process, over raw sockets: request smuggling
 * shapes, oversized headers, slow clients, keys with odd bytes, body keys in bodies that are not
 * what the route expects. Each gets a clear answer (problem+json, or one well-defined request),
 * and the counting upstream never receives a request the client did not send as its own.
 */
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import { freshKey, send, TEST_CLIENT } from '../helpers/client';
import { rawExchange, type Piece, type RawResponse } from '../helpers/raw-http';

const PROBLEM = 'urn:idempotency-sidecar:problem:';

const ROUTES = `
routes:
  - path: /v/open/*
    guard: false
  - path: /v/order/*
    key: { from: body, pointer: /order_id }
  - path: /v/order-required/*
    requireKey: true
    key: { from: body, pointer: /order_id }
`;

const HEADER_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;
const MAX_HEADER_SIZE = 4_096;

let upstream: PaymentUpstream;
let sidecar: SidecarProcess;

beforeAll(async () => {
  upstream = await startPaymentUpstream();
  sidecar = await startSidecar({
    upstream: upstream.url,
    configYaml: ROUTES,
    env: {
      IDEMPOTENCY_CLIENT_HEADER_TIMEOUT: `${HEADER_TIMEOUT_MS}ms`,
      IDEMPOTENCY_CLIENT_REQUEST_TIMEOUT: `${REQUEST_TIMEOUT_MS}ms`,
      IDEMPOTENCY_MAX_HEADER_SIZE: String(MAX_HEADER_SIZE),
      IDEMPOTENCY_MAX_BODY: String(1_048_576),
    },
  });
});

afterAll(async () => {
  expect(await sidecar?.stop()).toBe(0);
  await upstream?.stop();
});

afterEach(async () => {
  // Whatever a test threw at it, the sidecar still serves.
  const health = await fetch(`${sidecar.adminUrl}/healthz`);
  expect(health.status).toBe(200);
});

function expectProblem(response: RawResponse | undefined, status: number, code: string): Record<string, unknown> {
  expect(response).toBeDefined();
  const { status: got, headers, body } = response as RawResponse;
  expect({ status: got, type: headers['content-type'] }).toEqual({ status, type: 'application/problem+json' });
  const problem = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  expect(problem).toEqual({ type: PROBLEM + code, title: expect.any(String), status, detail: expect.any(String) });
  return problem;
}

/** Upstream executions that arrived while `run` ran. */
async function newExecutions<T>(run: () => Promise<T>): Promise<{ result: T; seen: { method: string; url: string; body: string }[] }> {
  const before = upstream.executions.length;
  const result = await run();
  // Anything the sidecar forwarded has had time to land (it is answered before we get here).
  await new Promise((resolve) => setTimeout(resolve, 100));
  return { result, seen: upstream.executions.slice(before).map((e) => ({ method: e.method, url: e.url, body: e.body.toString('latin1') })) };
}

/** A request head; a client's Authorization (the tenant header) follows the request line unless one is given. */
function head(lines: readonly string[]): string {
  const [requestLine = '', ...fields] = lines;
  const withTenant = fields.some((line) => /^authorization:/i.test(line)) ? fields : [`Authorization: ${TEST_CLIENT}`, ...fields];
  return `${[requestLine, ...withTenant].join('\r\n')}\r\n\r\n`;
}

describe('request smuggling', () => {
  const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
  /** Vectors whose framing is ambiguous: the only acceptable answer is 400 and a closed connection. */
  const ambiguous: [string, (path: string, key: string) => string][] = [
    ['Content-Length with Transfer-Encoding', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Content-Length: 5', 'Transfer-Encoding: chunked']) + '0\r\n\r\n' + SMUGGLED],
    ['Transfer-Encoding with Content-Length', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding: chunked', 'Content-Length: 40']) + '0\r\n\r\n' + SMUGGLED],
    ['two differing Content-Lengths', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Content-Length: 2', 'Content-Length: 37']) + `{}${SMUGGLED}`],
    ['Transfer-Encoding: chunked, x', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding: chunked, x']) + '0\r\n\r\n' + SMUGGLED],
    ['Transfer-Encoding: xchunked', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding: xchunked']) + '0\r\n\r\n' + SMUGGLED],
    ['Transfer-Encoding given twice, chunked first', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding: chunked', 'Transfer-Encoding: identity']) + '0\r\n\r\n' + SMUGGLED],
    ['a space before the colon', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding : chunked', 'Content-Length: 5']) + '0\r\n\r\n' + SMUGGLED],
    ['a line folded into Transfer-Encoding', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding:', ' chunked', 'Content-Length: 5']) + '0\r\n\r\n' + SMUGGLED],
    ['a vertical tab in Transfer-Encoding', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding:\x0bchunked', 'Content-Length: 5']) + '0\r\n\r\n' + SMUGGLED],
    ['bare LF line endings', (p, k) => [`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding: chunked', 'Content-Length: 5', '', '0', '', SMUGGLED].join('\n')],
    ['a bare CR inside a header line', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}\rTransfer-Encoding: chunked`, 'Content-Length: 5']) + '0\r\n\r\n' + SMUGGLED],
    ['a chunk size with a sign', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Transfer-Encoding: chunked']) + '+2\r\n{}\r\n0\r\n\r\n' + SMUGGLED],
    ['an invalid Content-Length', (p, k) => head([`POST ${p} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${k}`, 'Content-Length: 2, 37']) + `{}${SMUGGLED}`],
  ];

  describe.each([
    ['guarded', '/payments/smuggle'],
    ['pass-through', '/v/open/payments/smuggle'],
  ])('on the %s path', (_label, path) => {
    test.each(ambiguous)('%s: 400 problem, connection closed, nothing forwarded', async (_name, build) => {
      const key = freshKey('smuggle');
      const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, [build(path, key)]));
      expect(result.closed).toBe(true);
      expect(result.responses).toHaveLength(1);
      expectProblem(result.responses[0], 400, 'bad-request');
      expect(seen).toEqual([]);
    });

    test('a request hidden in a body framed by Content-Length stays body: one request upstream', async () => {
      const key = freshKey('hidden');
      const body = `{}${SMUGGLED}`;
      const request = head([`POST ${path} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${key}`, `Content-Length: ${body.length}`, 'Connection: close']) + body;
      const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, [request]));
      expect(result.responses.map((r) => r.status)).toEqual([201]);
      expect(seen).toEqual([{ method: 'POST', url: path, body }]);
    });

    test('upper-case CHUNKED is chunked: one well-defined request, the bytes after it its own request', async () => {
      const key = freshKey('upper');
      const request = head([`POST ${path} HTTP/1.1`, 'Host: x', `Idempotency-Key: ${key}`, 'Transfer-Encoding: CHUNKED']) + '2\r\n{}\r\n0\r\n\r\n' + 'GET /v/open/payments/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
      const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, [request]));
      expect(result.responses.map((r) => r.status)).toEqual([201, 201]);
      expect(seen).toEqual([
        { method: 'POST', url: path, body: '{}' },
        { method: 'GET', url: '/v/open/payments/second', body: '' },
      ]);
    });
  });

  test('pipelined retries of a guarded request with a smuggled tail: answered in order, executed once', async () => {
    const key = freshKey('retry');
    const attempt = (): string => head(['POST /payments/once HTTP/1.1', 'Host: x', `Idempotency-Key: ${key}`, 'Content-Length: 2']) + '{}';
    const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, [attempt(), attempt(), head(['POST /payments/once HTTP/1.1', 'Host: x', `Idempotency-Key: ${key}`, 'Content-Length: 2', 'Transfer-Encoding: chunked']) + '0\r\n\r\n']));
    // Pipelined requests are handled concurrently: the duplicate finds the first in flight (409)
    // or completed (replayed). The 400 comes last, after the responses owed before it.
    const answers = result.responses.map((r) => `${r.status}${r.headers['idempotent-replayed'] === 'true' ? ' replayed' : ''}`);
    expect([['201', '409', '400'], ['201', '201 replayed', '400']]).toContainEqual(answers);
    expect(seen.map((e) => e.url)).toEqual(['/payments/once']);
    expect(result.closed).toBe(true);
  });
});

describe('oversized headers and slow clients', () => {
  test('a header block over IDEMPOTENCY_MAX_HEADER_SIZE gets 431', async () => {
    const { result, seen } = await newExecutions(() =>
      rawExchange(sidecar.url, [head(['POST /payments/big HTTP/1.1', 'Host: x', `Idempotency-Key: ${freshKey()}`, `X-Filler: ${'a'.repeat(MAX_HEADER_SIZE)}`, 'Content-Length: 2']) + '{}']),
    );
    expectProblem(result.responses[0], 431, 'headers-too-large');
    expect(result.closed).toBe(true);
    expect(seen).toEqual([]);
  });

  test('many small headers over the limit get 431 too', async () => {
    const lines = Array.from({ length: 400 }, (_, i) => `X-H${i}: value`);
    const result = await rawExchange(sidecar.url, [head(['GET /v/open/payments HTTP/1.1', 'Host: x', ...lines])]);
    expectProblem(result.responses[0], 431, 'headers-too-large');
  });

  test('headers that dribble in (slowloris) are cut off with 408 after the header timeout', async () => {
    const dribble: Piece[] = ['POST /payments/slow HTTP/1.1\r\nHost: x\r\n'];
    for (let i = 0; i < 60; i++) dribble.push({ pauseMs: 100 }, `X-Slow-${i}: a\r\n`);
    const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, dribble, { boundMs: 15_000 }));
    expect(result.closed).toBe(true);
    // The dribble would take 6 s; the connection ended long before that.
    expect(result.elapsedMs).toBeLessThan(6_000);
    expectProblem(result.responses[0], 408, 'request-timeout');
    expect(seen).toEqual([]);
  });

  test('a connection that sends nothing after the first bytes is closed too', async () => {
    const result = await rawExchange(sidecar.url, ['POST /pay'], { boundMs: 15_000 });
    expect(result.closed).toBe(true);
    expectProblem(result.responses[0], 408, 'request-timeout');
  });

  test('a guarded body that arrives too slowly gets 408; nothing is claimed and the upstream is not called', async () => {
    const key = freshKey('slow-body');
    const body = '{"amount":1234567890}';
    // Five bytes, then one more every 300 ms: the body would be complete only after 5 s.
    const pieces: Piece[] = [head(['POST /payments/slow-body HTTP/1.1', 'Host: x', `Idempotency-Key: ${key}`, `Content-Length: ${body.length}`]), body.slice(0, 5)];
    for (let i = 5; i < body.length; i++) pieces.push({ pauseMs: 300 }, body.charAt(i));
    const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, pieces, { boundMs: 15_000 }));
    expect(result.closed).toBe(true);
    expect(result.elapsedMs).toBeLessThan(4_000 + REQUEST_TIMEOUT_MS);
    expectProblem(result.responses[0], 408, 'request-timeout');
    expect(seen).toEqual([]);

    // The key was never claimed: the same request sent properly executes (once), not a 409.
    const retry = await send(sidecar.url, '/payments/slow-body', { key, body });
    expect(retry.status).toBe(201);
    expect(retry.header('idempotent-replayed')).toBeUndefined();
    expect(upstream.countKey(key)).toBe(1);
  });

  test('an HTTP/1.1 request without Host gets a problem, not a bare 400', async () => {
    const result = await rawExchange(sidecar.url, [head(['POST /payments/nohost HTTP/1.1', `Idempotency-Key: ${freshKey()}`, 'Content-Length: 2', 'Connection: close']) + '{}']);
    expectProblem(result.responses[0], 400, 'bad-request');
  });
});

describe('keys with odd bytes', () => {
  const malformed: [string, Buffer | string][] = [
    ['obs-text bytes 0x80-0xFF sent raw', Buffer.concat([Buffer.from('ab'), Buffer.from(Array.from({ length: 128 }, (_, i) => 0x80 + i)), Buffer.from('cd')])],
    ['a trailing NBSP (0xA0)', Buffer.from([0x6b, 0x65, 0x79, 0xa0])],
    ['UTF-8 text', Buffer.from('clé-€', 'utf8')],
    ['256 characters', 'k'.repeat(256)],
    ['4000 characters', 'k'.repeat(4_000)],
    ['an unclosed quote', '"abc'],
    ['an escape the sf-string does not allow', '"a\\nb"'],
    ['parameters after the sf-string', '"abc";p=1'],
    ['an empty sf-string', '""'],
    ['a space inside', 'a b'],
    ['a tab inside', 'a\tb'],
    ['empty', ''],
    ['whitespace only', ' \t '],
  ];

  test.each(malformed)('%s: 400 key-malformed, never forwarded', async (_name, value) => {
    const request = Buffer.concat([
      Buffer.from(`POST /payments/odd HTTP/1.1\r\nHost: x\r\nAuthorization: ${TEST_CLIENT}\r\nContent-Length: 2\r\nConnection: close\r\nIdempotency-Key: `),
      Buffer.isBuffer(value) ? value : Buffer.from(value, 'latin1'),
      Buffer.from('\r\n\r\n{}'),
    ]);
    const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, [request]));
    expectProblem(result.responses[0], 400, 'key-malformed');
    expect(seen).toEqual([]);
  });

  test.each([
    ['a NUL byte', '\x00'],
    ['a control character', '\x01'],
    ['DEL', '\x7f'],
    ['a bare CR', '\r'],
  ])('%s: refused by the parser (400), never forwarded', async (_name, char) => {
    const request = `POST /payments/odd HTTP/1.1\r\nHost: x\r\nAuthorization: ${TEST_CLIENT}\r\nContent-Length: 2\r\nIdempotency-Key: ab${char}cd\r\n\r\n{}`;
    const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, [request]));
    expect(result.responses[0]?.status).toBe(400);
    expect(['bad-request', 'key-malformed'].map((code) => PROBLEM + code)).toContain(JSON.parse(result.responses[0]?.body.toString() ?? '{}').type);
    expect(seen).toEqual([]);
  });

  test('a key given twice (same or different value) gets 400, never forwarded', async () => {
    for (const second of ['same-key-1', 'other-key-2']) {
      const request = head(['POST /payments/twice HTTP/1.1', 'Host: x', 'Content-Length: 2', 'Connection: close', 'Idempotency-Key: same-key-1', `idempotency-key: ${second}`]) + '{}';
      const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, [request]));
      const problem = expectProblem(result.responses[0], 400, 'key-malformed');
      expect(problem['detail']).toMatch(/more than once/);
      expect(seen).toEqual([]);
    }
  });

  test('the sf-string form is the same key as the bare form', async () => {
    const key = freshKey('sf');
    const first = await send(sidecar.url, '/payments/sf', { key, body: '{}' });
    const quoted = await send(sidecar.url, '/payments/sf', { key: `"${key}"`, body: '{}' });
    expect([first.status, quoted.status, quoted.header('idempotent-replayed')]).toEqual([201, 201, 'true']);
  });
});

describe('JSON pointers into bodies that do not hold the key', () => {
  const NO_KEY: [string, string | Buffer][] = [
    ['text that is not JSON', 'order_id=o-1&amount=5'],
    ['binary bytes', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
    ['an empty body', ''],
    ['a JSON array', '[{"order_id":"o-1"}]'],
    ['a JSON string', '"o-1"'],
    ['a JSON number', '42'],
    ['JSON with the field null', '{"order_id":null}'],
    ['JSON without the field', '{"amount":5}'],
    ['truncated JSON', '{"order_id":"o-1"'],
    ['JSON nested 100000 deep', `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`],
  ];

  test.each(NO_KEY)('%s: no key, so it passes through unguarded (route without requireKey)', async (_name, body) => {
    const path = `/v/order/payments/${freshKey('nokey')}`;
    const reply = await send(sidecar.url, path, { body, headers: { 'content-type': 'application/octet-stream' } });
    expect(reply.status).toBe(201);
    expect(upstream.count(path)).toBe(1);
    const forwarded = upstream.executions.find((e) => e.url === path);
    expect(forwarded?.body.equals(Buffer.isBuffer(body) ? body : Buffer.from(body))).toBe(true);
  });

  test.each(NO_KEY)('%s: 400 key-required where the route requires a key', async (_name, body) => {
    const path = `/v/order-required/payments/${freshKey('nokey')}`;
    const reply = await send(sidecar.url, path, { body, headers: { 'content-type': 'application/octet-stream' } });
    expect(reply.status).toBe(400);
    expect(reply.json()['type']).toBe(`${PROBLEM}key-required`);
    expect(upstream.count(path)).toBe(0);
  });

  test.each([
    ['an object', '{"order_id":{"id":"o-1"}}', /an object/],
    ['an array', '{"order_id":["o-1"]}', /an array/],
    ['a boolean', '{"order_id":true}', /a boolean/],
    ['a fraction', '{"order_id":1.5}', /whole number/],
    ['a number past 2^53', '{"order_id":12345678901234567891}', /whole number/],
    ['a number too large for a double', `{"order_id":1${'0'.repeat(400)}}`, /whole number/],
    ['a string with bytes outside visible ASCII', '{"order_id":"o-\u00e9"}', /visible ASCII/],
    ['an empty string', '{"order_id":""}', /empty/],
  ])('the field holds %s: 400 key-malformed, never forwarded', async (_name, body, reason) => {
    for (const route of ['/v/order/payments/', '/v/order-required/payments/']) {
      const path = route + freshKey('bad');
      const reply = await send(sidecar.url, path, { body });
      expect(reply.status).toBe(400);
      const problem = reply.json();
      expect(problem['type']).toBe(`${PROBLEM}key-malformed`);
      expect(problem['detail']).toMatch(reason);
      expect(upstream.count(path)).toBe(0);
    }
  });

  test('a whole-number field is a key: the retry is replayed', async () => {
    const path = `/v/order/payments/${freshKey('num')}`;
    const body = `{"order_id":${Number.MAX_SAFE_INTEGER},"amount":3}`;
    const first = await send(sidecar.url, path, { body });
    const again = await send(sidecar.url, path, { body });
    expect([first.status, again.status, again.header('idempotent-replayed')]).toEqual([201, 201, 'true']);
    expect(upstream.count(path)).toBe(1);
  });
});

describe('Expect: 100-continue on a pipelined connection', () => {
  test('an answer ready while an earlier one is owed is not split by its interim 100 Continue', async () => {
    // The first request is slow upstream; the second is executed and answered while its response
    // still waits behind the first. Its interim 100 must come before its final head or not at all.
    const slowKey = freshKey('continue-slow');
    const fastKey = freshKey('continue-fast');
    const request = (path: string, key: string, amount: number): string => {
      const body = `{"amount":${amount}}`;
      return head([`POST ${path} HTTP/1.1`, 'Host: x', 'Expect: 100-continue', `Idempotency-Key: ${key}`, 'Content-Type: application/json', `Content-Length: ${body.length}`]) + body;
    };
    const { result, seen } = await newExecutions(() =>
      rawExchange(sidecar.url, [request('/slow?ms=600', slowKey, 1) + request('/payments/continue', fastKey, 2)], {
        boundMs: 10_000,
        settle: { responses: 2, quietMs: 300 },
      }),
    );
    expect(result.responses.map((r) => r.status)).toEqual([201, 201]);
    // Each body is exactly the upstream's JSON payment, in request order: no interim head inside.
    expect(result.responses.map((r) => (JSON.parse(r.body.toString('utf8')) as { amount: unknown }).amount)).toEqual([1, 2]);
    expect(result.responses[0]?.interim).toEqual([100]);
    expect([[], [100]]).toContainEqual(result.responses[1]?.interim);
    // Nothing after the last answer: every byte sent belongs to a well-framed response.
    expect(result.data.subarray(result.data.length - (result.responses[1]?.body.length ?? 0)).equals(result.responses[1]?.body ?? Buffer.alloc(0))).toBe(true);
    expect(seen.map((e) => e.url)).toEqual(['/slow?ms=600', '/payments/continue']);
  });

  test('a refusal ready while an earlier answer is owed is not split either', async () => {
    // The same key twice: the second finds the first in flight (409) and is answered at once,
    // behind the first; its problem body must parse.
    const key = freshKey('continue-dup');
    const body = '{"amount":3}';
    const request = head(['POST /slow?ms=600 HTTP/1.1', 'Host: x', 'Expect: 100-continue', `Idempotency-Key: ${key}`, `Content-Length: ${body.length}`]) + body;
    const { result, seen } = await newExecutions(() => rawExchange(sidecar.url, [request + request], { boundMs: 10_000, settle: { responses: 2, quietMs: 300 } }));
    expect(result.responses.map((r) => r.status)).toEqual([201, 409]);
    expectProblem(result.responses[1], 409, 'request-in-flight');
    expect(seen).toHaveLength(1);
  });
});
