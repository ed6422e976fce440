import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  describeSettings,
  formatHelp,
  loadConfig,
  parseCommandLine,
  loadSettings,
  redactSettings,
  unknownEnvironmentVariables,
  type LoadInput,
} from '../../src/config/load';
import { DEFAULTS } from '../../src/config/schema';
import { ConfigError } from '../../src/errors';
import { createCertificateAuthority, issueClientCertificate, issueServerCertificate } from '../helpers/tls-certificates';

const UPSTREAM = { IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000' };
/** Real PEM files: loading the config reads and checks what every file setting names. */
const PEM_DIR = mkdtempSync(path.join(tmpdir(), 'config-load-pem-'));
afterAll(() => rmSync(PEM_DIR, { recursive: true, force: true }));
const CA = createCertificateAuthority(PEM_DIR, 'ca');
const LISTENER = issueServerCertificate(CA, PEM_DIR, 'listener');
const REDIS_CLIENT = issueClientCertificate(CA, PEM_DIR, 'redis-client');
const KEY_B64 = Buffer.alloc(32, 7).toString('base64');
const OLD_KEY_B64 = Buffer.alloc(32, 9).toString('base64');

interface Given {
  readonly argv?: readonly string[];
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Contents of `config.yaml`, passed with --config. */
  readonly yaml?: string;
}

function input(given: Given): LoadInput {
  const yaml = given.yaml;
  return {
    argv: [...(yaml === undefined ? [] : ['--config', 'config.yaml']), ...(given.argv ?? [])],
    env: given.env ?? UPSTREAM,
    readFile: (file) => {
      if (file === 'config.yaml' && yaml !== undefined) return yaml;
      throw new Error(`unexpected read of ${file}`);
    },
  };
}

/** The settings as their rows parsed them (the Config assembles them further). */
const load = (given: Given) => loadSettings(input(given)).values;

/** The problems of the ConfigError that loading throws; fails the test if it does not throw one. */
function problemsOf(given: Given): readonly string[] {
  try {
    loadConfig(input(given));
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected loadConfig to throw a ConfigError');
}

const envProblems = (name: string, value: string, more: Record<string, string> = {}) =>
  problemsOf({ env: { ...UPSTREAM, ...more, [name]: value } });

describe('loadConfig defaults', () => {
  it('fills every setting but upstream from the defaults', () => {
    const config = load({});
    expect({ ...config, upstream: config.upstream.href }).toEqual({
      upstream: 'http://127.0.0.1:3000/',
      port: 8080,
      host: '0.0.0.0',
      adminPort: 9090,
      redisTls: false,
      redisWaitReplicas: 0,
      redisWaitTimeoutMs: 500,
      methods: ['POST', 'PATCH'],
      keyHeader: 'idempotency-key',
      requireKey: false,
      ttlMs: 86_400_000,
      lockTtlMs: 10_000,
      concurrent: 'reject',
      waitTimeoutMs: 30_000,
      maxWaiters: 1_000,
      upstreamTimeoutMs: 30_000,
      maxBody: 1_048_576,
      maxBodyMemory: 67_108_864,
      tenantHeaders: ['authorization'],
      tenantFrom: 'headers',
      tenantMissing: 'reject',
      clientHeaderTimeoutMs: 10_000,
      clientRequestTimeoutMs: 60_000,
      maxHeaderSize: 16_384,
      memoryStoreMaxRecords: 100_000,
      storeUnavailable: 'reject',
      releaseStatuses: [408, 409, 425, 429, 503],
      onUnknown: 'hold',
      storeTimeoutMs: 1_000,
      shutdownGraceMs: 25_000,
      logLevel: 'info',
      routes: [],
    });
    expect('redisUrl' in config).toBe(false);
    expect('adminToken' in config).toBe(false);
  });

  it('keeps DEFAULTS frozen', () => {
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
    expect(Object.isFrozen(DEFAULTS.methods)).toBe(true);
  });

  it('returns a deeply frozen config', () => {
    const config = load({
      yaml: 'routes:\n  - path: /a\n    methods: [PUT]\n    key: { from: body, pointer: /id }\n',
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.methods)).toBe(true);
    expect(Object.isFrozen(config.routes)).toBe(true);
    expect(Object.isFrozen(config.routes[0])).toBe(true);
    expect(Object.isFrozen(config.routes[0]?.methods)).toBe(true);
    expect(Object.isFrozen(config.routes[0]?.key)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('keeps the upstream as its origin', () => {
    const config = load({ env: { IDEMPOTENCY_UPSTREAM: 'https://API.example.com:8443/' } });
    expect(config.upstream.origin).toBe('https://api.example.com:8443');
    expect(config.upstream.pathname).toBe('/');
  });
});

describe('loadConfig precedence: flags > env > file > defaults', () => {
  const yaml = 'upstream: http://file:1\nport: 1001\nttl: 1h\nmethods: [PUT]\nrequireKey: true\n';

  it('takes a value from the file over the default', () => {
    const config = load({ yaml, env: {} });
    expect(config.upstream.origin).toBe('http://file:1');
    expect(config.port).toBe(1001);
    expect(config.ttlMs).toBe(3_600_000);
    expect(config.methods).toEqual(['PUT']);
    expect(config.requireKey).toBe(true);
    expect(config.adminPort).toBe(9090);
  });

  it('takes the environment over the file', () => {
    const config = load({
      yaml,
      env: { IDEMPOTENCY_PORT: '1002', IDEMPOTENCY_TTL: '2h', IDEMPOTENCY_REQUIRE_KEY: 'false' },
    });
    expect(config.upstream.origin).toBe('http://file:1');
    expect(config.port).toBe(1002);
    expect(config.ttlMs).toBe(7_200_000);
    expect(config.requireKey).toBe(false);
    expect(config.methods).toEqual(['PUT']);
  });

  it('takes flags over the environment and the file, with or without =', () => {
    const config = load({
      yaml,
      env: { IDEMPOTENCY_PORT: '1002', IDEMPOTENCY_TTL: '2h', IDEMPOTENCY_UPSTREAM: 'http://env:2' },
      argv: ['--port', '1003', '--ttl=3h', '--upstream', 'http://flag:3'],
    });
    expect(config.upstream.origin).toBe('http://flag:3');
    expect(config.port).toBe(1003);
    expect(config.ttlMs).toBe(10_800_000);
    expect(config.methods).toEqual(['PUT']);
  });

  it('reads the file named by IDEMPOTENCY_CONFIG, and --config over it', () => {
    const files: Record<string, string> = { 'a.yaml': 'port: 1111\n', 'b.yaml': 'port: 2222\n' };
    const readFile = (file: string): string => files[file] ?? '';
    const env = { ...UPSTREAM, IDEMPOTENCY_CONFIG: 'a.yaml' };
    expect(loadConfig({ argv: [], env, readFile }).port).toBe(1111);
    expect(loadConfig({ argv: ['--config=b.yaml'], env, readFile }).port).toBe(2222);
  });

  it('reads every setting from its variable', () => {
    const config = load({
      env: {
        IDEMPOTENCY_UPSTREAM: 'https://api.internal:8443',
        IDEMPOTENCY_PORT: '18080',
        IDEMPOTENCY_HOST: '127.0.0.1',
        IDEMPOTENCY_ADMIN_PORT: '19090',
        IDEMPOTENCY_REDIS_URL: 'rediss://:pw@redis:6380/2',
        IDEMPOTENCY_REDLOCK_URLS: 'redis://a:6379, redis://b:6379,redis://c:6379',
        IDEMPOTENCY_METHODS: 'post,put,DELETE',
        IDEMPOTENCY_KEY_HEADER: 'X-Idempotency-Key',
        IDEMPOTENCY_REQUIRE_KEY: 'YES',
        IDEMPOTENCY_TTL: '7d',
        IDEMPOTENCY_LOCK_TTL: '15s',
        IDEMPOTENCY_CONCURRENT: 'WAIT',
        IDEMPOTENCY_WAIT_TIMEOUT: '45s',
        IDEMPOTENCY_UPSTREAM_TIMEOUT: '1m',
        IDEMPOTENCY_MAX_BODY: '4096',
        IDEMPOTENCY_MAX_BODY_MEMORY: '65536',
        IDEMPOTENCY_MAX_WAITERS: '10',
        IDEMPOTENCY_TENANT_MISSING: 'shared',
        IDEMPOTENCY_TENANT_HEADERS: 'Authorization, X-Tenant-Id',
        IDEMPOTENCY_STORE_UNAVAILABLE: 'passthrough',
        IDEMPOTENCY_RELEASE_STATUSES: '429,503',
        IDEMPOTENCY_ON_UNKNOWN: 'release',
        IDEMPOTENCY_ADMIN_TOKEN: '0123456789abcdef',
        IDEMPOTENCY_STORE_TIMEOUT: '250ms',
        IDEMPOTENCY_SHUTDOWN_GRACE: '5s',
        IDEMPOTENCY_LOG_LEVEL: 'debug',
        IDEMPOTENCY_REDIS_TLS_CA_FILE: CA.certPath,
        IDEMPOTENCY_REDIS_TLS_CERT_FILE: REDIS_CLIENT.certPath,
        IDEMPOTENCY_REDIS_TLS_KEY_FILE: REDIS_CLIENT.keyPath,
        IDEMPOTENCY_REDIS_WAIT_REPLICAS: '1',
        IDEMPOTENCY_REDIS_WAIT_TIMEOUT: '100ms',
        IDEMPOTENCY_TENANT_FROM: 'client-certificate',
        IDEMPOTENCY_TLS_CERT_FILE: LISTENER.certPath,
        IDEMPOTENCY_TLS_KEY_FILE: LISTENER.keyPath,
        IDEMPOTENCY_TLS_CLIENT_CA_FILE: CA.certPath,
        IDEMPOTENCY_ENCRYPTION_KEYS: `k2:${KEY_B64},k1:${OLD_KEY_B64}`,
        IDEMPOTENCY_CLIENT_HEADER_TIMEOUT: '3s',
        IDEMPOTENCY_CLIENT_REQUEST_TIMEOUT: '9s',
        IDEMPOTENCY_MAX_HEADER_SIZE: '8192',
        IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS: '500',
      },
    });
    expect({ ...config, upstream: config.upstream.origin }).toEqual({
      upstream: 'https://api.internal:8443',
      port: 18080,
      host: '127.0.0.1',
      adminPort: 19090,
      redisUrl: 'rediss://:pw@redis:6380/2',
      redisTls: false,
      redisTlsCaFile: CA.certPath,
      redisTlsCertFile: REDIS_CLIENT.certPath,
      redisTlsKeyFile: REDIS_CLIENT.keyPath,
      redisWaitReplicas: 1,
      redisWaitTimeoutMs: 100,
      redlockUrls: ['redis://a:6379', 'redis://b:6379', 'redis://c:6379'],
      methods: ['POST', 'PUT', 'DELETE'],
      keyHeader: 'x-idempotency-key',
      requireKey: true,
      ttlMs: 604_800_000,
      lockTtlMs: 15_000,
      concurrent: 'wait',
      waitTimeoutMs: 45_000,
      maxWaiters: 10,
      upstreamTimeoutMs: 60_000,
      maxBody: 4096,
      maxBodyMemory: 65_536,
      tenantHeaders: ['authorization', 'x-tenant-id'],
      tenantFrom: 'client-certificate',
      tenantMissing: 'shared',
      tlsCertFile: LISTENER.certPath,
      tlsKeyFile: LISTENER.keyPath,
      tlsClientCaFile: CA.certPath,
      encryptionKeys: [
        { id: 'k2', key: Buffer.from(KEY_B64, 'base64') },
        { id: 'k1', key: Buffer.from(OLD_KEY_B64, 'base64') },
      ],
      clientHeaderTimeoutMs: 3_000,
      clientRequestTimeoutMs: 9_000,
      maxHeaderSize: 8_192,
      memoryStoreMaxRecords: 500,
      storeUnavailable: 'passthrough',
      releaseStatuses: [429, 503],
      onUnknown: 'release',
      adminToken: '0123456789abcdef',
      storeTimeoutMs: 250,
      shutdownGraceMs: 5_000,
      logLevel: 'debug',
      routes: [],
    });
  });

  it('reads every setting from its flag', () => {
    const config = load({
      env: {},
      argv: [
        '--upstream=http://u:1',
        '--port=1',
        '--host=::',
        '--admin-port=2',
        '--redis-cluster-nodes=r0:7000,[::1]:7001',
        '--redlock-urls=redis://l:1',
        '--methods=PUT',
        '--key-header=K',
        '--require-key',
        '--ttl=1m',
        '--lock-ttl=2s',
        '--concurrent=wait',
        '--wait-timeout=3s',
        '--upstream-timeout=4s',
        '--max-body=5',
        '--max-body-memory=5',
        '--max-waiters=0',
        '--tenant-headers=',
        '--tenant-missing=shared',
        '--store-unavailable=passthrough',
        '--release-statuses=503',
        '--on-unknown=release',
        '--admin-token=abcdefghijklmnop',
        '--store-timeout=6s',
        '--shutdown-grace=7s',
        '--log-level=warn',
        '--redis-username=sidecar',
        '--redis-password=s3cret',
        '--redis-tls',
      ],
    });
    expect({ ...config, upstream: config.upstream.origin }).toEqual({
      upstream: 'http://u:1',
      port: 1,
      host: '::',
      adminPort: 2,
      redisClusterNodes: ['r0:7000', '[::1]:7001'],
      redisUsername: 'sidecar',
      redisPassword: 's3cret',
      redisTls: true,
      redisWaitReplicas: 0,
      redisWaitTimeoutMs: 500,
      redlockUrls: ['redis://l:1'],
      methods: ['PUT'],
      keyHeader: 'k',
      requireKey: true,
      ttlMs: 60_000,
      lockTtlMs: 2_000,
      concurrent: 'wait',
      waitTimeoutMs: 3_000,
      upstreamTimeoutMs: 4_000,
      maxBody: 5,
      maxBodyMemory: 5,
      maxWaiters: 0,
      tenantMissing: 'shared',
      tenantHeaders: [],
      tenantFrom: 'headers',
      clientHeaderTimeoutMs: 10_000,
      clientRequestTimeoutMs: 60_000,
      maxHeaderSize: 16_384,
      memoryStoreMaxRecords: 100_000,
      storeUnavailable: 'passthrough',
      releaseStatuses: [503],
      onUnknown: 'release',
      adminToken: 'abcdefghijklmnop',
      storeTimeoutMs: 6_000,
      shutdownGraceMs: 7_000,
      logLevel: 'warn',
      routes: [],
    });
  });
});

describe('loadConfig values', () => {
  it.each([
    ['true', true],
    ['TRUE', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['No', false],
  ])('reads IDEMPOTENCY_REQUIRE_KEY=%s as %s', (text, value) => {
    expect(load({ env: { ...UPSTREAM, IDEMPOTENCY_REQUIRE_KEY: text } }).requireKey).toBe(value);
  });

  it.each([
    [['--require-key'], true],
    [['--require-key=false'], false],
    [['--require-key', 'false'], false],
    [['--require-key', 'no'], false],
    [['--require-key', '--port', '1234'], true],
  ])('reads %j as requireKey %s', (argv, value) => {
    expect(load({ argv }).requireKey).toBe(value);
  });

  it('takes lists as YAML lists or comma strings, dropping duplicates and empty items', () => {
    expect(load({ yaml: 'methods: [post, PUT, POST]\n' }).methods).toEqual(['POST', 'PUT']);
    expect(load({ yaml: 'methods: "post, put,"\n' }).methods).toEqual(['POST', 'PUT']);
    expect(load({ yaml: 'releaseStatuses: [503, "429"]\n' }).releaseStatuses).toEqual([503, 429]);
    expect(load({ yaml: 'releaseStatuses: []\n' }).releaseStatuses).toEqual([]);
  });

  it('reads an empty tenant header list as no tenant scoping', () => {
    const shared = { ...UPSTREAM, IDEMPOTENCY_TENANT_MISSING: 'shared' };
    expect(load({ env: { ...shared, IDEMPOTENCY_TENANT_HEADERS: '' } }).tenantHeaders).toEqual([]);
    expect(load({ env: shared, yaml: 'tenantHeaders: []\n' }).tenantHeaders).toEqual([]);
    expect(load({ env: shared, yaml: 'tenantHeaders: ""\n' }).tenantHeaders).toEqual([]);
  });

  it('refuses an empty tenant header list while tenant-less requests are rejected: every keyed request would be', () => {
    expect(problemsOf({ env: { ...UPSTREAM, IDEMPOTENCY_TENANT_HEADERS: '' } })).toEqual([
      'IDEMPOTENCY_TENANT_HEADERS and IDEMPOTENCY_TENANT_MISSING: is empty while IDEMPOTENCY_TENANT_MISSING is reject: every keyed request would get 400 tenant-missing; name the headers that identify a client, or set IDEMPOTENCY_TENANT_MISSING=shared for an API with a single client',
    ]);
  });

  it('refuses a body memory bound smaller than one largest body', () => {
    expect(problemsOf({ env: { ...UPSTREAM, IDEMPOTENCY_MAX_BODY: '2048', IDEMPOTENCY_MAX_BODY_MEMORY: '1024' } })).toEqual([
      'IDEMPOTENCY_MAX_BODY_MEMORY and IDEMPOTENCY_MAX_BODY: is 1024 bytes, less than one body of the largest size (2048); raise it, or lower the body limit',
    ]);
  });

  it('takes a key with no value in the file as unset', () => {
    const config = load({ yaml: 'redisUrl:\nport:\nroutes:\n' });
    expect(config.redisUrl).toBeUndefined();
    expect(config.port).toBe(8080);
    expect(config.routes).toEqual([]);
  });

  it('takes an empty file, or one of comments only, as no settings', () => {
    expect(load({ yaml: '' }).port).toBe(8080);
    expect(load({ yaml: '# port: 1\n' }).port).toBe(8080);
  });

  it('reads route rules, keeping only what each rule sets', () => {
    const config = load({
      yaml: `
routes:
  - path: /healthz
    guard: false
  - path: /payments/*
    methods: post
    requireKey: true
    ttl: 1h
    concurrent: WAIT
    key: { from: header, name: X-Order-Id }
  - path: /legacy
    key: { from: body, pointer: "" }
`,
    });
    expect(config.routes).toEqual([
      { path: '/healthz', guard: false },
      {
        path: '/payments/*',
        methods: ['POST'],
        requireKey: true,
        ttlMs: 3_600_000,
        concurrent: 'wait',
        key: { from: 'header', name: 'x-order-id' },
      },
      { path: '/legacy', key: { from: 'body', pointer: '' } },
    ]);
  });
});

describe('loadConfig problems name the setting as the operator set it', () => {
  const DURATION = 'use a number with ms, s, m, h or d, e.g. 250ms, 2s, 24h';

  it.each([
    // [variable, bad value, the whole line expected]
    ['IDEMPOTENCY_UPSTREAM', 'not a url', 'IDEMPOTENCY_UPSTREAM: "not a url" is not a URL; use http://host:port or https://host:port'],
    ['IDEMPOTENCY_UPSTREAM', 'ftp://files:21', 'IDEMPOTENCY_UPSTREAM: "ftp://files:21" is not an http:// or https:// URL; e.g. http://127.0.0.1:3000'],
    [
      'IDEMPOTENCY_UPSTREAM',
      'http://api:3000/v1',
      'IDEMPOTENCY_UPSTREAM: "http://api:3000/v1" has a path, query or fragment; give the origin only, e.g. http://api:3000 (requests keep their own paths)',
    ],
    [
      'IDEMPOTENCY_UPSTREAM',
      'http://api:3000/?a=1',
      'IDEMPOTENCY_UPSTREAM: "http://api:3000/?a=1" has a path, query or fragment; give the origin only, e.g. http://api:3000 (requests keep their own paths)',
    ],
    ['IDEMPOTENCY_UPSTREAM', 'http://u:secret@api:3000', 'IDEMPOTENCY_UPSTREAM: has credentials in it, which the sidecar would not send; remove them'],
    ['IDEMPOTENCY_PORT', '65536', 'IDEMPOTENCY_PORT: "65536" is not a port; use a whole number from 1 to 65535, or 0 for any free port'],
    ['IDEMPOTENCY_PORT', '80.5', 'IDEMPOTENCY_PORT: "80.5" is not a port; use a whole number from 1 to 65535, or 0 for any free port'],
    ['IDEMPOTENCY_PORT', '', 'IDEMPOTENCY_PORT: "" is not a port; use a whole number from 1 to 65535, or 0 for any free port'],
    [
      'IDEMPOTENCY_HOST',
      'localhost:8080',
      'IDEMPOTENCY_HOST: "localhost:8080" is not an address; give a host name or IP address without a port, e.g. 0.0.0.0 or ::',
    ],
    ['IDEMPOTENCY_ADMIN_PORT', 'admin', 'IDEMPOTENCY_ADMIN_PORT: "admin" is not a port; use a whole number from 1 to 65535, or 0 for any free port'],
    [
      'IDEMPOTENCY_REDIS_URL',
      'http://user:secret@redis:6379',
      'IDEMPOTENCY_REDIS_URL: "http://user:REDACTED@redis:6379/" is not a redis:// or rediss:// URL; e.g. redis://redis:6379',
    ],
    ['IDEMPOTENCY_REDIS_URL', 'redis://', 'IDEMPOTENCY_REDIS_URL: "redis://" has no host; e.g. redis://redis:6379'],
    [
      'IDEMPOTENCY_REDIS_URL',
      'redis://:secret@',
      'IDEMPOTENCY_REDIS_URL: is not a URL (not shown: it may hold a password); use redis://host:6379 or rediss://host:6380',
    ],
    [
      'IDEMPOTENCY_REDIS_URL',
      'redis://redis:6379/cache',
      'IDEMPOTENCY_REDIS_URL: "redis://redis:6379/cache" has a path other than a database number; e.g. redis://redis:6379/0',
    ],
    [
      'IDEMPOTENCY_REDIS_CLUSTER_NODES',
      'redis-0:6379,redis-1',
      'IDEMPOTENCY_REDIS_CLUSTER_NODES: "redis-1" is not host:port; e.g. redis-0:6379 or [::1]:7000',
    ],
    [
      'IDEMPOTENCY_REDIS_CLUSTER_NODES',
      '',
      'IDEMPOTENCY_REDIS_CLUSTER_NODES: lists no node; give host:port seeds, e.g. redis-0:6379,redis-1:6379, or unset it',
    ],
    [
      'IDEMPOTENCY_METHODS',
      'POST,GET',
      'IDEMPOTENCY_METHODS: GET is a safe method: it always passes through and cannot be guarded; list methods that change state, e.g. POST,PATCH',
    ],
    [
      'IDEMPOTENCY_METHODS',
      'connect',
      'IDEMPOTENCY_METHODS: CONNECT opens a tunnel: it always passes through and cannot be guarded; list methods that change state, e.g. POST,PATCH',
    ],
    ['IDEMPOTENCY_METHODS', 'PO ST', 'IDEMPOTENCY_METHODS: "PO ST" is not an HTTP method; use names like POST, PUT, PATCH, DELETE'],
    ['IDEMPOTENCY_METHODS', ' , ', 'IDEMPOTENCY_METHODS: lists no method; give the methods to guard, e.g. POST,PATCH'],
    [
      'IDEMPOTENCY_KEY_HEADER',
      'Idempotency Key',
      'IDEMPOTENCY_KEY_HEADER: "Idempotency Key" is not a header name; use letters, digits and dashes, e.g. Idempotency-Key',
    ],
    [
      'IDEMPOTENCY_KEY_HEADER',
      'Connection',
      'IDEMPOTENCY_KEY_HEADER: "Connection" is a hop-by-hop or framing header that proxies rewrite; use another name, e.g. Idempotency-Key',
    ],
    ['IDEMPOTENCY_REQUIRE_KEY', 'maybe', 'IDEMPOTENCY_REQUIRE_KEY: "maybe" is not a boolean; use true or false'],
    ['IDEMPOTENCY_TTL', '24', `IDEMPOTENCY_TTL: "24" is not a duration; ${DURATION}`],
    ['IDEMPOTENCY_TTL', '0s', 'IDEMPOTENCY_TTL: "0s" is zero; it must be longer than 0, e.g. 2s'],
    ['IDEMPOTENCY_TTL', '-5m', 'IDEMPOTENCY_TTL: "-5m" is negative; it must be longer than 0, e.g. 2s'],
    [
      'IDEMPOTENCY_LOCK_TTL',
      '30d',
      'IDEMPOTENCY_LOCK_TTL: "30d" is longer than 2147483647ms (about 24.8 days), the longest timer Node.js can set',
    ],
    ['IDEMPOTENCY_LOCK_TTL', '10 s', `IDEMPOTENCY_LOCK_TTL: "10 s" is not a duration; ${DURATION}`],
    ['IDEMPOTENCY_CONCURRENT', 'sometimes', 'IDEMPOTENCY_CONCURRENT: "sometimes" is not accepted; use reject or wait'],
    ['IDEMPOTENCY_WAIT_TIMEOUT', '1.5s', `IDEMPOTENCY_WAIT_TIMEOUT: "1.5s" is not a duration; ${DURATION}`],
    ['IDEMPOTENCY_UPSTREAM_TIMEOUT', '30', `IDEMPOTENCY_UPSTREAM_TIMEOUT: "30" is not a duration; ${DURATION}`],
    ['IDEMPOTENCY_MAX_BODY', '1MB', 'IDEMPOTENCY_MAX_BODY: "1MB" is not a size; use a whole number of bytes greater than 0, e.g. 1048576'],
    ['IDEMPOTENCY_MAX_BODY', '0', 'IDEMPOTENCY_MAX_BODY: "0" is not a size; use a whole number of bytes greater than 0, e.g. 1048576'],
    [
      'IDEMPOTENCY_TENANT_HEADERS',
      'Authorization,X Tenant',
      'IDEMPOTENCY_TENANT_HEADERS: "X Tenant" is not a header name; use letters, digits and dashes, e.g. Authorization',
    ],
    ['IDEMPOTENCY_STORE_UNAVAILABLE', 'fail', 'IDEMPOTENCY_STORE_UNAVAILABLE: "fail" is not accepted; use reject or passthrough'],
    [
      'IDEMPOTENCY_RELEASE_STATUSES',
      '201,503',
      'IDEMPOTENCY_RELEASE_STATUSES: "201" is a success: the upstream acted on the request, so releasing the key would let a retry run it again; list only statuses that mean it was not acted on, e.g. 408,409,425,429,503',
    ],
    [
      'IDEMPOTENCY_RELEASE_STATUSES',
      '99',
      'IDEMPOTENCY_RELEASE_STATUSES: "99" is not an HTTP status; use whole numbers from 100 to 599, e.g. 408,429,503',
    ],
    ['IDEMPOTENCY_ON_UNKNOWN', 'guess', 'IDEMPOTENCY_ON_UNKNOWN: "guess" is not accepted; use hold or release'],
    [
      'IDEMPOTENCY_ADMIN_TOKEN',
      'short-secret',
      'IDEMPOTENCY_ADMIN_TOKEN: is 12 characters; use at least 16 (e.g. openssl rand -hex 32): it alone authorizes deleting records, which lets a retried payment run again',
    ],
    [
      'IDEMPOTENCY_ADMIN_TOKEN',
      '',
      'IDEMPOTENCY_ADMIN_TOKEN: is empty; unset it to turn the admin API off, or set a token of at least 16 characters',
    ],
    [
      'IDEMPOTENCY_ADMIN_TOKEN',
      '0123456789abcdef0123\n',
      'IDEMPOTENCY_ADMIN_TOKEN: contains spaces or control characters (a trailing newline from a secret file?); use visible ASCII only',
    ],
    ['IDEMPOTENCY_STORE_TIMEOUT', '0ms', 'IDEMPOTENCY_STORE_TIMEOUT: "0ms" is zero; it must be longer than 0, e.g. 2s'],
    ['IDEMPOTENCY_SHUTDOWN_GRACE', 'forever', `IDEMPOTENCY_SHUTDOWN_GRACE: "forever" is not a duration; ${DURATION}`],
    [
      'IDEMPOTENCY_LOG_LEVEL',
      'verbose',
      'IDEMPOTENCY_LOG_LEVEL: "verbose" is not accepted; use fatal, error, warn, info, debug, trace or silent',
    ],
  ])('%s=%j', (name, value, expected) => {
    expect(envProblems(name, value)).toEqual([expected]);
  });

  it('never echoes a secret', () => {
    const all = [
      ...envProblems('IDEMPOTENCY_UPSTREAM', 'http://u:hunter2hunter2@api:3000'),
      ...envProblems('IDEMPOTENCY_REDIS_URL', 'http://u:hunter2hunter2@redis'),
      ...envProblems('IDEMPOTENCY_REDIS_URL', 'redis://:hunter2hunter2@'),
      ...envProblems('IDEMPOTENCY_ADMIN_TOKEN', 'hunter2hunter2'),
      ...envProblems('IDEMPOTENCY_REDLOCK_URLS', 'redis://:hunter2hunter2@a:1,redis://:hunter2hunter2@a:1', {
        IDEMPOTENCY_REDIS_URL: 'redis://r:6379',
      }),
    ];
    expect(all).toHaveLength(5);
    for (const problem of all) expect(problem).not.toContain('hunter2');
  });

  it('requires the upstream, naming its variable', () => {
    expect(problemsOf({ env: {} })).toEqual([
      'IDEMPOTENCY_UPSTREAM: is required: the base URL of the protected API, e.g. http://127.0.0.1:3000 (or --upstream, or upstream: in the YAML file)',
    ]);
  });

  it('names the flag when the value came from a flag', () => {
    expect(problemsOf({ argv: ['--ttl', '24', '--admin-port=x', '--require-key=perhaps'] })).toEqual([
      '--admin-port: "x" is not a port; use a whole number from 1 to 65535, or 0 for any free port',
      '--require-key: "perhaps" is not a boolean; use true or false',
      `--ttl: "24" is not a duration; ${DURATION}`,
    ]);
  });

  it('names the YAML path when the value came from the file', () => {
    expect(problemsOf({ yaml: 'ttl: 24\nmethods: [POST, GET]\nmaxBody: 1.5\nrequireKey: 1\n', env: UPSTREAM })).toEqual([
      'config.yaml: methods[1]: GET is a safe method: it always passes through and cannot be guarded; list methods that change state, e.g. POST,PATCH',
      'config.yaml: requireKey: 1 is not a boolean; use true or false',
      'config.yaml: ttl: 24 has no unit, and seconds or milliseconds would be a guess; use a suffix: 250ms, 2s, 24h',
      'config.yaml: maxBody: 1.5 is not a size; use a whole number of bytes greater than 0, e.g. 1048576',
    ]);
  });

  it('names the winning source: a bad file value hidden by a good variable is no problem', () => {
    expect(load({ yaml: 'ttl: soon\n', env: { ...UPSTREAM, IDEMPOTENCY_TTL: '1h' } }).ttlMs).toBe(3_600_000);
  });

  it('takes port 0 for either listener, and for both (two free ports, bound at start)', () => {
    expect(load({ env: { ...UPSTREAM, IDEMPOTENCY_PORT: '0', IDEMPOTENCY_ADMIN_PORT: '0' } })).toMatchObject({ port: 0, adminPort: 0 });
    expect(load({ env: { ...UPSTREAM, IDEMPOTENCY_ADMIN_PORT: '0' } })).toMatchObject({ port: 8080, adminPort: 0 });
  });

  it('refuses the same port for both listeners, naming both settings', () => {
    expect(envProblems('IDEMPOTENCY_ADMIN_PORT', '8080')).toEqual([
      'IDEMPOTENCY_ADMIN_PORT and IDEMPOTENCY_PORT: are both 8080; the proxy and the admin listener need different ports',
    ]);
    expect(problemsOf({ argv: ['--port', '9090'] })).toEqual([
      'IDEMPOTENCY_ADMIN_PORT and --port: are both 9090; the proxy and the admin listener need different ports',
    ]);
    expect(problemsOf({ yaml: 'port: 7000\nadminPort: 7000\n' })).toEqual([
      'config.yaml: adminPort and port: are both 7000; the proxy and the admin listener need different ports',
    ]);
  });

  it('refuses a Redis URL and Cluster nodes together', () => {
    expect(
      envProblems('IDEMPOTENCY_REDIS_URL', 'redis://r:6379', { IDEMPOTENCY_REDIS_CLUSTER_NODES: 'r0:7000' }),
    ).toEqual([
      'IDEMPOTENCY_REDIS_URL and IDEMPOTENCY_REDIS_CLUSTER_NODES: are both set; the record store is one Redis, one Redis Cluster or one Sentinel-managed master: keep one',
    ]);
  });

  it('refuses Redlock URLs that are not Redis, name a master twice, or come without a Redis store', () => {
    expect(
      envProblems('IDEMPOTENCY_REDLOCK_URLS', 'redis://a:6379,http://b:6379', { IDEMPOTENCY_REDIS_URL: 'redis://r' }),
    ).toEqual([
      'IDEMPOTENCY_REDLOCK_URLS: "http://b:6379/" is not a redis:// or rediss:// URL; e.g. redis://redis:6379',
    ]);
    expect(
      envProblems('IDEMPOTENCY_REDLOCK_URLS', 'redis://a,redis://a:6379/0', { IDEMPOTENCY_REDIS_URL: 'redis://r' }),
    ).toEqual([
      'IDEMPOTENCY_REDLOCK_URLS: names a:6379/0 twice; each Redlock master must be a different server, or the quorum means nothing',
    ]);
    expect(envProblems('IDEMPOTENCY_REDLOCK_URLS', 'redis://a,redis://b,redis://c')).toEqual([
      'IDEMPOTENCY_REDLOCK_URLS: needs a Redis record store too (IDEMPOTENCY_REDIS_URL, IDEMPOTENCY_REDIS_CLUSTER_NODES or IDEMPOTENCY_REDIS_SENTINELS): with the in-process store each replica keeps its own records, so shared locks cannot stop a second run',
    ]);
  });

  it('collects every problem from every source into one ConfigError', () => {
    let thrown: unknown;
    try {
      loadConfig(
        input({
          argv: ['--port', 'eighty', '--colour', 'blue'],
          env: { IDEMPOTENCY_TTL: '24', IDEMPOTENCY_CONCURRENT: 'queue', IDEMPOTENCY_ADMIN_TOKEN: 'x' },
          yaml: 'upstream: http://api/v1\nlogLevel: loud\ntll: 1h\n',
        }),
      );
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    const problems = (thrown as ConfigError).problems;
    expect(problems).toEqual([
      '--colour: is not a flag (see --help)',
      'config.yaml: upstream: "http://api/v1" has a path, query or fragment; give the origin only, e.g. http://api (requests keep their own paths)',
      '--port: "eighty" is not a port; use a whole number from 1 to 65535, or 0 for any free port',
      `IDEMPOTENCY_TTL: "24" is not a duration; ${DURATION}`,
      'IDEMPOTENCY_CONCURRENT: "queue" is not accepted; use reject or wait',
      'IDEMPOTENCY_ADMIN_TOKEN: is 1 characters; use at least 16 (e.g. openssl rand -hex 32): it alone authorizes deleting records, which lets a retried payment run again',
      'config.yaml: logLevel: "loud" is not accepted; use fatal, error, warn, info, debug, trace or silent',
      'config.yaml: unknown setting "tll"; did you mean ttl?',
    ]);
    expect((thrown as ConfigError).message).toBe(problems.join('; '));
  });
});

describe('loadConfig route rules', () => {
  const rule = (body: string): readonly string[] => problemsOf({ yaml: `routes:\n  - path: /a\n${body}` });

  it.each([
    ['    method: [POST]\n', 'config.yaml: routes[0]: unknown key "method"; did you mean methods?'],
    ['    methods: [GET]\n', 'config.yaml: routes[0].methods[0]: GET is a safe method: it always passes through and cannot be guarded; list methods that change state, e.g. POST,PATCH'],
    ['    methods: []\n', 'config.yaml: routes[0].methods: lists no method; give the methods to guard, e.g. POST,PATCH'],
    ['    guard: perhaps\n', 'config.yaml: routes[0].guard: "perhaps" is not a boolean; use true or false'],
    ['    requireKey: sure\n', 'config.yaml: routes[0].requireKey: "sure" is not a boolean; use true or false'],
    ['    ttl: 3600\n', 'config.yaml: routes[0].ttl: 3600 has no unit, and seconds or milliseconds would be a guess; use a suffix: 250ms, 2s, 24h'],
    ['    ttl: soon\n', 'config.yaml: routes[0].ttl: "soon" is not a duration; use a number with ms, s, m, h or d, e.g. 250ms, 2s, 24h'],
    ['    concurrent: queue\n', 'config.yaml: routes[0].concurrent: "queue" is not accepted; use reject or wait'],
    ['    key: order_id\n', 'config.yaml: routes[0].key: "order_id" is not a key source; use { from: header, name: X-Order-Id } or { from: body, pointer: /order_id }'],
    ['    key: { from: query, name: id }\n', 'config.yaml: routes[0].key.from: "query" is not accepted; use header or body'],
    ['    key: { from: header }\n', 'config.yaml: routes[0].key.name: is missing; name the header that carries the key, e.g. X-Order-Id'],
    ['    key: { from: header, name: "X Order" }\n', 'config.yaml: routes[0].key.name: "X Order" is not a header name; use letters, digits and dashes, e.g. Idempotency-Key'],
    ['    key: { from: header, name: X-Id, pointer: /id }\n', 'config.yaml: routes[0].key: unknown key "pointer"; a key from the header takes only from and name'],
    ['    key: { from: body, pointer: order_id }\n', 'config.yaml: routes[0].key.pointer: "order_id" is not a JSON pointer; use an RFC 6901 pointer, e.g. /order_id or /order/id'],
    ['    key: { from: body, pointer: /a~2b }\n', 'config.yaml: routes[0].key.pointer: "/a~2b" is not a JSON pointer; use an RFC 6901 pointer, e.g. /order_id or /order/id'],
    ['    guard: false\n    requireKey: true\n    ttl: 1h\n', 'config.yaml: routes[0].guard: is false, so requireKey and ttl have no effect; remove them or the guard: false'],
  ])('%j', (body, expected) => {
    expect(rule(body)).toEqual([expected]);
  });

  it.each([
    ['payments', 'config.yaml: routes[0].path: "payments" is not a path; start it with /, e.g. /payments or /payments/*'],
    ['/pay*', 'config.yaml: routes[0].path: "/pay*" has a * that is not a final /*; use an exact path or a prefix like /payments/*'],
    ['/*/refunds', 'config.yaml: routes[0].path: "/*/refunds" has a * that is not a final /*; use an exact path or a prefix like /payments/*'],
    ['/a?b=1', 'config.yaml: routes[0].path: "/a?b=1" has a space, query or fragment; rules match the path only'],
    [
      '/a//b/*',
      'config.yaml: routes[0].path: "/a//b/*" would never match: requests are matched after merging //, decoding %-escaped letters and digits and leaving out ;parameters; write /a/b/*',
    ],
  ])('path %j', (rulePath, expected) => {
    expect(problemsOf({ yaml: `routes:\n  - path: "${rulePath}"\n` })).toEqual([expected]);
  });

  it('requires a path in every rule', () => {
    expect(problemsOf({ yaml: 'routes:\n  - ttl: 1h\n' })).toEqual([
      'config.yaml: routes[0].path: is required: the path this rule applies to, e.g. /payments/*',
    ]);
  });

  it('refuses routes that are not a list of mappings', () => {
    expect(problemsOf({ yaml: 'routes: { path: /a }\n' })).toEqual([
      'config.yaml: routes: is not a list of route rules; write routes: followed by - path: ... items',
    ]);
    expect(problemsOf({ yaml: 'routes:\n  - path: /a\n  - /b\n' })).toEqual([
      'config.yaml: routes[1]: is not a route rule; each rule is a mapping, e.g. { path: /payments/*, requireKey: true }',
    ]);
  });

  it('refuses a rule that an earlier rule always wins over', () => {
    expect(
      problemsOf({
        yaml: 'routes:\n  - path: /payments/*\n  - path: /orders\n  - path: /payments/refunds\n    ttl: 1h\n',
      }),
    ).toEqual([
      'config.yaml: routes[2].path: /payments/refunds can never match: routes[0] (/payments/*) comes first and matches every request it would; put the more specific rule first',
    ]);
  });

  it('accepts a later rule that reaches methods the earlier one does not', () => {
    const config = load({
      yaml: 'routes:\n  - path: /payments/*\n    methods: [POST]\n  - path: /payments/refunds\n    methods: [PUT]\n',
    });
    expect(config.routes.map((r) => r.path)).toEqual(['/payments/*', '/payments/refunds']);
  });

  it('reports every bad rule, not just the first', () => {
    expect(
      problemsOf({ yaml: 'routes:\n  - path: /a\n    ttl: 0s\n  - path: /b\n    concurrent: never\n    foo: 1\n' }),
    ).toEqual([
      'config.yaml: routes[0].ttl: "0s" is zero; it must be longer than 0, e.g. 2s',
      'config.yaml: routes[1].concurrent: "never" is not accepted; use reject or wait',
      'config.yaml: routes[1]: unknown key "foo"',
    ]);
  });

  it('is a file-only setting: no IDEMPOTENCY_ROUTES, no --routes', () => {
    expect(problemsOf({ argv: ['--routes', '/a'] })).toEqual(['--routes: is not a flag (see --help)']);
    expect(load({ env: { ...UPSTREAM, IDEMPOTENCY_ROUTES: '/a' } }).routes).toEqual([]);
  });
});

describe('loadConfig YAML file problems', () => {
  it('names an unknown top-level key, suggesting the likely one', () => {
    expect(problemsOf({ yaml: 'admin_port: 9091\nredis: redis://r\nIDEMPOTENCY_TTL: 1h\nconfig: other.yaml\n' })).toEqual([
      'config.yaml: unknown setting "admin_port"; did you mean adminPort?',
      'config.yaml: unknown setting "redis"',
      'config.yaml: unknown setting "IDEMPOTENCY_TTL"; did you mean ttl?',
      'config.yaml: unknown setting "config"',
    ]);
  });

  it('names a file that cannot be read, and the setting that named it', () => {
    const missing = path.join(__dirname, 'no-such-dir', 'sidecar.yaml');
    const realProblems = (given: LoadInput): readonly string[] => {
      try {
        loadConfig(given);
      } catch (error) {
        if (error instanceof ConfigError) return error.problems;
      }
      return [];
    };
    expect(realProblems({ argv: ['--config', missing], env: UPSTREAM })).toEqual([
      `--config ${missing}: cannot be read (ENOENT: no such file or directory, open '${missing}')`,
    ]);
    expect(realProblems({ argv: [], env: { ...UPSTREAM, IDEMPOTENCY_CONFIG: missing } })).toEqual([
      `IDEMPOTENCY_CONFIG ${missing}: cannot be read (ENOENT: no such file or directory, open '${missing}')`,
    ]);
  });

  it('does not blame a missing upstream on anything but the unreadable file', () => {
    const problems = (() => {
      try {
        loadConfig({
          argv: ['--config', 'gone.yaml', '--port', 'x'],
          env: {},
          readFile: () => {
            throw new Error('EACCES: permission denied');
          },
        });
      } catch (error) {
        return (error as ConfigError).problems;
      }
      return [];
    })();
    expect(problems).toEqual([
      '--config gone.yaml: cannot be read (EACCES: permission denied)',
      '--port: "x" is not a port; use a whole number from 1 to 65535, or 0 for any free port',
    ]);
  });

  it('names the file and the place of a YAML syntax error', () => {
    expect(problemsOf({ yaml: 'port: 8080\nmethods: [POST\n' })).toEqual([
      expect.stringMatching(/^config\.yaml:\d+:\d+: is not valid YAML: .+/),
    ]);
    expect(problemsOf({ yaml: 'port: 1\nport: 2\n' })).toEqual([
      'config.yaml:2:1: is not valid YAML: Map keys must be unique',
    ]);
  });

  it.each([
    ['- upstream: http://a\n', 'a list'],
    ['just text\n', 'a scalar'],
  ])('refuses a file that is not a mapping (%s)', (yaml) => {
    expect(problemsOf({ yaml })).toEqual([
      'config.yaml: is not a mapping of settings; write one setting per line, e.g. upstream: http://127.0.0.1:3000',
    ]);
  });

  it('refuses a file whose aliases expand without bound, instead of hanging or crashing', () => {
    let yaml = 'a: &a [x, x, x, x, x, x, x, x, x]\n';
    for (let i = 0, previous = 'a'; i < 8; i++, previous = `l${i - 1}`) {
      yaml += `l${i}: &l${i} [${Array.from({ length: 9 }, () => `*${previous}`).join(', ')}]\n`;
    }
    expect(problemsOf({ yaml })).toEqual([
      'config.yaml: is not usable YAML: Excessive alias count indicates a resource exhaustion attack',
    ]);
  });

  it('refuses an empty IDEMPOTENCY_CONFIG', () => {
    expect(problemsOf({ env: { ...UPSTREAM, IDEMPOTENCY_CONFIG: '' } })).toEqual([
      'IDEMPOTENCY_CONFIG: is empty; give the path of a YAML file, or unset it',
    ]);
  });
});

describe('config/example.yaml', () => {
  const file = path.join(__dirname, '..', '..', 'config', 'example.yaml');

  it('loads cleanly through loadConfig with the real file system', () => {
    const config = loadConfig({ argv: ['--config', file], env: {} });
    expect(config.upstream.origin).toBe('http://127.0.0.1:3000');
    expect(config.port).toBe(8080);
    expect(config.store).toEqual({ kind: 'memory', maxRecords: 100_000 });
    expect(config.adminToken).toBeUndefined();
    expect(config.routes).toEqual([
      { path: '/healthz', guard: false },
      { path: '/payments/*', methods: ['POST'], requireKey: true, ttlMs: 172_800_000 },
      { path: '/legacy/orders', methods: ['POST'], concurrent: 'wait', key: { from: 'body', pointer: '/order_id' }, caseInsensitive: true, trailingSlash: true },
      { path: '/partners/*', methods: ['POST', 'PUT', 'DELETE'], key: { from: 'header', name: 'x-request-id' } },
    ]);
  });

  it('shows every setting, each with the default the sidecar really uses', () => {
    const text = readFileSync(file, 'utf8');
    const config = loadConfig({ argv: ['--config', file], env: {} });
    for (const setting of describeSettings()) {
      if (setting.name === '(file)' || setting.name === 'upstream' || setting.name === 'routes') continue;
      expect(text).toMatch(new RegExp(`^#? ?${setting.name}:`, 'm'));
    }
    // The values the example sets are the defaults, so copying it changes nothing by accident.
    const defaults = loadConfig({ argv: [], env: UPSTREAM });
    expect({ ...config, upstream: undefined, routes: undefined }).toEqual({
      ...defaults,
      upstream: undefined,
      routes: undefined,
    });
  });
});

describe('parseCommandLine', () => {
  it('separates the action flags from the settings', () => {
    expect(parseCommandLine(['--config-test', '--port', '1', '--config=x.yaml'])).toEqual({
      action: 'config-test',
      settings: { port: '1' },
      configPath: 'x.yaml',
      problems: [],
    });
    expect(parseCommandLine([]).action).toBe('run');
    expect(parseCommandLine(['--version']).action).toBe('version');
    expect(parseCommandLine(['-h']).action).toBe('help');
    expect(parseCommandLine(['--config-test', '--version', '--help']).action).toBe('help');
  });

  it('returns problems instead of throwing, so --help works next to a typo', () => {
    expect(parseCommandLine(['--help', '--prot', '80', 'stray', '--ttl'])).toEqual({
      action: 'help',
      settings: {},
      configPath: undefined,
      problems: [
        '--prot: is not a flag; did you mean --port? (see --help)',
        'command line: unexpected argument "stray"; settings are flags, e.g. --port 8080',
        '--ttl: needs a value, e.g. --ttl=VALUE',
      ],
    });
  });

  it('does not let a flag swallow the next flag as its value', () => {
    expect(parseCommandLine(['--port', '--ttl', '1h']).problems).toEqual([
      '--port: needs a value, e.g. --port=VALUE (it is followed by --ttl)',
    ]);
    expect(parseCommandLine(['--help=yes']).problems).toEqual(['--help: takes no value']);
  });

  it('knows every flag of the brief', () => {
    const flags = [
      'upstream', 'port', 'host', 'admin-port', 'redis-url', 'redis-cluster-nodes', 'redlock-urls', 'methods',
      'key-header', 'require-key', 'ttl', 'lock-ttl', 'concurrent', 'wait-timeout', 'upstream-timeout', 'max-body',
      'tenant-headers', 'store-unavailable', 'release-statuses', 'on-unknown', 'admin-token', 'store-timeout',
      'shutdown-grace', 'log-level', 'config',
    ];
    for (const flag of flags) expect(parseCommandLine([`--${flag}=v`]).problems).toEqual([]);
  });

  it('loadConfig ignores the action flags', () => {
    expect(load({ argv: ['--config-test', '--port', '1234'] }).port).toBe(1234);
  });
});

describe('describeSettings and --help', () => {
  // CONTRACT.md section 1, word for word: variable and default.
  const CONTRACT: readonly (readonly [string, string])[] = [
    ['IDEMPOTENCY_UPSTREAM', 'required'],
    ['IDEMPOTENCY_PORT', '8080'],
    ['IDEMPOTENCY_HOST', '0.0.0.0'],
    ['IDEMPOTENCY_ADMIN_PORT', '9090'],
    ['IDEMPOTENCY_REDIS_URL', 'unset'],
    ['IDEMPOTENCY_REDIS_CLUSTER_NODES', 'unset'],
    ['IDEMPOTENCY_REDLOCK_URLS', 'the record store'],
    ['IDEMPOTENCY_METHODS', 'POST,PATCH'],
    ['IDEMPOTENCY_KEY_HEADER', 'Idempotency-Key'],
    ['IDEMPOTENCY_REQUIRE_KEY', 'false'],
    ['IDEMPOTENCY_TTL', '24h'],
    ['IDEMPOTENCY_LOCK_TTL', '10s'],
    ['IDEMPOTENCY_CONCURRENT', 'reject'],
    ['IDEMPOTENCY_WAIT_TIMEOUT', '30s'],
    ['IDEMPOTENCY_UPSTREAM_TIMEOUT', '30s'],
    ['IDEMPOTENCY_MAX_BODY', '1048576'],
    ['IDEMPOTENCY_TENANT_HEADERS', 'Authorization'],
    ['IDEMPOTENCY_STORE_UNAVAILABLE', 'reject'],
    ['IDEMPOTENCY_RELEASE_STATUSES', '408,409,425,429,503'],
    ['IDEMPOTENCY_ON_UNKNOWN', 'hold'],
    ['IDEMPOTENCY_ADMIN_TOKEN', 'unset'],
    ['IDEMPOTENCY_STORE_TIMEOUT', '1s'],
    ['IDEMPOTENCY_SHUTDOWN_GRACE', '25s'],
  ];

  it.each(CONTRACT)('describes %s with the default %s', (env, fallback) => {
    const row = describeSettings().find((s) => s.env === env);
    expect(row?.default).toBe(fallback);
    expect(row?.meaning).not.toBe('');
    expect(formatHelp()).toContain(env);
  });

  it('names each setting by flag, variable and YAML key consistently', () => {
    const row = describeSettings().find((s) => s.name === 'storeUnavailable');
    expect(row).toEqual({
      name: 'storeUnavailable',
      boolean: false,
      env: 'IDEMPOTENCY_STORE_UNAVAILABLE',
      flag: '--store-unavailable',
      default: 'reject',
      meaning: 'reject: guarded requests get 503 while Redis is down; passthrough: they go through unguarded',
    });
    expect(describeSettings().find((s) => s.name === 'logLevel')?.env).toBe('IDEMPOTENCY_LOG_LEVEL');
  });

  it('prints the actions and every flag', () => {
    const help = formatHelp();
    for (const action of ['--help', '--version', '--config-test', '--config VALUE, IDEMPOTENCY_CONFIG']) {
      expect(help).toContain(action);
    }
    expect(help).toContain('--require-key[=true|false], IDEMPOTENCY_REQUIRE_KEY  (default: false)');
    expect(help).toContain('routes: (YAML file only)');
  });
});

describe('redactSettings (--config-test)', () => {
  it('hides the admin token and Redis passwords, and shows the rest', () => {
    const config = loadSettings(input({
      env: {
        ...UPSTREAM,
        IDEMPOTENCY_ADMIN_TOKEN: 'super-secret-token-value',
        IDEMPOTENCY_REDIS_URL: 'redis://:redis-password@redis:6379/0',
        IDEMPOTENCY_REDLOCK_URLS: 'redis://user:lock-password@lock:6379',
      },
    }));
    const printed = JSON.stringify(redactSettings(config));
    expect(printed).not.toContain('super-secret-token-value');
    expect(printed).not.toContain('redis-password');
    expect(printed).not.toContain('lock-password');
    expect(redactSettings(config)).toMatchObject({
      upstream: 'http://127.0.0.1:3000',
      store: 'redis',
      adminToken: 'REDACTED',
      redisUrl: 'redis://:REDACTED@redis:6379/0',
      redlockUrls: ['redis://user:REDACTED@lock:6379'],
      port: 8080,
    });
  });

  it('hides the node password and the encryption keys', () => {
    const key = Buffer.alloc(32, 3).toString('base64');
    const config = loadSettings(input({
      env: {
        ...UPSTREAM,
        IDEMPOTENCY_REDIS_SENTINELS: 's0:26379',
        IDEMPOTENCY_REDIS_SENTINEL_MASTER: 'mymaster',
        IDEMPOTENCY_REDIS_USERNAME: 'idempotency-store',
        IDEMPOTENCY_REDIS_PASSWORD: 'node-password-value',
        IDEMPOTENCY_ENCRYPTION_KEYS: `k1:${key}`,
      },
    }));
    const printed = JSON.stringify(redactSettings(config));
    expect(printed).not.toContain('node-password-value');
    expect(printed).not.toContain(key);
    expect(redactSettings(config)).toMatchObject({
      redisPassword: 'REDACTED',
      encryptionKeys: 'REDACTED',
      redisUsername: 'idempotency-store',
      store: 'sentinel',
    });
  });

  it('leaves unset secrets out', () => {
    const printed = JSON.parse(JSON.stringify(redactSettings(loadSettings(input({}))))) as Record<string, unknown>;
    expect('adminToken' in printed).toBe(false);
    expect('redisUrl' in printed).toBe(false);
  });
});

describe('unknownEnvironmentVariables', () => {
  it('lists IDEMPOTENCY_ variables that name no setting', () => {
    expect(
      unknownEnvironmentVariables({
        IDEMPOTENCY_REQUIRE_KEYS: 'true',
        IDEMPOTENCY_PORT: '1',
        IDEMPOTENCY_CONFIG: 'x',
        IDEMPOTENCY_ROUTES: '/a',
        HOME: '/root',
      }),
    ).toEqual(['IDEMPOTENCY_REQUIRE_KEYS', 'IDEMPOTENCY_ROUTES']);
  });
});
