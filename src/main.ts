/**
 * The composition root: config -> stores and locks -> engine -> listeners, and the graceful stop.
 * Nothing below this file reads the environment or picks an implementation.
 */
import type { AddressInfo } from 'node:net';
import type net from 'node:net';
import type http from 'node:http';
import https from 'node:https';
import { createAdminServer } from './admin/admin-server';
import { ConfigError } from './errors';
import { loadEncryptionKeys } from './config/encryption-keys';
import { createRouteResolver } from './config/routes';
import { envName } from './config/schema';
import type { Config } from './config/settings';
import { IdempotencyEngine } from './engine/idempotency-engine';
import type { LockProvider, RecordStore } from './engine/ports';
import { type Logger, logEvents } from './observability/logger';
import { SidecarMetrics } from './observability/metrics';
import { PassThrough } from './proxy/passthrough';
import { createProxyServer } from './proxy/proxy-server';
import { UpstreamClient } from './proxy/upstream-client';
import { EncryptingRecordStore } from './store/encrypting-store';
import { lockResource } from './store/keys';
import { MemoryRecordStore } from './store/memory-store';
import {
  createRedisClient,
  createRedisCluster,
  createRedisSentinel,
  isTlsUrl,
  type RedisClient,
  type RedisConnectionOptions,
} from './store/redis-connection';
import { type ConnectionSettings, RedisErrorLog } from './store/redis-diagnosis';
import { hasRedisTlsFiles, loadRedisTls } from './store/redis-tls';
import { RedisRecordStore } from './store/redis-store';
import { RedlockLockProvider } from './store/redlock-provider';
import { ResponseCipher } from './store/response-cipher';
import { type KeyPair, type KeyPairPaths, type KeyPairProblem, readKeyPairSync } from './tls/key-pair';
import { reloadServerTls, serverTlsOptions } from './tls/serving';

/**
 * How often the proxy listener's certificate, key and client CA files are re-read. Kubelet
 * refreshes a mounted Secret within about a minute; 10 s adds little to that and costs three
 * small reads.
 */
const TLS_RELOAD_INTERVAL_MS = 10_000;

export interface RunningSidecar {
  readonly proxyUrl: string;
  readonly adminUrl: string;
  /** Stops accepting, lets in-flight requests finish within the grace period, closes the stores. */
  close(): Promise<void>;
}

interface Backends {
  readonly store: RecordStore;
  /** Only for a Redlock quorum apart from the store; otherwise the store's claim is the lock. */
  readonly locks?: LockProvider;
  readonly close: () => Promise<void>;
}

/** The record store's client: a Cluster, a Sentinel-managed master, or one Redis (the schema allows one). */
/**
 * The record store's client: a Cluster, a Sentinel-managed master or one Redis by URL. `tls` (the
 * CA and client certificate files) applies to Cluster and Sentinel nodes when redisTls is set, and
 * to a URL when it says rediss://.
 */
function createStoreClient(config: Config, options: RedisConnectionOptions, tls: RedisConnectionOptions['tls']): RedisClient {
  const nodeCredentials = {
    ...(config.redisUsername === undefined ? {} : { username: config.redisUsername }),
    ...(config.redisPassword === undefined ? {} : { password: config.redisPassword }),
  };
  if (config.redisClusterNodes !== undefined) {
    return createRedisCluster(config.redisClusterNodes, { ...options, ...(config.redisTls ? { tls } : {}), ...nodeCredentials });
  }
  if (config.redisSentinels !== undefined && config.redisSentinelMaster !== undefined) {
    return createRedisSentinel(
      {
        sentinels: config.redisSentinels,
        masterName: config.redisSentinelMaster,
        ...nodeCredentials,
        ...(config.redisTls ? { tls: { ...(tls ?? {}) } } : {}),
      },
      options,
    );
  }
  return createRedisClient(config.redisUrl as string, { ...options, tls });
}

