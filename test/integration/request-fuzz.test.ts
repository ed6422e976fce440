/**
 * A small, seeded fuzz run of the request parser path: a few hundred raw requests, built from
 * valid guarded and unguarded ones and then mutated (flipped bytes, duplicated or removed header
 * lines, odd framing, bare LF, truncation, pipelining), each sent over its own connection to the
 * sidecar process. Whatever arrives:
 * - the sidecar stays up (its /healthz answers after);
 * - every connection gets an answer or is closed within a bound;
 * - a request the sidecar refused (400, 408, 413, 431) never reaches the upstream;
 * - the upstream never executes one key twice.
 * - every answer is well framed: a JSON body parses (an interim 100 Continue spliced into a final
 *   answer, or answers out of step on a pipelined connection, would not).
 * The seeds are fixed, so a failure in CI is a failure on every run and can be replayed; each seed
 * runs against its own sidecar and upstream, exactly as a replay does. Replay (or explore) one seed
 * with FUZZ_SEED=<seed> (the seed is in the failure message).
 */
import { startPaymentUpstream, type Execution, type PaymentUpstream } from '../helpers/payment-upstream';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import { rawExchange, type RawExchange, type RawResponse } from '../helpers/raw-http';
import { seededRandom } from '../helpers/seeded-random';

const CASES = 300;
const PARALLEL = 12;
const BOUND_MS = 5_000;
/**
 * 428880354 once failed on pipelined `Expect: 100-continue` requests (the checker took the interim
 * 100 for the final answer); 2024 is a plain fixed seed. Each seed takes about 5 s.
 */
const DEFAULT_SEEDS = [428880354, 2024];
const SEEDS = seedsToRun(process.env['FUZZ_SEED']);

function seedsToRun(given: string | undefined): number[] {
  if (given === undefined || given.trim() === '') return DEFAULT_SEEDS;
  const seed = Number(given);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new Error(`FUZZ_SEED must be a whole number from 0 to 2^32-1, got ${JSON.stringify(given)}`);
  return [seed];
}
const REFUSALS = new Set(['bad-request', 'request-timeout', 'body-too-large', 'headers-too-large', 'key-malformed', 'key-required'].map((code) => `urn:idempotency-sidecar:problem:${code}`));

interface FuzzCase {
  readonly id: number;
  readonly bytes: Buffer;
  readonly description: string;
}

/**
 * The case's marker: in the path, the key and a header, so a mutation rarely erases all three. The
 * id is written twice, so a flipped digit (fz189q189z -> fz181q189z) makes a copy unreadable
 * instead of naming another case: an execution must never be counted against the wrong case.
 */
function marker(id: number): string {
  return `fz${id}q${id}z`;
}

function baseRequests(id: number): { name: string; text: string }[] {
  const m = marker(id);
  const json = `{"order_id":"${m}o","amount":${id}}`;
  return [
    { name: 'guarded POST', text: `POST /payments/${m} HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer fuzz-client\r\nIdempotency-Key: ${m}k\r\nX-Fuzz-Case: ${m}\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json}` },
    { name: 'guarded chunked PATCH', text: `PATCH /payments/${m} HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer fuzz-client\r\nIdempotency-Key: "${m}k"\r\nX-Fuzz-Case: ${m}\r\nTransfer-Encoding: chunked\r\n\r\n${json.length.toString(16)}\r\n${json}\r\n0\r\n\r\n` },
    { name: 'body-key POST', text: `POST /v/order/payments/${m} HTTP/1.1\r\nHost: sidecar\r\nX-Fuzz-Case: ${m}\r\nContent-Length: ${json.length}\r\n\r\n${json}` },
    { name: 'unguarded GET', text: `GET /v/open/payments/${m}?q=1 HTTP/1.1\r\nHost: sidecar\r\nX-Fuzz-Case: ${m}\r\n\r\n` },
    { name: 'unguarded POST', text: `POST /v/open/payments/${m} HTTP/1.1\r\nHost: sidecar\r\nX-Fuzz-Case: ${m}\r\nContent-Length: ${json.length}\r\n\r\n${json}` },
  ];
}

type Mutation = (bytes: Buffer, random: () => number) => Buffer;

const pick = <T>(items: readonly T[], random: () => number): T => items[Math.floor(random() * items.length)] as T;

/** Header lines of the request (between the request line and the blank line), as byte ranges. */
function headerLines(bytes: Buffer): [number, number][] {
  const end = bytes.indexOf('\r\n\r\n');
  const lines: [number, number][] = [];
  let at = bytes.indexOf('\r\n') + 2;
  while (end !== -1 && at > 1 && at < end) {
    const next = bytes.indexOf('\r\n', at);
    lines.push([at, next + 2]);
    at = next + 2;
  }
  return lines;
}

