/**
 * A real Sentinel set for tests: one master, two replicas and three Sentinels (quorum 2), all
 * redis-server processes on loopback ports of their own (redis-server.ts), the Sentinels as
 * `redis-server sentinel.conf --sentinel`. down-after-milliseconds is 1 s and failover-timeout 3 s, so a killed master is
 * replaced within a few seconds. No persistence; every process is killed with the test worker
 * whatever happens (redis-server.ts's watchdog), and its directory removed.
 *
 * With `tls`, every process also listens on a TLS port and every link of the set uses it: replicas
 * replicate from the master's TLS port (`tls-replication yes`), and the Sentinels watch the master
 * and replicas and talk to each other over TLS (`tls-replication yes` on a Sentinel). Redis then
 * announces its TLS port (REPLCONF listening-port, the Sentinels' hello messages), so what the
 * Sentinels name, and `sentinelList`, are TLS ports. The plain ports stay, for the helper's own
 * checks with redis-cli. With `users`, the data nodes get those ACL users too; the default user
 * stays as it is, so replication and the Sentinels need no credentials.
 */
import { redisCli, waitUntil } from './redis-cluster';
import { startRedis, type RedisHandle, type RedisTlsServerOptions } from './redis-server';

export const SENTINEL_MASTER_NAME = 'idem-master';
const READY_TIMEOUT_MS = 30_000;

export interface RedisSentinelOptions {
  /**
   * TLS for the whole set. `clientCertFile`/`clientKeyFile` is the certificate the nodes and
   * Sentinels present on their own outgoing links (each requires one, `tls-auth-clients yes`): a
   * client certificate, as the server certificate is for serverAuth only.
   */
  readonly tls?: RedisTlsServerOptions & { readonly clientCertFile: string; readonly clientKeyFile: string };
  /** ACL users of the data nodes (see StartRedisOptions.users). */
  readonly users?: readonly string[];
}

export interface RedisSentinelHandle {
  /** The three data nodes; which one is master changes with failovers (see master()). */
  readonly dataNodes: readonly RedisHandle[];
  readonly sentinels: readonly RedisHandle[];
  /** `host:port,host:port,host:port` (TLS ports with `tls`): IDEMPOTENCY_REDIS_SENTINELS. */
  readonly sentinelList: string;
  readonly masterName: string;
  /** The data node the Sentinels name as master now. */
  master(): Promise<RedisHandle>;
  /** Resolves once the Sentinels name a master other than `formerPort` and it answers as master. */
  waitForNewMaster(formerPort: number, timeoutMs?: number): Promise<RedisHandle>;
  /** Resolves once every data node answers, the master has 2 replicas online, and every Sentinel agrees. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Resolves once every replica of the current master has acknowledged all it was sent. */
  waitReplicated(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** The port the set's links use: the TLS one when there is one. */
function linkPort(node: RedisHandle): number {
  return node.tlsPort ?? node.port;
}

export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinelHandle> {
  const started: RedisHandle[] = [];
  const { tls } = options;
  // Outgoing links over TLS too (replication, Sentinel to node and to Sentinel), with a client certificate.
  const tlsLinks =
    tls === undefined ? [] : ['--tls-replication', 'yes', '--tls-client-cert-file', tls.clientCertFile, '--tls-client-key-file', tls.clientKeyFile];
  const dataNode = (extraArgs: readonly string[]): Promise<RedisHandle> =>
    startRedis({
      ...(tls === undefined ? {} : { tls }),
      ...(options.users === undefined ? {} : { users: options.users }),
      extraArgs: [...tlsLinks, ...extraArgs],
    });
  try {
    const first = await dataNode([]);
    started.push(first);
    const dataNodes = [first];
    for (let i = 0; i < 2; i += 1) {
      const replica = await dataNode(['--replicaof', first.host, String(linkPort(first))]);
      started.push(replica);
      dataNodes.push(replica);
    }
    const sentinels: RedisHandle[] = [];
    for (let i = 0; i < 3; i += 1) {
      const sentinel = await startRedis({
        ...(tls === undefined ? {} : { tls }),
        extraArgs: tlsLinks,
        sentinelConf: [
          `sentinel monitor ${SENTINEL_MASTER_NAME} ${first.host} ${linkPort(first)} 2`,
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
        const node = dataNodes.find((n) => linkPort(n) === port);
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
        const current = dataNodes.find((n) => linkPort(n) === ports[0]);
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

    const waitReplicated = async (timeoutMs = READY_TIMEOUT_MS): Promise<void> => {
      const current = await master();
      await waitUntil(timeoutMs, 'the replicas to acknowledge every write', async () => {
        const replication = await redisCli(current.port, 'INFO', 'replication');
        const offset = Number(/^master_repl_offset:(\d+)/m.exec(replication)?.[1]);
        const acked = [...replication.matchAll(/^slave\d+:.*offset=(\d+)/gm)].map((m) => Number(m[1]));
        return acked.length >= 2 && acked.every((o) => o >= offset);
      });
    };

    await waitHealthy();
    return {
      dataNodes,
      sentinels,
      sentinelList: sentinels.map((s) => `${s.host}:${linkPort(s)}`).join(','),
      masterName: SENTINEL_MASTER_NAME,
      master,
      waitForNewMaster,
      waitHealthy,
      waitReplicated,
      stop: async () => {
        await Promise.allSettled(started.map((s) => s.stop()));
      },
    };
  } catch (error) {
    await Promise.allSettled(started.map((s) => s.stop()));
    throw error;
  }
}