/** Which setting names a store connection's address, and whether it takes the node credentials. */
function storeAddressSetting(config: Config): { readonly address: string; readonly nodes: boolean } {
  if (config.redisClusterNodes !== undefined) return { address: 'redisClusterNodes', nodes: true };
  if (config.redisSentinels !== undefined) return { address: 'redisSentinels', nodes: true };
  return { address: 'redisUrl', nodes: false };
}

function createBackends(config: Config, logger: Logger): Backends {
  const connectionOptions = { storeTimeoutMs: config.storeTimeoutMs };
  if (config.redisUrl === undefined && config.redisClusterNodes === undefined && config.redisSentinels === undefined) {
    logger.warn(
      { setting: 'IDEMPOTENCY_REDIS_URL' },
      'no Redis configured: records are kept in this process only; run ONE replica, or set IDEMPOTENCY_REDIS_URL so replicas share records',
    );
    // The schema refuses IDEMPOTENCY_REDLOCK_URLS without a Redis store: the claim is the lock.
    const store = new MemoryRecordStore({
      maxRecords: config.memoryStoreMaxRecords,
      onFull: (maxRecords) =>
        logger.error(
          { setting: 'IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS', maxRecords },
          'in-process record store full: new keys get 503 until records expire; raise IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS, shorten IDEMPOTENCY_TTL, or set IDEMPOTENCY_REDIS_URL',
        ),
    });
    return { store, close: () => store.close() };
  }
  // Read once, now: a file that is not PEM stops the start with exit 2 (ConfigError).
  const tls = loadRedisTls(config);
  warnUnusedTlsFiles(config, logger);
  const { address, nodes } = storeAddressSetting(config);
  const storeLog = new RedisErrorLog(logger, connectionSettings('record store', address, nodes));
  const client = createStoreClient(config, { ...connectionOptions, name: 'store', onError: storeLog.error }, tls);
  storeLog.attach(client);
  const store = new RedisRecordStore(client, {
    ...connectionOptions,
    waitReplicas: config.redisWaitReplicas,
    waitTimeoutMs: config.redisWaitTimeoutMs,
  });
  if (config.redlockUrls === undefined) {
    // One store: its atomic claim takes the key with a token and a lease, which is what a
    // one-instance Redlock would do with SET NX, so a separate lock would only cost round trips.
    return { store, close: () => store.close() };
  }
  const locks = new RedlockLockProvider(
    config.redlockUrls.map((url, i) => {
      const log = new RedisErrorLog(logger, connectionSettings(`lock server ${i + 1}`, 'redlockUrls', false));
      const lockClient = createRedisClient(url, { ...connectionOptions, name: `lock-${i}`, onError: log.error, tls });
      log.attach(lockClient);
      return lockClient;
    }),
    connectionOptions,
  );
  return {
    store,
    locks,
    close: async () => {
      await locks.close();
      await store.close();
    },
  };
}

interface ListenerTls {
  readonly paths: KeyPairPaths;
  readonly pair: KeyPair;
}

/**
 * The proxy listener's TLS files, read and checked as TLS will use them: a file that is readable
 * but not a usable certificate, key or CA bundle stops the start with the setting to fix.
 */
function readListenerTls(config: Config): ListenerTls | undefined {
  if (config.tlsCertFile === undefined || config.tlsKeyFile === undefined) return undefined;
  const paths: KeyPairPaths = {
    certPath: config.tlsCertFile,
    keyPath: config.tlsKeyFile,
    ...(config.tlsClientCaFile === undefined ? {} : { caPath: config.tlsClientCaFile }),
  };
  const read = readKeyPairSync(paths);
  if ('problems' in read) {
    const settingOf = (problem: KeyPairProblem): string =>
      problem.file === 'key'
        ? `${envName('tlsKeyFile')} (${paths.keyPath})`
        : problem.file === 'ca'
          ? `${envName('tlsClientCaFile')} (${paths.caPath ?? ''})`
          : problem.file === 'cert'
            ? `${envName('tlsCertFile')} (${paths.certPath})`
            : `${envName('tlsCertFile')} and ${envName('tlsKeyFile')}`;
    throw new ConfigError(read.problems.map((p) => `${settingOf(p)}: ${p.message}`));
  }
  return { paths, pair: read.pair };
}

