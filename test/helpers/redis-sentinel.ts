/**
 * A real Sentinel set for tests: one master, two replicas and three Sentinels (quorum 2), all
 * redis-server processes on free loopback ports (`redis-server sentinel.conf --sentinel` for the
 * Sentinels). down-after-milliseconds is 1 s and failover-timeout 3 s, so a killed master is
 * replaced within a few seconds. No persistence; every process is killed with the test worker
 * whatever happens (redis-server.ts's watchdog), and its directory removed.
 */
import { redisCli, waitUntil } from './redis-cluster';
import { startRedis, type RedisHandle } from './redis-server';

export const SENTINEL_MASTER_NAME = 'idem-master';
const READY_TIMEOUT_MS = 30_000;

export interface RedisSentinelHandle {
  /** The three data nodes; which one is master changes with failovers (see master()). */
  readonly dataNodes: readonly RedisHandle[];
  readonly sentinels: readonly RedisHandle[];
  /** `host:port,host:port,host:port`: IDEMPOTENCY_REDIS_SENTINELS. */
  readonly sentinelList: string;
  readonly masterName: string;
  /** The data node the Sentinels name as master now. */
  master(): Promise<RedisHandle>;
  /** Resolves once the Sentinels name a master other than `formerPort` and it answers as master. */
  waitForNewMaster(formerPort: number, timeoutMs?: number): Promise<RedisHandle>;
  /** Resolves once every data node answers, the master has 2 replicas online, and every Sentinel agrees. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedisSentinel(): Promise<RedisSentinelHandle> {
  const started: RedisHandle[] = [];
  try {
    const first = await startRedis();
    started.push(first);
    const dataNodes = [first];
    for (let i = 0; i < 2; i += 1) {
      const replica = await startRedis({ extraArgs: ['--replicaof', first.host, String(first.port)] });
      started.push(replica);
      dataNodes.push(replica);
    }
    const sentinels: RedisHandle[] = [];
    for (let i = 0; i < 3; i += 1) {
      const sentinel = await startRedis({
        sentinelConf: [
          `sentinel monitor ${SENTINEL_MASTER_NAME} ${first.host} ${first.port} 2`,
          `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} 1000`,
          `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 3000`,
          `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 2`,
          '',
        ].join('\n'),
      });
      started.push(sentinel);
      sentinels.push(sentinel);
    }

    const masterPort = async (sentinel: RedisHandle): Promise<number> => {
      const reply = await redisCli(sentinel.port, 'SENTINEL', 'get-master-addr-by-name', SENTINEL_MASTER_NAME);
      return Number(reply.split('\n')[1]);
    };
    const master = async (): Promise<RedisHandle> => {
      for (const sentinel of sentinels) {
        const port = await masterPort(sentinel).catch(() => undefined);
        const node = dataNodes.find((n) => n.port === port);
        if (node) return node;
      }
      throw new Error('no Sentinel names a master');
    };
    const isMaster = async (node: RedisHandle): Promise<boolean> =>
      (await redisCli(node.port, 'INFO', 'replication').catch(() => '')).includes('role:master');

    const waitHealthy = async (timeoutMs = READY_TIMEOUT_MS): Promise<void> => {
      await waitUntil(timeoutMs, 'the Sentinel set to be healthy', async () => {
        const ports = await Promise.all(sentinels.map(masterPort));
        if (new Set(ports).size !== 1) return false;
        const current = dataNodes.find((n) => n.port === ports[0]);
        if (current === undefined) return false;
        const replication = await redisCli(current.port, 'INFO', 'replication');
        if (!replication.includes('role:master') || (replication.match(/state=online/g) ?? []).length < 2) return false;
        // Each Sentinel must know both replicas and the other two Sentinels, or a failover stalls.
        for (const sentinel of sentinels) {
          const info = await redisCli(sentinel.port, 'SENTINEL', 'master', SENTINEL_MASTER_NAME);
          const field = (name: string): number => Number(new RegExp(`^${name}\\n(\\d+)`, 'm').exec(info)?.[1]);
          if (field('num-slaves') < 2 || field('num-other-sentinels') < 2) return false;
        }
        return true;
      });
    };

    const waitForNewMaster = async (formerPort: number, timeoutMs = READY_TIMEOUT_MS): Promise<RedisHandle> => {
      let found: RedisHandle | undefined;
      await waitUntil(timeoutMs, 'the Sentinels to promote a new master', async () => {
        const current = await master().catch(() => undefined);
        if (current === undefined || current.port === formerPort || !(await isMaster(current))) return false;
        found = current;
        return true;
      });
      return found as RedisHandle;
    };

    await waitHealthy();
    return {
      dataNodes,
      sentinels,
      sentinelList: sentinels.map((s) => `${s.host}:${s.port}`).join(','),
      masterName: SENTINEL_MASTER_NAME,
      master,
      waitForNewMaster,
      waitHealthy,
      stop: async () => {
        await Promise.allSettled(started.map((s) => s.stop()));
      },
    };
  } catch (error) {
    await Promise.allSettled(started.map((s) => s.stop()));
    throw error;
  }
}
