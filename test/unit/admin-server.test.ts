/**
 * The admin listener's own answers (contract section 6): every error is problem+json, rendered
 * as the proxy's are, and a failure inside a route (a /metrics render, a store that throws) is a
 * 500 and one log line, never a request left hanging. A real listener on port 0, the in-process
 * store, and a logger writing to memory.
 */
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { Writable } from 'node:stream';
import { createAdminServer, type AdminServerDependencies } from '../../src/admin/admin-server';
import type { RecordStore } from '../../src/engine/ports';
import { PROBLEM_TYPE_BASE, StoreUnavailableError } from '../../src/errors';
import { createLogger } from '../../src/observability/logger';
import { MemoryRecordStore } from '../../src/store/memory-store';

const TOKEN = 'admin-token-0123456789';

interface Admin {
  readonly url: string;
  readonly logLines: Record<string, unknown>[];
  close(): Promise<void>;
}

const open: Admin[] = [];
let store: MemoryRecordStore;

beforeEach(() => {
  store = new MemoryRecordStore();
});
afterEach(async () => {
  for (const admin of open.splice(0)) await admin.close();
  await store.close();
});

async function startAdmin(deps: Partial<AdminServerDependencies> = {}): Promise<Admin> {
  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done): void {
      for (const line of chunk.toString().split('\n')) if (line.startsWith('{')) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const server: http.Server = createAdminServer({ store, adminToken: TOKEN, logger: createLogger('info', sink), ...deps });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const admin: Admin = {
    url: `http://127.0.0.1:${port}`,
    logLines,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  open.push(admin);
  return admin;
}

async function expectProblem(response: Response, status: number, code: string): Promise<Record<string, unknown>> {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toBe('application/problem+json');
  const body = (await response.json()) as Record<string, unknown>;
  expect(body).toMatchObject({ type: PROBLEM_TYPE_BASE + code, status });
  expect(typeof body['title']).toBe('string');
  expect(typeof body['detail']).toBe('string');
  return body;
}

const auth = { authorization: `Bearer ${TOKEN}` };

describe('the admin listener answers its own errors as problem+json', () => {
  test('an unknown path: 404 not-found', async () => {
    const admin = await startAdmin();
    await expectProblem(await fetch(`${admin.url}/nothing-here`), 404, 'not-found');
  });

  test('the keys API: off without a token (404), 401 without the right one, 400 without a tenant, 404 for no record, 405 for another method', async () => {
    const off = await startAdmin({ adminToken: undefined });
    await expectProblem(await fetch(`${off.url}/keys/k1`, { headers: auth }), 404, 'not-found');

    const admin = await startAdmin();
    const unauthorized = await fetch(`${admin.url}/keys/k1`, { headers: { authorization: 'Bearer wrong' } });
    expect(unauthorized.headers.get('www-authenticate')).toBe('Bearer');
    await expectProblem(unauthorized, 401, 'unauthorized');
    await expectProblem(await fetch(`${admin.url}/keys/k1`, { method: 'DELETE', headers: auth }), 400, 'invalid-admin-request');
    await expectProblem(await fetch(`${admin.url}/keys/%E0%A4%A`, { headers: auth }), 400, 'invalid-admin-request');
    await expectProblem(await fetch(`${admin.url}/keys/k1?tenant=t1`, { method: 'DELETE', headers: auth }), 404, 'not-found');
    const wrongMethod = await fetch(`${admin.url}/keys/k1`, { method: 'PUT', headers: auth });
    expect(wrongMethod.headers.get('allow')).toBe('GET, DELETE');
    await expectProblem(wrongMethod, 405, 'method-not-allowed');
    // What works still answers JSON.
    const listed = await fetch(`${admin.url}/keys/k1`, { headers: auth });
    expect(listed.status).toBe(200);
    expect(await listed.json()).toEqual([]);
  });

  test('readiness on a store that does not answer: 503 store-unavailable; liveness stays 200', async () => {
    const down: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      ping: () => Promise.reject(new StoreUnavailableError('connection refused')),
    });
    const admin = await startAdmin({ store: down });
    const body = await expectProblem(await fetch(`${admin.url}/readyz`), 503, 'store-unavailable');
    expect(body['detail']).toMatch(/connection refused/);
    expect((await fetch(`${admin.url}/healthz`)).status).toBe(200);
  });

  test('a /metrics render that fails: 500 internal-error and one error line naming the path', async () => {
    const admin = await startAdmin({ renderMetrics: () => Promise.reject(new Error('collector exploded')) });
    const body = await expectProblem(await fetch(`${admin.url}/metrics`), 500, 'internal-error');
    // The client is told where to look, not the internals.
    expect(body['detail']).not.toMatch(/collector exploded/);
    const failures = admin.logLines.filter((line) => line['msg'] === 'admin request failed');
    expect(failures).toEqual([expect.objectContaining({ level: 'error', path: '/metrics', error: 'collector exploded' })]);
  });

  test('a /metrics render that works: 200 with its content type', async () => {
    const admin = await startAdmin({ renderMetrics: async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body: 'up 1\n' }) });
    const response = await fetch(`${admin.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await response.text()).toBe('up 1\n');
    expect(admin.logLines.filter((line) => line['level'] === 'error')).toEqual([]);
  });

  test('a store that throws in the keys API: 500 internal-error and one error line', async () => {
    const broken: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      listByKey: () => Promise.reject(new StoreUnavailableError('store timed out')),
    });
    const admin = await startAdmin({ store: broken });
    await expectProblem(await fetch(`${admin.url}/keys/k1`, { headers: auth }), 500, 'internal-error');
    expect(admin.logLines.filter((line) => line['msg'] === 'admin request failed')).toEqual([
      expect.objectContaining({ level: 'error', method: 'GET', path: '/keys/k1', error: 'store timed out' }),
    ]);
  });
});
