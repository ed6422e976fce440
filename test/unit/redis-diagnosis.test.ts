/**
 * What a Redis connection failure tells the operator: the errors here come from real TLS
 * handshakes and real sockets on loopback (and ioredis's own reply error class), not from
 * hand-written codes, so a Node or OpenSSL that names them differently fails this test.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import { ReplyError } from 'ioredis';
import { createLogger } from '../../src/observability/logger';
import { type ConnectionSettings, diagnoseRedisError, RedisErrorLog } from '../../src/store/redis-diagnosis';
import { createCertificateAuthority, issueServerCertificate, type CertificateAuthority, type ServerCertificate } from '../helpers/tls-certificates';

const SETTINGS: ConnectionSettings = {
  role: 'record store',
  address: 'IDEMPOTENCY_REDIS_URL',
  credentials: ['IDEMPOTENCY_REDIS_URL'],
  caFile: 'IDEMPOTENCY_REDIS_TLS_CA_FILE',
  certFile: 'IDEMPOTENCY_REDIS_TLS_CERT_FILE',
  keyFile: 'IDEMPOTENCY_REDIS_TLS_KEY_FILE',
};

let dir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let serverCert: ServerCertificate;
const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idem-diagnosis-'));
  ca = createCertificateAuthority(dir, 'diag-ca');
  otherCa = createCertificateAuthority(dir, 'diag-other-ca');
  serverCert = issueServerCertificate(ca, dir, 'diag-server');
});
afterAll(async () => {
  // close() waits for open connections: a server that never answers keeps its clients' sockets.
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function listening(server: net.Server): Promise<number> {
  servers.push(server);
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** A TLS server with the CA-signed certificate; `requireClient`: mutual TLS. */
async function tlsServer(requireClient: boolean): Promise<number> {
  const server = tls.createServer(
    { cert: serverCert.cert, key: serverCert.key, ca: ca.cert, requestCert: requireClient, rejectUnauthorized: requireClient },
    (socket) => socket.on('error', () => undefined),
  );
  server.on('tlsClientError', () => undefined);
  return listening(server);
}

/** The error a TLS client meets, connecting with `options`. */
function handshakeError(port: number, options: tls.ConnectionOptions): Promise<Error> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options });
    socket.on('error', (error) => {
      socket.destroy();
      resolve(error);
    });
    socket.on('secureConnect', () => socket.write('PING\r\n'));
    setTimeout(() => {
      socket.destroy();
      reject(new Error('no error within 5 s'));
    }, 5_000).unref();
  });
}

test('a server certificate from another CA: TLS, the CA file', async () => {
  const port = await tlsServer(false);
  const diagnosis = diagnoseRedisError(await handshakeError(port, { ca: otherCa.cert }), SETTINGS);
  expect(diagnosis).toEqual({ kind: 'tls', settings: ['IDEMPOTENCY_REDIS_TLS_CA_FILE'], message: expect.stringMatching(/^TLS: .*not signed by a trusted CA/) });
});

test('a host the server certificate does not name: TLS, the address', async () => {
  const port = await tlsServer(false);
  const diagnosis = diagnoseRedisError(await handshakeError(port, { ca: ca.cert, servername: 'elsewhere.example' }), SETTINGS);
  expect(diagnosis).toMatchObject({ kind: 'tls', settings: ['IDEMPOTENCY_REDIS_URL'] });
  expect(diagnosis?.message).toMatch(/does not name the host/);
});

test('no client certificate where the server requires one: TLS, the certificate and key files', async () => {
  const port = await tlsServer(true);
  const diagnosis = diagnoseRedisError(await handshakeError(port, { ca: ca.cert }), SETTINGS);
  expect(diagnosis).toMatchObject({ kind: 'tls', settings: ['IDEMPOTENCY_REDIS_TLS_CERT_FILE', 'IDEMPOTENCY_REDIS_TLS_KEY_FILE'] });
});

test('a port that does not speak TLS: TLS, the address', async () => {
  // What a plain Redis answers to bytes it cannot parse.
  const port = await listening(net.createServer((socket) => socket.end('-ERR Protocol error: invalid multibulk length\r\n')));
  const diagnosis = diagnoseRedisError(await handshakeError(port, { ca: ca.cert }), SETTINGS);
  expect(diagnosis).toMatchObject({ kind: 'tls', settings: ['IDEMPOTENCY_REDIS_URL'] });
  expect(diagnosis?.message).toMatch(/does not speak TLS/);
});

test("a Cluster's all-nodes-failed error is diagnosed by its last node's error", async () => {
  const port = await tlsServer(false);
  const wrapped = Object.assign(new Error('Failed to refresh slots cache.'), { lastNodeError: await handshakeError(port, { ca: otherCa.cert }) });
  expect(diagnoseRedisError(wrapped, SETTINGS)?.settings).toEqual(['IDEMPOTENCY_REDIS_TLS_CA_FILE']);
});

test('ACL replies: WRONGPASS and NOAUTH point at the credentials, NOPERM at the documented rule', () => {
  const wrongPass = diagnoseRedisError(new ReplyError('WRONGPASS invalid username-password pair or user is disabled.'), SETTINGS);
  expect(wrongPass).toMatchObject({ kind: 'auth', settings: ['IDEMPOTENCY_REDIS_URL'] });
  expect(diagnoseRedisError(new ReplyError('NOAUTH Authentication required.'), SETTINGS)).toMatchObject({ kind: 'auth' });
  const noPerm = diagnoseRedisError(new ReplyError("NOPERM this user has no permissions to run the 'subscribe' command"), SETTINGS);
  expect(noPerm).toMatchObject({ kind: 'permission' });
  expect(noPerm?.message).toMatch(/'subscribe'.*config\/example\.yaml/);
});

test('an outage is not a configuration problem: a refused connection is left to readiness', async () => {
  const port = await listening(net.createServer());
  await new Promise((resolve) => servers.pop()?.close(resolve));
  const refused = await new Promise<Error>((resolve) => net.connect(port, '127.0.0.1').on('error', resolve));
  expect(diagnoseRedisError(refused, SETTINGS)).toBeUndefined();
});

describe('RedisErrorLog', () => {
  function capture(): { lines: Record<string, unknown>[]; log: RedisErrorLog } {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done): void {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    return { lines, log: new RedisErrorLog(createLogger('info', sink), SETTINGS) };
  }
  const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  test('says a failure once however often it repeats, and again after the connection was ready', async () => {
    const { lines, log } = capture();
    const wrongPass = new ReplyError('WRONGPASS invalid username-password pair or user is disabled.');
    const noAuth = new ReplyError('NOAUTH Authentication required.');
    for (let i = 0; i < 5; i += 1) {
      log.error(wrongPass);
      log.error(noAuth);
      log.error(new Error('connect ECONNREFUSED 127.0.0.1:1'));
    }
    await flush();
    expect(lines.map((line) => [line['level'], line['problem']])).toEqual([
      ['error', 'auth'],
      ['error', 'auth'],
    ]);
    log.ready();
    log.ready();
    log.error(wrongPass);
    await flush();
    expect(lines.slice(2).map((line) => [line['level'], line['msg']])).toEqual([
      ['info', 'Redis (record store) connected again'],
      ['error', expect.stringMatching(/WRONGPASS/)],
    ]);
  });
});
