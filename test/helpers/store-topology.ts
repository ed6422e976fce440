/**
 * The record store a sidecar under test runs on, by kind: in process, one Redis, a 6-node Redis
 * Cluster, or a Sentinel-managed master with 2 replicas. Gives the IDEMPOTENCY_* variables that
 * select it, and stops what it started.
 *
 * Cluster and Sentinel run with IDEMPOTENCY_REDIS_WAIT_REPLICAS=1, so that the contract is checked
 * through the replica-acknowledged path too (one Redis has no replica to wait for).
 */
import { startRedisCluster } from './redis-cluster';
import { startRedis } from './redis-server';
import { startRedisSentinel } from './redis-sentinel';

export type StoreKind = 'memory' | 'redis' | 'cluster' | 'sentinel';

export interface StoreUnderTest {
  readonly env: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

export const WAIT_ENV = { IDEMPOTENCY_REDIS_WAIT_REPLICAS: '1', IDEMPOTENCY_REDIS_WAIT_TIMEOUT: '500ms' } as const;

export async function startStore(kind: StoreKind): Promise<StoreUnderTest> {
  switch (kind) {
    case 'memory':
      return { env: {}, stop: async () => undefined };
    case 'redis': {
      const redis = await startRedis();
      return { env: { IDEMPOTENCY_REDIS_URL: redis.url }, stop: () => redis.stop() };
    }
    case 'cluster': {
      const cluster = await startRedisCluster();
      return { env: { IDEMPOTENCY_REDIS_CLUSTER_NODES: cluster.seeds, ...WAIT_ENV }, stop: () => cluster.stop() };
    }
    case 'sentinel': {
      const set = await startRedisSentinel();
      return {
        env: { IDEMPOTENCY_REDIS_SENTINELS: set.sentinelList, IDEMPOTENCY_REDIS_SENTINEL_MASTER: set.masterName, ...WAIT_ENV },
        stop: () => set.stop(),
      };
    }
  }
}

/**
 * One store per kind for a whole test file, started at first use: a Cluster or a Sentinel set
 * takes seconds to form, and every test uses fresh keys, so sharing changes no answer.
 */
export function sharedStores(): { get(kind: StoreKind): Promise<StoreUnderTest>; stopAll(): Promise<void> } {
  const started = new Map<StoreKind, Promise<StoreUnderTest>>();
  return {
    get(kind) {
      let store = started.get(kind);
      if (store === undefined) {
        store = startStore(kind);
        started.set(kind, store);
      }
      return store;
    },
    async stopAll() {
      const all = [...started.values()];
      started.clear();
      await Promise.allSettled(all.map(async (store) => (await store).stop()));
    },
  };
}
