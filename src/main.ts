/**
 * The composition root: config -> stores and locks -> engine -> listeners, and the graceful stop.
 * Nothing below this file reads the environment or picks an implementation.
 */
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { createAdminServer } from './admin/admin-server';
import { ConfigError } from './errors';
import { createRouteResolver } from './config/routes';
import type { Config } from './config/settings';
import { IdempotencyEngine } from './engine/idempotency-engine';
import type { LockProvider, RecordStore } from './engine/ports';
import { type Logger, logEvents } from './observability/logger';
import { SidecarMetrics } from './observability/metrics';
import { PassThrough } from './proxy/passthrough';
import { createProxyServer } from './proxy/proxy-server';
import { UpstreamClient } from './proxy/upstream-client';
import { lockResource } from './store/keys';
import { MemoryRecordStore } from './store/memory-store';
import {
  createRedisClient,
  createRedisCluster,
  createRedisSentinel,
  type RedisClient,
  type RedisConnectionOptions,
} from './store/redis-connection';
import { RedisRecordStore } from './store/redis-store';
import { RedlockLockProvider } from './store/redlock-provider';

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
function createStoreClient(config: Config, options: RedisConnectionOptions): RedisClient {
  if (config.redisClusterNodes !== undefined) return createRedisCluster(config.redisClusterNodes, options);
  if (config.redisSentinels !== undefined && config.redisSentinelMaster !== undefined) {
    return createRedisSentinel(
      {
        sentinels: config.redisSentinels,
        masterName: config.redisSentinelMaster,
        ...(config.redisUsername === undefined ? {} : { username: config.redisUsername }),
        ...(config.redisPassword === undefined ? {} : { password: config.redisPassword }),
        ...(config.redisTls ? { tls: {} } : {}),
      },
      options,
    );
  }
  return createRedisClient(config.redisUrl as string, options);
}

function createBackends(config: Config, logger: Logger): Backends {
  const connectionOptions = { storeTimeoutMs: config.storeTimeoutMs };
  if (config.redisUrl === undefined && config.redisClusterNodes === undefined && config.redisSentinels === undefined) {
    logger.warn(
      { setting: 'IDEMPOTENCY_REDIS_URL' },
      'no Redis configured: records are kept in this process only; run ONE replica, or set IDEMPOTENCY_REDIS_URL so replicas share records',
    );
    // The schema refuses IDEMPOTENCY_REDLOCK_URLS without a Redis store: the claim is the lock.
    const store = new MemoryRecordStore();
    return { store, close: () => store.close() };
  }
  const client = createStoreClient(config, { ...connectionOptions, name: 'store' });
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
    config.redlockUrls.map((url, i) => createRedisClient(url, { ...connectionOptions, name: `lock-${i}` })),
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

/** A listener that cannot bind is a configuration problem: name the setting, like validation does. */
function listen(server: http.Server, port: number, host: string, setting: string): Promise<AddressInfo> {
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

function urlOf(address: AddressInfo): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

export async function startSidecar(config: Config, logger: Logger): Promise<RunningSidecar> {
  const metrics = new SidecarMetrics();
  const unsubscribe = [logEvents(logger), metrics.listen()];
  const backends = createBackends(config, logger);
  const store = metrics.timeStore(backends.store);
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
  });
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
  logger.info(
    { proxy: urlOf(proxyAddress), admin: urlOf(adminAddress), upstream: config.upstream.origin },
    'idempotency-sidecar listening',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      logger.info({ graceMs: config.shutdownGraceMs }, 'shutting down: no new connections, finishing in-flight requests');
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

  return { proxyUrl: urlOf(proxyAddress), adminUrl: urlOf(adminAddress), close };
}
