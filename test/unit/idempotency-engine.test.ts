/**
 * The engine's decisions where an end-to-end test cannot steer the timing: lease renewal past
 * the lock TTL, a crashed owner's expired lease, fenced completions and store failures after the
 * upstream answered. Real in-process store and locks; only the upstream is scripted.
 */
import { channels } from '../../src/engine/events';
import { IdempotencyEngine, type EngineSettings, type GuardedRequest } from '../../src/engine/idempotency-engine';
import type { LockProvider, RecordStore, Upstream, UpstreamRequest, UpstreamResult } from '../../src/engine/ports';
import type { RecordScope, StoredResponse } from '../../src/engine/record';
import { ReplicasNotAcknowledgedError, StoreUnavailableError } from '../../src/errors';
import { lockResource } from '../../src/store/keys';
import { MemoryLockProvider } from '../../src/store/memory-lock';
import { MemoryRecordStore } from '../../src/store/memory-store';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** An upstream whose answer and delay each test scripts, counting its calls. */
class ScriptedUpstream implements Upstream {
  calls = 0;
  constructor(private readonly answer: () => Promise<UpstreamResult>) {}
  async send(_request: UpstreamRequest): Promise<UpstreamResult> {
    this.calls++;
    return this.answer();
  }
}

function created(body = '{"id":"pay_1"}'): StoredResponse {
  return { status: 201, headers: [['content-type', 'application/json']], body: Buffer.from(body) };
}

function respondAfter(ms: number, response: StoredResponse = created()): () => Promise<UpstreamResult> {
  return async () => {
    await sleep(ms);
    return { kind: 'response', response, durationMs: ms };
  };
}

const SETTINGS: EngineSettings = {
  lockTtlMs: 150,
  maxWaiters: 1_000,
  waitTimeoutMs: 1_000,
  onUnknown: 'hold',
  storeUnavailable: 'reject',
  releaseStatuses: new Set([503]),
};

let counter = 0;
function request(concurrent: 'reject' | 'wait' = 'reject'): GuardedRequest {
  counter++;
  return {
    requestId: `req-${counter}`,
    scope: { tenant: 't1', key: `key-${counter}` },
    fingerprint: 'fp',
    upstream: { method: 'POST', path: '/payments', headers: [], body: Buffer.from('{}') },
    ttlMs: 60_000,
    concurrent,
  };
}

function same(original: GuardedRequest, concurrent: 'reject' | 'wait' = original.concurrent): GuardedRequest {
  return { ...original, concurrent };
}

/**
 * `quorum`: locks from a LockProvider (a Redlock quorum apart from the store), read -> lock -> claim.
 * `record`: no LockProvider: the store's claim is the lock (one Redis, or the in-process store).
 */
