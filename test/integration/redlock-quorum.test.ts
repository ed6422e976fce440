/**
 * Locks on a Redlock quorum of independent Redis masters (IDEMPOTENCY_REDLOCK_URLS), separate
 * from the record store: the quorum holds with a minority down, and fails closed (503, nothing
 * forwarded) without a majority; it recovers when the masters come back.
 */
import { Redis } from 'ioredis';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startRedis, type RedisHandle } from '../helpers/redis-server';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import { freshKey, send, sleep } from '../helpers/client';
import { waitFor } from '../helpers/wait';

const PROBLEM = 'urn:idempotency-sidecar:problem:';

describe.each([1, 3, 5])('a quorum of %i lock master(s)', (size) => {
  let upstream: PaymentUpstream;
  let store: RedisHandle;
  let masters: RedisHandle[];
  let sidecar: SidecarProcess;
  const minority = Math.floor((size - 1) / 2);

  beforeAll(async () => {
    upstream = await startPaymentUpstream();
    store = await startRedis();
    masters = await Promise.all(Array.from({ length: size }, () => startRedis()));
    sidecar = await startSidecar({
      upstream: upstream.url,
      env: {
        IDEMPOTENCY_REDIS_URL: store.url,
        IDEMPOTENCY_REDLOCK_URLS: masters.map((m) => m.url).join(','),
        IDEMPOTENCY_STORE_TIMEOUT: '300ms',
      },
    });
  });
  afterAll(async () => {
    expect(await sidecar?.stop()).toBe(0);
    await upstream?.stop();
    await Promise.all([store, ...(masters ?? [])].map((r) => r?.stop()));
  });

  test('the lock lives on the masters, not on the record store, while the upstream works', async () => {
    const key = freshKey();
    const running = send(sidecar.url, '/hold', { key, body: '{}' });
    // The lock is taken before the call: once the upstream has it, the lock is there, and stays
    // until the upstream is let answer.
    await waitFor(() => upstream.countKey(key) === 1, { intervalMs: 10, what: 'the request at the upstream' });
    const lockKeys = async (url: string): Promise<string[]> => {
      const client = new Redis(url, { lazyConnect: true });
      await client.connect();
      try {
        return (await client.keys('*')).filter((name) => name.includes(':l:'));
      } finally {
        client.disconnect();
      }
    };
    // Redlock promises the lock on a majority, not on every master: a master whose connection
    // is still coming up when the sidecar has just started votes against, and the quorum holds.
    const holding = await Promise.all(masters.map(async (master) => (await lockKeys(master.url)).length));
    for (const count of holding) expect(count).toBeLessThanOrEqual(1);
    expect(holding.filter((count) => count === 1).length).toBeGreaterThanOrEqual(Math.floor(size / 2) + 1);
    expect(await lockKeys(store.url)).toHaveLength(0);
    upstream.releaseHeld();
    expect((await running).status).toBe(201);
    const metrics = (await send(sidecar.adminUrl, '/metrics', { method: 'GET' })).body.toString();
    expect(metrics).toMatch(/^idempotency_lock_wait_seconds_count\{result="acquired"\} [1-9]\d*$/m);
    expect(upstream.countKey(key)).toBe(1);
  });

  test(`with ${minority} master(s) down the quorum holds: execute once, replay, 409 in flight`, async () => {
    for (const master of masters.slice(0, minority)) await master.stop();
    try {
      const key = freshKey();
      const first = send(sidecar.url, '/hold', { key, body: '{}' });
      await waitFor(() => upstream.countKey(key) === 1, { intervalMs: 10, what: 'the first request at the upstream' });
      const duplicate = await send(sidecar.url, '/hold', { key, body: '{}' });
      expect(duplicate.status).toBe(409);
      upstream.releaseHeld();
      expect((await first).status).toBe(201);
      expect((await send(sidecar.url, '/hold', { key, body: '{}' })).header('idempotent-replayed')).toBe('true');
      expect(upstream.countKey(key)).toBe(1);
    } finally {
      for (const master of masters.slice(0, minority)) await master.restart();
    }
  });

  test('without a majority the locks fail closed: 503, nothing forwarded; they recover when masters return', async () => {
    const down = masters.slice(0, minority + 1);
    for (const master of down) await master.stop();
    const key = freshKey();
    try {
      const reply = await send(sidecar.url, '/payments', { key, body: '{}' });
      expect(reply.status).toBe(503);
      expect(reply.json()).toMatchObject({ type: `${PROBLEM}store-unavailable` });
      expect(reply.header('retry-after')).toMatch(/^[1-9][0-9]*$/);
      expect(upstream.countKey(key)).toBe(0);
    } finally {
      for (const master of down) await master.restart();
    }
    let after = await send(sidecar.url, '/payments', { key, body: '{}' });
    for (let i = 0; i < 50 && after.status === 503; i++) {
      await sleep(100);
      after = await send(sidecar.url, '/payments', { key, body: '{}' });
    }
    expect(after.status).toBe(201);
    expect(upstream.countKey(key)).toBe(1);
  });
});
