/**
 * What the proxy listener allows a client: how long it may take to send its headers and its whole
 * request, how large its header block may be, how long an idle keep-alive connection stays open;
 * and the answer to whatever Node's HTTP parser refuses (malformed or smuggling-shaped framing,
 * oversized headers, timeouts), rendered as problem+json like every other answer of the sidecar.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { SidecarError } from '../errors';
import { requestChannel, type RequestEvent } from './events';
import { problemBody } from './problem';

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

/**
 * The server's 'clientError' handler: answers with the problem when nothing of a response has been
 * written on the connection yet, then closes it (what follows the bad bytes cannot be trusted to
 * be a request boundary). Never throws.
 */
export function answerClientError(limits: ClientLimits): (error: Error, socket: Duplex) => void {
  return (error, socket) => {
    const problem = clientErrorProblem(error, limits);
    // A response already begun on this connection (a request in progress) cannot be replaced.
    const inProgress = (socket as Duplex & { _httpMessage?: http.ServerResponse | null })._httpMessage;
    if (problem === undefined || !socket.writable || inProgress?.headersSent === true) {
      socket.destroy();
      return;
    }
    report(problem, error);
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
    socket.on('error', () => socket.destroy());
    socket.end(Buffer.concat([Buffer.from(head, 'latin1'), body]), () => socket.destroy());
  };
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
