/**
 * The admin listener: liveness, readiness and the keys API. Liveness never depends on Redis
 * (a restart would not bring Redis back); readiness does, so traffic leaves a replica whose
 * store is unreachable.
 */
import http from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { RecordStore } from '../engine/ports';
import type { TenantRecord } from '../engine/record';

export interface AdminServerDependencies {
  readonly store: RecordStore;
  /** Unset: the keys API is off (404). */
  readonly adminToken?: string;
  /** Extra routes (metrics) mounted by the composition root. */
  readonly extraRoutes?: ReadonlyMap<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>;
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
    void route(deps, req, res).catch((error: unknown) => {
      sendJson(res, 500, { error: 'internal error', detail: error instanceof Error ? error.message : String(error) });
    });
  });
}

async function route(deps: AdminServerDependencies, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin.invalid');
  const method = req.method ?? 'GET';

  if (url.pathname === '/healthz' && (method === 'GET' || method === 'HEAD')) {
    return sendJson(res, 200, { status: 'ok' });
  }
  if (url.pathname === '/readyz' && (method === 'GET' || method === 'HEAD')) {
    try {
      await deps.store.ping();
      return sendJson(res, 200, { status: 'ready' });
    } catch (error) {
      return sendJson(res, 503, { status: 'not ready', reason: error instanceof Error ? error.message : String(error) });
    }
  }
  const extra = deps.extraRoutes?.get(url.pathname);
  if (extra && method === 'GET') return extra(req, res);

  if (url.pathname.startsWith('/keys/')) {
    if (deps.adminToken === undefined) return sendJson(res, 404, { error: 'not found' });
    if (!authorized(req.headers.authorization, deps.adminToken)) {
      res.setHeader('www-authenticate', 'Bearer');
      return sendJson(res, 401, { error: 'a valid bearer token is required' });
    }
    let key: string;
    try {
      key = decodeURIComponent(url.pathname.slice('/keys/'.length));
    } catch {
      return sendJson(res, 400, { error: 'the key is not valid percent-encoding' });
    }
    if (key.length === 0) return sendJson(res, 400, { error: 'a key is required: /keys/{key}' });

    if (method === 'GET') {
      const records = await deps.store.listByKey(key);
      return sendJson(res, 200, records.map(toView));
    }
    if (method === 'DELETE') {
      const tenant = url.searchParams.get('tenant');
      if (!tenant) return sendJson(res, 400, { error: 'the tenant query parameter is required: DELETE /keys/{key}?tenant=ID' });
      const removed = await deps.store.remove({ tenant, key });
      if (!removed) return sendJson(res, 404, { error: 'no record for this key and tenant' });
      res.writeHead(204);
      res.end();
      return;
    }
    res.setHeader('allow', 'GET, DELETE');
    return sendJson(res, 405, { error: 'method not allowed' });
  }
  return sendJson(res, 404, { error: 'not found' });
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
