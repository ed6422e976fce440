/**
 * The encrypting store over the in-process store, and the engine on top of it: what is stored is
 * sealed, what comes back is the original, and a record the keys cannot open is answered
 * `record-unreadable` with an operator's line, while the upstream is never called again.
 */
import { randomBytes } from 'node:crypto';
import type { EncryptionKey } from '../../src/config/encryption-keys';
import { channels, type RecordUnreadableEvent } from '../../src/engine/events';
import { IdempotencyEngine, type EngineResult, type GuardedRequest } from '../../src/engine/idempotency-engine';
import type { ClaimRequest, Upstream, UpstreamRequest, UpstreamResult } from '../../src/engine/ports';
import type { RecordScope, StoredResponse } from '../../src/engine/record';
import { RecordUnreadableError } from '../../src/errors';
import { EncryptingRecordStore } from '../../src/store/encrypting-store';
import { lockResource } from '../../src/store/keys';
import { systemClock } from '../../src/system-clock';
import { MemoryRecordStore } from '../../src/store/memory-store';
import { ResponseCipher, SEALED_HEADER, sealedKeyId } from '../../src/store/response-cipher';
import { MemoryLockProvider } from '../helpers/memory-lock';

const K1: EncryptionKey = { id: 'k1', key: randomBytes(32) };
const K2: EncryptionKey = { id: 'k2', key: randomBytes(32) };
const CARD = '4242424242424242';

function payment(): StoredResponse {
  return {
    status: 201,
    headers: [
      ['content-type', 'application/json'],
      ['x-receipt', 'receipt-marker'],
    ],
    body: Buffer.from(JSON.stringify({ id: 'pay_1', card: CARD })),
  };
}

function claimRequest(token: string): ClaimRequest {
  return { fingerprint: 'fp', token, leaseMs: 5_000, ttlMs: 60_000, onExpiredLease: 'hold' };
}

let counter = 0;
function newScope(): RecordScope {
  counter++;
  return { tenant: 't1', key: `key-${counter}` };
}

function withKeys(inner: MemoryRecordStore, keys: readonly EncryptionKey[]): EncryptingRecordStore {
  return new EncryptingRecordStore(inner, {
    ...(keys.length > 0 ? { cipher: new ResponseCipher(keys) } : {}),
    keySetting: 'IDEMPOTENCY_ENCRYPTION_KEYS_FILE',
  });
}

/** Completes a record through `store` and returns what the inner store holds. */
async function completeThrough(store: EncryptingRecordStore, inner: MemoryRecordStore, scope: RecordScope): Promise<StoredResponse> {
  await store.claim(scope, claimRequest('owner'));
  await expect(store.complete(scope, 'owner', payment(), 60_000)).resolves.toBe(true);
  const held = (await inner.read(scope))?.response;
  if (held === undefined) throw new Error('nothing stored');
  return held;
}

describe('EncryptingRecordStore', () => {
  let inner: MemoryRecordStore;
  beforeEach(() => {
    inner = new MemoryRecordStore();
  });
  afterEach(async () => {
    await inner.close();
  });

  test('the inner store holds only the sealed response; read and claim return the original', async () => {
    const store = withKeys(inner, [K1]);
    const scope = newScope();
    const held = await completeThrough(store, inner, scope);
    expect(held.headers).toEqual([[SEALED_HEADER, 'k1']]);
    expect(held.body.includes(CARD)).toBe(false);
    expect(held.body.includes('receipt-marker')).toBe(false);
    expect((await store.read(scope))?.response).toEqual(payment());
    const claim = await store.claim(scope, claimRequest('other'));
    expect(claim).toMatchObject({ claimed: false, record: { state: 'completed', response: payment() } });
  });

  test('records without a response (in flight, unknown) pass through untouched', async () => {
    const store = withKeys(inner, [K1]);
    const scope = newScope();
    await store.claim(scope, claimRequest('owner'));
    expect(await store.read(scope)).toMatchObject({ state: 'in_flight', token: 'owner' });
    await store.markUnknown(scope, 'owner');
    expect(await store.claim(scope, claimRequest('other'))).toMatchObject({ claimed: false, record: { state: 'unknown' } });
  });

  test('a record whose key id is no longer configured throws RecordUnreadableError naming the id and the setting', async () => {
    const scope = newScope();
    await completeThrough(withKeys(inner, [K1]), inner, scope);
    const rotatedTooFar = withKeys(inner, [K2]);
    const error = await rotatedTooFar.read(scope).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(RecordUnreadableError);
    expect(error).toMatchObject({ keyId: 'k1', reason: 'unknown-key' });
    expect((error as Error).message).toMatch(/key id k1.*IDEMPOTENCY_ENCRYPTION_KEYS_FILE/);
    await expect(rotatedTooFar.claim(scope, claimRequest('retry'))).rejects.toBeInstanceOf(RecordUnreadableError);
  });

  test('rotation: with the new key first and the old kept, old records read and new ones are sealed with the new key', async () => {
    const old = newScope();
    await completeThrough(withKeys(inner, [K1]), inner, old);
    const rotated = withKeys(inner, [K2, K1]);
    expect((await rotated.read(old))?.response).toEqual(payment());
    const fresh = newScope();
    const held = await completeThrough(rotated, inner, fresh);
    expect(sealedKeyId(held)).toBe('k2');
  });

  test('a record copied under another key is refused as corrupt', async () => {
    const store = withKeys(inner, [K1]);
    const victim = newScope();
    const held = await completeThrough(store, inner, victim);
    const target = newScope();
    await inner.claim(target, claimRequest('owner'));
    await inner.complete(target, 'owner', held, 60_000);
    await expect(store.read(target)).rejects.toMatchObject({ name: 'RecordUnreadableError', keyId: 'k1', reason: 'corrupt' });
  });

  test('without keys, responses are stored in the clear, and sealed records are refused rather than replayed as ciphertext', async () => {
    const plain = withKeys(inner, []);
    const scope = newScope();
    const held = await completeThrough(plain, inner, scope);
    expect(held).toEqual(payment());
    expect((await plain.read(scope))?.response).toEqual(payment());

    const sealed = newScope();
    await completeThrough(withKeys(inner, [K1]), inner, sealed);
    const error = await plain.read(sealed).catch((thrown: unknown) => thrown);
    expect(error).toMatchObject({ name: 'RecordUnreadableError', keyId: 'k1', reason: 'unknown-key' });
    expect((error as Error).message).toMatch(/no encryption key is configured.*IDEMPOTENCY_ENCRYPTION_KEYS/);
  });

  test('records stored in the clear before encryption was turned on are replayed as they are', async () => {
    const scope = newScope();
    await completeThrough(withKeys(inner, []), inner, scope);
    expect((await withKeys(inner, [K1]).read(scope))?.response).toEqual(payment());
  });

  test('listByKey lists a sealed record with its status, without decrypting, even when its key is gone', async () => {
    const scope = newScope();
    await completeThrough(withKeys(inner, [K1]), inner, scope);
    const listed = await withKeys(inner, [K2]).listByKey(scope.key);
    expect(listed).toEqual([expect.objectContaining({ tenant: 't1', state: 'completed', response: { status: 201, headers: [], body: Buffer.alloc(0) } })]);
  });
});

