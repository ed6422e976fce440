/**
 * HTTP over a raw socket, for requests no client library would send: conflicting framing, bare
 * LF, odd bytes in headers, a client that stalls. Writes the given pieces (with pauses between
 * them when asked), then collects whatever comes back until the server closes the connection or
 * a bound passes.
 */
import net from 'node:net';

export type Piece = string | Buffer | { readonly pauseMs: number };

export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** Interim 1xx responses (100 Continue, 103 Early Hints) that came before this final one, in order. */
  readonly interim: readonly number[];
}

export interface RawExchange {
  /** Every byte the server sent. */
  readonly data: Buffer;
  /** The server closed (or reset) the connection within the bound (or it settled, see ExchangeOptions). */
  readonly closed: boolean;
  /**
   * The final responses in `data`, in order: one per answered request (framed by Content-Length
   * or chunked; a response without either ends the list). Interim 1xx responses are not answers:
   * each is listed in `interim` of the final response that follows it.
   */
  readonly responses: readonly RawResponse[];
  /** Milliseconds from connect to close (or to the bound). */
  readonly elapsedMs: number;
}

export interface ExchangeOptions {
  /** Longest the exchange may take; default 5 s. */
  readonly boundMs?: number;
  /**
   * Stop early once `expect` responses are complete and nothing more has arrived for this long
   * (a keep-alive connection stays open after answering).
   */
  readonly settle?: { readonly responses: number; readonly quietMs: number };
}

export async function rawExchange(baseUrl: string, pieces: readonly Piece[], options: ExchangeOptions = {}): Promise<RawExchange> {
  const { hostname, port } = new URL(baseUrl);
  const boundMs = options.boundMs ?? 5_000;
  const socket = net.connect(Number(port), hostname);
  const chunks: Buffer[] = [];
  let closed = false;
  let quiet: NodeJS.Timeout | undefined;
  let settled: () => void = () => undefined;
  const answered = new Promise<void>((resolve) => (settled = resolve));
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    const settle = options.settle;
    if (settle === undefined) return;
    clearTimeout(quiet);
    if (parseResponses(Buffer.concat(chunks)).length >= settle.responses) quiet = setTimeout(settled, settle.quietMs);
  });
  socket.on('error', () => undefined);
  const started = Date.now();
  const ended = new Promise<void>((resolve) => socket.once('close', () => {
    closed = true;
    resolve();
  }));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const writing = (async () => {
    for (const piece of pieces) {
      if (closed) return;
      if (typeof piece === 'object' && !Buffer.isBuffer(piece)) {
        await new Promise((resolve) => setTimeout(resolve, piece.pauseMs));
      } else {
        socket.write(typeof piece === 'string' ? Buffer.from(piece, 'latin1') : piece);
      }
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([ended, answered, new Promise<void>((resolve) => (timer = setTimeout(resolve, boundMs)))]);
  clearTimeout(timer);
  clearTimeout(quiet);
  const elapsedMs = Date.now() - started;
  socket.destroy();
  await writing;
  const data = Buffer.concat(chunks);
  return { data, closed, responses: parseResponses(data), elapsedMs };
}

/**
 * HTTP/1.1 final responses one after another; stops at the first that is incomplete or unframed.
 * An interim 1xx response is a head with no body (RFC 9110 section 15.2): it is collected and
 * attached to the final response after it. 101 Switching Protocols is final: the bytes after it
 * belong to another protocol.
 */
export function parseResponses(data: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let interim: number[] = [];
  let at = 0;
  while (at < data.length) {
    const headEnd = data.indexOf('\r\n\r\n', at, 'latin1');
    if (headEnd === -1) break;
    const lines = data.subarray(at, headEnd).toString('latin1').split('\r\n');
    const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (statusLine === null) break;
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(statusLine[1]);
    const bodyStart = headEnd + 4;
    if (status >= 100 && status < 200 && status !== 101) {
      interim.push(status);
      at = bodyStart;
      continue;
    }
    const before = interim;
    interim = [];
    if (status === 101) {
      responses.push({ status, headers, body: data.subarray(bodyStart), interim: before });
      break;
    }
    if (headers['transfer-encoding'] === 'chunked') {
      const decoded = decodeChunked(data, bodyStart);
      if (decoded === undefined) break;
      responses.push({ status, headers, body: decoded.body, interim: before });
      at = decoded.end;
      continue;
    }
    const length = headers['content-length'] === undefined ? (status === 204 || status === 304 ? 0 : undefined) : Number(headers['content-length']);
    if (length === undefined) {
      responses.push({ status, headers, body: data.subarray(bodyStart), interim: before });
      break;
    }
    if (bodyStart + length > data.length) break;
    responses.push({ status, headers, body: data.subarray(bodyStart, bodyStart + length), interim: before });
    at = bodyStart + length;
  }
  return responses;
}

function decodeChunked(data: Buffer, from: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  let at = from;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at, 'latin1');
    if (lineEnd === -1) return undefined;
    const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size)) return undefined;
    at = lineEnd + 2;
    if (size === 0) {
      const trailerEnd = data.indexOf('\r\n', at, 'latin1');
      return trailerEnd === -1 ? undefined : { body: Buffer.concat(parts), end: trailerEnd + 2 };
    }
    parts.push(data.subarray(at, at + size));
    at += size + 2;
  }
}
