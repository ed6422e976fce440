/**
 * The proxy listener: decides per request whether it is guarded, extracts and checks the key,
 * reads the body into the fingerprint, and hands the rest to the engine. What is not guarded is
 * streamed through untouched.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { ResolvedRoute } from '../config/routes';
import type { TenantSource } from '../config/settings';
import { SidecarError } from '../errors';
import { FingerprintBuilder } from '../engine/fingerprint';
import type { EngineResult, IdempotencyEngine } from '../engine/idempotency-engine';
import { keyFromJsonBody } from '../engine/json-pointer';
import { type KeyLookup, parseIdempotencyKey, validateKey } from '../engine/key';
import { answerClientError, serverOptions, type ClientLimits } from './client-limits';
import { guardedChannel, requestChannel, type RequestEvent, type RequestOutcome } from './events';
import { continueInOrder } from './expect-continue';
import { endToEndPairs } from './headers';
import type { PassThrough } from './passthrough';
import { sendProblem } from './problem';
import { readRequestBody } from './request-body';
import { writeStoredResponse } from './response-writer';
import { type TenantOf, tenantSource } from './tenant-source';

export interface ProxyServerDependencies {
  readonly resolveRoute: (method: string, path: string) => ResolvedRoute;
  readonly engine: IdempotencyEngine;
  readonly passThrough: PassThrough;
  readonly maxBody: number;
  /** Lower case. */
  readonly tenantHeaders: readonly string[];
  /** Default `headers`; `client-certificate` needs `tls` with a client CA. */
  readonly tenantFrom?: TenantSource;
  /** Set: the listener speaks HTTPS with these options (serverTlsOptions); unset: plain HTTP. */
  readonly tls?: https.ServerOptions;
  readonly limits: ClientLimits;
}

export interface ProxyServer {
  readonly server: http.Server | https.Server;
  /**
   * Resolves when every request handled so far has settled, including guarded calls whose client
   * went away (their responses are still being stored): what a graceful shutdown waits for.
   */
  settled(): Promise<void>;
}

export function createProxyServer(deps: ProxyServerDependencies): ProxyServer {
  const pending = new Set<Promise<void>>();
  const tenantOf = tenantSource(deps.tenantFrom ?? 'headers', deps.tenantHeaders);
  const handler: http.RequestListener = (req, res) => {
    const handling = handleRequest(deps, tenantOf, req, res).catch(() => {
      // handleRequest answers every failure itself; a throw here is a bug: close the exchange.
      res.destroy();
    });
    pending.add(handling);
    void handling.finally(() => pending.delete(handling));
  };
  // The same handler and limits on both: what differs is the socket under the request, not the request.
  const options = serverOptions(deps.limits);
  const server = deps.tls === undefined ? http.createServer(options, handler) : https.createServer({ ...options, ...deps.tls }, handler);
  server.on('clientError', answerClientError(deps.limits));
  // Interim 100 Continue answers must not overtake or split the final answers on a pipelined connection.
  server.on('checkContinue', continueInOrder(handler));
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    deps.passThrough.upgrade(req, socket, head);
  });
  return {
    server,
    async settled(): Promise<void> {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
  };
}

