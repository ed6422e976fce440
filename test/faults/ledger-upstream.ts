/**
 * The payment API behind the sidecars in the fault suite: a real HTTP server on loopback that
 * records every execution in a ledger (key, request body hash, a unique execution id it puts in
 * its response body, the status it answered, the response bytes) so that the checker can count
 * executions per key and compare every answer a client got with what the upstream really did.
 *
 * What it does is decided by the request body (`behaviour`), so the workload picks a
 * deterministic subset of keys for each behaviour:
 * - ok        201 after `delayMs` (a slow upstream when that exceeds the lock TTL; past the
 *             sidecar's upstream timeout, the sidecar gives up: an unknown outcome)
 * - decline   402 (a final answer the sidecar stores and replays like a 201)
 * - release   the first execution of the key answers `status` (one of the release set: the
 *             sidecar releases the key and a retry runs again), later ones 201
 * - reset     executes, then destroys the connection without answering
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Behaviour =
  | { readonly kind: 'ok'; readonly delayMs: number }
  | { readonly kind: 'decline'; readonly delayMs: number }
  | { readonly kind: 'release'; readonly status: number; readonly delayMs: number }
  | { readonly kind: 'reset'; readonly delayMs: number };

export interface PaymentBody {
  readonly key: string;
  readonly amount: number;
  readonly currency: string;
  readonly behaviour: Behaviour;
}

export interface Execution {
  /** Unique over the suite's life; the response body carries it as `execution`. */
  readonly id: string;
  readonly key: string | undefined;
  readonly bodyHash: string;
  /** Epoch ms when the request (headers and body) had arrived: when the upstream acted. */
  readonly startedAt: number;
  endedAt: number | undefined;
  /** The status it answered, or 'reset' when it closed the connection instead. */
  status: number | 'reset' | undefined;
  /** sha256 of the response body it sent. */
  responseHash: string | undefined;
  /** The response body, kept for evidence in violation reports. */
  responseBody: string | undefined;
  /** The socket was already gone when it answered (the sidecar had given up). */
  clientGone: boolean;
}

export interface LedgerUpstream {
  readonly url: string;
  readonly ledger: readonly Execution[];
  /** Requests in the handler right now. */
  inFlight(): number;
  stop(): Promise<void>;
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function startLedgerUpstream(): Promise<LedgerUpstream> {
  const ledger: Execution[] = [];
  /** Executions so far per key: `release` answers its status on the first one only. */
  const perKey = new Map<string, number>();
  let next = 1;
  let inFlight = 0;
  const server = http.createServer((req, res) => {
    inFlight++;
    void handle(req, res).finally(() => inFlight--);
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let raw: Buffer;
    try {
      raw = await readBody(req);
    } catch {
      return; // the sidecar went away before sending the whole request: nothing executed
    }
    let body: PaymentBody;
    try {
      body = JSON.parse(raw.toString('utf8')) as PaymentBody;
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('not a payment');
      return;
    }
    const keyHeader = req.headers['idempotency-key'];
    const key = Array.isArray(keyHeader) ? keyHeader.join(',') : keyHeader;
    const execution: Execution = {
      id: `ex_${(next++).toString(36)}`,
      key,
      bodyHash: sha256(raw),
      startedAt: Date.now(),
      endedAt: undefined,
      status: undefined,
      responseHash: undefined,
      responseBody: undefined,
      clientGone: false,
    };
    ledger.push(execution);
    const seen = perKey.get(key ?? '') ?? 0;
    perKey.set(key ?? '', seen + 1);

    const behaviour = body.behaviour;
    if (behaviour.delayMs > 0) await sleep(behaviour.delayMs);
    execution.endedAt = Date.now();
    if (behaviour.kind === 'reset') {
      execution.status = 'reset';
      req.socket.destroy();
      return;
    }
    const status =
      behaviour.kind === 'decline' ? 402 : behaviour.kind === 'release' && seen === 0 ? behaviour.status : 201;
    const payload = JSON.stringify({
      execution: execution.id,
      key,
      amount: body.amount,
      currency: body.currency,
      status: status === 201 ? 'succeeded' : status === 402 ? 'declined' : 'try_again',
    });
    execution.status = status;
    execution.responseHash = sha256(payload);
    execution.responseBody = payload;
    execution.clientGone = req.socket.destroyed;
    res.writeHead(status, {
      'content-type': 'application/json',
      'x-execution-id': execution.id,
      'content-length': String(Buffer.byteLength(payload)),
    });
    res.end(payload);
  }

  // Keep-alive sockets live longer than the sidecar's pool keeps them idle (4 s), as the
  // upstream-client comment in src/proxy/upstream-client.ts expects of an upstream.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    ledger,
    inFlight: () => inFlight,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
