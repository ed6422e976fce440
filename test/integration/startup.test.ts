/**
 * Running the program (contract sections 1 and 5): validation at start-up with exit code 2 and one
 * line naming the setting, --config-test, --help, the in-process store's warning, the keys API off
 * without a token, a SIGTERM that lets in-flight requests finish and exits 0, and one that ends
 * within its grace period whatever the upstream timeout.
 */
import net from 'node:net';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { runSidecarCommand, startSidecar } from '../helpers/sidecar-process';
import { freshKey, send } from '../helpers/client';
import { startRedis } from '../helpers/redis-server';
import { waitFor } from '../helpers/wait';
import { Redis } from 'ioredis';

const CONTRACT_VARIABLES = [
  'IDEMPOTENCY_UPSTREAM', 'IDEMPOTENCY_PORT', 'IDEMPOTENCY_HOST', 'IDEMPOTENCY_ADMIN_PORT', 'IDEMPOTENCY_REDIS_URL',
  'IDEMPOTENCY_REDIS_CLUSTER_NODES', 'IDEMPOTENCY_REDLOCK_URLS', 'IDEMPOTENCY_METHODS', 'IDEMPOTENCY_KEY_HEADER',
  'IDEMPOTENCY_REQUIRE_KEY', 'IDEMPOTENCY_TTL', 'IDEMPOTENCY_LOCK_TTL', 'IDEMPOTENCY_CONCURRENT', 'IDEMPOTENCY_WAIT_TIMEOUT',
  'IDEMPOTENCY_UPSTREAM_TIMEOUT', 'IDEMPOTENCY_MAX_BODY', 'IDEMPOTENCY_TENANT_HEADERS', 'IDEMPOTENCY_STORE_UNAVAILABLE',
  'IDEMPOTENCY_RELEASE_STATUSES', 'IDEMPOTENCY_ON_UNKNOWN', 'IDEMPOTENCY_ADMIN_TOKEN', 'IDEMPOTENCY_STORE_TIMEOUT',
  'IDEMPOTENCY_SHUTDOWN_GRACE',
];

describe('start-up validation', () => {
  test('a bad value exits 2 with one line naming the setting', async () => {
    const result = await runSidecarCommand([], { IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000', IDEMPOTENCY_PORT: 'abc' });
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^idempotency-sidecar: IDEMPOTENCY_PORT: /);
  });

  test('every bad value gets its own line', async () => {
    const result = await runSidecarCommand([], { IDEMPOTENCY_UPSTREAM: 'ftp://x', IDEMPOTENCY_TTL: '24', IDEMPOTENCY_CONCURRENT: 'maybe' });
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines.some((l) => l.includes('IDEMPOTENCY_UPSTREAM'))).toBe(true);
    expect(lines.some((l) => l.includes('IDEMPOTENCY_TTL'))).toBe(true);
    expect(lines.some((l) => l.includes('IDEMPOTENCY_CONCURRENT'))).toBe(true);
  });

  test('a missing upstream is named', async () => {
    const result = await runSidecarCommand([], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/IDEMPOTENCY_UPSTREAM/);
  });

  test('a flag is named as a flag', async () => {
    const result = await runSidecarCommand(['--upstream', 'http://127.0.0.1:3000', '--lock-ttl', 'soon'], {});
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(/^idempotency-sidecar: --lock-ttl: /);
  });

  test('a port already in use exits 2 naming the setting', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      const result = await runSidecarCommand([], {
        IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000',
        IDEMPOTENCY_HOST: '127.0.0.1',
        IDEMPOTENCY_PORT: String(port),
        IDEMPOTENCY_ADMIN_PORT: '0',
        IDEMPOTENCY_LOG_LEVEL: 'silent',
      });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/IDEMPOTENCY_PORT: cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);
    } finally {
      blocker.close();
    }
  });

  test('--config-test prints the effective config with the token redacted and exits 0', async () => {
    const result = await runSidecarCommand(['--config-test'], {
      IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000',
      IDEMPOTENCY_ADMIN_TOKEN: 'secret-admin-token-0123456789',
      IDEMPOTENCY_TTL: '1h',
    });
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(printed).toMatchObject({ upstream: 'http://127.0.0.1:3000', adminToken: 'REDACTED', ttlMs: 3_600_000, port: 8080 });
    expect(result.stdout).not.toContain('secret-admin-token');
  });

  test('--help lists every variable of the contract', async () => {
    const result = await runSidecarCommand(['--help'], {});
    expect(result.code).toBe(0);
    for (const name of CONTRACT_VARIABLES) expect(result.stdout).toContain(name);
  });
});

