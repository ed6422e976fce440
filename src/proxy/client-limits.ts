/**
 * What the proxy listener allows a client: how long it may take to send its headers and its whole
 * request, how large its header block may be, how long an idle keep-alive connection stays open;
 * and the answer to whatever Node's HTTP parser refuses (malformed or smuggling-shaped framing,
 * oversized headers, timeouts), rendered as problem+json like every other answer of the sidecar.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { requestChannel, type RequestEvent } from '../diagnostics/request-events';
import { SidecarError } from '../errors';
import { problemBody } from '../problem';

export interface ClientLimits {
  /** IDEMPOTENCY_CLIENT_HEADER_TIMEOUT: from the first byte of a request to the end of its headers. */
  readonly headersTimeoutMs: number;
  /** IDEMPOTENCY_CLIENT_REQUEST_TIMEOUT: from the first byte of a request to the end of its body. */
  readonly requestTimeoutMs: number;
  /** IDEMPOTENCY_MAX_HEADER_SIZE: the request line and headers, in bytes. */
  readonly maxHeaderSize: number;
}

/**
 * An idle keep-alive connection is closed after this long. Longer than the 60 s idle timeout most
 * load balancers and client pools use, so the sidecar is not the side that closes a connection
 * while a client is reusing it (a race that turns a POST into a connection reset); bounded, so
 * that idle connections do not pile up.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** How long an answer to a refused connection may take to flush before the socket is dropped. */
const FLUSH_BOUND_MS = 2_000;

export function serverOptions(limits: ClientLimits): http.ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    maxHeaderSize: limits.maxHeaderSize,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    // Node checks the two timeouts on this interval (30 s by default, which would let a slow
    // client overrun a 10 s limit threefold). A tenth of the shorter limit keeps the overrun
    // small; the check walks only the connections with a request in progress.
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10))),
    // A missing Host is answered by the proxy (problem+json) rather than by Node's bare 400.
    requireHostHeader: false,
    // Never the lenient parser: it is what lets smuggled requests through.
    insecureHTTPParser: false,
  };
}

/** Socket errors that mean the client went away: there is no one to answer. */
const GONE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);

interface ParserError extends Error {
  readonly code?: string;
  /** llhttp's fixed description of what it refused, e.g. "Invalid header value char". */
  readonly reason?: string;
}

/** The problem a refused connection gets, or undefined when the client is gone. */
export function clientErrorProblem(error: ParserError, limits: ClientLimits): SidecarError | undefined {
  const code = error.code ?? '';
  if (GONE.has(code)) return undefined;
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new SidecarError('headers-too-large', {
        detail: `The request line and headers exceed ${limits.maxHeaderSize} bytes; the request was not forwarded.`,
      });
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new SidecarError('request-timeout', {
        detail: `The request was not received in time (headers within ${limits.headersTimeoutMs} ms, the whole request within ${limits.requestTimeoutMs} ms); it was not forwarded.`,
      });
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new SidecarError('body-too-large', { detail: 'The chunk extensions of the request body are too large; the request was not forwarded.' });
    default: {
      // llhttp's reasons are fixed strings of its own, never bytes of the request: safe to echo.
      const reason = typeof error.reason === 'string' && /^[\x20-\x7e]{1,200}$/.test(error.reason) ? ` (${error.reason})` : '';
      return new SidecarError('bad-request', {
        detail: `The request is not valid HTTP/1.1${reason}: ambiguous framing (Content-Length with Transfer-Encoding, differing lengths, an unknown transfer coding), bad line endings or invalid characters are refused. It was not forwarded.`,
      });
    }
  }
}

type HttpSocket = Duplex & { _httpMessage?: http.ServerResponse | null };

/**
 * The server's 'clientError' handler: answers with the problem, then closes the connection (what
 * follows the bad bytes cannot be trusted to be a request boundary). Never throws.
 *
 * The answer must not jump ahead of responses still owed on the connection: when the error is
 * about a later pipelined request (the one being answered was received whole), it waits for the
 * owed responses to finish. When it is about the request being answered (its body timed out or
 * broke), it answers that request now, unless part of a response already went out; then the
 * connection is only closed.
 */
export function answerClientError(limits: ClientLimits): (error: Error, socket: Duplex) => void {
  // The parser reports again for every later chunk of a broken connection: one answer each.
  const answering = new WeakSet<Duplex>();
  return (error, socket) => {
    if (answering.has(socket)) return;
    const problem = clientErrorProblem(error, limits);
    if (problem === undefined || !socket.writable) {
      socket.destroy();
      return;
    }
    answering.add(socket);
    socket.on('error', () => socket.destroy());
    report(problem, error);
    afterOwedResponses(socket, () => writeAndClose(socket, problem));
  };
}

function afterOwedResponses(socket: HttpSocket, answer: () => void): void {
  const owed = socket._httpMessage;
  if (owed === undefined || owed === null) return answer();
  if (owed.req.complete !== true) {
    if (owed.headersSent) socket.destroy();
    else answer();
    return;
  }
  let finished = false;
  owed.once('finish', () => {
    finished = true;
    // After Node has handed the socket to the next queued response, if any.
    setImmediate(() => {
      if (socket.destroyed) return;
      afterOwedResponses(socket, answer);
    });
  });
  owed.once('close', () => {
    if (!finished) socket.destroy();
  });
}

function writeAndClose(socket: Duplex, problem: SidecarError): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = Buffer.from(JSON.stringify(problemBody(problem)));
  const head =
    `HTTP/1.1 ${problem.status} ${problem.title}\r\n` +
    'Content-Type: application/problem+json\r\n' +
    `Content-Length: ${body.length}\r\n` +
    'Cache-Control: no-store\r\n' +
    'Connection: close\r\n\r\n';
  const timer = setTimeout(() => socket.destroy(), FLUSH_BOUND_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), body]), () => socket.destroy());
}

function report(problem: SidecarError, error: Error): void {
  if (!requestChannel.hasSubscribers) return;
  requestChannel.publish({
    requestId: '-',
    method: '-',
    path: '-',
    outcome: 'invalid',
    status: problem.status,
    problem: problem.code,
    durationMs: 0,
    error,
  } satisfies RequestEvent);
}
