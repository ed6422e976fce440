/**
 * One RecordStore contract, run against every implementation (as undici runs one cacheStoreTests
 * against its memory and SQLite stores): the in-process store, Redis, and a one-node Redis
 * Cluster (which enforces the same-slot rule on every multi-key script), and the first two again
 * with encryption at rest (the contract must not change when responses are sealed). Then what only
 * a remote store can do: be paused, be stopped, come back.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { ClaimRequest, RecordStore } from '../../src/engine/ports';
import type { RecordScope, StoredResponse } from '../../src/engine/record';
import { StoreUnavailableError } from '../../src/errors';
import { channelName, keyTag, lockResource, recordKey } from '../../src/store/keys';
import { EncryptingRecordStore } from '../../src/store/encrypting-store';
import { MemoryRecordStore } from '../../src/store/memory-store';
import { createRedisClient, createRedisCluster, whenReady } from '../../src/store/redis-connection';
import { RedisRecordStore } from '../../src/store/redis-store';
import { ResponseCipher } from '../../src/store/response-cipher';
import { type RedisHandle, startRedis } from '../helpers/redis-server';

interface StoreFixture {
  readonly store: RecordStore;
  close(): Promise<void>;
}

const LONG_LEASE = 5_000;
const LONG_TTL = 60_000;

function newScope(tenant = `tenant-${randomUUID()}`): RecordScope {
  return { tenant, key: `key-${randomUUID()}` };
}

function claimRequest(token: string, overrides: Partial<ClaimRequest> = {}): ClaimRequest {
  return { fingerprint: 'fp-1', token, leaseMs: LONG_LEASE, ttlMs: LONG_TTL, onExpiredLease: 'hold', ...overrides };
}

/** Encryption at rest over any store, with a fresh key. */
function encrypted(store: RecordStore): RecordStore {
  return new EncryptingRecordStore(store, {
    cipher: new ResponseCipher([{ id: 'contract', key: randomBytes(32) }]),
    keySetting: 'IDEMPOTENCY_ENCRYPTION_KEYS',
  });
}

function response(overrides: Partial<StoredResponse> = {}): StoredResponse {
  return { status: 201, headers: [['content-type', 'application/json']], body: Buffer.from('{"id":1}'), ...overrides };
}

/** How long a notice may take to arrive (generous: a loaded CI machine), and how long silence must last to count as none. */
const NOTICE_MS = 2_000;
const SILENCE_MS = 250;

/** Whether `promise` settles within `ms`; leaves no timer behind. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A duplicate's look at a record it watches (as `wait` mode makes it): a claim that finds the
 * record and marks it waited on, so that the record's settle is reported.
 */
async function watchedLook(store: RecordStore, scope: RecordScope): Promise<void> {
  const look = await store.claim(scope, claimRequest(`waiter-${randomUUID()}`, { watching: true }));
  if (look.claimed) throw new Error('the watched look claimed the key: there was no record to wait on');
}

