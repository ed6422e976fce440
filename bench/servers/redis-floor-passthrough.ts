/**
 * The floor for any proxy that makes a request idempotent on Redis: the undici pass-through
 * (undici-passthrough.ts) plus the two Redis calls a first-time request cannot avoid, a claim
 * before the upstream call and a store after it, on one ioredis client with auto-pipelining as the
 * sidecar uses. No fingerprint, no tenant, no lease renewal, no logs or metrics, no replay path:
 * what is left when everything the sidecar adds to correctness and operation is taken away.
 * Comparing the sidecar's first-time row against this one separates the cost of its own code from
 * the cost of talking to Redis in Node. Its own process; port over IPC.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';
import { Pool } from 'undici';
import { forwardToPool, readBody, writeAnswer } from './undici-forward';

const pool = new Pool(process.env['BENCH_UPSTREAM'] ?? '', { connections: 128, keepAliveTimeout: 4_000 });
const redis = new Redis(process.env['BENCH_REDIS'] ?? '', { enableAutoPipelining: true, maxRetriesPerRequest: 0 });
const TTL_MS = 86_400_000;

async function forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const body = await readBody(req);
  const key = `floor:${String(req.headers['idempotency-key'])}`;
  const claimed = await redis.set(key, 'in-flight', 'PX', TTL_MS, 'NX');
  if (claimed !== 'OK') {
    res.writeHead(409);
    res.end();
    return;
  }
  const answer = await forwardToPool(pool, req, body);
  await redis.set(key, answer.body, 'PX', TTL_MS);
  writeAnswer(res, answer);
}

const server = http.createServer((req, res) => {
  forward(req, res).catch(() => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
});

server.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => process.exit(0));
