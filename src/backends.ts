/**
 * The record store and the locks the configuration asks for: the in-process store, or a Redis
 * (one by URL, a Cluster or a Sentinel-managed master) with TLS files, node credentials, WAIT for
 * replicas and an error log that names the setting to fix; and a Redlock quorum when its masters
 * are given. Part of the composition root (main.ts).
 */
import type { Config, RedisStoreConfig } from './config/settings';
import { envName } from './config/table';
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
import { RedisRecordStore } from './store/redis-store';
import { RedlockLockProvider } from './store/redlock-provider';

export interface Backends {
  readonly store: RecordStore;
  /** Only for a Redlock quorum apart from the store; otherwise the store's claim is the lock. */
  readonly locks?: LockProvider;
  readonly close: () => Promise<void>;
}

/**
 * The record store's client: a Cluster, a Sentinel-managed master or one Redis by URL. The TLS
 * files' options apply to Cluster and Sentinel nodes when their TLS is on, and to a URL when it
 * says rediss://.
 */
function createStoreClient(store: RedisStoreConfig, options: RedisConnectionOptions): RedisClient {
  switch (store.kind) {
    case 'cluster':
      return createRedisCluster(store.nodes, { ...options, ...(store.nodeTls ? { tls: store.tls } : {}), ...credentials(store.auth) });
    case 'sentinel':
      return createRedisSentinel(
        {
          sentinels: store.sentinels,
          masterName: store.masterName,
          ...credentials(store.auth),
          ...(store.nodeTls ? { tls: { ...store.tls } } : {}),
        },
        options,
      );
    case 'redis':
      return createRedisClient(store.url, { ...options, tls: store.tls });
  }
}

/** Which setting names a store connection's address, and whether it takes the node credentials. */
const STORE_ADDRESS = {
  cluster: { address: 'redisClusterNodes', nodes: true },
  sentinel: { address: 'redisSentinels', nodes: true },
  redis: { address: 'redisUrl', nodes: false },
} as const satisfies Record<RedisStoreConfig['kind'], { readonly address: string; readonly nodes: boolean }>;

export function createBackends(config: Config, logger: Logger): Backends {
  const connectionOptions = { storeTimeoutMs: config.storeTimeoutMs };
  const store = config.store;
  if (store.kind === 'memory') {
    logger.warn(
      { setting: envName('redisUrl') },
      `no Redis configured: records are kept in this process only; run ONE replica, or set ${envName('redisUrl')} so replicas share records`,
    );
    // The configuration refuses IDEMPOTENCY_REDLOCK_URLS without a Redis store: the claim is the lock.
    const memory = new MemoryRecordStore({
      maxRecords: store.maxRecords,
      onFull: (maxRecords) =>
        logger.error(
          { setting: envName('memoryStoreMaxRecords'), maxRecords },
          `in-process record store full: new keys get 503 until records expire; raise ${envName('memoryStoreMaxRecords')}, shorten ${envName('ttl')}, or set ${envName('redisUrl')}`,
        ),
    });
    return { store: memory, close: () => memory.close() };
  }
  warnUnusedTlsFiles(store, logger);
  const { address, nodes } = STORE_ADDRESS[store.kind];
  const storeLog = new RedisErrorLog(logger, connectionSettings('record store', address, nodes));
  const client = createStoreClient(store, { ...connectionOptions, name: 'store', onError: storeLog.error });
  storeLog.attach(client);
  const records = new RedisRecordStore(client, {
    ...connectionOptions,
    waitReplicas: store.waitReplicas,
    waitTimeoutMs: store.waitTimeoutMs,
  });
  if (store.redlockUrls === undefined) {
    // One store: its atomic claim takes the key with a token and a lease, which is what a
    // one-instance Redlock would do with SET NX, so a separate lock would only cost round trips.
    return { store: records, close: () => records.close() };
  }
  const locks = new RedlockLockProvider(
    store.redlockUrls.map((url, i) => {
      const log = new RedisErrorLog(logger, connectionSettings(`lock server ${i + 1}`, 'redlockUrls', false));
      const lockClient = createRedisClient(url, { ...connectionOptions, name: `lock-${i}`, onError: log.error, tls: store.tls });
      log.attach(lockClient);
      return lockClient;
    }),
    connectionOptions,
  );
  return {
    store: records,
    locks,
    close: async () => {
      await locks.close();
      await records.close();
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
function warnUnusedTlsFiles(store: RedisStoreConfig, logger: Logger): void {
  if (!store.tlsFilesGiven) return;
  const urls = [...(store.kind === 'redis' ? [store.url] : []), ...(store.redlockUrls ?? [])];
  const anyTls = urls.some(isTlsUrl) || (store.kind !== 'redis' && store.nodeTls);
  if (anyTls) return;
  logger.warn(
    { settings: [envName('redisTlsCaFile'), envName('redisTlsCertFile'), envName('redisTlsKeyFile')] },
    `the Redis TLS files are set but no Redis connection uses TLS: use rediss:// URLs (or ${envName('redisTls')}=true for a Cluster or Sentinel set), or unset the files`,
  );
}
