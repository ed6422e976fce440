/**
 * The forwarding both undici-based baselines share (undici-passthrough.ts and
 * redis-floor-passthrough.ts): the request body read into one buffer (as the sidecar must, to
 * fingerprint it), the response read whole and written in one go, hop-by-hop headers dropped.
 */
import type http from 'node:http';
import type { Pool } from 'undici';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length']);

export function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function endToEnd(headers: http.IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

export interface UpstreamAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer;
}

/** Sends the request with its body already read; the answer whole, its headers end-to-end only. */
export async function forwardToPool(pool: Pool, req: http.IncomingMessage, body: Buffer): Promise<UpstreamAnswer> {
  const upstream = await pool.request({ method: req.method as 'POST', path: req.url ?? '/', headers: endToEnd(req.headers), body: body.length > 0 ? body : null });
  const payload = Buffer.from(await upstream.body.arrayBuffer());
  const headers = endToEnd(upstream.headers);
  headers['content-length'] = String(payload.length);
  return { status: upstream.statusCode, headers, body: payload };
}

export function writeAnswer(res: http.ServerResponse, answer: UpstreamAnswer): void {
  res.writeHead(answer.status, answer.headers);
  res.end(answer.body);
}
