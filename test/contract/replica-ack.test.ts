/**
 * Replica acknowledgement (waitReplicas > 0): a claim or a completion counts as done only once the
 * replicas hold it, and one they do not acknowledge in time is a StoreUnavailableError, reported
 * on its diagnostics channel. Against a real master with a real replica, and a real 6-node Cluster
 * (where the WAIT must reach the node that ran the script, not any node).
 */
import { randomUUID } from 'node:crypto';
import type { ClaimRequest } from '../../src/engine/ports';
import type { RecordScope, StoredResponse } from '../../src/engine/record';
import { recordKey } from '../../src/store/keys';
import { closeClient, createRedisClient, createRedisCluster, whenReady } from '../../src/store/redis-connection';
import { RedisRecordStore } from '../../src/store/redis-store';
import { ReplicasNotAcknowledgedError, StoreUnavailableError } from '../../src/errors';
import { replicaAckShortChannel, type ReplicaAckShortEvent } from '../../src/diagnostics/replica-ack-events';
import { redisCli, startRedisCluster, waitUntil, type RedisClusterHandle } from '../helpers/redis-cluster';
import { startRedis, type RedisHandle } from '../helpers/redis-server';

const STORE_TIMEOUT_MS = 3_000;
// Long enough for a replica on a loaded 2-core machine to acknowledge; the refusals wait it out.
const WAIT_TIMEOUT_MS = 1_000;

function newScope(): RecordScope {
  return { tenant: `tenant-${randomUUID()}`, key: `key-${randomUUID()}` };
}

function claimRequest(token: string): ClaimRequest {
  return { fingerprint: 'fp', token, leaseMs: 10_000, ttlMs: 60_000, onExpiredLease: 'hold' };
}

/** Every byte value, so that a reply decoded as text anywhere on the WAIT path would show. */
const BODY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const RESPONSE: StoredResponse = { status: 201, headers: [['content-type', 'application/octet-stream']], body: BODY };

function shortAcks(): { events: ReplicaAckShortEvent[]; stop(): void } {
  const events: ReplicaAckShortEvent[] = [];
  const onEvent = (message: unknown): void => {
    events.push(message as ReplicaAckShortEvent);
  };
  replicaAckShortChannel.subscribe(onEvent);
  return { events, stop: () => replicaAckShortChannel.unsubscribe(onEvent) };
}

