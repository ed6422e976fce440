/**
 * Running the program (contract section 1): validation at start-up with exit code 2 and one line
 * naming the setting, --config-test, --help, the in-process store's warning, the keys API off
 * without a token, and a SIGTERM that lets in-flight requests finish and exits 0.
 */
import net from 'node:net';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { runSidecarCommand, startSidecar } from '../helpers/sidecar-process';
import { freshKey, send, sleep } from '../helpers/client';
import { freePort } from '../helpers/free-port';
import { startRedis } from '../helpers/redis-server';
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
        IDEMPOTENCY_ADMIN_PORT: String(await freePort()),
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
    await sleep(200);
    const exited = sidecar.stop();
    await sleep(100);
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
      await sleep(150);
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
});
