/**
 * The engine's decisions where an end-to-end test cannot steer the timing: lease renewal past
 * the lock TTL, a crashed owner's expired lease, fenced completions, store failures after the
 * upstream answered, and the end of a shutdown's grace period. Real in-process store and locks;
 * only the upstream is scripted. Everything runs on simulated time (test/helpers/fake-clock.ts):
 * the engine, the store and the locks read one FakeClock, so every duration below is exact.
 */
import { channels, type UnknownOutcomeEvent } from '../../src/engine/events';
import { IdempotencyEngine, type EngineSettings, type GuardedRequest } from '../../src/engine/idempotency-engine';
import type { LockProvider, RecordStore, Upstream, UpstreamRequest, UpstreamResult } from '../../src/engine/ports';
import type { RecordScope, StoredResponse } from '../../src/engine/record';
import { ReplicasNotAcknowledgedError, StoreUnavailableError } from '../../src/errors';
import { lockResource } from '../../src/store/keys';
import { MemoryRecordStore } from '../../src/store/memory-store';
import { FakeClock } from '../helpers/fake-clock';
import { MemoryLockProvider } from '../helpers/memory-lock';

/** An upstream whose answer and delay each test scripts, counting its calls. */
class ScriptedUpstream implements Upstream {
  calls = 0;
  constructor(private readonly answer: (signal: AbortSignal) => Promise<UpstreamResult>) {}
  async send(_request: UpstreamRequest, signal: AbortSignal): Promise<UpstreamResult> {
    this.calls++;
    return this.answer(signal);
  }
}

function created(body = '{"id":"pay_1"}'): StoredResponse {
  return { status: 201, headers: [['content-type', 'application/json']], body: Buffer.from(body) };
}

