/**
 * The guarded call to the upstream, on an undici keep-alive Pool. Its one subtle job is telling
 * apart failures where nothing reached the upstream (safe to run again) from failures after the
 * request was sent (the upstream may have executed: the outcome is unknown).
 */
import { Pool } from 'undici';
import type { Upstream, UpstreamRequest, UpstreamResult } from '../engine/ports';
import { endToEndPairsFromObject } from './headers';

export interface UpstreamClientOptions {
  readonly origin: URL;
  readonly timeoutMs: number;
  /** Sockets kept open to the upstream; sized for a sidecar's load. */
  readonly connections?: number;
}

/** Errors raised before a byte of the request left: the upstream cannot have acted. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Request headers undici sets itself from the body it is given. */
const FRAMING_HEADERS = new Set(['content-length', 'transfer-encoding', 'expect']);

export class UpstreamClient implements Upstream {
  private readonly pool: Pool;

  constructor(private readonly options: UpstreamClientOptions) {
    this.pool = new Pool(options.origin.origin, {
      connections: options.connections ?? 128,
      // Shorter than Node's default server keep-alive (5 s), so we do not reuse a socket the
      // upstream is about to close: that race would turn a clean retry into an unknown outcome.
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 4_000,
      connect: { timeout: Math.min(options.timeoutMs, 10_000) },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  async send(request: UpstreamRequest, signal: AbortSignal): Promise<UpstreamResult> {
    // undici takes a flat [name, value, name, value, ...] list: built directly, no pairs to flatten.
    const headers: string[] = [];
    for (const [name, value] of request.headers) {
      if (!FRAMING_HEADERS.has(name)) headers.push(name, value);
    }
    const started = performance.now();
    const bound = callSignal(signal, this.options.timeoutMs);
    try {
      const response = await this.pool.request({
        method: request.method,
        path: request.path,
        headers,
        body: request.body.length > 0 ? request.body : null,
        // The overall bound, and the engine's abort at the end of a shutdown's grace period. It
        // is NOT tied to the client's connection, so a client that goes away does not abort a
        // payment half way: its response is still stored.
        signal: bound.signal,
      });
      const chunks: Buffer[] = [];
      for await (const chunk of response.body) chunks.push(chunk as Buffer);
      return {
        kind: 'response',
        response: {
          status: response.statusCode,
          headers: endToEndPairsFromObject(response.headers),
          body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
        },
        durationMs: performance.now() - started,
      };
    } catch (caught) {
      return classify(caught);
    } finally {
      bound.dispose();
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * One call's signal: aborted by the timeout (a TimeoutError, as AbortSignal.timeout's) or by the
 * engine's signal, whichever comes first. Not AbortSignal.any: combining with the engine's signal,
 * which lives as long as the process, keeps every call's signal reachable from it on Node 20 and
 * 22 (nodejs/node#55351); here the listener is removed when the call ends.
 */
function callSignal(engine: AbortSignal, timeoutMs: number): { readonly signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(engine.reason);
  const timer = setTimeout(
    () => controller.abort(new DOMException(`the upstream did not answer within ${timeoutMs} ms`, 'TimeoutError')),
    timeoutMs,
  );
  timer.unref();
  if (engine.aborted) onAbort();
  else engine.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      engine.removeEventListener('abort', onAbort);
    },
  };
}

export function classify(caught: unknown): UpstreamResult {
  const error = caught instanceof Error ? caught : new Error(String(caught));
  const code = errorCode(error);
  if (code !== undefined && NOT_SENT_CODES.has(code)) return { kind: 'refused', error };
  if ((code !== undefined && TIMEOUT_CODES.has(code)) || error.name === 'TimeoutError' || error.name === 'AbortError') {
    return { kind: 'timeout', error };
  }
  // UND_ERR_SOCKET, ECONNRESET, EPIPE and anything unforeseen: the request may have been sent.
  return { kind: 'reset', error };
}

function errorCode(error: Error): string | undefined {
  const own = (error as { code?: unknown }).code;
  if (typeof own === 'string') return own;
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) return errorCode(cause);
  return undefined;
}
