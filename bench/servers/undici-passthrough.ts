/**
 * The plain pass-through on an undici Pool: no idempotency, the request body read into one buffer
 * (as the sidecar must, to fingerprint it), the response read whole and written in one go. The
 * same pool size as the sidecar's guarded client (src/proxy/upstream-client.ts). Its own process;
 * port over IPC.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { forwardToPool, readBody, writeAnswer } from './undici-forward';

const pool = new Pool(process.env['BENCH_UPSTREAM'] ?? '', { connections: 128, keepAliveTimeout: 4_000 });

async function forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  writeAnswer(res, await forwardToPool(pool, req, await readBody(req)));
}

const server = http.createServer((req, res) => {
  forward(req, res).catch(() => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
});

server.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => process.exit(0));