/** An upstream call that never answers: it ends only when aborted, as undici's does (a timeout-like error). */
function hangUntilAborted(signal: AbortSignal): Promise<UpstreamResult> {
  return new Promise((resolve) => {
    const abort = (): void => resolve({ kind: 'timeout', error: new Error('This operation was aborted', { cause: signal.reason }) });
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
  });
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
  let clock: FakeClock;
  let store: MemoryRecordStore;
  let locks: MemoryLockProvider;

  beforeEach(() => {
    clock = new FakeClock();
    store = new MemoryRecordStore({ now: () => clock.now() });
    locks = new MemoryLockProvider({ now: () => clock.now() });
  });
  afterEach(async () => {
    await store.close();
    await locks.close();
  });

  function engine(upstream: Upstream, settings: Partial<EngineSettings> = {}, recordStore: RecordStore = store): IdempotencyEngine {
    return new IdempotencyEngine({ store: recordStore, ...withLocks(locks), upstream, lockResource, clock }, { ...SETTINGS, ...settings });
  }

  function respondAfter(ms: number, response: StoredResponse = created()): () => Promise<UpstreamResult> {
    return async () => {
      await clock.sleep(ms);
      return { kind: 'response', response, durationMs: ms };
    };
  }

  /** Runs simulated time until the work settles. */
  function run<T>(work: Promise<T>): Promise<T> {
    return clock.until(work);
  }

  function withLocks(provider: LockProvider): { locks?: LockProvider } {
    return lockMode === 'quorum' ? { locks: provider } : {};
  }

  test('an upstream slower than the lock TTL keeps its key: lock and lease are renewed', async () => {
    const upstream = new ScriptedUpstream(respondAfter(1_000));
    const subject = engine(upstream);
    const first = request();
    const running = subject.handle(first);
    await clock.advance(400); // well past the 150 ms lease
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    // Past the grace a lapsed lease would get from that look: still in flight, not unknown.
    await clock.advance(300);
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    expect(await run(running)).toMatchObject({ kind: 'executed', stored: true, upstreamMs: 1_000 });
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'replayed' });
    expect(upstream.calls).toBe(1);
    // Renewal stopped with the request: no timer is left behind.
    expect(clock.pending).toBe(0);
  });

  test('wait mode: a duplicate waits and gets the replay', async () => {
    const upstream = new ScriptedUpstream(respondAfter(200));
    const subject = engine(upstream);
    const first = request('wait');
    const running = subject.handle(first);
    await clock.advance(50);
    const waited = await run(subject.handle(same(first)));
    expect(waited).toMatchObject({ kind: 'replayed', response: { status: 201 } });
    await run(running);
    expect(upstream.calls).toBe(1);
  });

  // The engine's fallback look comes 1 s after a waiter's last look: any answer much sooner than
  // that came from the store's notice (and the short backoff on a held lock), not from polling.
  const PROMPT_MS = 100;

  test('wait mode: the duplicate gets the replay at the instant the first completes, without polling', async () => {
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
      firstAt = clock.now();
      return result;
    });
    await clock.advance(50);
    reads = 0;
    const waitedFrom = clock.now();
    const waited = await run(subject.handle(same(first)));
    const waitedAt = clock.now();
    expect(waited).toMatchObject({ kind: 'replayed', response: { status: 201 } });
    expect(await run(running)).toMatchObject({ kind: 'executed', stored: true });
    // Woken by the store's notice, not by the fallback look 1 s after the last one.
    expect(waitedAt).toBe(firstAt);
    expect(waitedAt - waitedFrom).toBe(550);
    // A look, one after subscribing, one after the notice: a poll every 10-200 ms would make more.
    expect(reads).toBeLessThanOrEqual(4);
    expect(upstream.calls).toBe(1);
  });

  test('wait mode: 409 in flight once the wait timeout has passed, not at the next fallback look', async () => {
    const upstream = new ScriptedUpstream(respondAfter(1_500));
    const subject = engine(upstream, { waitTimeoutMs: 300 });
    const first = request('wait');
    const running = subject.handle(first);
    await clock.advance(20);
    const started = clock.now();
    const waited = await run(subject.handle(same(first)));
    expect(waited).toMatchObject({
      kind: 'problem',
      outcome: 'conflict',
      error: { code: 'request-in-flight', status: 409, retryAfterSeconds: 1 },
    });
    expect(clock.now() - started).toBe(300);
    expect(await run(running)).toMatchObject({ kind: 'executed', stored: true });
    expect(upstream.calls).toBe(1);
  });

  test('wait mode: a waiter whose client leaves stops at once, without waiting for the first', async () => {
    const upstream = new ScriptedUpstream(respondAfter(1_000));
    const subject = engine(upstream);
    const first = request('wait');
    const running = subject.handle(first);
    await clock.advance(20);
    const client = new AbortController();
    const waiting = subject.handle({ ...same(first), clientGone: client.signal });
    await clock.advance(100);
    const left = clock.now();
    client.abort();
    expect(await run(waiting)).toEqual({ kind: 'abandoned', outcome: 'client_gone' });
    expect(clock.now()).toBe(left);
    expect(await run(running)).toMatchObject({ kind: 'executed', stored: true });
    expect(upstream.calls).toBe(1);
  });

  test('wait mode: past maxWaiters a duplicate gets 409 without waiting; the bound frees as waiters end', async () => {
    const upstream = new ScriptedUpstream(respondAfter(1_000));
    const subject = engine(upstream, { maxWaiters: 1 });
    const first = request('wait');
    const running = subject.handle(first);
    await clock.advance(20);
    const waiting = subject.handle(same(first));
    await clock.advance(10);
    const started = clock.now();
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'conflict', error: { code: 'request-in-flight', retryAfterSeconds: 1 } });
    expect(clock.now()).toBe(started);
    expect(await run(waiting)).toMatchObject({ kind: 'replayed' });
    await run(running);
    // The waiter has ended: the next duplicate may wait again (and finds the replay at once).
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'replayed' });
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
              await clock.sleep(releaseMs);
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
        await clock.sleep(300);
        return { kind: 'response', response: { status: 503, headers: [], body: Buffer.alloc(0) }, durationMs: 300 };
      }
      return { kind: 'response', response: created(), durationMs: 0 };
    });
    const subject = new IdempotencyEngine({ store, ...withLocks(slowLocks), upstream, lockResource, clock }, { ...SETTINGS, waitTimeoutMs: 5_000 });
    const first = request('wait');
    let firstAt = 0;
    const running = subject.handle(first).then((result) => {
      firstAt = clock.now();
      return result;
    });
    await clock.advance(50);
    const waited = await run(subject.handle(same(first)));
    const waitedAt = clock.now();
    expect(await run(running)).toMatchObject({ kind: 'executed', stored: false, response: { status: 503 } });
    expect(waited).toMatchObject({ kind: 'executed', stored: true, response: { status: 201 } });
    // Within the short backoff of a held lock without a record (10, 20, 40 ms...), not the 1 s fallback.
    expect(Math.abs(waitedAt - firstAt)).toBeLessThan(PROMPT_MS);
    expect(upstream.calls).toBe(2);
  });

  test('wait mode: a crashed owner\'s expired lease, which nobody announces, is found by the fallback look', async () => {
    const upstream = new ScriptedUpstream(respondAfter(0));
    const subject = engine(upstream, { waitTimeoutMs: 5_000 });
    const crashed = request('wait');
    await store.claim(crashed.scope, { fingerprint: 'fp', token: 'dead-replica', leaseMs: 200, ttlMs: 60_000, onExpiredLease: 'hold' });
    const started = clock.now();
    const waited = await run(subject.handle(same(crashed)));
    expect(waited).toMatchObject({ kind: 'problem', outcome: 'unknown', error: { code: 'outcome-unknown', status: 409 } });
    // The lease ran out at 200 ms; the fallback look at 1 s sees the lapse and starts its grace;
    // the next fallback look, at 2 s, judges it.
    expect(clock.now() - started).toBe(2_000);
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
    await clock.advance(20);
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await run(running);
  });

  test('wait mode: a store that cannot watch (closed) answers 503, like any store failure', async () => {
    const closed: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      watch: () => Promise.reject(new StoreUnavailableError('closed')),
    });
    const upstream = new ScriptedUpstream(respondAfter(200));
    const subject = engine(upstream, {}, closed);
    const first = request('wait');
    const running = subject.handle(first);
    await clock.advance(20);
    expect(await subject.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'unavailable', error: { status: 503 } });
    await run(running);
  });

  test('a crashed owner (lease never renewed) leaves an unknown outcome under hold', async () => {
    const upstream = new ScriptedUpstream(respondAfter(0));
    const subject = engine(upstream);
    const crashed = request();
    // What a replica that died right after claiming leaves behind: a record, no lock, no renewals.
    await store.claim(crashed.scope, { fingerprint: 'fp', token: 'dead-replica', leaseMs: 100, ttlMs: 60_000, onExpiredLease: 'hold' });
    expect(await subject.handle(same(crashed))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await clock.advance(150);
    // The first look at the lapsed lease starts its grace period (one lock TTL here, 150 ms): the
    // owner might only have lost its store for a while. Still in flight.
    expect(await subject.handle(same(crashed))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await clock.advance(149);
    expect(await subject.handle(same(crashed))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await clock.advance(2);
    const after = await subject.handle(same(crashed));
    expect(after).toMatchObject({ kind: 'problem', outcome: 'unknown', error: { code: 'outcome-unknown', status: 409 } });
    expect(upstream.calls).toBe(0);
  });

  test('a crashed owner\'s key is run again under release', async () => {
    const upstream = new ScriptedUpstream(respondAfter(0));
    const subject = engine(upstream, { onUnknown: 'release' });
    const crashed = request();
    await store.claim(crashed.scope, { fingerprint: 'fp', token: 'dead-replica', leaseMs: 100, ttlMs: 60_000, onExpiredLease: 'release' });
    await clock.advance(150);
    expect(await subject.handle(same(crashed))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
    await clock.advance(200);
    expect(await run(subject.handle(same(crashed)))).toMatchObject({ kind: 'executed', stored: true });
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
      const subject = new IdempotencyEngine({ store: stalled, ...withLocks(stalledLocks), upstream, lockResource, clock }, { ...SETTINGS, onUnknown: 'release' });
      const first = request();
      const running = subject.handle(first);
      await clock.advance(200);
      // The lease ran out; under release another request takes the key over (once the lapse has
      // been seen for its grace period) and completes.
      const takeover = engine(new ScriptedUpstream(respondAfter(0, created('{"id":"takeover"}'))), { onUnknown: 'release' });
      expect(await takeover.handle(same(first))).toMatchObject({ kind: 'problem', outcome: 'conflict' });
      await clock.advance(250);
      expect(await run(takeover.handle(same(first)))).toMatchObject({ kind: 'executed', stored: true });
      // The late owner's client is sent to the record rather than given a response no retry would see.
      expect(await run(running)).toMatchObject({ kind: 'problem', outcome: 'lease_lost', error: { code: 'lease-lost', status: 409 } });
      const replay = await takeover.handle(same(first));
      expect(replay.kind === 'replayed' && replay.response.body.toString()).toBe('{"id":"takeover"}');
      expect(fenced).toEqual([{ scope: first.scope, status: 201 }]);
    } finally {
      channels.fencedCompletion.unsubscribe(onFenced);
    }
  });

  test('a store that blinks while the response is written: the write is retried with backoff and the response stored', async () => {
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
    const started = clock.now();
    expect(await run(subject.handle(first))).toMatchObject({ kind: 'executed', stored: true });
    // Two failures: 50 ms, then 100 ms of backoff.
    expect(clock.now() - started).toBe(150);
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
      expect(await run(subject.handle(first))).toMatchObject({
        kind: 'problem',
        outcome: 'unavailable',
        error: { code: 'response-not-recorded', status: 503, retryAfterSeconds: 1 },
      });
      expect(errors.length).toBeGreaterThanOrEqual(2);
      await clock.advance(1_000);
      storeUp = true;
      await run(subject.settled());
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
    expect(await run(engine(upstream, {}, down).handle(request()))).toMatchObject({
      kind: 'problem',
      outcome: 'unavailable',
      error: { code: 'store-unavailable', status: 503, retryAfterSeconds: 1 },
    });
    expect(await run(engine(upstream, { storeUnavailable: 'passthrough' }, down).handle(request()))).toEqual({ kind: 'unguarded', outcome: 'unavailable' });
    expect(upstream.calls).toBe(0);
  });

  test('replicas that do not acknowledge a claim: 503 even under passthrough (the claim landed; an unguarded call could run twice)', async () => {
    const behind: RecordStore = Object.assign(Object.create(store) as RecordStore, {
      claim: async () => {
        throw new ReplicasNotAcknowledgedError('claim', 1, 0, 300);
      },
    });
    const upstream = new ScriptedUpstream(respondAfter(0));
    expect(await run(engine(upstream, { storeUnavailable: 'passthrough' }, behind).handle(request()))).toMatchObject({
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
    expect(await run(subject.handle(first))).toMatchObject({ kind: 'executed', stored: false, response: { status: 503 } });
    expect(await store.read(first.scope)).toBeNull();
    await run(subject.handle(same(first)));
    expect(upstream.calls).toBe(2);
  });

  describe('abandon(): the end of a shutdown\'s grace period', () => {
    let unknown: UnknownOutcomeEvent[];
    const onUnknown = (event: unknown): void => void unknown.push(event as UnknownOutcomeEvent);
    beforeEach(() => {
      unknown = [];
      channels.unknownOutcome.subscribe(onUnknown);
    });
    afterEach(() => {
      channels.unknownOutcome.unsubscribe(onUnknown);
    });

    test.each(['hold', 'release'] as const)(
      'a call in flight is aborted at once, settled as an unknown outcome (%s), its lock released, its client answered 504 upstream-abandoned',
      async (onUnknownMode) => {
        const upstream = new ScriptedUpstream(hangUntilAborted);
        // An upstream timeout far beyond the grace period: only the abort can end this call.
        const subject = engine(upstream, { onUnknown: onUnknownMode, lockTtlMs: 30_000 });
        const first = request();
        const running = subject.handle(first);
        await clock.advance(2_000);
        const abandonedAt = clock.now();
        subject.abandon();
        const result = await run(running);
        expect(clock.now()).toBe(abandonedAt);
        expect(result).toMatchObject({
          kind: 'problem',
          outcome: 'unknown',
          error: { code: 'upstream-abandoned', status: 504, retryAfterSeconds: undefined },
          upstreamMs: 2_000,
        });
        expect(result.kind === 'problem' && result.error.detail).toMatch(/shut down before the upstream answered; it may have executed/);
        const record = await store.read(first.scope);
        if (onUnknownMode === 'hold') expect(record).toMatchObject({ state: 'unknown' });
        else expect(record).toBeNull();
        expect(unknown).toEqual([expect.objectContaining({ scope: first.scope, reason: 'abandoned', action: onUnknownMode })]);
        // The lock is free (taken and given back here), and no renewal timer is left running.
        const lock = await locks.acquire(lockResource(first.scope), 1_000);
        expect(lock).not.toBeNull();
        await lock?.release();
        expect(clock.pending).toBe(0);
        expect(upstream.calls).toBe(1);
      },
    );

    test('a call that got its answer before the abort is stored as usual', async () => {
      const upstream = new ScriptedUpstream(async (signal) => {
        await clock.sleep(100);
        // The answer is in hand; the abort that lands now changes nothing about it.
        const answer: UpstreamResult = { kind: 'response', response: created(), durationMs: 100 };
        subject.abandon();
        expect(signal.aborted).toBe(true);
        return answer;
      });
      const subject = engine(upstream);
      const first = request();
      expect(await run(subject.handle(first))).toMatchObject({ kind: 'executed', stored: true });
      expect(await store.read(first.scope)).toMatchObject({ state: 'completed' });
      expect(unknown).toEqual([]);
    });

    test('a request that comes after it is answered 503 shutting-down, claims nothing and is not forwarded', async () => {
      const upstream = new ScriptedUpstream(respondAfter(0));
      const subject = engine(upstream);
      subject.abandon();
      const late = request();
      expect(await run(subject.handle(late))).toMatchObject({
        kind: 'problem',
        outcome: 'unavailable',
        error: { code: 'shutting-down', status: 503, retryAfterSeconds: 1 },
      });
      expect(await store.read(late.scope)).toBeNull();
      expect(upstream.calls).toBe(0);
    });

    test('a duplicate waiting on a call of this replica gets that call\'s outcome at once: unknown', async () => {
      const upstream = new ScriptedUpstream(hangUntilAborted);
      const subject = engine(upstream, { waitTimeoutMs: 30_000 });
      const first = request('wait');
      const running = subject.handle(first);
      await clock.advance(10);
      const waiting = subject.handle(same(first));
      await clock.advance(500);
      const abandonedAt = clock.now();
      subject.abandon();
      expect(await run(waiting)).toMatchObject({ kind: 'problem', outcome: 'unknown', error: { code: 'outcome-unknown', status: 409 } });
      expect(await run(running)).toMatchObject({ kind: 'problem', outcome: 'unknown', error: { code: 'upstream-abandoned' } });
      expect(clock.now()).toBe(abandonedAt);
      expect(upstream.calls).toBe(1);
    });

    test('a duplicate waiting on another replica\'s call stops waiting at once: 503 shutting-down', async () => {
      const upstream = new ScriptedUpstream(respondAfter(0));
      const subject = engine(upstream, { waitTimeoutMs: 30_000 });
      const elsewhere = request('wait');
      await store.claim(elsewhere.scope, { fingerprint: 'fp', token: 'other-replica', leaseMs: 60_000, ttlMs: 60_000, onExpiredLease: 'hold' });
      const waiting = subject.handle(same(elsewhere));
      await clock.advance(2_500);
      const abandonedAt = clock.now();
      subject.abandon();
      expect(await run(waiting)).toMatchObject({ kind: 'problem', outcome: 'unavailable', error: { code: 'shutting-down', status: 503 } });
      expect(clock.now()).toBe(abandonedAt);
      expect(await store.read(elsewhere.scope)).toMatchObject({ state: 'in_flight' });
      expect(upstream.calls).toBe(0);
    });
  });
});
