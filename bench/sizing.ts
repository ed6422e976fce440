/**
 * How many records fit in a GiB of Redis: `npm run bench:sizing`.
 *
 * Starts a Redis on a free port, an upstream in this process that answers payments of a given
 * size, and the sidecar on that Redis; sends N first-time requests with distinct keys (each leaves
 * one completed record) and reads `INFO memory` before and after. The
 * difference over N is what one record costs the Redis that holds it, overheads included (the
 * string's allocation, the key name, the expiry entry). Run per response size,
 * and with encryption at rest on and off.
 *
 *   npm run bench:sizing                      # 20,000 records per variant
 *   npm run bench:sizing -- --records=50000
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Redis from 'ioredis';
import { Pool } from 'undici';
import { startRedis } from '../test/helpers/redis-server';
import { paymentRequestBody } from './payload';
import { findRepoRoot, freePort, startSidecarProcess } from './processes';

interface Variant {
  readonly label: string;
  readonly responseBytes: number;
  readonly encrypted: boolean;
}

const VARIANTS: readonly Variant[] = [
  { label: 'payment response, 300 B', responseBytes: 300, encrypted: false },
  { label: 'payment response, 1 KiB', responseBytes: 1_024, encrypted: false },
  { label: 'payment response, 4 KiB', responseBytes: 4_096, encrypted: false },
  { label: 'payment response, 300 B, encrypted', responseBytes: 300, encrypted: true },
  { label: 'payment response, 1 KiB, encrypted', responseBytes: 1_024, encrypted: true },
];

const CONCURRENCY = 32;
const GIB = 1024 ** 3;

/** A JSON payment of exactly `size` bytes, as an API would answer it. */
function paymentResponse(size: number): Buffer {
  const head = '{"id":"pay_3MtwBwLkdIwHu7ix28a3tqPa","object":"payment","amount":1000,"currency":"eur","status":"succeeded","metadata":"';
  return Buffer.from(head + 'x'.repeat(Math.max(0, size - head.length - 2)) + '"}', 'utf8');
}

async function startUpstream(responseBytes: number): Promise<{ url: string; close: () => Promise<void> }> {
  const body = paymentResponse(responseBytes);
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(201, {
        'content-type': 'application/json',
        'content-length': String(body.length),
        'x-payment-id': 'pay_3MtwBwLkdIwHu7ix28a3tqPa',
        'x-request-id': randomBytes(8).toString('hex'),
      });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  const match = /^used_memory:(\d+)/m.exec(info);
  if (!match) throw new Error('INFO memory has no used_memory');
  return Number(match[1]);
}

/** An "encrypted" figure measured on records stored in the clear would be a wrong figure. */
async function expectNoPlaintext(redis: Redis): Promise<void> {
  const [, names] = await redis.scan('0', 'COUNT', 50);
  for (const name of names) {
    if (!name.includes(':r:')) continue;
    const value = await redis.getBuffer(name);
    if (value?.includes('pay_3MtwBwLkdIwHu7ix28a3tqPa')) throw new Error(`record ${name} holds the response in the clear: encryption is not on`);
  }
}

async function measure(root: string, variant: Variant, records: number): Promise<{ bytesPerRecord: number; keys: number }> {
  const redisHandle = await startRedis();
  const upstream = await startUpstream(variant.responseBytes);
  const redis = new Redis(redisHandle.url);
  const env: Record<string, string> = { IDEMPOTENCY_REDIS_URL: redisHandle.url, IDEMPOTENCY_LOG_LEVEL: 'warn' };
  if (variant.encrypted) env['IDEMPOTENCY_ENCRYPTION_KEYS'] = `k1:${randomBytes(32).toString('base64')}`;
  const sidecar = await startSidecarProcess({
    name: 'sidecar',
    bin: path.join(root, 'bin', 'idempotency-sidecar.js'),
    upstream: upstream.url,
    port: await freePort(),
    adminPort: await freePort(),
    env,
  });
  const pool = new Pool(sidecar.url, { connections: CONCURRENCY });
  try {
    const body = paymentRequestBody(200);
    const prefix = `size-${randomBytes(4).toString('hex')}-`;
    // One record first: scripts loaded; what is measured is the per-record cost.
    const send = async (i: number): Promise<void> => {
      const response = await pool.request({
        method: 'POST',
        path: '/payments',
        headers: { 'content-type': 'application/json', 'idempotency-key': `${prefix}${i}`, authorization: 'Bearer sizing-tenant' },
        body,
      });
      await response.body.arrayBuffer();
      if (response.statusCode !== 201) throw new Error(`request ${i}: status ${response.statusCode}`);
    };
    await send(-1);
    const before = await usedMemory(redis);
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < records) await send(next++);
      }),
    );
    const after = await usedMemory(redis);
    if (variant.encrypted) await expectNoPlaintext(redis);
    return { bytesPerRecord: (after - before) / records, keys: await redis.dbsize() };
  } finally {
    await pool.close();
    await sidecar.stop(5_000);
    redis.disconnect();
    await upstream.close();
    await redisHandle.stop();
  }
}

async function main(): Promise<void> {
  const flag = process.argv.find((arg) => arg.startsWith('--records='));
  const records = flag === undefined ? 20_000 : Number(flag.slice('--records='.length));
  if (!Number.isInteger(records) || records < 1_000) throw new Error(`--records must be a whole number of at least 1000 (got ${flag})`);
  const root = findRepoRoot();
  process.stdout.write(`records per GiB of Redis used_memory, ${records.toLocaleString('en-US')} completed records per variant, 200-byte requests, one tenant\n\n`);
  process.stdout.write('variant                                    bytes/record  records/GiB\n');
  process.stdout.write('-----------------------------------------  ------------  -----------\n');
  for (const variant of VARIANTS) {
    const { bytesPerRecord } = await measure(root, variant, records);
    process.stdout.write(
      `${variant.label.padEnd(41)}  ${Math.round(bytesPerRecord).toLocaleString('en-US').padStart(12)}  ${Math.floor(GIB / bytesPerRecord).toLocaleString('en-US').padStart(11)}\n`,
    );
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`sizing failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
