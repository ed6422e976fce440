/**
 * The benchmark's payment upstream, run as its own process (forked by the harness, which it tells
 * its port over IPC; it exits when the harness goes away).
 *
 * Every request is drained, counted by path, and answered with the same ~300-byte JSON payment
 * (201 for a write, 200 for a read). Paths under /slow/ are held until the harness posts
 * /__release (at most HOLD_CAP_MS): the in-flight requests of the 409 scenario. Control paths:
 *   GET  /__stats    {"calls": {path: count}, "held": n}
 *   POST /__release  answers every held request now
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PAYMENT_RESPONSE_BODY } from '../payload';

const HOLD_CAP_MS = 120_000;
const calls = new Map<string, number>();
const held = new Set<() => void>();

const responseHeaders = {
  'content-type': 'application/json',
  'content-length': String(PAYMENT_RESPONSE_BODY.length),
  'x-payment-id': 'pay_3MtwBwLkdIwHu7ix28a3tqPa',
};

function answer(req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 200 : 201, responseHeaders);
  res.end(PAYMENT_RESPONSE_BODY);
}

function control(path: string, res: http.ServerResponse): void {
  if (path === '/__stats') {
    const body = JSON.stringify({ calls: Object.fromEntries(calls), held: held.size });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
    return;
  }
  if (path === '/__release') {
    const released = held.size;
    for (const release of [...held]) release();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ released }));
    return;
  }
  res.writeHead(404);
  res.end();
}

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  req.on('data', () => undefined);
  req.on('end', () => {
    if (path.startsWith('/__')) {
      control(path, res);
      return;
    }
    calls.set(path, (calls.get(path) ?? 0) + 1);
    if (!path.startsWith('/slow/')) {
      answer(req, res);
      return;
    }
    const release = (): void => {
      clearTimeout(timer);
      held.delete(release);
      if (!res.destroyed) answer(req, res);
    };
    const timer = setTimeout(release, HOLD_CAP_MS);
    held.add(release);
    res.on('close', () => {
      clearTimeout(timer);
      held.delete(release);
    });
  });
});
// Long enough that pooled connections outlive the pauses between scenarios.
server.keepAliveTimeout = 10_000;

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.send?.({ type: 'ready', port });
});
process.on('disconnect', () => process.exit(0));
