/**
 * The plain pass-through on an undici Pool: no idempotency, the request body read into one buffer
 * (as the sidecar must, to fingerprint it), the response read whole and written in one go. The
 * same pool size as the sidecar's guarded client (src/proxy/upstream-client.ts). Its own process;
 * port over IPC.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length']);

const pool = new Pool(process.env['BENCH_UPSTREAM'] ?? '', { connections: 128, keepAliveTimeout: 4_000 });

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const body = await readBody(req);
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
  }
  const upstream = await pool.request({ method: req.method as 'POST', path: req.url ?? '/', headers, body: body.length > 0 ? body : null });
  const payload = Buffer.from(await upstream.body.arrayBuffer());
  const responseHeaders: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(upstream.headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) responseHeaders[name] = value;
  }
  responseHeaders['content-length'] = String(payload.length);
  res.writeHead(upstream.statusCode, responseHeaders);
  res.end(payload);
}

const server = http.createServer((req, res) => {
  forward(req, res).catch(() => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
});

server.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => process.exit(0));