/** Counts its calls; answers a payment. */
class CountingUpstream implements Upstream {
  calls = 0;
  async send(_request: UpstreamRequest): Promise<UpstreamResult> {
    this.calls++;
    return { kind: 'response', response: payment(), durationMs: 1 };
  }
}

/** `quorum`: read, then lock, then claim (a Redlock quorum apart from the store); `record`: the claim is the lock. */
describe.each(['quorum', 'record'] as const)('the engine over an encrypting store, locks: %s', (lockMode) => {
  let inner: MemoryRecordStore;
  const locks = new MemoryLockProvider();
  afterAll(async () => {
    await locks.close();
  });
  const events: RecordUnreadableEvent[] = [];
  const onUnreadable = (message: unknown): void => {
    events.push(message as RecordUnreadableEvent);
  };
  beforeEach(() => {
    inner = new MemoryRecordStore();
    events.length = 0;
    channels.recordUnreadable.subscribe(onUnreadable);
  });
  afterEach(async () => {
    channels.recordUnreadable.unsubscribe(onUnreadable);
    await inner.close();
  });

  function engine(keys: readonly EncryptionKey[], upstream: Upstream): IdempotencyEngine {
    return new IdempotencyEngine(
      { store: withKeys(inner, keys), upstream, lockResource, clock: systemClock, ...(lockMode === 'quorum' ? { locks } : {}) },
      { lockTtlMs: 5_000, maxWaiters: 1_000, waitTimeoutMs: 1_000, onUnknown: 'hold', storeUnavailable: 'passthrough', releaseStatuses: new Set([503]) },
    );
  }

  function guarded(scope: RecordScope, concurrent: 'reject' | 'wait' = 'reject'): GuardedRequest {
    return {
      requestId: `req-${scope.key}`,
      scope,
      fingerprint: 'fp',
      upstream: { method: 'POST', path: '/payments', headers: [], body: Buffer.from(`{"card":"${CARD}"}`) },
      ttlMs: 60_000,
      concurrent,
    };
  }

  test('executes once and replays the same response', async () => {
    const upstream = new CountingUpstream();
    const scope = newScope();
    const first = await engine([K1], upstream).handle(guarded(scope));
    const replay = await engine([K1], upstream).handle(guarded(scope));
    expect(first).toMatchObject({ kind: 'executed', response: payment(), stored: true });
    expect(replay).toEqual({ kind: 'replayed', outcome: 'replayed', response: payment() });
    expect(upstream.calls).toBe(1);
  });

  test.each(['reject', 'wait'] as const)(
    'a record whose key was removed gets record-unreadable (500), is never run again, even under store passthrough (%s)',
    async (concurrent) => {
      const upstream = new CountingUpstream();
      const scope = newScope();
      await engine([K1], upstream).handle(guarded(scope));
      const result: EngineResult = await engine([K2], upstream).handle(guarded(scope, concurrent));
      expect(result).toMatchObject({ kind: 'problem', outcome: 'unreadable', error: { code: 'record-unreadable', status: 500 } });
      expect(upstream.calls).toBe(1);
      expect(events).toHaveLength(1);
      expect(events[0]?.scope).toEqual(scope);
      expect(events[0]?.error).toMatchObject({ keyId: 'k1', reason: 'unknown-key' });
    },
  );

  test('a different request under the key of an unreadable record gets 422, as it would if the record were readable', async () => {
    const upstream = new CountingUpstream();
    const scope = newScope();
    await engine([K1], upstream).handle(guarded(scope));
    const other: GuardedRequest = { ...guarded(scope), fingerprint: 'another-fp' };
    const result = await engine([K2], upstream).handle(other);
    expect(result).toMatchObject({ kind: 'problem', outcome: 'mismatch', error: { code: 'key-reused', status: 422 } });
    expect(upstream.calls).toBe(1);
    expect(events).toHaveLength(0);
  });
});