function recordStoreContract(name: string, setup: () => Promise<StoreFixture>): void {
  describe(`RecordStore contract: ${name}`, () => {
    let fixture: StoreFixture | undefined;
    const store = (): RecordStore => {
      if (fixture === undefined) throw new Error('store not set up');
      return fixture.store;
    };

    beforeAll(async () => {
      fixture = await setup();
    });
    afterAll(async () => {
      await fixture?.close();
    });

    test('ping answers', async () => {
      await expect(store().ping()).resolves.toBeUndefined();
    });

    test('read of an absent key is null', async () => {
      await expect(store().read(newScope())).resolves.toBeNull();
    });

    test('claim of an absent key creates an in-flight record with lease and expiry', async () => {
      const scope = newScope();
      const before = Date.now();
      await expect(store().claim(scope, claimRequest('t1', { leaseMs: 4_000, ttlMs: 30_000 }))).resolves.toEqual({
        claimed: true,
      });
      const record = await store().read(scope);
      expect(record).toMatchObject({ state: 'in_flight', fingerprint: 'fp-1', token: 't1' });
      expect(record?.response).toBeUndefined();
      // The server's clock may differ from ours a little; the intervals must be exact.
      expect(Math.abs((record?.createdAt ?? 0) - before)).toBeLessThan(2_000);
      expect((record?.leaseUntil ?? 0) - (record?.createdAt ?? 0)).toBe(4_000);
      expect((record?.expiresAt ?? 0) - (record?.createdAt ?? 0)).toBe(30_000);
    });

    test('claim of an existing key returns the record and carries the first fingerprint', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('t1', { fingerprint: 'fp-first' }));
      const second = await store().claim(scope, claimRequest('t2', { fingerprint: 'fp-second' }));
      expect(second.claimed).toBe(false);
      if (second.claimed) return;
      expect(second.record).toMatchObject({ state: 'in_flight', token: 't1', fingerprint: 'fp-first' });
    });

    test('a live lease is respected whatever onExpiredLease says', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('t1'));
      for (const onExpiredLease of ['hold', 'release'] as const) {
        const result = await store().claim(scope, claimRequest('t2', { onExpiredLease }));
        expect(result).toMatchObject({ claimed: false, record: { state: 'in_flight', token: 't1' } });
      }
    });

    test('complete is fenced: a wrong token returns false and changes nothing', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      const before = await store().read(scope);
      await expect(store().complete(scope, 'intruder', response(), LONG_TTL)).resolves.toBe(false);
      await expect(store().read(scope)).resolves.toEqual(before);
    });

    test('complete with the owner token stores the response, and claim returns it', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      await expect(store().complete(scope, 'owner', response(), 45_000)).resolves.toBe(true);
      const record = await store().read(scope);
      expect(record).toMatchObject({ state: 'completed', token: 'owner', fingerprint: 'fp-1' });
      expect(record?.response?.status).toBe(201);
      expect(record?.response?.headers).toEqual([['content-type', 'application/json']]);
      expect(record?.response?.body.toString()).toBe('{"id":1}');
      // The TTL of a completed record runs from its completion.
      expect((record?.expiresAt ?? 0) - Date.now()).toBeGreaterThan(40_000);
      expect((record?.expiresAt ?? 0) - Date.now()).toBeLessThanOrEqual(47_000);

      const again = await store().claim(scope, claimRequest('other'));
      expect(again).toMatchObject({ claimed: false, record: { state: 'completed', response: { status: 201 } } });
    });

    test('completing again with the owner token is idempotent: true, and the first response stays', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      await store().complete(scope, 'owner', response({ status: 200 }), LONG_TTL);
      await expect(store().complete(scope, 'owner', response({ status: 500 }), LONG_TTL)).resolves.toBe(true);
      await expect(store().complete(scope, 'intruder', response({ status: 500 }), LONG_TTL)).resolves.toBe(false);
      expect((await store().read(scope))?.response?.status).toBe(200);
    });

    test('complete of an absent record returns false and creates nothing', async () => {
      const scope = newScope();
      await expect(store().complete(scope, 'owner', response(), LONG_TTL)).resolves.toBe(false);
      await expect(store().read(scope)).resolves.toBeNull();
    });

    test('renew is fenced and moves the lease forward', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner', { leaseMs: 1_000 }));
      const first = await store().read(scope);
      await expect(store().renew(scope, 'intruder', 20_000)).resolves.toBe(false);
      await expect(store().read(scope)).resolves.toEqual(first);
      await expect(store().renew(scope, 'owner', 20_000)).resolves.toBe(true);
      const renewed = await store().read(scope);
      expect((renewed?.leaseUntil ?? 0) - (first?.leaseUntil ?? 0)).toBeGreaterThanOrEqual(19_000);
      expect(renewed?.expiresAt).toBe(first?.expiresAt);
      await store().complete(scope, 'owner', response(), LONG_TTL);
      await expect(store().renew(scope, 'owner', 20_000)).resolves.toBe(false);
    });

    test('mark unknown is fenced, keeps the expiry, and only applies to in-flight records', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      const before = await store().read(scope);
      await expect(store().markUnknown(scope, 'intruder')).resolves.toBe(false);
      await expect(store().markUnknown(scope, 'owner')).resolves.toBe(true);
      const record = await store().read(scope);
      expect(record).toMatchObject({ state: 'unknown', token: 'owner', expiresAt: before?.expiresAt });
      await expect(store().markUnknown(scope, 'owner')).resolves.toBe(false);
      // An unknown record is returned to claimers: it is held.
      await expect(store().claim(scope, claimRequest('other'))).resolves.toMatchObject({
        claimed: false,
        record: { state: 'unknown' },
      });

      const completed = newScope();
      await store().claim(completed, claimRequest('owner'));
      await store().complete(completed, 'owner', response(), LONG_TTL);
      await expect(store().markUnknown(completed, 'owner')).resolves.toBe(false);
    });

    test('complete from unknown with the owner token resolves it; another token cannot', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      await store().markUnknown(scope, 'owner');
      await expect(store().complete(scope, 'intruder', response(), LONG_TTL)).resolves.toBe(false);
      await expect(store().complete(scope, 'owner', response({ status: 202 }), LONG_TTL)).resolves.toBe(true);
      expect(await store().read(scope)).toMatchObject({ state: 'completed', response: { status: 202 } });
    });

    test('release is fenced, and a released key can be claimed again', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      await expect(store().release(scope, 'intruder')).resolves.toBe(false);
      await expect(store().read(scope)).resolves.toMatchObject({ state: 'in_flight', token: 'owner' });
      await expect(store().release(scope, 'owner')).resolves.toBe(true);
      await expect(store().read(scope)).resolves.toBeNull();
      await expect(store().listByKey(scope.key)).resolves.toEqual([]);
      await expect(store().release(scope, 'owner')).resolves.toBe(false);
      await expect(store().claim(scope, claimRequest('next'))).resolves.toEqual({ claimed: true });
    });

    test('an expired lease under hold turns the record unknown, keeping its owner', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('dead', { leaseMs: 100 }));
      await sleep(200);
      const result = await store().claim(scope, claimRequest('retry', { onExpiredLease: 'hold' }));
      expect(result).toMatchObject({ claimed: false, record: { state: 'unknown', token: 'dead' } });
      await expect(store().read(scope)).resolves.toMatchObject({ state: 'unknown', token: 'dead' });
      // The dead owner may still resolve it if it comes back with a response.
      await expect(store().complete(scope, 'dead', response(), LONG_TTL)).resolves.toBe(true);
    });

    test('an expired lease under release gives the key to the new claimer', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('dead', { leaseMs: 100, fingerprint: 'fp-old' }));
      await sleep(200);
      const result = await store().claim(scope, claimRequest('retry', { onExpiredLease: 'release', fingerprint: 'fp-new' }));
      expect(result).toEqual({ claimed: true });
      await expect(store().read(scope)).resolves.toMatchObject({ state: 'in_flight', token: 'retry', fingerprint: 'fp-new' });
      // The old owner is fenced out.
      await expect(store().complete(scope, 'dead', response(), LONG_TTL)).resolves.toBe(false);
      await expect(store().renew(scope, 'dead', LONG_LEASE)).resolves.toBe(false);
    });

    test.each(['hold', 'release'] as const)('a lapsed lease is judged only a grace period after it is first seen (%s)', async (onExpiredLease) => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner', { leaseMs: 100 }));
      await sleep(200);
      const retry = claimRequest('retry', { onExpiredLease, expiryGraceMs: 400 });
      // First and second sightings within the grace: still the owner's, still in flight.
      for (let i = 0; i < 2; i++) {
        await expect(store().claim(scope, retry)).resolves.toMatchObject({ claimed: false, record: { state: 'in_flight', token: 'owner' } });
        await sleep(100);
      }
      await sleep(300);
      const judged = await store().claim(scope, retry);
      if (onExpiredLease === 'hold') expect(judged).toMatchObject({ claimed: false, record: { state: 'unknown', token: 'owner' } });
      else expect(judged).toEqual({ claimed: true });
    });

    test('an owner that writes within the grace keeps its key, and a renewal resets the sighting', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner', { leaseMs: 100 }));
      await sleep(200);
      const retry = claimRequest('retry', { onExpiredLease: 'release', expiryGraceMs: 300 });
      await expect(store().claim(scope, retry)).resolves.toMatchObject({ claimed: false });
      // The owner is back: it renews (which forgets the sighting), lapses again, then completes.
      await expect(store().renew(scope, 'owner', 100)).resolves.toBe(true);
      await sleep(350);
      // A new lapse: a new grace starts now, although the first sighting is older than 300 ms.
      await expect(store().claim(scope, retry)).resolves.toMatchObject({ claimed: false, record: { state: 'in_flight', token: 'owner' } });
      await expect(store().complete(scope, 'owner', response({ status: 201 }), LONG_TTL)).resolves.toBe(true);
      await expect(store().claim(scope, retry)).resolves.toMatchObject({ claimed: false, record: { state: 'completed', response: { status: 201 } } });
    });

    test('a record past its TTL is absent, and its key is new again', async () => {
      const completed = newScope();
      await store().claim(completed, claimRequest('owner', { ttlMs: 300 }));
      await store().complete(completed, 'owner', response(), 300);
      const inFlight = newScope();
      await store().claim(inFlight, claimRequest('owner', { ttlMs: 300, leaseMs: 10_000 }));
      await sleep(450);
      await expect(store().read(completed)).resolves.toBeNull();
      await expect(store().read(inFlight)).resolves.toBeNull();
      await expect(store().complete(inFlight, 'owner', response(), LONG_TTL)).resolves.toBe(false);
      await expect(store().claim(completed, claimRequest('new'))).resolves.toEqual({ claimed: true });
    });

    test('a body with every byte value, and a 1 MiB body, round-trip exactly', async () => {
      const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const big = randomBytes(1024 * 1024);
      for (const body of [everyByte, big, Buffer.alloc(0)]) {
        const scope = newScope();
        await store().claim(scope, claimRequest('owner'));
        await store().complete(scope, 'owner', response({ body }), LONG_TTL);
        const read = await store().read(scope);
        expect(read?.response?.body.equals(body)).toBe(true);
        const claimed = await store().claim(scope, claimRequest('other'));
        expect(!claimed.claimed && claimed.record.response?.body.equals(body)).toBe(true);
      }
    });

    test('headers with repeated names and non-ASCII values round-trip in order', async () => {
      const headers = [
        ['set-cookie', 'a=1; Path=/'],
        ['content-type', 'text/plain; charset=utf-8'],
        ['set-cookie', 'b=2; HttpOnly'],
        ['x-note', 'caf\u00e9 "quoted" \\ back'],
      ] as const;
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      await store().complete(scope, 'owner', response({ headers }), LONG_TTL);
      expect((await store().read(scope))?.response?.headers).toEqual(headers);
    });

    test('stored bytes cannot be changed through the buffers passed in or handed out', async () => {
      const scope = newScope();
      const body = Buffer.from('original');
      await store().claim(scope, claimRequest('owner'));
      await store().complete(scope, 'owner', response({ body }), LONG_TTL);
      body.fill(0x21);
      const first = await store().read(scope);
      first?.response?.body.fill(0x22);
      expect((await store().read(scope))?.response?.body.toString()).toBe('original');
    });

    test('tenants are isolated: same key, separate records, no cross-tenant writes', async () => {
      const key = `key-${randomUUID()}`;
      const alice: RecordScope = { tenant: 'alice', key };
      const bob: RecordScope = { tenant: 'bob', key };
      await expect(store().claim(alice, claimRequest('alice-token'))).resolves.toEqual({ claimed: true });
      await expect(store().claim(bob, claimRequest('bob-token'))).resolves.toEqual({ claimed: true });
      await expect(store().complete(bob, 'alice-token', response(), LONG_TTL)).resolves.toBe(false);
      await expect(store().release(bob, 'alice-token')).resolves.toBe(false);
      await expect(store().complete(alice, 'alice-token', response({ status: 200 }), LONG_TTL)).resolves.toBe(true);
      await expect(store().read(bob)).resolves.toMatchObject({ state: 'in_flight', token: 'bob-token' });
      await expect(store().remove(alice)).resolves.toBe(true);
      await expect(store().read(bob)).resolves.toMatchObject({ state: 'in_flight' });
    });

    test('listByKey returns one record per tenant, and drops expired ones', async () => {
      const key = `key-${randomUUID()}`;
      const other = newScope();
      await store().claim(other, claimRequest('x'));
      await store().claim({ tenant: 'short', key }, claimRequest('s', { ttlMs: 300 }));
      await store().complete({ tenant: 'short', key }, 's', response({ status: 204, body: Buffer.alloc(0) }), 300);
      await store().claim({ tenant: 'long', key }, claimRequest('l'));

      const listed = await store().listByKey(key);
      const byTenant = new Map(listed.map((record) => [record.tenant, record]));
      expect([...byTenant.keys()].sort()).toEqual(['long', 'short']);
      expect(byTenant.get('short')).toMatchObject({ state: 'completed', response: { status: 204 } });
      expect(byTenant.get('long')).toMatchObject({ state: 'in_flight', token: 'l' });

      await sleep(450);
      const later = await store().listByKey(key);
      expect(later.map((record) => record.tenant)).toEqual(['long']);
      await expect(store().listByKey(`key-${randomUUID()}`)).resolves.toEqual([]);
    });

    test('remove deletes whatever the owner, once', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      await store().markUnknown(scope, 'owner');
      await expect(store().remove(scope)).resolves.toBe(true);
      await expect(store().read(scope)).resolves.toBeNull();
      await expect(store().listByKey(scope.key)).resolves.toEqual([]);
      await expect(store().remove(scope)).resolves.toBe(false);
      await expect(store().complete(scope, 'owner', response(), LONG_TTL)).resolves.toBe(false);
    });

    test('keys with braces, spaces and 255 characters work', async () => {
      for (const key of ['{a}', 'a}b{c', '}{', '"quoted"', '~'.repeat(255)]) {
        const scope: RecordScope = { tenant: '{tenant}', key };
        await expect(store().claim(scope, claimRequest('owner'))).resolves.toEqual({ claimed: true });
        await expect(store().complete(scope, 'owner', response(), LONG_TTL)).resolves.toBe(true);
        expect((await store().listByKey(key)).map((record) => record.tenant)).toEqual(['{tenant}']);
        await expect(store().remove(scope)).resolves.toBe(true);
      }
    });

    // ------------------------------------------------------------ watch: how `wait` mode learns of a settle

    const settles: ReadonlyArray<readonly [string, (scope: RecordScope) => Promise<boolean>]> = [
      ['complete', (scope) => store().complete(scope, 'owner', response(), LONG_TTL)],
      ['release', (scope) => store().release(scope, 'owner')],
      ['mark unknown', (scope) => store().markUnknown(scope, 'owner')],
      ['remove', (scope) => store().remove(scope)],
    ];

    test.each(settles)('a watch resolves when the record settles after a watched look: %s', async (_name, settle) => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      const watch = await store().watch(scope);
      try {
        await watchedLook(store(), scope);
        await expect(settle(scope)).resolves.toBe(true);
        expect(await settlesWithin(watch.changed, NOTICE_MS)).toBe(true);
      } finally {
        watch.close();
      }
    });

    test.each(['hold', 'release'] as const)(
      'a watch resolves when a claim settles an expired lease (onExpiredLease %s)',
      async (onExpiredLease) => {
        const scope = newScope();
        // The watched look must come while the lease still runs (else it judges the lapse itself,
        // unwatched): a lease long enough for a loaded machine, then past its end.
        const claimedAt = Date.now();
        await store().claim(scope, claimRequest('dead', { leaseMs: 1_000 }));
        const watch = await store().watch(scope);
        try {
          await watchedLook(store(), scope);
          await sleep(Math.max(0, claimedAt + 1_100 - Date.now()));
          await store().claim(scope, claimRequest('retry', { onExpiredLease }));
          expect(await settlesWithin(watch.changed, NOTICE_MS)).toBe(true);
        } finally {
          watch.close();
        }
      },
    );

    test('a watch ignores other tenants and keys, and claims, renewals and refused writes of its own record', async () => {
      const scope = newScope();
      const otherTenant: RecordScope = { tenant: `tenant-${randomUUID()}`, key: scope.key };
      const otherKey: RecordScope = { tenant: scope.tenant, key: `key-${randomUUID()}` };
      const [own, ofTenant, ofKey] = await Promise.all([scope, otherTenant, otherKey].map((s) => store().watch(s)));
      if (!own || !ofTenant || !ofKey) throw new Error('watches not opened');
      try {
        await store().claim(scope, claimRequest('owner'));
        await store().claim(scope, claimRequest('second', { watching: true }));
        await store().renew(scope, 'owner', LONG_LEASE);
        await expect(store().complete(scope, 'intruder', response(), LONG_TTL)).resolves.toBe(false);
        await expect(store().release(scope, 'intruder')).resolves.toBe(false);
        expect(await settlesWithin(own.changed, SILENCE_MS)).toBe(false);

        await store().complete(scope, 'owner', response(), LONG_TTL);
        expect(await settlesWithin(own.changed, NOTICE_MS)).toBe(true);
        expect(await settlesWithin(Promise.race([ofTenant.changed, ofKey.changed]), SILENCE_MS)).toBe(false);
      } finally {
        for (const watch of [own, ofTenant, ofKey]) watch.close();
      }
    });

    test('close() stops delivery to that watch only, and may be called twice', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      const closed = await store().watch(scope);
      const kept = await store().watch(scope);
      await watchedLook(store(), scope);
      closed.close();
      closed.close();
      try {
        await store().complete(scope, 'owner', response(), LONG_TTL);
        expect(await settlesWithin(kept.changed, NOTICE_MS)).toBe(true);
        expect(await settlesWithin(closed.changed, SILENCE_MS)).toBe(false);
      } finally {
        kept.close();
      }
    });

    test('many concurrent watches of one record all resolve, and the record can be watched again after', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      const watches = await Promise.all(Array.from({ length: 50 }, () => store().watch(scope)));
      try {
        await watchedLook(store(), scope);
        await store().markUnknown(scope, 'owner');
        expect(await settlesWithin(Promise.all(watches.map((watch) => watch.changed)), NOTICE_MS)).toBe(true);
      } finally {
        for (const watch of watches) watch.close();
      }
      // Every watch closed (the Redis store unsubscribed): a new one subscribes again.
      const again = await store().watch(scope);
      try {
        // The record was marked waited on while in flight; the mark outlives its marking unknown.
        await store().complete(scope, 'owner', response(), LONG_TTL);
        expect(await settlesWithin(again.changed, NOTICE_MS)).toBe(true);
      } finally {
        again.close();
      }
    });

    test('a watch opened right before the settle never misses it', async () => {
      for (let round = 0; round < 20; round++) {
        const scope = newScope();
        await store().claim(scope, claimRequest('owner'));
        const watch = await store().watch(scope);
        try {
          await watchedLook(store(), scope);
          await store().complete(scope, 'owner', response(), LONG_TTL);
          expect(await settlesWithin(watch.changed, NOTICE_MS)).toBe(true);
        } finally {
          watch.close();
        }
      }
    });

    test('a read with watching marks the record as a watched claim does', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      const watch = await store().watch(scope);
      try {
        await expect(store().read(scope, { watching: true })).resolves.toMatchObject({ state: 'in_flight', token: 'owner' });
        await store().complete(scope, 'owner', response(), LONG_TTL);
        expect(await settlesWithin(watch.changed, NOTICE_MS)).toBe(true);
      } finally {
        watch.close();
      }
    });

    test('a watch only reports settles after it opened', async () => {
      const scope = newScope();
      await store().claim(scope, claimRequest('owner'));
      await store().complete(scope, 'owner', response(), LONG_TTL);
      const watch = await store().watch(scope);
      try {
        expect(await settlesWithin(watch.changed, SILENCE_MS)).toBe(false);
      } finally {
        watch.close();
      }
    });
  });
}