async function handleRequest(
  deps: ProxyServerDependencies,
  tenantOf: TenantOf,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const started = performance.now();
  const method = req.method ?? 'GET';
  const target = req.url ?? '/';
  const queryAt = target.indexOf('?');
  const path = queryAt === -1 ? target : target.slice(0, queryAt);
  const requestId = requestIdOf(req);
  const report = (event: Omit<RequestEvent, 'requestId' | 'method' | 'path' | 'durationMs'>): void => {
    if (requestChannel.hasSubscribers) {
      requestChannel.publish({ requestId, method, path, durationMs: performance.now() - started, ...event } satisfies RequestEvent);
    }
  };
  const refuse = (error: SidecarError, outcome: RequestOutcome, extra: Partial<RequestEvent> = {}): void => {
    sendProblem(res, error, { closeConnection: error.code === 'body-too-large' });
    report({ outcome, status: error.status, problem: error.code, ...extra });
  };

  if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
    return refuse(new SidecarError('bad-request', { detail: 'An HTTP/1.1 request must carry a Host header; the request was not forwarded.' }), 'invalid');
  }

  const route = deps.resolveRoute(method, path);
  if (!route.guarded) {
    deps.passThrough.web(req, res);
    report({ outcome: 'passthrough' });
    return;
  }

  let key: string | undefined;
  if (route.key.from === 'header') {
    const lookup = keyFromHeader(req, route.key.name);
    if (lookup.kind === 'invalid') {
      return refuse(malformedKey(route.key.name, lookup.reason), 'invalid');
    }
    if (lookup.kind === 'absent') {
      if (route.requireKey) return refuse(missingKey(`the ${route.key.name} header`), 'invalid');
      deps.passThrough.web(req, res);
      report({ outcome: 'passthrough' });
      return;
    }
    key = lookup.key;
  }

  const fingerprint = new FingerprintBuilder(method, target);
  const read = await readRequestBody(req, deps.maxBody, (chunk) => fingerprint.update(chunk));
  if (read.kind === 'aborted') {
    res.destroy();
    report({ outcome: 'invalid', problem: 'client-aborted' });
    return;
  }
  if (read.kind === 'too-large') {
    return refuse(
      new SidecarError('body-too-large', { detail: `A guarded request body may hold at most ${deps.maxBody} bytes.` }),
      'invalid',
    );
  }
  const body = read.body;

  if (route.key.from === 'body') {
    const fromBody = keyFromJsonBody(body, route.key.pointer);
    if (fromBody.kind === 'absent') {
      if (route.requireKey) return refuse(missingKey(`the JSON body field ${route.key.pointer}`), 'invalid');
      deps.passThrough.web(req, res, body);
      report({ outcome: 'passthrough' });
      return;
    }
    if (fromBody.kind === 'invalid') return refuse(malformedKey(`body field ${route.key.pointer}`, fromBody.reason), 'invalid');
    const checked = validateKey(fromBody.key);
    if (!checked.ok) return refuse(malformedKey(`body field ${route.key.pointer}`, checked.reason), 'invalid');
    key = checked.key;
  }
  if (key === undefined) throw new Error('unreachable: a guarded request reached the engine without a key');

  const tenant = tenantOf(req);
  if (tenant === undefined) {
    // Unreachable while the listener verifies client certificates at the handshake; never guess
    // a tenant (a shared one would let clients meet), and never forward without a record.
    return refuse(
      new SidecarError('internal-error', { detail: 'The connection carries no verified client certificate to scope the idempotency key to.' }),
      'invalid',
    );
  }
  let result: EngineResult;
  publishGuarded('start');
  try {
    result = await deps.engine.handle({
      requestId,
      scope: { tenant, key },
      fingerprint: fingerprint.digest(),
      upstream: { method, path: target, headers: endToEndPairs(req.rawHeaders), body },
      ttlMs: route.ttlMs,
      concurrent: route.concurrent,
    });
  } catch (error) {
    return refuse(
      new SidecarError('internal-error', { detail: 'The sidecar failed while handling this request.', cause: error }),
      'upstream_error',
      { tenant, key, error },
    );
  } finally {
    publishGuarded('end');
  }

  switch (result.kind) {
    case 'executed':
      writeStoredResponse(res, result.response, false);
      report({ outcome: 'executed', status: result.response.status, tenant, key, upstreamMs: result.upstreamMs });
      return;
    case 'replayed':
      writeStoredResponse(res, result.response, true);
      report({ outcome: 'replayed', status: result.response.status, tenant, key });
      return;
    case 'problem':
      return refuse(result.error, result.outcome, { tenant, key, error: result.error.cause, upstreamMs: result.upstreamMs });
    case 'unguarded':
      deps.passThrough.web(req, res, body);
      report({ outcome: 'unavailable', tenant, key });
      return;
  }
}

/** The caller's X-Request-Id when it is a sane token (so logs join across services), else a new one. */
function requestIdOf(req: http.IncomingMessage): string {
  const given = req.headers['x-request-id'];
  if (typeof given === 'string' && /^[\x21-\x7e]{1,128}$/.test(given)) return given;
  return randomUUID();
}

function publishGuarded(phase: 'start' | 'end'): void {
  if (guardedChannel.hasSubscribers) guardedChannel.publish({ phase });
}

function keyFromHeader(req: http.IncomingMessage, headerName: string): KeyLookup {
  const values = req.headersDistinct[headerName];
  if (values === undefined || values.length === 0) return { kind: 'absent' };
  if (values.length > 1) return { kind: 'invalid', reason: 'the header was given more than once' };
  const parsed = parseIdempotencyKey(values[0] as string);
  return parsed.ok ? { kind: 'present', key: parsed.key } : { kind: 'invalid', reason: parsed.reason };
}

function malformedKey(source: string, reason: string): SidecarError {
  return new SidecarError('key-malformed', {
    detail: `The idempotency key in ${source} is not valid: ${reason}. A key is 1 to 255 visible ASCII characters, bare or as a quoted structured-field string.`,
  });
}

function missingKey(source: string): SidecarError {
  return new SidecarError('key-required', { detail: `This endpoint requires an idempotency key in ${source}.` });
}