describe.each(['quorum', 'record'] as const)('IdempotencyEngine, locks: %s', (lockMode) => {
  let store: MemoryRecordStore;
  let locks: MemoryLockProvider;

  beforeEach(() => {
    store = new MemoryRecordStore();
    locks = new MemoryLockProvider();
  });
  afterEach(async () => {
    await store.close();
    await locks.close();
  });

  function engine(upstream: Upstream, settings: Partial<EngineSettings> = {}, recordStore: RecordStore = store): IdempotencyEngine {
    return new IdempotencyEngine({ store: recordStore, ...withLocks(locks), upstream, lockResource }, { ...SETTINGS, ...settings });
  }

  function withLocks(provider: LockProvider): { locks?: LockProvider } {
    return lockMode === 'quorum' ? { locks: provider } : {};
  }

  test('an upstream slower than the lock TTL keeps its key: lock and lease are renewed', async () => {
    const upstream = new ScriptedUpstream(respondAfter(600));
    const subject = engine(upstream);
    const first = request();
    const running = subject.handle(first);
    await sleep(400); // well past the 150 ms lease
    const duplicate = await subject.handle(same(first));
    expect(duplicate).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    expect(await running).toMatchObject({ kind: 'executed', stored: true });
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'replayed' });
    expect(upstream.calls).toBe(1);
  });

  test('wait mode: a duplicate waits and gets the replay', async () => {
    const upstream = new ScriptedUpstream(respondAfter(200));
    const subject = engine(upstream);
    const first = request('wait');
    const running = subject.handle(first);
    await sleep(50);
    const waited = await subject.handle(same(first));
    expect(waited).toMatchObject({ kind: 'replayed', response: { status: 201 } });
    await running;
    expect(upstream.calls).toBe(1);
  });

  // The engine's fallback look comes 1 s after a waiter's last look: any answer much sooner than
  // that came from the store's notice, not from polling.
  const PROMPT_MS = 100;

  test('wait mode: the duplicate gets the replay as the first completes, without polling', async () => {
    let reads = 0;
    const counting: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      read: (scope: RecordScope) => {
        reads++;
        return store.read(scope);
      },
    });
    const upstream = new ScriptedUpstream(respondAfter(600));
    const subject = engine(upstream, { waitTimeoutMs: 5_000 }, counting);
    const first = request('wait');
    let firstAt = 0;
    const running = subject.handle(first).then((result) => {
      firstAt = performance.now();
      return result;
    });
    await sleep(50);
    reads = 0;
    const waitedFrom = performance.now();
    const waited = await subject.handle(same(first));
    const waitedAt = performance.now();
    expect(waited).toMatchObject({ kind: 'replayed', response: { status: 201 } });
    expect(await running).toMatchObject({ kind: 'executed', stored: true });
    // Measured from the first's answer: the duplicate may even answer first (it is woken by the
    // completion, before the first request has released its lock).
    expect(waitedAt - firstAt).toBeLessThan(PROMPT_MS);
    expect(waitedAt - waitedFrom).toBeLessThan(1_000);
    // A look, one after subscribing, one after the notice: a poll every 10-200 ms would make more.
    expect(reads).toBeLessThanOrEqual(4);
    expect(upstream.calls).toBe(1);
  });

  test('wait mode: 409 in flight once the wait timeout has passed, not at the next fallback look', async () => {
    const upstream = new ScriptedUpstream(respondAfter(1_500));
    const subject = engine(upstream, { waitTimeoutMs: 300 });
    const first = request('wait');
    const running = subject.handle(first);
    await sleep(20);
    const started = performance.now();
    const waited = await subject.handle(same(first));
    const elapsed = performance.now() - started;
    expect(waited).toMatchObject({
      kind: 'problem',
      outcome: 'conflict',
      error: { code: 'request-in-flight', status: 409, retryAfterSeconds: 1 },
    });
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(800);
    expect(await running).toMatchObject({ kind: 'executed', stored: true });
    expect(upstream.calls).toBe(1);
  });

  test.each([0, 30])('wait mode: when the first releases the key, the duplicate runs it at once (lock release takes %d ms)', async (releaseMs) => {
    // The record is released (and announced) before the lock is: over Redis the lock's DEL is one
    // more round trip, so a woken duplicate can meet a held lock and no record.
    const slowLocks: LockProvider = {
      acquire: async (resource, ttlMs) => {
        const lease = await locks.acquire(resource, ttlMs);
        return (
          lease && {
            token: lease.token,
            extend: (ms: number) => lease.extend(ms),
            release: async () => {
              await sleep(releaseMs);
              await lease.release();
            },
          }
        );
      },
      close: async () => undefined,
    };
    let call = 0;
    const upstream = new ScriptedUpstream(async () => {
      call++;
      if (call === 1) {
        await sleep(300);
        return { kind: 'response', response: { status: 503, headers: [], body: Buffer.alloc(0) }, durationMs: 300 };
      }
      return { kind: 'response', response: created(), durationMs: 0 };
    });
    const subject = new IdempotencyEngine({ store, ...withLocks(slowLocks), upstream, lockResource }, { ...SETTINGS, waitTimeoutMs: 5_000 });
    const first = request('wait');
    let firstAt = 0;
    const running = subject.handle(first).then((result) => {
      firstAt = performance.now();
      return result;
    });
    await sleep(50);
    const waited = await subject.handle(same(first));
    const waitedAt = performance.now();
    expect(await running).toMatchObject({ kind: 'executed', stored: false, response: { status: 503 } });
    expect(waited).toMatchObject({ kind: 'executed', stored: true, response: { status: 201 } });
    expect(waitedAt - firstAt).toBeLessThan(PROMPT_MS);
    expect(upstream.calls).toBe(2);
  });

  test('wait mode: a crashed owner\'s expired lease, which nobody announces, is found by the fallback look', async () => {
    const upstream = new ScriptedUpstream(respondAfter(0));
    const subject = engine(upstream, { waitTimeoutMs: 5_000 });
    const crashed = request('wait');
    await store.claim(crashed.scope, { fingerprint: 'fp', token: 'dead-replica', leaseMs: 200, ttlMs: 60_000, onExpiredLease: 'hold' });
    const started = performance.now();
    const waited = await subject.handle(same(crashed));
    const elapsed = performance.now() - started;
    expect(waited).toMatchObject({ kind: 'problem', outcome: 'unknown', error: { code: 'outcome-unknown', status: 409 } });
    // The lease ran out at 200 ms; the fallback look, 1 s after the last one, sees the lapse and
    // starts its grace; the next fallback look judges it.
    expect(elapsed).toBeGreaterThanOrEqual(200);
    expect(elapsed).toBeLessThan(3_500);
    expect(upstream.calls).toBe(0);
  });

  test('reject mode opens no watch', async () => {
    const watching: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      watch: () => Promise.reject(new Error('reject mode must not watch')),
    });
    const upstream = new ScriptedUpstream(respondAfter(200));
    const subject = engine(upstream, {}, watching);
    const first = request('reject');
    const running = subject.handle(first);
    await sleep(20);
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await running;
  });

  test('wait mode: a store that cannot watch (closed) answers 503, like any store failure', async () => {
    const closed: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      watch: () => Promise.reject(new StoreUnavailableError('closed')),
    });
    const upstream = new ScriptedUpstream(respondAfter(200));
    const subject = engine(upstream, {}, closed);
    const first = request('wait');
    const running = subject.handle(first);
    await sleep(20);
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'unavailable', error: { status: 503 } });
    await running;
  });

  test('a crashed owner (lease never renewed) leaves an unknown outcome under hold', async () => {
    const upstream = new ScriptedUpstream(respondAfter(0));
    const subject = engine(upstream);
    const crashed = request();
    // What a replica that died right after claiming leaves behind: a record, no lock, no renewals.
    await store.claim(crashed.scope, { fingerprint: 'fp', token: 'dead-replica', leaseMs: 100, ttlMs: 60_000, onExpiredLease: 'hold' });
    expect(await subject.handle(same(crashed))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await sleep(150);
    // The first look at the lapsed lease starts its grace period (one lock TTL here, 150 ms): the
    // owner might only have lost its store for a while. Still in flight.
    expect(await subject.handle(same(crashed))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await sleep(200);
    const after = await subject.handle(same(crashed));
    expect(after).toMatchObject({ kind: 'problem', outcome: 'unknown', error: { code: 'outcome-unknown', status: 409 } });
    expect(upstream.calls).toBe(0);
  });

  test('a crashed owner\'s key is run again under release', async () => {
    const upstream = new ScriptedUpstream(respondAfter(0));
    const subject = engine(upstream, { onUnknown: 'release' });
    const crashed = request();
    await store.claim(crashed.scope, { fingerprint: 'fp', token: 'dead-replica', leaseMs: 100, ttlMs: 60_000, onExpiredLease: 'release' });
    await sleep(150);
    expect(await subject.handle(same(crashed))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await sleep(200);
    expect(await subject.handle(same(crashed))).toMatchObject({ kind: 'executed', stored: true });
    expect(upstream.calls).toBe(1);
  });

  test('a completion by an owner that lost the key is fenced off and reported', async () => {
    const fenced: unknown[] = [];
    const onFenced = (event: unknown): void => void fenced.push(event);
    channels.fencedCompletion.subscribe(onFenced);
    try {
      // The record store refuses this replica's renewals...
      const stalled: RecordStore = Object.assign(Object.create(store) as RecordStore, {
        renew: async () => false,
      });
      // ...and so does the lock: nothing is renewed, as if this replica were paused past its lease.
      const stalledLocks: LockProvider = {
        acquire: async (resource, ttlMs) => {
          const lease = await locks.acquire(resource, ttlMs);
          return lease && { token: lease.token, extend: async () => false, release: () => lease.release() };
        },
        close: async () => undefined,
      };
      const upstream = new ScriptedUpstream(respondAfter(700, created('{"id":"late"}')));
      const subject = new IdempotencyEngine({ store: stalled, ...withLocks(stalledLocks), upstream, lockResource }, { ...SETTINGS, onUnknown: 'release' });
      const first = request();
      const running = subject.handle(first);
      await sleep(200);
      // The lease ran out; under release another request takes the key over (once the lapse has
      // been seen for its grace period) and completes.
      const takeover = engine(new ScriptedUpstream(respondAfter(0, created('{"id":"takeover"}'))), { onUnknown: 'release' });
      expect(await takeover.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
      await sleep(250);
      expect(await takeover.handle(same(first))).toMatchObject({ kind: 'executed', stored: true });
      // The late owner's client is sent to the record rather than given a response no retry would see.
      expect(await running).toMatchObject({ kind: 'problem', outcome: 'lease_lost', error: { code: 'lease-lost', status: 409 } });
      const replay = await takeover.handle(same(first));
      expect(replay.kind === 'replayed' && replay.response.body.toString()).toBe('{"id":"takeover"}');
      expect(fenced).toEqual([{ scope: first.scope, status: 201 }]);
    } finally {
      channels.fencedCompletion.unsubscribe(onFenced);
    }
  });

  test('a store that blinks while the response is written: the write is retried and the response stored', async () => {
    let failures = 2;
    const blinking: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      complete: async (...args: Parameters<RecordStore['complete']>) => {
        if (failures-- > 0) throw new StoreUnavailableError('store blinked');
        return store.complete(...args);
      },
    });
    const upstream = new ScriptedUpstream(respondAfter(0));
    const subject = engine(upstream, { lockTtlMs: 2_000 }, blinking);
    const first = request();
    expect(await subject.handle(first)).toMatchObject({ kind: 'executed', stored: true });
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'replayed' });
    expect(upstream.calls).toBe(1);
  });

  test('a store down past the retry budget: 503 response-not-recorded, then the write lands in the background and the retry replays', async () => {
    let storeUp = false;
    const down: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      complete: async (...args: Parameters<RecordStore['complete']>) => {
        if (!storeUp) throw new StoreUnavailableError('store down');
        return store.complete(...args);
      },
    });
    const errors: unknown[] = [];
    const onError = (event: unknown): void => void errors.push(event);
    channels.storeError.subscribe(onError);
    try {
      const upstream = new ScriptedUpstream(respondAfter(0, created('{"id":"pay_kept"}')));
      const subject = engine(upstream, {}, down);
      const first = request();
      // The client is not handed a response its retry could not get.
      expect(await subject.handle(first)).toMatchObject({
        kind: 'problem',
        outcome: 'unavailable',
        error: { code: 'response-not-recorded', status: 503, retryAfterSeconds: 1 },
      });
      expect(errors.length).toBeGreaterThanOrEqual(2);
      storeUp = true;
      await subject.settled();
      const retry = await subject.handle(same(first));
      expect(retry.kind === 'replayed' && retry.response.body.toString()).toBe('{"id":"pay_kept"}');
      expect(upstream.calls).toBe(1);
    } finally {
      channels.storeError.unsubscribe(onError);
    }
  });

  test('store down before the claim: 503 under reject, unguarded under passthrough, never forwarded by the engine', async () => {
    const down: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      read: async (_scope: RecordScope) => {
        throw new StoreUnavailableError('down');
      },
      claim: async () => {
        throw new StoreUnavailableError('down');
      },
    });
    const upstream = new ScriptedUpstream(respondAfter(0));
    expect(await engine(upstream, {}, down).handle(request())).toMatchObject({
      kind: 'problem',
      outcome: 'unavailable',
      error: { code: 'store-unavailable', status: 503, retryAfterSeconds: 1 },
    });
    expect(await engine(upstream, { storeUnavailable: 'passthrough' }, down).handle(request())).toEqual({ kind: 'unguarded', outcome: 'unavailable' });
    expect(upstream.calls).toBe(0);
  });

  test('replicas that do not acknowledge a claim: 503 even under passthrough (the claim landed; an unguarded call could run twice)', async () => {
    const behind: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      claim: async () => {
        throw new ReplicasNotAcknowledgedError('claim', 1, 0, 300);
      },
    });
    const upstream = new ScriptedUpstream(respondAfter(0));
    expect(await engine(upstream, { storeUnavailable: 'passthrough' }, behind).handle(request())).toMatchObject({
      kind: 'problem',
      outcome: 'unavailable',
      error: { code: 'store-unavailable', status: 503 },
    });
    expect(upstream.calls).toBe(0);
  });

  test('a status in the release set is passed on and the key released', async () => {
    const upstream = new ScriptedUpstream(respondAfter(0, { status: 503, headers: [], body: Buffer.alloc(0) }));
    const subject = engine(upstream);
    const first = request();
    expect(await subject.handle(first)).toMatchObject({ kind: 'executed', stored: false, response: { status: 503 } });
    expect(await store.read(first.scope)).toBeNull();
    await subject.handle(same(first));
    expect(upstream.calls).toBe(2);
  });
});