// ---------------------------------------------------------------- the implementations

recordStoreContract('MemoryRecordStore', async () => {
  const store = new MemoryRecordStore({ sweepIntervalMs: 100 });
  return { store, close: () => store.close() };
});

recordStoreContract('EncryptingRecordStore over MemoryRecordStore', async () => {
  const store = encrypted(new MemoryRecordStore({ sweepIntervalMs: 100 }));
  return { store, close: () => store.close() };
});

test('MemoryRecordStore: closing the store wakes its open watches, and a closed store refuses new ones', async () => {
  const store = new MemoryRecordStore();
  const watch = await store.watch(newScope());
  await store.close();
  expect(await settlesWithin(watch.changed, NOTICE_MS)).toBe(true);
  await expect(store.watch(newScope())).rejects.toBeInstanceOf(StoreUnavailableError);
});

describe('Redis', () => {
  let redis: RedisHandle | undefined;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  recordStoreContract('RedisRecordStore (redis-server)', async () => {
    if (redis === undefined) throw new Error('no redis');
    const client = createRedisClient(redis.url, { storeTimeoutMs: 2_000, name: 'contract' });
    await whenReady(client, 5_000);
    const store = new RedisRecordStore(client, { storeTimeoutMs: 2_000 });
    return { store, close: () => store.close() };
  });

  recordStoreContract('EncryptingRecordStore over RedisRecordStore (redis-server)', async () => {
    if (redis === undefined) throw new Error('no redis');
    const client = createRedisClient(redis.url, { storeTimeoutMs: 2_000, name: 'contract-encrypted' });
    await whenReady(client, 5_000);
    const store = encrypted(new RedisRecordStore(client, { storeTimeoutMs: 2_000 }));
    return { store, close: () => store.close() };
  });

  test('watches share one subscriber connection per store, which closing the store ends, waking its watches', async () => {
    if (redis === undefined) throw new Error('no redis');
    const name = `watchers-${randomUUID().slice(0, 8)}`;
    const client = createRedisClient(redis.url, { storeTimeoutMs: 2_000, name });
    await whenReady(client, 5_000);
    const store = new RedisRecordStore(client, { storeTimeoutMs: 2_000 });
    const observer = createRedisClient(redis.url, { storeTimeoutMs: 2_000, name: 'observer' });
    await whenReady(observer, 5_000);
    const subscribers = async (): Promise<number> => {
      const list = String(await observer.call('CLIENT', 'LIST'));
      return list.split('\n').filter((line) => line.includes(`name=${name}-watch `)).length;
    };
    try {
      // No watch yet: no subscriber connection.
      expect(await subscribers()).toBe(0);
      const scopes = Array.from({ length: 10 }, () => newScope());
      const watches = await Promise.all(scopes.map((scope) => store.watch(scope)));
      expect(await subscribers()).toBe(1);
      // Every record has its channel, and no other channel is left behind.
      const channels = (await observer.call('PUBSUB', 'CHANNELS', '*')) as string[];
      expect(channels.sort()).toEqual(scopes.map((scope) => channelName(scope)).sort());
      watches[0]?.close();
      await sleep(100);
      expect(((await observer.call('PUBSUB', 'CHANNELS', '*')) as string[]).length).toBe(9);

      await store.close();
      expect(await settlesWithin(Promise.all(watches.slice(1).map((watch) => watch.changed)), NOTICE_MS)).toBe(true);
      await expect(store.watch(newScope())).rejects.toBeInstanceOf(StoreUnavailableError);
      await sleep(100);
      expect(await subscribers()).toBe(0);
    } finally {
      await store.close();
      observer.disconnect();
    }
  });

  test('a record lives under its key name until its expiry, and the lookup of a key finds only its records', async () => {
    if (redis === undefined) throw new Error('no redis');
    const store = new RedisRecordStore(createRedisClient(redis.url, { storeTimeoutMs: 2_000, name: 'layout' }), { storeTimeoutMs: 2_000 });
    const observer = createRedisClient(redis.url, { storeTimeoutMs: 2_000, name: 'layout-observer' });
    try {
      const scope = newScope();
      await store.claim(scope, claimRequest('layout'));
      // The key's lock, as Redlock would hold it: same hash tag, not a record.
      await observer.set(lockResource(scope), 'a lock token');
      expect(await observer.exists(recordKey(scope))).toBe(1);
      expect(await store.listByKey(scope.key)).toEqual([expect.objectContaining({ tenant: scope.tenant, token: 'layout' })]);
      const record = await store.read(scope);
      expect(await observer.pexpiretime(recordKey(scope))).toBe(record?.expiresAt);
    } finally {
      await store.close();
      observer.disconnect();
    }
  });

  describe('what a request asks of Redis (INFO commandstats: script-internal commands included)', () => {
    let store: RedisRecordStore | undefined;
    let observer: Redis | undefined;
    beforeAll(async () => {
      if (redis === undefined) throw new Error('no redis');
      const client = createRedisClient(redis.url, { storeTimeoutMs: 2_000, name: 'counted' });
      await whenReady(client, 5_000);
      store = new RedisRecordStore(client, { storeTimeoutMs: 2_000 });
      observer = createRedisClient(redis.url, { storeTimeoutMs: 2_000, name: 'counter' });
      await whenReady(observer, 5_000);
      // Every script in the server's cache, as it is in steady state: the first call of each is an
      // EVALSHA refused with NOSCRIPT, then an EVAL.
      const warm = newScope();
      await store.claim(warm, claimRequest('warm'));
      await store.complete(warm, 'warm', response(), LONG_TTL);
      const warmRelease = newScope();
      await store.claim(warmRelease, claimRequest('warm'));
      await store.markUnknown(warmRelease, 'warm');
      await store.release(warmRelease, 'warm');
    });
    afterAll(async () => {
      await store?.close();
      observer?.disconnect();
    });

    /** Commands Redis ran during `work`, by name, less the INFO calls that count them. */
    async function commandsOf(work: (counted: RedisRecordStore) => Promise<unknown>): Promise<Record<string, number>> {
      if (store === undefined || observer === undefined) throw new Error('not set up');
      const calls = async (): Promise<Map<string, number>> => {
        const text = String(await observer?.call('INFO', 'commandstats'));
        return new Map([...text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((match) => [match[1] ?? '', Number(match[2])]));
      };
      const before = await calls();
      await work(store);
      const after = await calls();
      const delta: Record<string, number> = {};
      for (const [name, count] of after) {
        if (name === 'info' || count === before.get(name)) continue;
        delta[name] = count - (before.get(name) ?? 0);
      }
      return delta;
    }

    const total = (delta: Record<string, number>): number => Object.values(delta).reduce((sum, calls) => sum + calls, 0);

    test('a first-time request: 6 commands in 2 scripts, and no PUBLISH when nobody waits', async () => {
      const scope = newScope();
      const delta = await commandsOf(async (counted) => {
        await counted.claim(scope, claimRequest('owner'));
        await counted.complete(scope, 'owner', response(), LONG_TTL);
      });
      expect(delta).toEqual({ evalsha: 2, set: 2, get: 1, pttl: 1 });
      expect(total(delta)).toBeLessThanOrEqual(6);
    });

    test('a replay: 2 commands in 1 script', async () => {
      const scope = newScope();
      await store?.claim(scope, claimRequest('owner'));
      await store?.complete(scope, 'owner', response(), LONG_TTL);
      const delta = await commandsOf((counted) => counted.claim(scope, claimRequest('retry')));
      expect(delta).toEqual({ evalsha: 1, set: 1 });
    });

    test('release and mark unknown publish nothing when nobody waits, and a waited-on record publishes once', async () => {
      const released = newScope();
      const marked = newScope();
      const quiet = await commandsOf(async (counted) => {
        await counted.claim(released, claimRequest('owner'));
        await counted.release(released, 'owner');
        await counted.claim(marked, claimRequest('owner'));
        await counted.markUnknown(marked, 'owner');
      });
      expect(quiet['publish']).toBeUndefined();

      const waited = newScope();
      await store?.claim(waited, claimRequest('owner'));
      await store?.claim(waited, claimRequest('waiter', { watching: true }));
      const told = await commandsOf((counted) => counted.complete(waited, 'owner', response(), LONG_TTL));
      expect(told).toEqual({ evalsha: 1, get: 1, pttl: 1, set: 1, publish: 1 });
    });
  });

  test('records of the earlier hash layout are still honoured: replayed, held, listed, judged and removed', async () => {
    if (redis === undefined) throw new Error('no redis');
    const client = createRedisClient(redis.url, { storeTimeoutMs: 2_000, name: 'legacy' });
    await whenReady(client, 5_000);
    const store = new RedisRecordStore(client, { storeTimeoutMs: 2_000 });
    const now = Date.now();
    const legacy = async (scope: RecordScope, fields: Record<string, string>): Promise<void> => {
      const name = recordKey(scope);
      await client.hset(name, { fp: 'fp-1', token: 'old-owner', createdAt: String(now), expiresAt: String(now + LONG_TTL), ...fields });
      await client.pexpireat(name, now + LONG_TTL);
    };
    try {
      const completed = newScope();
      await legacy(completed, { state: 'completed', leaseUntil: String(now), status: '201', headers: '[["content-type","application/json"]]', body: '{"id":1}' });
      const replay = await store.claim(completed, claimRequest('retry'));
      expect(replay).toMatchObject({ claimed: false, record: { state: 'completed', token: 'old-owner', response: { status: 201 } } });
      expect(!replay.claimed && replay.record.response?.body.toString()).toBe('{"id":1}');
      await expect(store.read(completed)).resolves.toMatchObject({ state: 'completed', createdAt: now, expiresAt: now + LONG_TTL });
      await expect(store.listByKey(completed.key)).resolves.toEqual([expect.objectContaining({ tenant: completed.tenant, state: 'completed' })]);
      // No upgraded replica owns it: transitions refuse it, as a token that is not theirs.
      await expect(store.complete(completed, 'old-owner', response({ status: 500 }), LONG_TTL)).resolves.toBe(false);

      const live = newScope();
      await legacy(live, { state: 'in_flight', leaseUntil: String(now + LONG_LEASE) });
      await expect(store.claim(live, claimRequest('retry'))).resolves.toMatchObject({ claimed: false, record: { state: 'in_flight', token: 'old-owner' } });

      const lapsed = newScope();
      await legacy(lapsed, { state: 'in_flight', leaseUntil: String(now - 1_000) });
      await expect(store.claim(lapsed, claimRequest('retry', { onExpiredLease: 'hold' }))).resolves.toMatchObject({ claimed: false, record: { state: 'unknown' } });
      const abandoned = newScope();
      await legacy(abandoned, { state: 'in_flight', leaseUntil: String(now - 1_000) });
      await expect(store.claim(abandoned, claimRequest('retry', { onExpiredLease: 'release' }))).resolves.toEqual({ claimed: true });
      await expect(store.read(abandoned)).resolves.toMatchObject({ state: 'in_flight', token: 'retry' });

      await expect(store.remove(lapsed)).resolves.toBe(true);
      await expect(store.read(lapsed)).resolves.toBeNull();
    } finally {
      await store.close();
    }
  });
});

describe('Redis Cluster (one node, all slots)', () => {
  let redis: RedisHandle | undefined;
  beforeAll(async () => {
    redis = await startRedis({ cluster: true });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  recordStoreContract('RedisRecordStore (Cluster)', async () => {
    if (redis === undefined) throw new Error('no redis');
    const cluster = createRedisCluster([`${redis.host}:${redis.port}`], { storeTimeoutMs: 2_000, name: 'contract-cluster' });
    await whenReady(cluster, 5_000);
    const store = new RedisRecordStore(cluster, { storeTimeoutMs: 2_000 });
    return { store, close: () => store.close() };
  });
});

describe('key layout', () => {
  test('a record and its lock share one hash tag derived from the key alone', () => {
    const scope: RecordScope = { tenant: 'alice', key: 'a{b}c' };
    const tag = `{${keyTag(scope.key)}}`;
    expect(recordKey(scope)).toBe(`idem:${tag}:r:alice`);
    expect(lockResource(scope)).toBe(`idem:${tag}:l:alice`);
    expect(keyTag(scope.key)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(recordKey({ tenant: 'bob', key: scope.key })).toContain(tag);
  });
});

// ---------------------------------------------------------------- outages of a real server

describe('RedisRecordStore when Redis fails', () => {
  const STORE_TIMEOUT = 250;
  let redis: RedisHandle | undefined;
  let store: RedisRecordStore | undefined;
  let client: Redis | undefined;

  beforeAll(async () => {
    redis = await startRedis();
    client = createRedisClient(redis.url, { storeTimeoutMs: STORE_TIMEOUT, name: 'outage' });
    await whenReady(client, 5_000);
    store = new RedisRecordStore(client, { storeTimeoutMs: STORE_TIMEOUT });
  });
  afterAll(async () => {
    await store?.close();
    await redis?.stop();
  });

  async function expectUnavailable(operation: () => Promise<unknown>): Promise<void> {
    const started = Date.now();
    const error: unknown = await operation().then(
      () => new Error('resolved'),
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT + 500);
  }

  test('a paused Redis (SIGSTOP) fails every operation with StoreUnavailableError within the timeout', async () => {
    if (!redis || !store) throw new Error('not set up');
    const scope = newScope();
    await store.claim(scope, claimRequest('owner'));
    redis.pause();
    try {
      const paused = store;
      await Promise.all([
        expectUnavailable(() => paused.read(scope)),
        expectUnavailable(() => paused.claim(newScope(), claimRequest('t'))),
        expectUnavailable(() => paused.complete(scope, 'owner', response(), LONG_TTL)),
        expectUnavailable(() => paused.ping()),
        expectUnavailable(() => paused.listByKey(scope.key)),
      ]);
    } finally {
      redis.resume();
    }
    // The connection survives the pause: late replies are matched to their timed-out commands.
    // A write that timed out may still have been applied once Redis ran again (here the
    // completion did): a timeout means "outcome unknown", never "not done".
    await expect(store.read(scope)).resolves.toMatchObject({ state: 'completed', token: 'owner' });
  });

  test('a stopped Redis fails fast, and the same store recovers after a restart', async () => {
    if (!redis || !store || !client) throw new Error('not set up');
    await redis.stop();
    const scope = newScope();
    await expectUnavailable(() => (store as RedisRecordStore).read(scope));
    await expectUnavailable(() => (store as RedisRecordStore).claim(scope, claimRequest('t')));
    await expectUnavailable(() => (store as RedisRecordStore).ping());

    await redis.restart();
    const deadline = Date.now() + 5_000;
    for (;;) {
      try {
        await store.ping();
        break;
      } catch (error) {
        expect(error).toBeInstanceOf(StoreUnavailableError);
        if (Date.now() > deadline) throw error;
        await sleep(50);
      }
    }
    // Scripts are loaded again on the empty server (EVALSHA falls back to EVAL on NOSCRIPT).
    await expect(store.claim(scope, claimRequest('after'))).resolves.toEqual({ claimed: true });
    await expect(store.complete(scope, 'after', response(), LONG_TTL)).resolves.toBe(true);
  });

  test('a store created while Redis is down does not throw, and works once Redis answers', async () => {
    if (!redis) throw new Error('not set up');
    const down = await startRedis();
    await down.kill();
    const early = createRedisClient(down.url, { storeTimeoutMs: STORE_TIMEOUT, name: 'early' });
    const earlyStore = new RedisRecordStore(early, { storeTimeoutMs: STORE_TIMEOUT });
    try {
      await expectUnavailable(() => earlyStore.ping());
      await down.restart();
      await whenReady(early, 5_000);
      await expect(earlyStore.ping()).resolves.toBeUndefined();
    } finally {
      await earlyStore.close();
      await down.stop();
    }
  });

  test('a watch while Redis is paused resolves within the store timeout, deaf rather than failing', async () => {
    if (!redis || !store) throw new Error('not set up');
    const scope = newScope();
    await store.claim(scope, claimRequest('owner'));
    redis.pause();
    try {
      const started = Date.now();
      const deaf = await store.watch(scope);
      expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT + 500);
      deaf.close();
    } finally {
      redis.resume();
    }
    // Once Redis runs again, the next watch subscribes and is delivered.
    const watch = await store.watch(scope);
    try {
      await watchedLook(store, scope);
      await store.complete(scope, 'owner', response(), LONG_TTL);
      expect(await settlesWithin(watch.changed, NOTICE_MS)).toBe(true);
    } finally {
      watch.close();
    }
  });

  test('a restart of Redis wakes open watches, and the next watch subscribes again', async () => {
    if (!redis || !store) throw new Error('not set up');
    const scope = newScope();
    const before = await store.watch(scope);
    try {
      await redis.restart();
      // Whatever was published while the subscriber was down is lost: its watches are woken so
      // that waiters read the record again.
      expect(await settlesWithin(before.changed, 10_000)).toBe(true);
      await store.ping();
      // The channel is still watched (`before` is open), yet the new watch confirms a fresh
      // SUBSCRIBE on the new connection before it resolves.
      const after = await store.watch(scope);
      try {
        await store.claim(scope, claimRequest('owner'));
        await watchedLook(store, scope);
        await store.complete(scope, 'owner', response(), LONG_TTL);
        expect(await settlesWithin(after.changed, NOTICE_MS)).toBe(true);
      } finally {
        after.close();
      }
    } finally {
      before.close();
    }
  });
});
