/**
 * A real Redis Cluster for tests: 6 redis-server processes (3 masters, 3 replicas) on loopback
 * ports of their own (redis-server.ts), joined by `redis-cli --cluster create ...
 * --cluster-replicas 1`, ready once every node reports cluster_state:ok, all 16384 slots are
 * covered and every master has its replica in sync.
 *
 * Each node keeps `nodes.conf` in a directory of its own under one temporary root, so a node that
 * is killed and started again comes back with its identity and rejoins (as a replica of whoever was
 * promoted meanwhile). No persistence: a restarted node comes back empty and resyncs. The root is
 * removed by stop(); the servers themselves are killed with the test worker whatever happens
 * (redis-server.ts's watchdog).
 *
 * Timeouts are short (cluster-node-timeout 1 s) so that a killed master is replaced within a few
 * seconds.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startRedis, type RedisHandle } from './redis-server';

const run = promisify(execFile);
const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 30_000;

export interface ClusterNodeHandle {
  readonly host: string;
  readonly port: number;
  readonly server: RedisHandle;
}

export interface RedisClusterHandle {
  readonly nodes: readonly ClusterNodeHandle[];
  /** `host:port,host:port,...`: IDEMPOTENCY_REDIS_CLUSTER_NODES. */
  readonly seeds: string;
  /** The node that is master of `slot` now, as the live nodes see it. */
  masterOfSlot(slot: number): Promise<ClusterNodeHandle>;
  /** The nodes that replicate the master on `masterPort`, as the live nodes see it. */
  replicasOf(masterPort: number): Promise<ClusterNodeHandle[]>;
  /** The slot of a key name (CLUSTER KEYSLOT). */
  slotOf(keyName: string): Promise<number>;
  /** Resolves once a node other than `formerPort` is master of `slot` and the cluster is ok. */
  waitForNewMaster(slot: number, formerPort: number, timeoutMs?: number): Promise<ClusterNodeHandle>;
  /** Resolves once every live node says cluster_state:ok and every master has a synced replica. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** One redis-cli command against a node; its trimmed output. */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', HOST, '-p', String(port), ...args], { timeout: 10_000 });
  return stdout.trim();
}

export async function startRedisCluster(): Promise<RedisClusterHandle> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'idem-cluster-'));
  const nodes: ClusterNodeHandle[] = [];
  try {
    for (let i = 0; i < 6; i += 1) {
      const dataDir = path.join(root, `node-${i}`);
      mkdirSync(dataDir);
      const server = await startRedis({
        dataDir,
        extraArgs: [
          '--cluster-enabled', 'yes',
          '--cluster-config-file', 'nodes.conf',
          '--cluster-announce-ip', HOST,
          '--cluster-node-timeout', '1000',
          // A replica may always take over, however long it was cut off: the tests kill masters.
          '--cluster-replica-validity-factor', '0',
        ],
      });
      nodes.push({ host: server.host, port: server.port, server });
    }
    await run(
      'redis-cli',
      ['--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'],
      { timeout: 60_000 },
    );
  } catch (error) {
    await Promise.allSettled(nodes.map((n) => n.server.stop()));
    rmSync(root, { recursive: true, force: true });
    throw error;
  }

  const live = async (): Promise<ClusterNodeHandle[]> => {
    const answering: ClusterNodeHandle[] = [];
    for (const node of nodes) {
      try {
        if ((await redisCli(node.port, 'PING')) === 'PONG') answering.push(node);
      } catch {
        // killed or restarting
      }
    }
    return answering;
  };

  const masterOfSlot = async (slot: number): Promise<ClusterNodeHandle> => {
    for (const node of await live()) {
      const port = masterPortFromNodes(await redisCli(node.port, 'CLUSTER', 'NODES'), slot);
      const master = nodes.find((n) => n.port === port);
      if (master) return master;
    }
    throw new Error(`no live node knows the master of slot ${slot}`);
  };

  const replicasOf = async (masterPort: number): Promise<ClusterNodeHandle[]> => {
    const [node] = await live();
    if (node === undefined) throw new Error('no cluster node answers');
    const lines = (await redisCli(node.port, 'CLUSTER', 'NODES')).split('\n').map((line) => line.trim().split(' '));
    const masterId = lines.find((fields) => Number(/:(\d+)/.exec(fields[1] ?? '')?.[1]) === masterPort)?.[0];
    const ports = lines.filter((fields) => masterId !== undefined && fields[3] === masterId).map((fields) => Number(/:(\d+)/.exec(fields[1] ?? '')?.[1]));
    return nodes.filter((n) => ports.includes(n.port));
  };

  const slotOf = async (keyName: string): Promise<number> => {
    const [node] = await live();
    if (node === undefined) throw new Error('no cluster node answers');
    return Number(await redisCli(node.port, 'CLUSTER', 'KEYSLOT', keyName));
  };

  const waitHealthy = async (timeoutMs = READY_TIMEOUT_MS): Promise<void> => {
    await until(timeoutMs, 'the cluster to be ok with every master replicated', async () => {
      const answering = await live();
      if (answering.length < nodes.length) return false;
      let masters = 0;
      for (const node of answering) {
        const info = await redisCli(node.port, 'CLUSTER', 'INFO');
        if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_ok:16384')) return false;
        const replication = await redisCli(node.port, 'INFO', 'replication');
        if (replication.includes('role:master')) {
          masters += 1;
          if (!/connected_slaves:[1-9]/.test(replication) || !/slave0:.*state=online/.test(replication)) return false;
        } else if (!replication.includes('master_link_status:up')) {
          return false;
        }
      }
      return masters === 3;
    });
  };

  const waitForNewMaster = async (slot: number, formerPort: number, timeoutMs = READY_TIMEOUT_MS): Promise<ClusterNodeHandle> => {
    let found: ClusterNodeHandle | undefined;
    await until(timeoutMs, `a new master of slot ${slot}`, async () => {
      const master = await masterOfSlot(slot).catch(() => undefined);
      if (master === undefined || master.port === formerPort) return false;
      const info = await redisCli(master.port, 'CLUSTER', 'INFO');
      if (!info.includes('cluster_state:ok')) return false;
      found = master;
      return true;
    });
    return found as ClusterNodeHandle;
  };

  try {
    await waitHealthy();
  } catch (error) {
    await Promise.allSettled(nodes.map((n) => n.server.stop()));
    rmSync(root, { recursive: true, force: true });
    throw error;
  }

  return {
    nodes,
    seeds: nodes.map((n) => `${n.host}:${n.port}`).join(','),
    masterOfSlot,
    replicasOf,
    slotOf,
    waitForNewMaster,
    waitHealthy,
    stop: async () => {
      await Promise.allSettled(nodes.map((n) => n.server.stop()));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** The port of the master that serves `slot`, from CLUSTER NODES output; undefined if none. */
export function masterPortFromNodes(clusterNodes: string, slot: number): number | undefined {
  for (const line of clusterNodes.split('\n')) {
    const fields = line.trim().split(' ');
    const [, address, flags, , , , , linkState, ...slots] = fields;
    if (address === undefined || flags === undefined) continue;
    if (!flags.split(',').includes('master') || flags.includes('fail') || linkState !== 'connected') continue;
    for (const range of slots) {
      if (range.startsWith('[')) continue; // a slot being migrated
      const [from, to] = range.split('-').map(Number);
      if (from !== undefined && slot >= from && slot <= (to ?? from)) {
        return Number(/:(\d+)/.exec(address)?.[1]);
      }
    }
  }
  return undefined;
}

async function until(timeoutMs: number, what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const reason = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${reason}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export { until as waitUntil };
