/**
 * A real HTTP upstream on loopback that stands for a payment API with no idempotency of its own.
 * It records every execution in a ledger, so each test can assert how many times the upstream
 * really ran.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

export interface Execution {
  readonly method: string;
  readonly url: string;
  /** The path the upstream routed on: the URL path without the `/v/<variant>` prefix. */
  readonly route: string;
  readonly key: string | undefined;
  readonly body: Buffer;
  readonly headers: http.IncomingHttpHeaders;
}

export interface PaymentUpstream {
  readonly url: string;
  readonly port: number;
  /** Every request that reached a handler, in order. */
  readonly executions: readonly Execution[];
  /** Executions whose URL path (query ignored) is `path`. */
  count(path: string): number;
  /** Executions that carried this idempotency key header, exactly as sent. */
  countKey(key: string): number;
  /** Lets every /hold request received so far answer (201, like /payments). */
  releaseHeld(): void;
  stop(): Promise<void>;
}

/** All 256 byte values: a body no text codec survives. */
export const BINARY_BODY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A path may start with `/v/<variant>/`: the upstream ignores that prefix, so that tests can
 * reach the same handler through sidecar route rules of different behaviour.
 *
 * Routes (any method):
 * - /payments[...]       201 with a JSON payment (the request's `amount` in it, whatever its
 *                        JSON), two Set-Cookie headers and X-Payment-Id
 * - /slow?ms=N           like /payments, after N ms
 * - /hold                like /payments, once the test calls releaseHeld(): a call that stays
 *                        in flight exactly as long as a test needs, however slow the machine
 * - /status/NNN          answers status NNN with a small JSON body
 * - /hop                 201 whose Connection header names x-hop, a hop-by-hop header
 * - /hang                executes, then never answers
 * - /reset               executes, then destroys the socket without answering
 * - /binary              answers the 256 byte values as application/octet-stream
 * - /echo[...]           answers method, url, headers and body (base64) as JSON
 * A request's X-Echo-Marker comes back as the response header X-Echoed-Marker (/payments, /echo).
 * - /download?bytes=N    streams N bytes (not counted as an execution of a payment)
 * - upgrade requests     101, then echoes every byte back; to /decline[...] 200 instead, after
 *                        which every byte the connection brings is recorded as an execution of
 *                        route `(after declined upgrade)`: what a proxy must never forward
 */
export interface PaymentUpstreamOptions {
  readonly port?: number;
  /** Largest request header block it reads (Node's default: 16 KiB), with no limit on the count of headers in it. */
  readonly maxHeaderSize?: number;
}

export async function startPaymentUpstream(options: PaymentUpstreamOptions = {}): Promise<PaymentUpstream> {
  const executions: Execution[] = [];
  let nextId = 1;
  const held = new Set<() => void>();
  // A handler that throws (a status writeHead refuses) resets its request: an unhandled rejection
  // would end the test process.
  const server = http.createServer(
    { ...(options.maxHeaderSize === undefined ? {} : { maxHeaderSize: options.maxHeaderSize }) },
    (req, res) => void handle(req, res).catch(() => res.destroy()),
  );
  async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://upstream.invalid');
    const path = url.pathname.replace(/^\/v\/[^/]+(?=\/)/, '');
    // A request whose client went away before its body ended was never received: not an execution.
    const body = await readBody(req).catch(() => undefined);
    if (body === undefined) return;
    const keyHeader = req.headers['idempotency-key'];
    executions.push({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      route: path,
      key: Array.isArray(keyHeader) ? keyHeader.join(',') : keyHeader,
      body,
      headers: req.headers,
    });
    const echoedMarker = (): Record<string, string> => {
      const marker = req.headers['x-echo-marker'];
      return typeof marker === 'string' ? { 'x-echoed-marker': marker } : {};
    };
    const pay = (): void => {
      const id = `pay_${nextId++}`;
      const payload = Buffer.from(JSON.stringify({ id, amount: body.length > 0 ? safeAmount(body) : null, executedAt: Date.now() }));
      res.writeHead(201, [
        'Content-Type', 'application/json',
        'X-Payment-Id', id,
        'Set-Cookie', 'a=1; Path=/',
        'Set-Cookie', 'b=2; Path=/',
        'Content-Length', String(payload.length),
        ...Object.entries(echoedMarker()).flat(),
      ]);
      res.end(payload);
    };
    if (path.startsWith('/payments')) return pay();
    if (path === '/hold') {
      await new Promise<void>((resolve) => held.add(resolve));
      return pay();
    }
    if (path === '/slow') {
      await sleep(Number(url.searchParams.get('ms') ?? '500'));
      return pay();
    }
    if (path.startsWith('/status/')) {
      const status = Number(path.slice('/status/'.length));
      const payload = JSON.stringify({ status, attempt: executions.length });
      res.writeHead(status, { 'content-type': 'application/json' });
      return res.end(payload);
    }
    if (path === '/hop') {
      // A header that Connection names is hop-by-hop: it must be neither passed on nor stored.
      res.writeHead(201, { connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'x-end-to-end': 'kept', 'content-type': 'text/plain' });
      return res.end('hop');
    }
    if (path === '/hang') return; // executes, never answers
    if (path === '/reset') {
      req.socket.destroy();
      return;
    }
    if (path === '/binary') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return res.end(BINARY_BODY);
    }
    if (path.startsWith('/echo')) {
      res.writeHead(200, { 'content-type': 'application/json', ...echoedMarker() });
      return res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString('base64') }));
    }
    if (path === '/download') {
      const total = Number(url.searchParams.get('bytes') ?? '0');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      const pump = (): void => {
        while (sent < total) {
          const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
          sent += piece.length;
          if (!res.write(piece)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      return pump();
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('no such route');
  }
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    executions.push({ method: req.method ?? 'GET', url: req.url ?? '/', route: req.url ?? '/', key: undefined, body: Buffer.alloc(0), headers: req.headers });
    if ((req.url ?? '').startsWith('/decline')) {
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\ndeclined');
      const record = (bytes: Buffer): void => {
        if (bytes.length === 0) return;
        executions.push({ method: '-', url: '(after declined upgrade)', route: '(after declined upgrade)', key: undefined, body: bytes, headers: {} });
      };
      record(head);
      socket.on('data', record);
      // The server's sockets are half-open: without this, a closed peer keeps the server from closing.
      socket.on('end', () => socket.end());
      socket.on('error', () => socket.destroy());
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade ?? ''}\r\nConnection: Upgrade\r\n\r\n`);
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  if (options.maxHeaderSize !== undefined) server.maxHeadersCount = 0;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    executions,
    count: (path) => executions.filter((e) => e.url.split('?')[0] === path).length,
    countKey: (key) => executions.filter((e) => e.key === key).length,
    releaseHeld: () => {
      for (const release of held) release();
      held.clear();
    },
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function safeAmount(body: Buffer): unknown {
  try {
    return (JSON.parse(body.toString('utf8')) as { amount?: unknown }).amount ?? null;
  } catch {
    return null;
  }
}