/** The settings a Redis connection's failures point at (redis-diagnosis.ts). */
function connectionSettings(role: string, address: string, nodes: boolean): ConnectionSettings {
  return {
    role,
    address: envName(address),
    // A URL carries its own user and password; Cluster nodes take the node settings.
    credentials: nodes ? [envName('redisUsername'), envName('redisPassword')] : [envName(address)],
    caFile: envName('redisTlsCaFile'),
    certFile: envName('redisTlsCertFile'),
    keyFile: envName('redisTlsKeyFile'),
  };
}

/** TLS files that no connection uses are a mistake worth a line: a redis:// URL meant rediss://. */
function warnUnusedTlsFiles(config: Config, logger: Logger): void {
  if (!hasRedisTlsFiles(config)) return;
  const urls = [...(config.redisUrl === undefined ? [] : [config.redisUrl]), ...(config.redlockUrls ?? [])];
  const anyTls = urls.some(isTlsUrl) || ((config.redisClusterNodes !== undefined || config.redisSentinels !== undefined) && config.redisTls);
  if (anyTls) return;
  logger.warn(
    { settings: [envName('redisTlsCaFile'), envName('redisTlsCertFile'), envName('redisTlsKeyFile')] },
    `the Redis TLS files are set but no Redis connection uses TLS: use rediss:// URLs (or ${envName('redisTls')}=true for a Cluster or Sentinel set), or unset the files`,
  );
}

/** A listener that cannot bind is a configuration problem: name the setting, like validation does. */
function listen(server: net.Server, port: number, host: string, setting: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'EADDRINUSE' ? 'is already in use; pick a free port' : error.code === 'EACCES' ? 'needs privileges; pick a port above 1023' : error.message;
      reject(new ConfigError([`${setting}: cannot listen on ${host}:${port}: the address ${why}`]));
    });
    server.listen(port, host, () => {
      server.removeAllListeners('error');
      resolve(server.address() as AddressInfo);
    });
  });
}

function urlOf(address: AddressInfo, scheme: 'http' | 'https' = 'http'): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}

