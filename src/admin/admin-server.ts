/**
 * The admin listener: liveness, readiness, metrics and the keys API. Liveness never depends on
 * Redis (a restart would not bring Redis back); readiness does, so traffic leaves a replica whose
 * store is unreachable. Its own errors are problem+json, rendered as the proxy's are.
 */
import http from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { RecordStore } from '../engine/ports';
import type { TenantRecord } from '../engine/record';
import { SidecarError } from '../errors';
import type { Logger } from '../observability/logger';
// One renderer of problem+json for both listeners, so their error bodies cannot drift apart.
import { sendProblem } from '../problem';

export interface MetricsPage {
  readonly contentType: string;
  readonly body: string;
}

export interface AdminServerDependencies {
  readonly store: RecordStore;
  /** Unset: the keys API is off (404). */
  readonly adminToken?: string;
  /** The Prometheus page of GET /metrics; unset: 404. */
  readonly renderMetrics?: () => Promise<MetricsPage>;
  /** Where a failed admin request (500) is logged. */
  readonly logger: Logger;
}

export interface KeyRecordView {
  readonly tenant: string;
  readonly state: TenantRecord['state'];
  readonly status?: number;
  readonly createdAt: string;
  readonly expiresAt: string;
}

export function createAdminServer(deps: AdminServerDependencies): http.Server {
  return http.createServer((req, res) => {
    // Every failure ends here, answered and logged: none is left to become an unhandled rejection.
    route(deps, req, res).catch((error: unknown) => {
      deps.logger.error(
        { method: req.method, path: pathOf(req), error: error instanceof Error ? error.message : String(error) },
        'admin request failed',
      );
      sendProblem(res, new SidecarError('internal-error', { detail: 'The admin listener failed to answer this request; the sidecar log says why.', cause: error }));
    });
  });
}

function pathOf(req: http.IncomingMessage): string {
  return new URL(req.url ?? '/', 'http://admin.invalid').pathname;
}

function notFound(): SidecarError {
  return new SidecarError('not-found', { detail: 'The admin listener has no such resource.' });
}

function invalid(detail: string): SidecarError {
  return new SidecarError('invalid-admin-request', { detail });
}

function methodNotAllowed(res: http.ServerResponse, allow: string): SidecarError {
  res.setHeader('allow', allow);
  return new SidecarError('method-not-allowed', { detail: `This resource answers ${allow}.` });
}

async function route(deps: AdminServerDependencies, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin.invalid');
  const method = req.method ?? 'GET';
  const readOnly = method === 'GET' || method === 'HEAD';

  if (url.pathname === '/healthz') {
    if (!readOnly) return sendProblem(res, methodNotAllowed(res, 'GET, HEAD'));
    return sendJson(res, 200, { status: 'ok' });
  }
  if (url.pathname === '/readyz') {
    if (!readOnly) return sendProblem(res, methodNotAllowed(res, 'GET, HEAD'));
    try {
      await deps.store.ping();
      return sendJson(res, 200, { status: 'ready' });
    } catch (error) {
      return sendProblem(
        res,
        new SidecarError('store-unavailable', {
          detail: `Not ready: the record store does not answer (${error instanceof Error ? error.message : String(error)}).`,
          cause: error,
        }),
      );
    }
  }
  if (url.pathname === '/metrics' && deps.renderMetrics !== undefined) {
    if (method !== 'GET') return sendProblem(res, methodNotAllowed(res, 'GET'));
    const page = await deps.renderMetrics();
    res.writeHead(200, { 'content-type': page.contentType, 'cache-control': 'no-store' });
    res.end(page.body);
    return;
  }

  if (url.pathname.startsWith('/keys/')) {
    if (deps.adminToken === undefined) return sendProblem(res, notFound());
    if (!authorized(req.headers.authorization, deps.adminToken)) {
      res.setHeader('www-authenticate', 'Bearer');
      return sendProblem(res, new SidecarError('unauthorized', { detail: 'The keys API answers only requests with Authorization: Bearer <IDEMPOTENCY_ADMIN_TOKEN>.' }));
    }
    let key: string;
    try {
      key = decodeURIComponent(url.pathname.slice('/keys/'.length));
    } catch {
      return sendProblem(res, invalid('The key is not valid percent-encoding.'));
    }
    if (key.length === 0) return sendProblem(res, invalid('A key is required: /keys/{key}.'));

    if (method === 'GET') {
      const records = await deps.store.listByKey(key);
      return sendJson(res, 200, records.map(toView));
    }
    if (method === 'DELETE') {
      const tenant = url.searchParams.get('tenant');
      if (!tenant) return sendProblem(res, invalid('The tenant query parameter is required: DELETE /keys/{key}?tenant=ID.'));
      const removed = await deps.store.remove({ tenant, key });
      if (!removed) return sendProblem(res, new SidecarError('not-found', { detail: 'No record for this key and tenant.' }));
      res.writeHead(204);
      res.end();
      return;
    }
    return sendProblem(res, methodNotAllowed(res, 'GET, DELETE'));
  }
  return sendProblem(res, notFound());
}

function toView(record: TenantRecord): KeyRecordView {
  return {
    tenant: record.tenant,
    state: record.state,
    ...(record.state === 'completed' && record.response ? { status: record.response.status } : {}),
    createdAt: new Date(record.createdAt).toISOString(),
    expiresAt: new Date(record.expiresAt).toISOString(),
  };
}

/**
 * Constant-time comparison of digests, so the token's length does not leak either. The scheme is
 * case-insensitive (RFC 9110 section 11.1): `bearer` and `BEARER` are Bearer.
 */
function authorized(header: string | undefined, token: string): boolean {
  const credentials = header === undefined ? null : /^bearer +(\S+) *$/i.exec(header);
  if (credentials === null) return false;
  const given = createHash('sha256').update(credentials[1] ?? '').digest();
  const expected = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, expected);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes.length, 'cache-control': 'no-store' });
  res.end(bytes);
}
