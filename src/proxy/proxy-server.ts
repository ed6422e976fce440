/**
 * The proxy listener: decides per request whether it is guarded, extracts and checks the key,
 * reads the body into the fingerprint, and hands the rest to the engine. What is not guarded is
 * streamed through untouched.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { ResolvedRoute, RouteResolver } from '../config/routes';
import type { TenantMissingMode, TenantSource } from '../config/settings';
import { guardedChannel, requestChannel, type RequestEvent, type RequestOutcome } from '../diagnostics/request-events';
import { SidecarError } from '../errors';
import { FingerprintBuilder } from '../engine/fingerprint';
import type { EngineResult, IdempotencyEngine } from '../engine/idempotency-engine';
import { keyFromJsonBody } from '../engine/json-pointer';
import { type KeyLookup, parseIdempotencyKey, validateKey } from '../engine/key';
import type { BodyBudget } from './body-budget';
import { answerClientError, serverOptions, type ClientLimits } from './client-limits';
import { continueInOrder } from './expect-continue';
import { endToEndPairs } from './headers';
import type { PassThrough } from './passthrough';
import { sendProblem } from '../problem';
import { readRequestBody } from './request-body';
import { dropUpgradeOffer, hostProblem, loggablePath, originFormTarget, transferCodingProblem } from './request-target';
import { writeStoredResponse } from './response-writer';
import { type TenantOf, tenantSource } from './tenant-source';

export interface ProxyServerDependencies {
  readonly resolveRoute: RouteResolver;
  readonly engine: IdempotencyEngine;
  readonly passThrough: PassThrough;
  readonly maxBody: number;
  /** Lower case. */
  readonly tenantHeaders: readonly string[];
  /** Default `headers`; `client-certificate` needs `tls` with a client CA. */
  readonly tenantFrom?: TenantSource;
  /** Default `reject`: a keyed request with none of the tenant headers gets 400 tenant-missing. */
  readonly tenantMissing?: TenantMissingMode;
  /** The bytes of guarded bodies the process may hold at once. */
  readonly bodyBudget: BodyBudget;
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
  const tenantOf = tenantSource(deps.tenantFrom ?? 'headers', deps.tenantHeaders, deps.tenantMissing);
  const handler: http.RequestListener = (req, res) => {
    const handling = handleRequest(deps, tenantOf, req, res).catch(() => {
      // handleRequest answers every failure itself; a throw here is a bug: close the exchange.
      res.destroy();
    });
    pending.add(handling);
    void handling.finally(() => pending.delete(handling));
  };
  // The same handler and limits on both: what differs is the socket under the request, not the request.
  const options: http.ServerOptions = { ...serverOptions(deps.limits), shouldUpgradeCallback: (req) => mayTunnel(deps.resolveRoute, req) };
  const server = deps.tls === undefined ? http.createServer(options, handler) : https.createServer({ ...options, ...deps.tls }, handler);
  // Node's default cap of 2,000 headers dropped the rest without a word on Node 20 (a key header
  // past them was ignored) and refuses the request with 431 on Node 24. The header block's size
  // limit (IDEMPOTENCY_MAX_HEADER_SIZE) bounds the count instead.
  server.maxHeadersCount = 0;
  server.on('clientError', answerClientError(deps.limits));
  // Interim 100 Continue answers must not overtake or split the final answers on a pipelined connection.
  server.on('checkContinue', continueInOrder(handler));
  // Only what shouldUpgradeCallback accepted (Node 24.9 and later) comes here.
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
  const rawTarget = req.url ?? '/';
  const path = loggablePath(rawTarget);
  const requestId = requestIdOf(req);
  const report = (event: Omit<RequestEvent, 'requestId' | 'method' | 'path' | 'durationMs'>): void => {
    if (requestChannel.hasSubscribers) {
      requestChannel.publish({ requestId, method, path, durationMs: performance.now() - started, ...event } satisfies RequestEvent);
    }
  };
  const refuse = (error: SidecarError, outcome: RequestOutcome, extra: Partial<RequestEvent> = {}, close = CLOSES_CONNECTION.has(error.code)): void => {
    sendProblem(res, error, { closeConnection: close });
    report({ outcome, status: error.status, problem: error.code, ...extra });
  };

  const badHost = hostProblem(req);
  if (badHost !== undefined) return refuse(badHost, 'invalid');
  // Reaching this handler, an upgrade offer is not taken up (see mayTunnel): never pass it on.
  dropUpgradeOffer(req, res);

  const route = deps.resolveRoute(method, rawTarget);
  if ('refused' in route) {
    return refuse(
      new SidecarError('path-ambiguous', {
        detail: `The request path has ${route.refused}, which upstreams resolve in different ways; it was not forwarded. Send the path as the API names it.`,
      }),
      'invalid',
    );
  }
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

  // From here on the request is forwarded by undici, if at all: what undici would refuse to send
  // is refused now, before any claim, so it can never become an unknown outcome.
  const origin = originFormTarget(rawTarget);
  if (!origin.ok) return refuse(origin.error, 'invalid');
  const target = origin.target;
  const coding = transferCodingProblem(req);
  // Its body's framing is not one the sidecar reads: what follows is not a request boundary.
  if (coding !== undefined) return refuse(coding, 'invalid', {}, true);
  let tenant: string | undefined;
  if (key !== undefined) {
    tenant = tenantOf(req);
    if (tenant === undefined) return refuse(noTenant(deps), 'invalid');
  }

  const share = deps.bodyBudget.share();
  try {
    const fingerprint = new FingerprintBuilder(method, target);
    const read = await readRequestBody(req, deps.maxBody, share, (chunk) => fingerprint.update(chunk));
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
    if (read.kind === 'busy') {
      return refuse(
        new SidecarError('overloaded', {
          detail: 'The sidecar holds as many guarded request bodies as its memory bound allows; the request was not read or forwarded. Retry shortly.',
          retryAfterSeconds: OVERLOADED_RETRY_AFTER_SECONDS,
        }),
        'unavailable',
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
      tenant = tenantOf(req);
      if (tenant === undefined) return refuse(noTenant(deps), 'invalid');
    }
    if (key === undefined || tenant === undefined) throw new Error('unreachable: a guarded request reached the engine without a key or tenant');
    await guard(deps, req, res, report, refuse, { requestId, method, target, route, key, tenant, body, fingerprint: fingerprint.digest() });
  } finally {
    share.release();
  }
}

