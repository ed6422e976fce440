/**
 * A small payment API with no idempotency of its own: every POST /payments charges again. It is
 * what the sidecar is for, and what the demo puts behind it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';

export interface Payment {
  readonly id: string;
  readonly amount: number;
  readonly currency: string;
  readonly createdAt: string;
}

export interface PaymentApi {
  readonly url: string;
  readonly payments: readonly Payment[];
  close(): Promise<void>;
}

export async function startPaymentApi(options: { port?: number; host?: string; processingMs?: number } = {}): Promise<PaymentApi> {
  const payments: Payment[] = [];
  const processingMs = options.processingMs ?? 150;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.url === '/payments' && req.method === 'POST') {
        let amount = 0;
        let currency = 'EUR';
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { amount?: unknown; currency?: unknown };
          if (typeof body.amount === 'number') amount = body.amount;
          if (typeof body.currency === 'string') currency = body.currency;
        } catch {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'body must be JSON: {"amount": 1000, "currency": "EUR"}' }));
          return;
        }
        // The card network takes a while: long enough for a client's retry to arrive in flight.
        setTimeout(() => {
          const payment: Payment = { id: `pay_${randomUUID().slice(0, 8)}`, amount, currency, createdAt: new Date().toISOString() };
          payments.push(payment);
          res.writeHead(201, { 'content-type': 'application/json', location: `/payments/${payment.id}` });
          res.end(JSON.stringify(payment));
        }, processingMs);
        return;
      }
      if (req.url === '/payments' && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payments));
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not found' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    payments,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
