/**
 * `idempotency-sidecar healthcheck` (the image's Docker HEALTHCHECK) and the subcommand dispatch:
 * exit 0 only when the admin listener answers GET /healthz with 200, 1 otherwise, within 2 s;
 * the port found as the proxy finds it.
 */
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/free-port';
import { runSidecarCommand, startSidecar, type SidecarProcess } from '../helpers/sidecar-process';

let sidecar: SidecarProcess;
let adminPort: string;

beforeAll(async () => {
  // /healthz never depends on the upstream, so none needs to run.
  sidecar = await startSidecar({ upstream: 'http://127.0.0.1:9', env: { IDEMPOTENCY_LOG_LEVEL: 'warn' } });
  adminPort = new URL(sidecar.adminUrl).port;
});

afterAll(async () => {
  await sidecar?.stop();
});

/** An HTTP server on `host` that answers /healthz with `status`, or never answers. */
async function fakeAdmin(status: number | 'hang', host = '127.0.0.1'): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => {
    if (status === 'hang') return;
    res.writeHead(status).end();
  });
  server.on('connection', (socket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('healthcheck', () => {
  test('exits 0 against a running sidecar, port from IDEMPOTENCY_ADMIN_PORT', async () => {
    const result = await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_ADMIN_PORT: adminPort });
    expect(result).toMatchObject({ code: 0 });
    expect(result.stdout).toBe(`idempotency-sidecar healthcheck: healthy: http://127.0.0.1:${adminPort}/healthz answered 200\n`);
  });

  test('--admin-port wins over the variable, which wins over the YAML file', async () => {
    const closed = String(await freePort());
    expect((await runSidecarCommand(['healthcheck', '--admin-port', adminPort], { IDEMPOTENCY_ADMIN_PORT: closed })).code).toBe(0);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'healthcheck-'));
    const file = path.join(dir, 'config.yaml');
    fs.writeFileSync(file, `upstream: http://127.0.0.1:9\nadminPort: ${adminPort}\n`);
    try {
      expect((await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_CONFIG: file })).code).toBe(0);
      expect((await runSidecarCommand(['healthcheck', '--config', file], {})).code).toBe(0);
      expect((await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_CONFIG: file, IDEMPOTENCY_ADMIN_PORT: closed })).code).toBe(1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('exits 1 when nothing listens', async () => {
    const port = String(await freePort());
    const result = await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_ADMIN_PORT: port });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz: connect ECONNREFUSED/);
  });

  test('exits 1 on any status but 200', async () => {
    const admin = await fakeAdmin(503);
    try {
      const result = await runSidecarCommand(['healthcheck', `--admin-port=${admin.port}`], {});
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/answered 503/);
    } finally {
      await admin.close();
    }
  });

  test('gives up after 2 s on a listener that never answers', async () => {
    const admin = await fakeAdmin('hang');
    try {
      const started = Date.now();
      const result = await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_ADMIN_PORT: String(admin.port) });
      const elapsed = Date.now() - started;
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/did not answer within 2000 ms/);
      expect(elapsed).toBeGreaterThanOrEqual(2_000);
      // The 2 s bound plus a Node start on a loaded machine.
      expect(elapsed).toBeLessThan(6_000);
    } finally {
      await admin.close();
    }
  });

  test('asks the address the listeners are bound to when IDEMPOTENCY_HOST names one', async () => {
    const admin = await fakeAdmin(200, '127.0.0.2');
    try {
      expect((await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_ADMIN_PORT: String(admin.port), IDEMPOTENCY_HOST: '127.0.0.2' })).code).toBe(0);
      expect((await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_ADMIN_PORT: String(admin.port), IDEMPOTENCY_HOST: '0.0.0.0' })).code).toBe(1);
    } finally {
      await admin.close();
    }
  });

  test('a bad port or flag exits 1 (Docker reserves 2) with a line naming it', async () => {
    const bad = await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_ADMIN_PORT: 'ninety' });
    expect(bad.code).toBe(1);
    // The same check as the proxy's: both read the setting through the same row.
    expect(bad.stderr).toBe('idempotency-sidecar healthcheck: IDEMPOTENCY_ADMIN_PORT: "ninety" is not a port; use a whole number from 1 to 65535, or 0 for any free port\n');
    // A sidecar started on admin port 0 bound a port this check cannot guess: it says so.
    const zero = await runSidecarCommand(['healthcheck'], { IDEMPOTENCY_ADMIN_PORT: '0' });
    expect(zero.code).toBe(1);
    expect(zero.stderr).toMatch(/^idempotency-sidecar healthcheck: IDEMPOTENCY_ADMIN_PORT: 0 binds a free port at start, which this check cannot know; give the bound port .* with --admin-port\n$/);
    const flag = await runSidecarCommand(['healthcheck', '--port', '1'], {});
    expect(flag.code).toBe(1);
    expect(flag.stderr).toMatch(/^idempotency-sidecar healthcheck: --port: is not a flag of the healthcheck.*\(see healthcheck --help\)\n$/);
  });

  test('--help', async () => {
    const result = await runSidecarCommand(['healthcheck', '--help'], {});
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: idempotency-sidecar healthcheck \[flags\]/);
  });
});

describe('subcommands', () => {
  test('--help of the proxy lists them', async () => {
    const result = await runSidecarCommand(['--help'], {});
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: idempotency-sidecar/);
    expect(result.stdout).toMatch(/\n {2}webhook +the Kubernetes admission webhook/);
    expect(result.stdout).toMatch(/\n {2}healthcheck +exit 0 when/);
  });

  test('an unknown command exits 2 with a suggestion', async () => {
    const result = await runSidecarCommand(['healthchek'], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'idempotency-sidecar: command line: "healthchek" is not a command; did you mean healthcheck? (commands: webhook, healthcheck; none runs the proxy)\n',
    );
  });
});