describe('replica acknowledgement on a master with one replica', () => {
  let master: RedisHandle;
  let replica: RedisHandle;
  const stores: RedisRecordStore[] = [];

  const storeWith = async (waitReplicas: number): Promise<RedisRecordStore> => {
    const client = createRedisClient(master.url, { storeTimeoutMs: STORE_TIMEOUT_MS, name: `ack-${waitReplicas}` });
    await whenReady(client, 5_000);
    const store = new RedisRecordStore(client, { storeTimeoutMs: STORE_TIMEOUT_MS, waitReplicas, waitTimeoutMs: WAIT_TIMEOUT_MS });
    stores.push(store);
    return store;
  };
  /** The record's state as the replica holds it (its first line: src/store/record-value.ts), read on the replica itself. */
  const onReplica = async (scope: RecordScope): Promise<string> =>
    (await redisCli(replica.port, 'GETRANGE', recordKey(scope), '0', '15')).split('\n')[0] ?? '';

  beforeAll(async () => {
    master = await startRedis();
    replica = await startRedis({ extraArgs: ['--replicaof', master.host, String(master.port)] });
    await waitUntil(15_000, 'the replica to sync', async () =>
      (await redisCli(replica.port, 'INFO', 'replication')).includes('master_link_status:up'),
    );
  });
  afterAll(async () => {
    for (const store of stores) await store.close();
    await replica?.stop();
    await master?.stop();
  });

  test('a claim and a completion are on the replica when they return, body bytes intact', async () => {
    const store = await storeWith(1);
    const scope = newScope();
    await expect(store.claim(scope, claimRequest('t1'))).resolves.toEqual({ claimed: true });
    expect(await onReplica(scope)).toBe('in_flight');
    await expect(store.complete(scope, 't1', RESPONSE, 60_000)).resolves.toBe(true);
    expect(await onReplica(scope)).toBe('completed');
    // A claim that finds the completed record returns it through the same pipeline, as Buffers.
    const again = await store.claim(scope, claimRequest('t2'));
    expect(again.claimed).toBe(false);
    if (again.claimed) throw new Error('unreachable');
    expect(again.record.response?.body.equals(BODY)).toBe(true);
    expect(again.record.token).toBe('t1');
  });

  test('a replica that does not acknowledge: claim, completion and release fail, landed on the master, and are reported', async () => {
    const store = await storeWith(1);
    const scope = newScope();
    const seen = shortAcks();
    replica.pause();
    try {
      const failure = await store.claim(scope, claimRequest('t1')).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ReplicasNotAcknowledgedError);
      expect(failure).toBeInstanceOf(StoreUnavailableError);
      // The master ran it: this is why the engine undoes a failed claim with a fenced release.
      expect((await store.read(scope))?.state).toBe('in_flight');
      await expect(store.complete(scope, 't1', RESPONSE, 60_000)).rejects.toBeInstanceOf(ReplicasNotAcknowledgedError);
      const released = newScope();
      await redisCli(master.port, 'HSET', recordKey(released), 'state', 'in_flight', 'token', 't9');
      await expect(store.release(released, 't9')).rejects.toBeInstanceOf(ReplicasNotAcknowledgedError);
      expect(seen.events.filter((e) => e.scope.key === scope.key || e.scope.key === released.key)).toEqual([
        { scope, operation: 'claim', wanted: 1, acknowledged: 0, timeoutMs: WAIT_TIMEOUT_MS },
        { scope, operation: 'complete', wanted: 1, acknowledged: 0, timeoutMs: WAIT_TIMEOUT_MS },
        { scope: released, operation: 'release', wanted: 1, acknowledged: 0, timeoutMs: WAIT_TIMEOUT_MS },
      ]);
    } finally {
      replica.resume();
      seen.stop();
    }
    // Once the replica is back, retrying the (idempotent) completion is acknowledged.
    await waitUntil(10_000, 'the completion to be acknowledged', async () => store.complete(scope, 't1', RESPONSE, 60_000));
    expect(await onReplica(scope)).toBe('completed');
  });

  test('a replica that does not acknowledge: a claim that finds the record still answers it, and reads and PING do not queue behind the WAITs', async () => {
    const store = await storeWith(1);
    const scope = newScope();
    await store.claim(scope, claimRequest('t1'));
    await store.complete(scope, 't1', RESPONSE, 60_000);
    replica.pause();
    try {
      // A replay wrote nothing a failover could lose: its answer stands.
      const replay = await store.claim(scope, claimRequest('t2'));
      expect(replay.claimed).toBe(false);
      // A new key waits out WAIT's timeout and is refused; meanwhile the shared connection answers
      // at once, because the waiting writes have connections of their own.
      const order: string[] = [];
      const waiting = store.claim(newScope(), claimRequest('t3')).then(
        () => order.push('claim resolved'),
        () => order.push('claim refused'),
      );
      await store.ping();
      order.push('ping');
      expect((await store.read(scope))?.state).toBe('completed');
      order.push('read');
      await waiting;
      expect(order).toEqual(['ping', 'read', 'claim refused']);
    } finally {
      replica.resume();
    }
  });

  test('more replicas asked for than exist: every claim is refused', async () => {
    const store = await storeWith(2);
    await expect(store.claim(newScope(), claimRequest('t1'))).rejects.toBeInstanceOf(ReplicasNotAcknowledgedError);
  });

  test('without waitReplicas nothing waits: a paused replica changes nothing', async () => {
    const store = await storeWith(0);
    replica.pause();
    try {
      await expect(store.claim(newScope(), claimRequest('t1'))).resolves.toEqual({ claimed: true });
    } finally {
      replica.resume();
    }
  });

  test('an emptied script cache (a restarted or promoted master) is reloaded, and the WAIT still follows the write', async () => {
    const store = await storeWith(1);
    await store.claim(newScope(), claimRequest('warm'));
    await redisCli(master.port, 'SCRIPT', 'FLUSH');
    const scope = newScope();
    await expect(store.claim(scope, claimRequest('t1'))).resolves.toEqual({ claimed: true });
    expect(await onReplica(scope)).toBe('in_flight');
  });

  test('a wait timeout not below the store timeout is refused when the store is built', async () => {
    const client = createRedisClient(master.url, { storeTimeoutMs: 1_000, name: 'ack-bad' });
    try {
      expect(() => new RedisRecordStore(client, { storeTimeoutMs: 1_000, waitReplicas: 1, waitTimeoutMs: 1_000 })).toThrow(
        /waitTimeoutMs .* must be shorter than storeTimeoutMs/,
      );
      expect(() => new RedisRecordStore(client, { storeTimeoutMs: 1_000, waitReplicas: 1 })).toThrow(/waitTimeoutMs is required/);
    } finally {
      await closeClient(client, 1_000);
    }
  });
});

describe('replica acknowledgement on a 6-node Redis Cluster', () => {
  let cluster: RedisClusterHandle;
  let store: RedisRecordStore;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    const client = createRedisCluster(cluster.seeds.split(','), { storeTimeoutMs: STORE_TIMEOUT_MS, name: 'ack-cluster' });
    await whenReady(client, 10_000);
    store = new RedisRecordStore(client, { storeTimeoutMs: STORE_TIMEOUT_MS, waitReplicas: 1, waitTimeoutMs: WAIT_TIMEOUT_MS });
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    await cluster?.stop();
  });

  test("the WAIT goes to the key's own master: only its replica's silence fails the claim", async () => {
    // Two keys whose records live on different masters.
    const scopes: RecordScope[] = [];
    const masters: number[] = [];
    while (scopes.length < 2) {
      const scope = newScope();
      const master = (await cluster.masterOfSlot(await cluster.slotOf(recordKey(scope)))).port;
      if (masters.includes(master)) continue;
      scopes.push(scope);
      masters.push(master);
    }
    const [mine, other] = scopes as [RecordScope, RecordScope];
    const replicas = await cluster.replicasOf(masters[0] as number);
    expect(replicas).toHaveLength(1);
    const replica = (replicas[0] as (typeof replicas)[number]).server;
    replica.pause();
    try {
      // A WAIT sent to any other node would find that node's replica awake and answer 1.
      await expect(store.claim(mine, claimRequest('t1'))).rejects.toBeInstanceOf(ReplicasNotAcknowledgedError);
      await expect(store.claim(other, claimRequest('t1'))).resolves.toEqual({ claimed: true });
    } finally {
      replica.resume();
    }
    await expect(store.complete(other, 't1', RESPONSE, 60_000)).resolves.toBe(true);
    const replay = await store.read(other);
    expect(replay?.response?.body.equals(BODY)).toBe(true);
  }, 60_000);
});
