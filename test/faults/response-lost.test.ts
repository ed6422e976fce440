/**
 * Regression test for what the fault suite found in its store-restart runs (CONTRACT.md section
 * 5: "A response that was given to a client is never lost while its record lives and Redis keeps
 * its data: a retry gets it"; README: "the retry, once the store is back, gets it replayed. The
 * payment is not run again.").
 *
 * The store Redis goes down while the upstream call is in progress and stays down longer than the
 * owner retries its write of the response (one lock TTL), then comes back with every write it
 * acknowledged (AOF, fsync always). Before c790e68 the client was given the 201 anyway and its
 * retry got 409 outcome-unknown (hold) or a second payment (release). Now the client may get
 * either the 201 or 503 response-not-recorded; a client then retries as a payment client does
 * (503 with Retry-After: again, bounded), and its first other answer must be the single
 * execution's 201, replayed, with the upstream run once. The retry is sent as soon as the store
 * answers again (duplicates of a payment retry on their own schedules during an outage).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { send, freshKey, sleep, type Reply } from '../helpers/client';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { startRedis, type RedisHandle } from '../helpers/redis-server';
import { startSidecar, type SidecarProcess } from '../helpers/sidecar-process';
import { waitFor } from '../helpers/wait';

const LOCK_TTL_MS = 1_000;

describe.each(['hold', 'release'] as const)('store down across the completion, IDEMPOTENCY_ON_UNKNOWN=%s', (onUnknown) => {
  let upstream: PaymentUpstream;
  let redis: RedisHandle;
  let sidecar: SidecarProcess;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'idem-response-lost-'));
    upstream = await startPaymentUpstream();
    redis = await startRedis({ appendOnly: true, dataDir });
    sidecar = await startSidecar({
      upstream: upstream.url,
      env: {
        IDEMPOTENCY_REDIS_URL: redis.url,
        IDEMPOTENCY_LOCK_TTL: `${LOCK_TTL_MS}ms`,
        IDEMPOTENCY_STORE_TIMEOUT: '500ms',
        IDEMPOTENCY_ON_UNKNOWN: onUnknown,
        IDEMPOTENCY_SHUTDOWN_GRACE: '2s',
      },
    });
  });
  afterAll(async () => {
    await sidecar?.stop();
    await upstream?.stop();
    await redis?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  test('the response is recorded: the retry gets the one execution replayed, and the upstream ran once', async () => {
    const key = freshKey('lost');
    const body = '{"amount":1000}';
    const first = send(sidecar.url, '/slow?ms=600', { key, body });
    await waitFor(() => upstream.countKey(key) === 1, { timeoutMs: 5_000, what: 'the upstream call started', intervalMs: 20 });
    await redis.stop();
    const given = await first;
    // Down for longer than the owner retries its write (one lock TTL) and than its lease.
    await sleep(LOCK_TTL_MS * 2);
    await redis.restart();

    // What the first client got: the response, or a 503 telling it to come back for it.
    if (given.status !== 201) {
      expect({ status: given.status, type: given.json()['type'] }).toEqual({ status: 503, type: 'urn:idempotency-sidecar:problem:response-not-recorded' });
    }
    // A duplicate of the payment (another sender, or this client's retry) sent as soon as the
    // store answers again, and retried as a payment client does on the answers that say "later":
    // 503 while the sidecar reconnects, 409 request-in-flight while the first owner still has the
    // key (its lease lapsed during the outage: the grace period gives it time to write). Never on
    // outcome-unknown, which would be the failure this test is about.
    const later = (reply: Reply): boolean =>
      reply.status === 503 || (reply.status === 409 && reply.json()['type'] === 'urn:idempotency-sidecar:problem:request-in-flight');
    let retry = await send(sidecar.url, '/slow?ms=600', { key, body });
    for (let attempt = 1; later(retry) && attempt < 200; attempt++) {
      await sleep(25);
      retry = await send(sidecar.url, '/slow?ms=600', { key, body });
    }
    // Each mode has an upstream of its own, whose first payment this is.
    const payment = given.status === 201 ? given.header('x-payment-id') : 'pay_1';
    expect({ status: retry.status, problem: retry.header('content-type') === 'application/problem+json' ? retry.json()['type'] : undefined, replayed: retry.header('idempotent-replayed'), payment: retry.header('x-payment-id') }).toEqual({
      status: 201,
      problem: undefined,
      replayed: 'true',
      payment,
    });
    expect(upstream.countKey(key)).toBe(1);
  }, 30_000);
});