describe('a running sidecar', () => {
  let upstream: PaymentUpstream;
  beforeAll(async () => {
    upstream = await startPaymentUpstream();
  });
  afterAll(async () => {
    await upstream?.stop();
  });

  test('warns at start that the in-process store is for one replica; the keys API is off without a token', async () => {
    const sidecar = await startSidecar({ upstream: upstream.url });
    try {
      const warning = sidecar.logs().find((l) => l['level'] === 'warn' && l['setting'] === 'IDEMPOTENCY_REDIS_URL');
      expect(warning?.['msg']).toMatch(/one replica/i);
      expect((await send(sidecar.adminUrl, '/keys/anything', { method: 'GET' })).status).toBe(404);
    } finally {
      expect(await sidecar.stop()).toBe(0);
    }
  });

  test('SIGTERM: in-flight requests finish, new connections are refused, exit 0', async () => {
    const sidecar = await startSidecar({ upstream: upstream.url, env: { IDEMPOTENCY_SHUTDOWN_GRACE: '5s' } });
    const key = freshKey();
    const inFlight = send(sidecar.url, '/slow?ms=700', { key, body: '{}' });
    await waitFor(() => upstream.countKey(key) === 1, { what: 'the request at the upstream' });
    const exited = sidecar.stop();
    // Logged just before the listener stops accepting, in the same turn of the event loop.
    await waitFor(() => sidecar.logs().some((l) => String(l['msg']).startsWith('shutting down')), { what: 'the shutdown to begin' });
    await expect(send(sidecar.url, '/payments', { key: freshKey(), body: '{}' })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const reply = await inFlight;
    expect(reply.status).toBe(201);
    expect(await exited).toBe(0);
    expect(upstream.countKey(key)).toBe(1);
  });

  test('SIGTERM on Redis: the in-flight response is stored, its lock released, and the retry replays', async () => {
    const redis = await startRedis();
    const env = { IDEMPOTENCY_REDIS_URL: redis.url, IDEMPOTENCY_SHUTDOWN_GRACE: '5s', IDEMPOTENCY_LOCK_TTL: '30s' };
    const sidecar = await startSidecar({ upstream: upstream.url, env });
    const key = freshKey();
    try {
      const inFlight = send(sidecar.url, '/slow?ms=500', { key, body: '{}' });
      await waitFor(() => upstream.countKey(key) === 1, { what: 'the request at the upstream' });
      const exited = sidecar.stop();
      expect((await inFlight).status).toBe(201);
      expect(await exited).toBe(0);
      const client = new Redis(redis.url);
      try {
        const names = await client.keys('*');
        // The record stays; the 30 s lock was released rather than left to expire.
        expect(names.filter((n) => n.includes(':r:'))).toHaveLength(1);
        expect(names.filter((n) => n.includes(':l:'))).toHaveLength(0);
      } finally {
        client.disconnect();
      }
      const next = await startSidecar({ upstream: upstream.url, env });
      try {
        expect((await send(next.url, '/slow?ms=500', { key, body: '{}' })).header('idempotent-replayed')).toBe('true');
      } finally {
        expect(await next.stop()).toBe(0);
      }
      expect(upstream.countKey(key)).toBe(1);
    } finally {
      await redis.stop();
    }
  });

  test('SIGTERM ends within its grace period: a call that outlives it is abandoned as an unknown outcome, its client answered, the process gone about a second later', async () => {
    const redis = await startRedis();
    const graceMs = 2_000;
    const token = 'admin-token-for-the-grace-test';
    const env = {
      IDEMPOTENCY_REDIS_URL: redis.url,
      IDEMPOTENCY_SHUTDOWN_GRACE: `${graceMs}ms`,
      // Far beyond the grace period: only the shutdown can end the long call in time.
      IDEMPOTENCY_UPSTREAM_TIMEOUT: '60s',
      IDEMPOTENCY_ADMIN_TOKEN: token,
    };
    const sidecar = await startSidecar({ upstream: upstream.url, env });
    const shortKey = freshKey('short');
    const longKey = freshKey('long');
    try {
      const short = send(sidecar.url, '/slow?ms=500', { key: shortKey, body: '{}' });
      // Executes and never answers: it outlives any grace period.
      const long = send(sidecar.url, '/hang', { key: longKey, body: '{}' });
      await waitFor(() => upstream.countKey(shortKey) === 1 && upstream.countKey(longKey) === 1, { what: 'both calls at the upstream' });
      const signalledAt = performance.now();
      const exited = sidecar.stop().then((code) => ({ code, afterMs: performance.now() - signalledAt }));

      expect((await short).status).toBe(201);
      const abandoned = await long;
      const answeredAfterMs = performance.now() - signalledAt;
      expect(abandoned.status).toBe(504);
      expect(abandoned.header('content-type')).toBe('application/problem+json');
      expect(abandoned.json()).toMatchObject({ type: 'urn:idempotency-sidecar:problem:upstream-abandoned', status: 504 });
      expect(answeredAfterMs).toBeGreaterThanOrEqual(graceMs);

      const { code, afterMs } = await exited;
      expect(code).toBe(0);
      expect(afterMs).toBeGreaterThanOrEqual(graceMs);
      expect(afterMs).toBeLessThan(graceMs + 1_500);
      const unknownLine = sidecar.logs().find((l) => l['reason'] === 'abandoned');
      expect(unknownLine).toMatchObject({ level: 'error', alert: 'unknown_outcome', action: 'hold' });

      // What another replica sees: the short call stored, the long one held as unknown, no lock left.
      const next = await startSidecar({ upstream: upstream.url, env });
      try {
        const auth = { authorization: `Bearer ${token}` };
        expect((await send(next.adminUrl, `/keys/${shortKey}`, { method: 'GET', headers: auth })).json()).toEqual([
          expect.objectContaining({ state: 'completed', status: 201 }),
        ]);
        expect((await send(next.adminUrl, `/keys/${longKey}`, { method: 'GET', headers: auth })).json()).toEqual([
          expect.objectContaining({ state: 'unknown' }),
        ]);
        const retry = await send(next.url, '/hang', { key: longKey, body: '{}' });
        expect(retry.status).toBe(409);
        expect(retry.json()).toMatchObject({ type: 'urn:idempotency-sidecar:problem:outcome-unknown' });
        expect((await send(next.url, '/slow?ms=500', { key: shortKey, body: '{}' })).header('idempotent-replayed')).toBe('true');
      } finally {
        expect(await next.stop()).toBe(0);
      }
      expect(upstream.countKey(shortKey)).toBe(1);
      expect(upstream.countKey(longKey)).toBe(1);
    } finally {
      await sidecar.stop();
      await redis.stop();
    }
  });
});