const MUTATIONS: Record<string, Mutation> = {
  'flip a byte': (b, r) => {
    const out = Buffer.from(b);
    const i = Math.floor(r() * out.length);
    out[i] = (out[i] as number) ^ (1 << Math.floor(r() * 8));
    return out;
  },
  'set a byte to an odd value': (b, r) => {
    const out = Buffer.from(b);
    out[Math.floor(r() * out.length)] = pick([0x00, 0x0a, 0x0d, 0x09, 0x0b, 0x7f, 0x80, 0xa0, 0xff, 0x22, 0x5c, 0x3a, 0x20], r);
    return out;
  },
  'duplicate a header line': (b, r) => {
    const lines = headerLines(b);
    if (lines.length === 0) return b;
    const [from, to] = pick(lines, r);
    return Buffer.concat([b.subarray(0, to), b.subarray(from, to), b.subarray(to)]);
  },
  'remove a header line': (b, r) => {
    const lines = headerLines(b);
    if (lines.length === 0) return b;
    const [from, to] = pick(lines, r);
    return Buffer.concat([b.subarray(0, from), b.subarray(to)]);
  },
  'add conflicting framing': (b, r) => {
    const extra = pick(['Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', 'Transfer-Encoding: chunked, identity\r\n', 'Content-Length: -1\r\n', 'Content-Length: 99999999999999999999\r\n', 'Transfer-Encoding: gzip\r\n', 'Expect: 100-continue\r\n', 'Connection: close\r\n', 'Upgrade: websocket\r\nConnection: Upgrade\r\n'], r);
    const at = b.indexOf('\r\n') + 2;
    return Buffer.concat([b.subarray(0, at), Buffer.from(extra), b.subarray(at)]);
  },
  'bare LF line endings': (b) => Buffer.from(b.toString('latin1').replace(/\r\n/g, '\n'), 'latin1'),
  'truncate': (b, r) => b.subarray(0, Math.floor(r() * b.length)),
  'insert random bytes': (b, r) => {
    const at = Math.floor(r() * b.length);
    const junk = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 16) }, () => Math.floor(r() * 256)));
    return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
  },
  'pipeline it twice': (b) => Buffer.concat([b, b]),
  'a huge header': (b) => {
    const at = b.indexOf('\r\n') + 2;
    return Buffer.concat([b.subarray(0, at), Buffer.from(`X-Big: ${'x'.repeat(8_000)}\r\n`), b.subarray(at)]);
  },
};

function buildCases(seed: number): FuzzCase[] {
  const random = seededRandom(seed);
  const names = Object.keys(MUTATIONS);
  return Array.from({ length: CASES }, (_, id) => {
    const base = pick(baseRequests(id), random);
    let bytes: Buffer = Buffer.from(base.text, 'latin1');
    const applied: string[] = [];
    // One case in ten is sent valid; the rest get one to three mutations.
    const count = random() < 0.1 ? 0 : 1 + Math.floor(random() * 3);
    for (let i = 0; i < count; i++) {
      const name = pick(names, random);
      bytes = (MUTATIONS[name] as Mutation)(bytes, random);
      applied.push(name);
    }
    return { id, bytes, description: `${base.name}${applied.length ? ` + ${applied.join(', ')}` : ''}` };
  });
}

/** The case an upstream execution belongs to, by any surviving intact copy of its marker. */
function caseOf(execution: Execution): number | undefined {
  const header = execution.headers['x-fuzz-case'];
  for (const text of [typeof header === 'string' ? header : '', execution.url, execution.key ?? '']) {
    const match = /fz(\d+)q(\d+)z/.exec(text);
    if (match && match[1] === match[2]) return Number(match[1]);
  }
  return undefined;
}

function isRefusal(response: RawResponse): boolean {
  if (response.headers['content-type'] !== 'application/problem+json') return false;
  try {
    return REFUSALS.has(String((JSON.parse(response.body.toString('utf8')) as { type?: unknown }).type));
  } catch {
    return false;
  }
}

/** Every answer here is JSON (the upstream's payments, the sidecar's problems): one that does not parse was spliced or cut. */
function malformedAnswer(response: RawResponse): string | undefined {
  const type = response.headers['content-type'] ?? '';
  if (!/^application\/(problem\+)?json\b/.test(type)) return undefined;
  try {
    JSON.parse(response.body.toString('utf8'));
    return undefined;
  } catch {
    return `its ${response.status} answer's ${type} body does not parse: ${JSON.stringify(response.body.toString('latin1').slice(0, 80))}`;
  }
}