interface Guarded {
  readonly requestId: string;
  readonly method: string;
  readonly target: string;
  readonly route: ResolvedRoute;
  readonly key: string;
  readonly tenant: string;
  readonly body: Buffer;
  readonly fingerprint: string;
}

/** Hands a keyed, read, checked request to the engine and writes what it decides. */
async function guard(
  deps: ProxyServerDependencies,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  report: (event: Omit<RequestEvent, 'requestId' | 'method' | 'path' | 'durationMs'>) => void,
  refuse: (error: SidecarError, outcome: RequestOutcome, extra?: Partial<RequestEvent>) => void,
  request: Guarded,
): Promise<void> {
  const { requestId, method, target, route, key, tenant, body } = request;
  // Only a duplicate that waits needs to know its client left (it stops waiting); the owner's
  // call goes on regardless, so its response is stored for the retry.
  const clientGone = route.concurrent === 'wait' ? goneSignal(res) : undefined;
  let result: EngineResult;
  publishGuarded('start');
  try {
    result = await deps.engine.handle({
      requestId,
      scope: { tenant, key },
      fingerprint: request.fingerprint,
      upstream: { method, path: target, headers: endToEndPairs(req.rawHeaders), body },
      ttlMs: route.ttlMs,
      concurrent: route.concurrent,
      ...(clientGone === undefined ? {} : { clientGone }),
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
    case 'abandoned':
      res.destroy();
      report({ outcome: result.outcome, tenant, key });
      return;
  }
}

/**
 * Problems after which the connection is closed: the request body was not read (too large, no
 * room, a coding the sidecar does not decode), so what follows is not a request boundary. Other
 * refusals keep the connection: a pipelined request behind them may already be on its way
 * upstream, and closing would lose its answer.
 */
const CLOSES_CONNECTION: ReadonlySet<string> = new Set(['body-too-large', 'overloaded', 'transfer-coding-unsupported']);
const OVERLOADED_RETRY_AFTER_SECONDS = 1;

/**
 * Whether an upgrade request may become a tunnel: only one that is not guarded and carries no
 * body (a body would have to be framed and forwarded before the switch). A guarded request is
 * guarded whatever it offers (`curl --http2` offers h2c on every request): it is handled as a
 * plain request with the offer dropped. A tunnel opens only when the upstream answers 101
 * (upgrade-tunnel.ts).
 */
function mayTunnel(resolveRoute: RouteResolver, req: http.IncomingMessage): boolean {
  if (hostProblem(req) !== undefined) return false;
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) return false;
  const route = resolveRoute(req.method ?? 'GET', req.url ?? '/');
  return !('refused' in route) && !route.guarded;
}

/** Aborts when the response's connection closes before the response was sent. */
function goneSignal(res: http.ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

function noTenant(deps: ProxyServerDependencies): SidecarError {
  if ((deps.tenantFrom ?? 'headers') === 'client-certificate') {
    // Unreachable while the listener verifies client certificates at the handshake; never guess
    // a tenant (a shared one would let clients meet), and never forward without a record.
    return new SidecarError('internal-error', { detail: 'The connection carries no verified client certificate to scope the idempotency key to.' });
  }
  return new SidecarError('tenant-missing', {
    detail: `A request with an idempotency key must identify its client with one of these headers: ${deps.tenantHeaders.join(', ')}. Keys are scoped to a client, so that two clients never see each other's responses; it was not forwarded.`,
  });
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

/** `headerName` in lower case. Reads rawHeaders: headersDistinct would build an array for every header of every request. */
function keyFromHeader(req: http.IncomingMessage, headerName: string): KeyLookup {
  const raw = req.rawHeaders;
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length !== headerName.length || name.toLowerCase() !== headerName) continue;
    if (value !== undefined) return { kind: 'invalid', reason: 'the header was given more than once' };
    value = raw[i + 1];
  }
  if (value === undefined) return { kind: 'absent' };
  const parsed = parseIdempotencyKey(value);
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