export async function startSidecar(config: Config, logger: Logger): Promise<RunningSidecar> {
  // First: a bad TLS file or key file is a configuration error (exit 2), found before anything
  // connects to Redis.
  const listenerTls = readListenerTls(config);
  const encryption = loadEncryptionKeys(config);
  const metrics = new SidecarMetrics();
  const unsubscribe = [logEvents(logger), metrics.listen()];
  const backends = createBackends(config, logger);
  // Always wrapped, keys or not: without keys it still refuses sealed records (encryption turned
  // off while they live) rather than replay ciphertext. The cipher sits outside the timing, so
  // the store histogram measures the store alone.
  const store = new EncryptingRecordStore(metrics.timeStore(backends.store), {
    ...(encryption.keys.length > 0 ? { cipher: new ResponseCipher(encryption.keys) } : {}),
    keySetting: encryption.setting,
  });
  const upstream = new UpstreamClient({ origin: config.upstream, timeoutMs: config.upstreamTimeoutMs });
  const passThrough = new PassThrough(config.upstream, config.upstreamTimeoutMs);
  const engine = new IdempotencyEngine(
    {
      store,
      ...(backends.locks ? { locks: metrics.timeLocks(backends.locks) } : {}),
      upstream: metrics.timeUpstream(upstream),
      lockResource,
    },
    {
      lockTtlMs: config.lockTtlMs,
      waitTimeoutMs: config.waitTimeoutMs,
      onUnknown: config.onUnknown,
      storeUnavailable: config.storeUnavailable,
      releaseStatuses: new Set(config.releaseStatuses),
    },
  );
  const proxy = createProxyServer({
    resolveRoute: createRouteResolver(config),
    engine,
    passThrough,
    maxBody: config.maxBody,
    tenantHeaders: config.tenantHeaders,
    tenantFrom: config.tenantFrom,
    ...(listenerTls === undefined ? {} : { tls: serverTlsOptions(listenerTls.pair) }),
    limits: {
      headersTimeoutMs: config.clientHeaderTimeoutMs,
      requestTimeoutMs: config.clientRequestTimeoutMs,
      maxHeaderSize: config.maxHeaderSize,
    },
  });
  const tlsServer = proxy.server instanceof https.Server ? proxy.server : undefined;
  if (tlsServer !== undefined) {
    // A refused handshake (no certificate, one from another CA, a scanner) never becomes a
    // request; the line says why, never who (the error names no subject).
    tlsServer.on('tlsClientError', (error, socket) =>
      logger.info({ error: error.message, remoteAddress: socket.remoteAddress }, 'TLS handshake refused on the proxy listener'),
    );
  }
  const admin = createAdminServer({
    store,
    ...(config.adminToken ? { adminToken: config.adminToken } : {}),
    extraRoutes: new Map([
      [
        '/metrics',
        (_req: http.IncomingMessage, res: http.ServerResponse): void => {
          void metrics.render().then(({ contentType, body }) => {
            res.writeHead(200, { 'content-type': contentType });
            res.end(body);
          });
        },
      ],
    ]),
  });

  const proxyAddress = await listen(proxy.server, config.port, config.host, 'IDEMPOTENCY_PORT');
  const adminAddress = await listen(admin, config.adminPort, config.host, 'IDEMPOTENCY_ADMIN_PORT');
  const proxyUrl = urlOf(proxyAddress, listenerTls === undefined ? 'http' : 'https');
  const reloader =
    listenerTls === undefined || tlsServer === undefined
      ? undefined
      : reloadServerTls(tlsServer, listenerTls.paths, listenerTls.pair, logger, TLS_RELOAD_INTERVAL_MS);
  logger.info(
    {
      proxy: proxyUrl,
      admin: urlOf(adminAddress),
      upstream: config.upstream.origin,
      tenantFrom: config.tenantFrom,
      ...(listenerTls === undefined ? {} : { clientCertificates: listenerTls.pair.ca === undefined ? 'not requested' : 'required' }),
      encryptionKeyId: encryption.keys[0]?.id ?? null,
    },
    'idempotency-sidecar listening',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      logger.info({ graceMs: config.shutdownGraceMs }, 'shutting down: no new connections, finishing in-flight requests');
      reloader?.stop();
      const proxyClosed = new Promise<void>((resolve) => proxy.server.close(() => resolve()));
      // Keep-alive connections that go idle during the drain are closed as they do.
      const idleSweep = setInterval(() => proxy.server.closeIdleConnections(), 100);
      const grace = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), config.shutdownGraceMs).unref());
      // In flight means requests still being handled, and responses still being written to a
      // store that blinked (the engine retries those after answering).
      const drained = await Promise.race([
        Promise.all([proxyClosed, proxy.settled().then(() => engine.settled())]).then(() => 'drained' as const),
        grace,
      ]);
      clearInterval(idleSweep);
      if (drained === 'timeout') {
        logger.warn({ graceMs: config.shutdownGraceMs }, 'grace period over: closing the connections still open');
      }
      proxy.server.closeAllConnections();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      passThrough.close();
      await upstream.close();
      await backends.close();
      for (const stop of unsubscribe) stop();
      logger.info('stopped');
    })();
    return closing;
  };

  return { proxyUrl, adminUrl: urlOf(adminAddress), close };
}
