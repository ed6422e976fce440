/**
 * A flood of distinct keys. The in-process store keeps at most IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS
 * records and refuses a new key beyond it (503), never evicting a live one. With Redis, nothing
 * in the sidecar grows per key: after thousands of keys (some with waiting duplicates), its Redis
 * subscriptions are gone, its metrics have no new series and no guarded request is in flight.
 */
import net from 'node:net';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startRedis, type RedisHandle } from '../helpers/redis-server';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import { freshKey, send } from '../helpers/client';
import { waitFor } from '../helpers/wait';

const PROBLEM = 'urn:idempotency-sidecar:problem:';

/** Runs `task` for 0..count-1 with at most `width` at a time. */
async function pool(count: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

describe('the in-process store under a flood of keys', () => {
  const MAX = 40;
  let upstream: PaymentUpstream;
  let sidecar: SidecarProcess;

  beforeAll(async () => {
    upstream = await startPaymentUpstream();
    sidecar = await startSidecar({
      upstream: upstream.url,
      configYaml: 'routes:\n  - path: /v/short/*\n    ttl: 1s\n',
      env: { IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS: String(MAX) },
    });
  });

  afterAll(async () => {
    expect(await sidecar?.stop()).toBe(0);
    await upstream?.stop();
  });

  test('a new key beyond the limit gets 503 store-full; live records stay and replay; expired ones make room', async () => {
    const short = Array.from({ length: MAX / 2 }, () => freshKey('short'));
    const long = Array.from({ length: MAX / 2 }, () => freshKey('long'));
    for (const key of short) expect((await send(sidecar.url, '/v/short/payments', { key, body: '{}' })).status).toBe(201);
    for (const key of long) expect((await send(sidecar.url, '/payments', { key, body: '{}' })).status).toBe(201);

    const extra = freshKey('extra');
    const refused = await send(sidecar.url, '/payments', { key: extra, body: '{}' });
    expect(refused.status).toBe(503);
    expect(refused.header('content-type')).toBe('application/problem+json');
    expect(refused.json()).toMatchObject({ type: `${PROBLEM}store-full`, status: 503, detail: expect.stringMatching(/maximum of 40 records/) });
    expect(refused.header('retry-after')).toMatch(/^[1-9][0-9]*$/);
    expect(upstream.countKey(extra)).toBe(0);

    // Nothing live was evicted: every earlier key still replays, and ran once.
    for (const key of long) {
      const replay = await send(sidecar.url, '/payments', { key, body: '{}' });
      expect([replay.status, replay.header('idempotent-replayed')]).toEqual([201, 'true']);
      expect(upstream.countKey(key)).toBe(1);
    }
    const operatorLines = sidecar.logs().filter((line) => line['setting'] === 'IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS');
    expect(operatorLines).toHaveLength(1);
    expect(operatorLines[0]?.['msg']).toMatch(/raise IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS/);

    // The short records expire after 1 s; the store sweeps them out to make room. Until then the
    // new key is refused (503, not forwarded), so asking again is harmless.
    let admitted = refused;
    await waitFor(
      async () => {
        admitted = await send(sidecar.url, '/payments', { key: extra, body: '{}' });
        return admitted.status !== 503;
      },
      { timeoutMs: 10_000, intervalMs: 100, what: 'room for a new key once the short records expired' },
    );
    expect(admitted.status).toBe(201);
    expect(upstream.countKey(extra)).toBe(1);
  });
});

describe('a flood of distinct keys with Redis', () => {
  const KEYS = 3_000;
  let upstream: PaymentUpstream;
  let redis: RedisHandle;
  let sidecar: SidecarProcess;

  beforeAll(async () => {
    upstream = await startPaymentUpstream();
    redis = await startRedis();
    sidecar = await startSidecar({
      upstream: upstream.url,
      configYaml: 'routes:\n  - path: /v/wait/*\n    concurrent: wait\n',
      env: { IDEMPOTENCY_REDIS_URL: redis.url, IDEMPOTENCY_LOG_LEVEL: 'warn', IDEMPOTENCY_WAIT_TIMEOUT: '10s' },
    });
  });

  afterAll(async () => {
    expect(await sidecar?.stop()).toBe(0);
    await upstream?.stop();
    await redis?.stop();
  });

  /** The sidecar's own metric series (names with labels, values dropped); Node's runtime ones vary by themselves. */
  async function series(): Promise<string[]> {
    const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    return text
      .split('\n')
      .filter((line) => line.startsWith('idempotency_'))
      .map((line) => line.slice(0, line.lastIndexOf(' ')))
      .sort();
  }

  async function gauge(name: string): Promise<number> {
    const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return Number(line?.split(' ')[1]);
  }

  test(`${KEYS} distinct keys, some with waiting duplicates, leave nothing behind per key`, async () => {
    // Warm up every outcome the flood will produce, so that the series below are complete.
    const warm = freshKey('warm');
    await Promise.all([send(sidecar.url, '/v/wait/slow?ms=100', { key: warm, body: '{}' }), send(sidecar.url, '/v/wait/slow?ms=100', { key: warm, body: '{}' })]);
    await send(sidecar.url, '/payments', { key: warm, body: '{}' });
    const before = await series();
    const replayedBefore = await gauge('idempotency_requests_total{outcome="replayed"}');

    const statuses = new Map<number, number>();
    const count = (status: number): void => void statuses.set(status, (statuses.get(status) ?? 0) + 1);
    await pool(KEYS, 16, async (i) => {
      const key = `flood-${i}-${freshKey()}`;
      if (i % 50 === 0) {
        // A duplicate that waits: it opens a watch (a Redis subscription) on the key.
        const replies = await Promise.all([send(sidecar.url, '/v/wait/slow?ms=30', { key, body: '{}' }), send(sidecar.url, '/v/wait/slow?ms=30', { key, body: '{}' })]);
        for (const reply of replies) count(reply.status);
      } else {
        count((await send(sidecar.url, '/payments', { key, body: '{}' })).status);
      }
    });
    expect(Object.fromEntries(statuses)).toEqual({ 201: KEYS + KEYS / 50 });
    // Each key ran once; the warm-up's key ran once (its second use was a 422).
    expect(upstream.executions.length).toBe(KEYS + 1);

    // The duplicates did wait (each got the first one's response replayed), so watches were opened.
    expect((await gauge('idempotency_requests_total{outcome="replayed"}')) - replayedBefore).toBeGreaterThan(0);
    // No subscription per key is left open in Redis, so none is left in the sidecar's registry.
    const channels = await redisCommand(redis.port, ['PUBSUB', 'CHANNELS', '*']);
    expect(channels).toEqual([]);
    expect(await redisCommand(redis.port, ['PUBSUB', 'NUMPAT'])).toBe(0);
    // No metric series per key, and nothing in flight.
    expect(await series()).toEqual(before);
    expect(await gauge('idempotency_guarded_in_flight')).toBe(0);
    // The sidecar's connections to Redis (it names each one) stay a handful, whatever the number
    // of keys. The test's own probes are unnamed: the ones just closed may not be gone yet.
    const clients = String(await redisCommand(redis.port, ['CLIENT', 'LIST'])).trim().split('\n');
    const sidecars = clients.filter((line) => !/ name= /.test(line));
    expect(sidecars.length).toBeGreaterThanOrEqual(1);
    expect(sidecars.length).toBeLessThanOrEqual(5);
  }, 180_000);
});

type Resp = string | number | null | Resp[];

/** One command over RESP, so the test does not share the sidecar's client library's view. */
async function redisCommand(port: number, args: readonly string[]): Promise<Resp> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  let buffer = Buffer.alloc(0);
  try {
    for await (const chunk of socket) {
      buffer = Buffer.concat([buffer, chunk as Buffer]);
      const parsed = parseResp(buffer, 0);
      if (parsed !== undefined) return parsed.value;
    }
    throw new Error('redis closed the connection');
  } finally {
    socket.destroy();
  }
}

function parseResp(data: Buffer, at: number): { value: Resp; end: number } | undefined {
  const lineEnd = data.indexOf('\r\n', at);
  if (lineEnd === -1) return undefined;
  const kind = String.fromCharCode(data[at] as number);
  const line = data.subarray(at + 1, lineEnd).toString();
  if (kind === '+' || kind === '-') return { value: line, end: lineEnd + 2 };
  if (kind === ':') return { value: Number(line), end: lineEnd + 2 };
  if (kind === '$') {
    const length = Number(line);
    if (length === -1) return { value: null, end: lineEnd + 2 };
    if (data.length < lineEnd + 2 + length + 2) return undefined;
    return { value: data.subarray(lineEnd + 2, lineEnd + 2 + length).toString(), end: lineEnd + 2 + length + 2 };
  }
  if (kind === '*') {
    const items: Resp[] = [];
    let next = lineEnd + 2;
    for (let i = 0; i < Number(line); i++) {
      const item = parseResp(data, next);
      if (item === undefined) return undefined;
      items.push(item.value);
      next = item.end;
    }
    return { value: items, end: next };
  }
  throw new Error(`unexpected RESP type ${kind}`);
}
