/**
 * The record store and the locks the configuration asks for: the in-process store, or a Redis
 * (one by URL, a Cluster or a Sentinel-managed master) with TLS files, node credentials, WAIT for
 * replicas and an error log that names the setting to fix; and a Redlock quorum when its masters
 * are given. Part of the composition root (main.ts).
 */
import type { Config } from './config/settings';
import { envName } from './config/schema';
import type { LockProvider, RecordStore } from './engine/ports';
import type { Logger } from './observability/logger';
import { MemoryRecordStore } from './store/memory-store';
import {
  createRedisClient,
  createRedisCluster,
  createRedisSentinel,
  credentials,
  isTlsUrl,
  type RedisClient,
  type RedisConnectionOptions,
} from './store/redis-connection';
import { type ConnectionSettings, RedisErrorLog } from './store/redis-diagnosis';
import { hasRedisTlsFiles, loadRedisTls } from './store/redis-tls';
import { RedisRecordStore } from './store/redis-store';
import { RedlockLockProvider } from './store/redlock-provider';

export interface Backends {
  readonly store: RecordStore;
  /** Only for a Redlock quorum apart from the store; otherwise the store's claim is the lock. */
  readonly locks?: LockProvider;
  readonly close: () => Promise<void>;
}

/**
 * The record store's client: a Cluster, a Sentinel-managed master or one Redis by URL. `tls` (the
 * CA and client certificate files) applies to Cluster and Sentinel nodes when redisTls is set, and
 * to a URL when it says rediss://.
 */
function createStoreClient(config: Config, options: RedisConnectionOptions, tls: RedisConnectionOptions['tls']): RedisClient {
  const nodeCredentials = credentials({ username: config.redisUsername, password: config.redisPassword });
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

export function createBackends(config: Config, logger: Logger): Backends {
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
