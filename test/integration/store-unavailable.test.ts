/**
 * The contract's row "record store unreachable or slower than the store timeout": a real Redis
 * that is stopped, or frozen with SIGSTOP, under a running sidecar; and recovery without a restart.
 */
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startRedis, type RedisHandle } from '../helpers/redis-server';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import { freshKey, send } from '../helpers/client';
import { waitFor } from '../helpers/wait';

const PROBLEM = 'urn:idempotency-sidecar:problem:';

describe('record store unavailable, reject mode', () => {
  let upstream: PaymentUpstream;
  let redis: RedisHandle;
  let sidecar: SidecarProcess;

  beforeAll(async () => {
    upstream = await startPaymentUpstream();
    redis = await startRedis();
    sidecar = await startSidecar({
      upstream: upstream.url,
      env: { IDEMPOTENCY_REDIS_URL: redis.url, IDEMPOTENCY_STORE_TIMEOUT: '300ms' },
    });
  });
  afterAll(async () => {
    expect(await sidecar?.stop()).toBe(0);
    await upstream?.stop();
    await redis?.stop();
  });

  test('Redis stopped: 503 with Retry-After, not forwarded; readiness fails, liveness holds; recovery without restart', async () => {
    const key = freshKey();
    await redis.stop();
    const reply = await send(sidecar.url, '/payments', { key, body: '{}' });
    expect(reply.status).toBe(503);
    expect(reply.header('content-type')).toBe('application/problem+json');
    expect(reply.json()).toMatchObject({ type: `${PROBLEM}store-unavailable`, status: 503 });
    expect(reply.header('retry-after')).toMatch(/^[1-9][0-9]*$/);
    expect(upstream.countKey(key)).toBe(0);
    expect((await send(sidecar.adminUrl, '/readyz', { method: 'GET' })).status).toBe(503);
    expect((await send(sidecar.adminUrl, '/healthz', { method: 'GET' })).status).toBe(200);
    // What is not guarded never touches the store, so it keeps working.
    expect((await send(sidecar.url, '/echo/while-down', { method: 'GET' })).status).toBe(200);

    await redis.restart();
    await waitFor(async () => (await send(sidecar.adminUrl, '/readyz', { method: 'GET' })).status === 200, { intervalMs: 100 });
    const after = await send(sidecar.url, '/payments', { key, body: '{}' });
    expect(after.status).toBe(201);
    expect((await send(sidecar.url, '/payments', { key, body: '{}' })).header('idempotent-replayed')).toBe('true');
    expect(upstream.countKey(key)).toBe(1);
  });

  test('Redis frozen (SIGSTOP): 503 once the store timeout passes, no hang', async () => {
    const key = freshKey();
    redis.pause();
    try {
      const started = Date.now();
      const reply = await send(sidecar.url, '/payments', { key, body: '{}' });
      expect(reply.status).toBe(503);
      expect(reply.json()).toMatchObject({ type: `${PROBLEM}store-unavailable` });
      // A bound on the hang, not a speed claim: the store timeout is 300 ms.
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(upstream.countKey(key)).toBe(0);
    } finally {
      redis.resume();
    }
    await waitFor(async () => (await send(sidecar.adminUrl, '/readyz', { method: 'GET' })).status === 200, { intervalMs: 100 });
    expect((await send(sidecar.url, '/payments', { key, body: '{}' })).status).toBe(201);
    expect(upstream.countKey(key)).toBe(1);
  });
});

describe('record store unavailable, passthrough mode', () => {
  test('guarded requests go through unguarded while Redis is down', async () => {
    const upstream = await startPaymentUpstream();
    const redis = await startRedis();
    const sidecar = await startSidecar({
      upstream: upstream.url,
      env: { IDEMPOTENCY_REDIS_URL: redis.url, IDEMPOTENCY_STORE_TIMEOUT: '300ms', IDEMPOTENCY_STORE_UNAVAILABLE: 'passthrough' },
    });
    try {
      await redis.stop();
      const key = freshKey();
      const first = await send(sidecar.url, '/payments', { key, body: '{"amount":3}' });
      const second = await send(sidecar.url, '/payments', { key, body: '{"amount":3}' });
      expect(first.status).toBe(201);
      expect(second.status).toBe(201);
      expect(upstream.countKey(key)).toBe(2);
      expect(upstream.executions.filter((e) => e.key === key).map((e) => e.body.toString())).toEqual(['{"amount":3}', '{"amount":3}']);
    } finally {
      expect(await sidecar.stop()).toBe(0);
      await upstream.stop();
      await redis.stop();
    }
  });
});