function describeAnswers(exchange: RawExchange): string {
  return exchange.responses.map((r) => [...r.interim, r.status].join('+')).join(',') || 'none';
}

describe.each(SEEDS)('FUZZ_SEED=%i', (seed) => {
  let upstream: PaymentUpstream;
  let sidecar: SidecarProcess;

  beforeAll(async () => {
    upstream = await startPaymentUpstream();
    sidecar = await startSidecar({
      upstream: upstream.url,
      configYaml: 'routes:\n  - path: /v/open/*\n    guard: false\n  - path: /v/order/*\n    key: { from: body, pointer: /order_id }\n',
      env: {
        IDEMPOTENCY_CLIENT_HEADER_TIMEOUT: '500ms',
        IDEMPOTENCY_CLIENT_REQUEST_TIMEOUT: '1s',
        IDEMPOTENCY_MAX_HEADER_SIZE: '4096',
        IDEMPOTENCY_LOG_LEVEL: 'warn',
      },
    });
  });

  afterAll(async () => {
    expect(await sidecar?.stop()).toBe(0);
    await upstream?.stop();
  });

  test(`${CASES} mutated raw requests: the sidecar stays up, answers or closes, and forwards nothing it refused`, async () => {
    const cases = buildCases(seed);
    const exchanges = new Map<number, RawExchange>();
    let next = 0;
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < cases.length) {
          const fuzzCase = cases[next++] as FuzzCase;
          exchanges.set(fuzzCase.id, await rawExchange(sidecar.url, [fuzzCase.bytes], { boundMs: BOUND_MS, settle: { responses: 1, quietMs: 300 } }));
        }
      }),
    );
    // Let forwarded requests that were answered land in the ledger.
    await new Promise((resolve) => setTimeout(resolve, 300));

    const failures: string[] = [];
    const executionsByCase = new Map<number, number>();
    for (const execution of upstream.executions) {
      const id = caseOf(execution);
      if (id !== undefined) executionsByCase.set(id, (executionsByCase.get(id) ?? 0) + 1);
    }
    for (const fuzzCase of cases) {
      const exchange = exchanges.get(fuzzCase.id) as RawExchange;
      const label = `case ${fuzzCase.id} (${fuzzCase.description}): ${JSON.stringify(fuzzCase.bytes.toString('latin1').slice(0, 300))}`;
      if (!exchange.closed && exchange.responses.length === 0) failures.push(`${label}: neither answered nor closed within ${BOUND_MS} ms`);
      for (const response of exchange.responses) {
        const malformed = malformedAnswer(response);
        if (malformed !== undefined) failures.push(`${label}: ${malformed} (answers ${describeAnswers(exchange)})`);
      }
      // Only final answers count: an interim 100 Continue says nothing about the request's fate.
      const executed = executionsByCase.get(fuzzCase.id) ?? 0;
      const accepted = exchange.responses.filter((response) => !isRefusal(response)).length;
      if (executed > accepted) {
        failures.push(`${label}: the upstream executed it ${executed} time(s) but the sidecar accepted ${accepted} (answers ${describeAnswers(exchange)})`);
      }
    }
    const keys = new Map<string, number>();
    for (const execution of upstream.executions) {
      if (execution.key !== undefined && !execution.url.startsWith('/v/open/')) keys.set(execution.key, (keys.get(execution.key) ?? 0) + 1);
    }
    for (const [key, times] of keys) if (times > 1) failures.push(`key ${JSON.stringify(key)} was executed ${times} times`);

    const health = await fetch(`${sidecar.adminUrl}/healthz`);
    if (health.status !== 200 || sidecar.process.exitCode !== null) failures.push('the sidecar is no longer healthy');

    const statuses = new Map<string, number>();
    for (const exchange of exchanges.values()) {
      const status = exchange.responses[0]?.status ?? (exchange.closed ? 'closed' : 'open');
      statuses.set(String(status), (statuses.get(String(status)) ?? 0) + 1);
    }
    if (failures.length > 0) {
      throw new Error(`request fuzz failed with FUZZ_SEED=${seed} (replay: FUZZ_SEED=${seed} npx jest test/integration/request-fuzz.test.ts)\n${failures.join('\n')}`);
    }
    // The run exercised both sides: some requests were accepted and executed, some refused.
    expect(upstream.executions.length).toBeGreaterThan(0);
    expect([...statuses.keys()]).toEqual(expect.arrayContaining(['400']));
  }, 120_000);
});
