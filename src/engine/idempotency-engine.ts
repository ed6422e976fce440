/**
 * The idempotency decision for one guarded request that carries a key: replay, refuse, or claim
 * the key and forward once. It speaks only to the ports (engine/ports.ts); the record's state
 * machine is drawn in engine/record.ts and README.md.
 *
 * Order of work, chosen so that the common cases cost the fewest store round trips:
 *   1. read the record: a completed one is replayed at once (one round trip);
 *   2. otherwise take the per-key lock (Redlock), then claim the record atomically in the store;
 *   3. forward, renewing lock and lease while the upstream works;
 *   4. store the response (fenced by the lock token), or release / hold the key.
 */
import { randomUUID } from 'node:crypto';
import { RecordUnreadableError, ReplicasNotAcknowledgedError, SidecarError, StoreFullError, StoreUnavailableError } from '../errors';
import { channels, publish } from './events';
import type {
  ClaimResult,
  Clock,
  Lease,
  LockProvider,
  OnUnknown,
  RecordStore,
  RecordWatch,
  Upstream,
  UpstreamRequest,
  UpstreamResult,
} from './ports';
import type { FoundRecord, RecordScope, StoredResponse } from './record';

export type ConcurrentMode = 'reject' | 'wait';

export interface EngineSettings {
  readonly lockTtlMs: number;
  readonly waitTimeoutMs: number;
  /** Most requests of this process waiting on in-flight keys at once (`wait` mode); past it, 409 at once. */
  readonly maxWaiters: number;
  readonly onUnknown: OnUnknown;
  readonly storeUnavailable: 'reject' | 'passthrough';
  readonly releaseStatuses: ReadonlySet<number>;
}

export interface EngineDependencies {
  readonly store: RecordStore;
  /**
   * The per-key locks of a Redlock quorum on masters other than the record store. Absent when the
   * locks would live on the record store itself: its atomic claim (absent -> in flight, with a
   * token and a lease) is then the lock, in the same round trip, as Redlock's SET NX would be.
   */
  readonly locks?: LockProvider;
  readonly upstream: Upstream;
  /** The lock's resource name for a scope (store/keys.ts), so lock and record share a slot. */
  readonly lockResource: (scope: RecordScope) => string;
  /** Every deadline, backoff, renewal and wait of the engine runs on it. */
  readonly clock: Clock;
}

export interface GuardedRequest {
  /** Correlates the engine's events (an unknown outcome) with the request's log line. */
  readonly requestId: string;
  readonly scope: RecordScope;
  readonly fingerprint: string;
  readonly upstream: UpstreamRequest;
  readonly ttlMs: number;
  readonly concurrent: ConcurrentMode;
  /**
   * Aborts when the client has gone. Only a waiting duplicate heeds it (it stops waiting at once);
   * a request that owns its key goes on, so that its response is stored for the retry.
   */
  readonly clientGone?: AbortSignal;
}

/** The outcomes of the contract's metrics (section 6), less `passthrough` and `invalid`, which the HTTP layer decides. */
export type GuardOutcome =
  | 'executed'
  | 'replayed'
  | 'conflict'
  | 'mismatch'
  | 'unavailable'
  | 'upstream_error'
  | 'unknown'
  /** The upstream executed, but another owner holds the key now: its record wins (see forward()). */
  | 'lease_lost'
  /** The stored response cannot be decrypted with the configured keys (encrypting-store.ts). */
  | 'unreadable'
  /** A waiting duplicate's client went away before the first request settled. */
  | 'client_gone';

export type EngineResult =
  /** The upstream answered; `stored` is false when the status is in the release set or the store refused. */
  | {
      readonly kind: 'executed';
      readonly outcome: 'executed';
      readonly response: StoredResponse;
      readonly stored: boolean;
      /** How long the upstream took, for the request's log line. */
      readonly upstreamMs?: number;
    }
  | { readonly kind: 'replayed'; readonly outcome: 'replayed'; readonly response: StoredResponse }
  /** `upstreamMs` is set when the upstream was called (refused, unknown, lease lost). */
  | { readonly kind: 'problem'; readonly outcome: GuardOutcome; readonly error: SidecarError; readonly upstreamMs?: number }
  /** The store is down and the operator chose `passthrough`: forward without a guard. */
  | { readonly kind: 'unguarded'; readonly outcome: 'unavailable' }
  /** A waiting duplicate whose client went away: nobody to answer. */
  | { readonly kind: 'abandoned'; readonly outcome: 'client_gone' };

/**
 * In `wait` mode a duplicate sleeps until the store reports that the record settled
 * (RecordStore.watch), and looks again after this long without a report anyway: a report can be
 * lost (the subscriber was reconnecting, or could not subscribe in time), and a crashed owner's
 * lease simply runs out, which nobody announces; the look after that claims the key and finds it
 * unknown (or takes it over, under `release`). It bounds how late a waiter learns of either.
 */
const WAIT_FALLBACK_MS = 1_000;
/**
 * No record, yet the lock is held: another request is claiming the key, or the owner has released
 * the record (and announced it) but not yet its lock, one round trip later. Either lasts a moment
 * and may be followed by no notice at all, so a waiter looks again soon, backing off, rather than
 * at the fallback. (Only a replica that died between locking and claiming leaves this state for
 * longer: until its lock expires.)
 */
const WAIT_UNCLAIMED_FIRST_MS = 10;
const WAIT_UNCLAIMED_MAX_MS = 200;
/** A duplicate should come back about when a typical payment call has finished. */
const IN_FLIGHT_RETRY_AFTER_SECONDS = 1;
const STORE_RETRY_AFTER_SECONDS = 1;
/** Backoff between retries of a store write after the upstream answered. */
const SETTLE_RETRY_FIRST_MS = 50;
const SETTLE_RETRY_MAX_MS = 1_000;
const BACKGROUND_RETRY_MAX_MS = 100;
/**
 * How long a lapsed lease is given, from the first claim that sees it, before it is judged
 * (ClaimRequest.expiryGraceMs): ten times the background writer's retry interval, so an owner
 * that lost its store for a while lands its result first. A crashed owner's key is judged this
 * much later. At most one lock TTL.
 */
const EXPIRED_LEASE_GRACE_MS = 1_000;

export class IdempotencyEngine {
  /** Settle writes that outlived their request (the store was down); see persistLater(). */
  private readonly pendingWrites = new Set<Promise<void>>();
  /** Requests waiting on an in-flight key right now; bounded by settings.maxWaiters. */
  private waiters = 0;
  /** Aborted by abandon(): the signal of every upstream call, and the end of every wait. */
  private readonly abandonment = new AbortController();

  constructor(
    private readonly deps: EngineDependencies,
    private readonly settings: EngineSettings,
  ) {}

  /**
   * The end of a shutdown's grace period (contract section 5): every upstream call still in
   * flight is aborted at once and settled as an unknown outcome (held or released as
   * IDEMPOTENCY_ON_UNKNOWN says), its client answered `upstream-abandoned`; every duplicate still
   * waiting stops; and a request that comes now is answered `shutting-down` before it claims its
   * key. Idempotent.
   */
  abandon(): void {
    this.abandonment.abort(new Error('the shutdown grace period is over'));
  }

  async handle(request: GuardedRequest): Promise<EngineResult> {
    if (this.abandonment.signal.aborted) return shuttingDown();
    const deadline = this.deps.clock.now() + this.settings.waitTimeoutMs;
    let attempt = await this.attemptOrUnavailable(request);
    // The key is in flight elsewhere. `reject` answers at once (no watch, no further round trip);
    // `wait` subscribes only now, so that new keys and replays never pay for a subscription.
    if (attempt.kind === 'in_flight' && request.concurrent === 'wait') {
      if (this.waiters >= this.settings.maxWaiters) {
        publish(channels.waitersFull, { scope: request.scope, waiters: this.waiters });
        return inFlight(false);
      }
      this.waiters++;
      try {
        attempt = await this.waitForSettle(request, deadline);
      } finally {
        this.waiters--;
      }
    }
    switch (attempt.kind) {
      case 'result':
        return attempt.result;
      case 'owned':
        return this.forward(request, attempt.lease);
      case 'in_flight':
        return inFlight(request.concurrent === 'wait');
      case 'abandoned':
        return { kind: 'abandoned', outcome: 'client_gone' };
    }
  }

  /**
   * `wait` mode, once the key was found in flight: sleep until the record settles, look again,
   * and so on until the answer is not "in flight" (a replay, a 422, an unknown outcome, or the
   * key itself when the first request released it) or the wait timeout has passed.
   *
   * Every look is made with a watch already active, so a settle that lands after the look's read
   * still wakes the sleep that follows (hence one more look right after subscribing). The next
   * watch is opened before the previous one closes, so the store keeps its subscription across
   * rounds. Every watch is closed on every path, and before forwarding.
   */
  private async waitForSettle(request: GuardedRequest, deadline: number): Promise<Attempt> {
    let watch: RecordWatch | undefined;
    let unclaimedMs = WAIT_UNCLAIMED_FIRST_MS;
    // One listener per wait and per signal, removed when it ends: a reaction on a promise that
    // lives as long as the engine (or the client's connection) would pile up with every wait.
    const { signal } = this.abandonment;
    let onAbandon: (() => void) | undefined;
    const abandoned = new Promise<void>((resolve) => {
      onAbandon = (): void => resolve();
      signal.addEventListener('abort', onAbandon, { once: true });
    });
    const gone = request.clientGone;
    let onGone: (() => void) | undefined;
    const left = new Promise<void>((resolve) => {
      onGone = (): void => resolve();
      gone?.addEventListener('abort', onGone, { once: true });
    });
    const clientLeft = (): boolean => gone?.aborted === true;
    try {
      watch = await this.deps.store.watch(request.scope);
      for (;;) {
        if (clientLeft()) return { kind: 'abandoned' };
        // `watching`: the look marks a record it finds in flight as waited on, so its settle is
        // announced (the store announces nothing for records nobody waits on).
        const attempt = await this.attemptOrUnavailable(request, true);
        const remaining = deadline - this.deps.clock.now();
        if (attempt.kind !== 'in_flight' || remaining <= 0) return attempt;
        if (this.abandonment.signal.aborted) return { kind: 'result', result: shuttingDown() };
        let pauseMs = WAIT_FALLBACK_MS;
        if (attempt.unclaimed === true) {
          pauseMs = unclaimedMs;
          unclaimedMs = Math.min(unclaimedMs * 2, WAIT_UNCLAIMED_MAX_MS);
        } else {
          unclaimedMs = WAIT_UNCLAIMED_FIRST_MS;
        }
        await settledOrElapsed(this.deps.clock, Promise.race([watch.changed, abandoned, left]), Math.min(pauseMs, remaining));
        if (clientLeft()) return { kind: 'abandoned' };
        // Past the deadline the last look needs no watch: nothing will wait on it.
        if (this.deps.clock.now() < deadline) {
          const next = await this.deps.store.watch(request.scope);
          watch.close();
          watch = next;
        }
      }
    } catch (error) {
      return this.unavailable(request, 'watch', error);
    } finally {
      watch?.close();
      if (onAbandon !== undefined) signal.removeEventListener('abort', onAbandon);
      if (onGone !== undefined) gone?.removeEventListener('abort', onGone);
    }
  }

  /** attempt(), with a store failure turned into its answer. */
  private async attemptOrUnavailable(request: GuardedRequest, watching = false): Promise<Attempt> {
    try {
      return await this.attempt(request, watching);
    } catch (error) {
      return this.unavailable(request, 'claim', error);
    }
  }

  /**
   * A store failure is answered 503 (or unguarded, under passthrough); a record that cannot be
   * decrypted, 500 (the record exists, so the request ran: it is neither forwarded nor let
   * through unguarded); anything else is a bug.
   */
  private unavailable(request: GuardedRequest, operation: string, error: unknown): Attempt {
    if (error instanceof RecordUnreadableError) {
      // Another request under the same key gets 422 whether or not the record can be read.
      if (error.fingerprint !== undefined && error.fingerprint !== request.fingerprint) return { kind: 'result', result: keyReused() };
      publish(channels.recordUnreadable, { scope: request.scope, error });
      return { kind: 'result', result: unreadable(error) };
    }
    if (error instanceof StoreFullError) return { kind: 'result', result: storeFull(error) };
    if (!(error instanceof StoreUnavailableError)) throw error;
    publish(channels.storeError, { scope: request.scope, operation, error });
    // Replicas behind is not a store that is down: the claim landed and is being undone, and a
    // request let through unguarded now could run again on the retry. Always 503.
    if (error instanceof ReplicasNotAcknowledgedError) return { kind: 'result', result: this.storeUnavailable(error, 'reject') };
    return { kind: 'result', result: this.storeUnavailable(error) };
  }

  /** One pass of claim, or of read, lock and claim with a separate quorum. Throws StoreUnavailableError. */
  private async attempt(request: GuardedRequest, watching: boolean): Promise<Attempt> {
    const { store, locks } = this.deps;
    if (locks === undefined) return this.claimAsLock(request, watching);
    const existing = await store.read(request.scope, { watching });
    if (existing) {
      const decided = decideExisting(existing, request.fingerprint);
      if (decided) return { kind: 'result', result: decided };
    }

    const lease = await locks.acquire(this.deps.lockResource(request.scope), this.settings.lockTtlMs);
    if (!lease) {
      // Another request holds the key. It may have finished between our read and our lock, or
      // have claimed with another fingerprint; look once more so the answer is exact.
      const current = existing ?? (await store.read(request.scope, { watching }));
      const decided = current ? decideExisting(current, request.fingerprint) : undefined;
      if (decided) return { kind: 'result', result: decided };
      return current ? { kind: 'in_flight' } : { kind: 'in_flight', unclaimed: true };
    }

    try {
      const claim = await this.claimRecord(request, lease.token, watching);
      if (claim.claimed) return { kind: 'owned', lease };
      await lease.release();
      const decided = decideExisting(claim.record, request.fingerprint);
      return decided ? { kind: 'result', result: decided } : { kind: 'in_flight' };
    } catch (error) {
      await lease.release();
      throw error;
    }
  }

  /**
   * The record store holds the lock too: one script claims the key or returns its record. A new
   * key costs this round trip and the completion's; a replay or an in-flight duplicate, this one.
   */
  private async claimAsLock(request: GuardedRequest, watching: boolean): Promise<Attempt> {
    const token = randomUUID();
    const claim = await this.claimRecord(request, token, watching);
    if (claim.claimed) return { kind: 'owned', lease: recordLease(token) };
    const decided = decideExisting(claim.record, request.fingerprint);
    return decided ? { kind: 'result', result: decided } : { kind: 'in_flight' };
  }

  /**
   * The claim script. A claim that timed out may still be applied later (a frozen Redis runs it
   * when it wakes): it would leave the key in flight with nobody forwarding it, then unknown. So a
   * failed claim is undone in the background by a release fenced by its own token, which does
   * nothing if the claim never landed or the key is someone else's.
   */
  private async claimRecord(request: GuardedRequest, token: string, watching: boolean): Promise<ClaimResult> {
    try {
      return await this.deps.store.claim(request.scope, {
        fingerprint: request.fingerprint,
        token,
        leaseMs: this.settings.lockTtlMs,
        ttlMs: request.ttlMs,
        onExpiredLease: this.settings.onUnknown,
        expiryGraceMs: Math.min(this.settings.lockTtlMs, EXPIRED_LEASE_GRACE_MS),
        watching,
      });
    } catch (error) {
      if (error instanceof StoreUnavailableError) {
        const undo = (): Promise<boolean> => this.deps.store.release(request.scope, token);
        this.persistLater(request.scope, 'undo-claim', undo, this.deps.clock.now() + request.ttlMs, false);
      }
      throw error;
    }
  }

  private storeUnavailable(error: StoreUnavailableError, mode = this.settings.storeUnavailable): EngineResult {
    if (mode === 'passthrough') return { kind: 'unguarded', outcome: 'unavailable' };
    return problem(
      'unavailable',
      new SidecarError('store-unavailable', {
        detail: 'The idempotency record store did not answer in time; the request was not forwarded. Retry later.',
        retryAfterSeconds: STORE_RETRY_AFTER_SECONDS,
        cause: error,
      }),
    );
  }

  /** We own the key: call the upstream once and settle the record. */
  private async forward(request: GuardedRequest, lease: Lease): Promise<EngineResult> {
    // Renewal runs until the record is settled, not just until the upstream answers: a store
    // that blinks while we write the response must not let the lease lapse under our retries.
    const renewal = this.keepAlive(request.scope, lease);
    const { signal } = this.abandonment;
    try {
      if (signal.aborted) {
        // Abandoned between the claim and the call: nothing was sent, so the key goes back.
        await this.settle(request.scope, 'release', () => this.deps.store.release(request.scope, lease.token), request.ttlMs);
        return shuttingDown();
      }
      const started = this.deps.clock.now();
      const sent = await this.deps.upstream.send(request.upstream, signal);
      const upstreamMs = this.deps.clock.now() - started;
      // A call that ended without an answer after the abort was cut short by it, whatever error
      // the abort surfaced as; an answer that made it in time is stored like any other.
      const result: SettledCall =
        signal.aborted && (sent.kind === 'timeout' || sent.kind === 'reset') ? { kind: 'abandoned', error: sent.error } : sent;
      return { ...(await this.settleUpstreamResult(request, lease, result)), upstreamMs };
    } finally {
      renewal.stop();
      await lease.release();
    }
  }

  /** Settles the record after the upstream call, and decides the client's answer. */
  private async settleUpstreamResult(
    request: GuardedRequest,
    lease: Lease,
    result: SettledCall,
  ): Promise<Extract<EngineResult, { kind: 'executed' | 'problem' }>> {
    switch (result.kind) {
      case 'response': {
        const { response } = result;
        if (this.settings.releaseStatuses.has(response.status)) {
          await this.settle(request.scope, 'release', () => this.deps.store.release(request.scope, lease.token), request.ttlMs);
          return { kind: 'executed', outcome: 'executed', response, stored: false };
        }
        const stored = await this.settle(
          request.scope,
          'complete',
          () => this.deps.store.complete(request.scope, lease.token, response, request.ttlMs),
          request.ttlMs,
        );
        if (stored === undefined) {
          // The store stayed down past the retry budget. A response given to the client now
          // would be one its retry cannot get (the record still says in flight, then unknown):
          // the write goes on in the background until the store is back, and the client is
          // sent to fetch the response from the record then.
          return problem(
            'unavailable',
            new SidecarError('response-not-recorded', {
              detail:
                'The upstream answered, but the record store could not record the response yet. It is recorded as soon as the store is back: retry later with the same key to get it.',
              retryAfterSeconds: STORE_RETRY_AFTER_SECONDS,
            }),
          );
        }
        if (stored === false) {
          // Fenced off: our lease ran out during the call (a pause, a partition) and the key
          // now belongs to another request (possible only under onUnknown=release, or after an
          // operator's delete). Its record is what every retry will see, so handing this
          // client a different response would make the two disagree: send it to the record.
          publish(channels.fencedCompletion, { scope: request.scope, status: response.status });
          return problem(
            'lease_lost',
            new SidecarError('lease-lost', {
              detail:
                'The upstream answered after this request had lost its idempotency key to another request; that request\'s outcome is the one recorded. Retry to get it.',
              retryAfterSeconds: IN_FLIGHT_RETRY_AFTER_SECONDS,
            }),
          );
        }
        return { kind: 'executed', outcome: 'executed', response, stored: stored === true };
      }
      case 'refused':
        await this.settle(request.scope, 'release', () => this.deps.store.release(request.scope, lease.token), request.ttlMs);
        return problem(
          'upstream_error',
          new SidecarError('upstream-unreachable', {
            detail: 'The upstream could not be reached; nothing was sent. The key is released: a retry runs again.',
            cause: result.error,
          }),
        );
      case 'timeout':
      case 'reset':
      case 'abandoned': {
        const action = this.settings.onUnknown;
        await this.settle(
          request.scope,
          action === 'hold' ? 'mark-unknown' : 'release',
          () => (action === 'hold' ? this.deps.store.markUnknown(request.scope, lease.token) : this.deps.store.release(request.scope, lease.token)),
          request.ttlMs,
        );
        publish(channels.unknownOutcome, {
          requestId: request.requestId,
          scope: request.scope,
          fingerprint: request.fingerprint,
          method: request.upstream.method,
          path: request.upstream.path,
          reason: result.kind,
          action,
          error: result.error,
        });
        const consequence =
          action === 'hold'
            ? 'The key is held as an unknown outcome until it expires or an operator releases it.'
            : 'The key is released: a retry runs again.';
        return problem('unknown', unknownOutcome(result, consequence));
      }
    }
  }

  /**
   * A store write after the upstream has answered. The writes are idempotent for their owner, so
   * a store that is briefly unreachable is retried with backoff for up to one lock TTL (the lease
   * is renewed meanwhile) while the client waits. If the store is still down, undefined is
   * returned and the write goes on in the background (see persistLater) until it lands, is
   * fenced off, or the record's TTL has passed.
   */
  private async settle(scope: RecordScope, operation: string, write: () => Promise<boolean>, ttlMs: number): Promise<boolean | undefined> {
    const outcome = await this.retryWrite(scope, operation, write, this.deps.clock.now() + this.settings.lockTtlMs);
    // Only a response is worth holding a shutdown for; a lapsed release or mark settles itself.
    if (outcome === undefined) this.persistLater(scope, operation, write, this.deps.clock.now() + ttlMs, operation === 'complete');
    return outcome;
  }

  private async retryWrite(
    scope: RecordScope,
    operation: string,
    write: () => Promise<boolean>,
    giveUpAt: number,
    maxBackoffMs = SETTLE_RETRY_MAX_MS,
  ): Promise<boolean | undefined> {
    let backoffMs = SETTLE_RETRY_FIRST_MS;
    for (;;) {
      try {
        return await write();
      } catch (error) {
        publish(channels.storeError, { scope, operation, error });
        if (!(error instanceof StoreUnavailableError) || this.deps.clock.now() + backoffMs >= giveUpAt) return undefined;
        await sleep(this.deps.clock, backoffMs);
        backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
      }
    }
  }

  /** Keeps retrying a settle write after the request has been answered; see settled(). */
  private persistLater(
    scope: RecordScope,
    operation: string,
    write: () => Promise<boolean>,
    giveUpAt: number,
    holdsShutdown: boolean,
  ): void {
    // A short backoff: the write should land before a retry of the client's does, or that retry
    // finds the lease expired and the key unknown until the write resolves it.
    const pending = this.retryWrite(scope, operation, write, giveUpAt, BACKGROUND_RETRY_MAX_MS).then(() => undefined);
    if (!holdsShutdown) return;
    this.pendingWrites.add(pending);
    void pending.finally(() => this.pendingWrites.delete(pending));
  }

  /**
   * Resolves when the settle writes still retrying in the background have landed or given up:
   * a graceful shutdown waits for this (within its grace period) so that responses are recorded.
   */
  async settled(): Promise<void> {
    while (this.pendingWrites.size > 0) await Promise.allSettled([...this.pendingWrites]);
  }

  /** Renews the lock and the record's lease every third of the lease while the upstream works. */
  private keepAlive(scope: RecordScope, lease: Lease): { stop(): void } {
    const ttl = this.settings.lockTtlMs;
    let cancel: (() => void) | undefined;
    let stopped = false;
    const schedule = (): void => {
      cancel = this.deps.clock.setTimer(Math.max(1, Math.floor(ttl / 3)), () => void renew());
    };
    const renew = async (): Promise<void> => {
      const [lock, record] = await Promise.allSettled([
        lease.extend(ttl),
        this.deps.store.renew(scope, lease.token, ttl),
      ]);
      if (lock.status === 'rejected' || lock.value === false) {
        publish(channels.leaseLost, { scope, what: 'lock', error: lock.status === 'rejected' ? (lock.reason as unknown) : undefined });
      }
      if (record.status === 'rejected' || record.value === false) {
        publish(channels.leaseLost, { scope, what: 'record', error: record.status === 'rejected' ? (record.reason as unknown) : undefined });
      }
      if (!stopped) schedule();
    };
    schedule();
    return {
      stop(): void {
        stopped = true;
        cancel?.();
      },
    };
  }
}

/**
 * The lease of a key whose lock is its record: renewing is the record's renewal (keepAlive does
 * it), and settling the record ends it, so there is nothing to extend or release here.
 */
function recordLease(token: string): Lease {
  return { token, extend: async () => true, release: async () => undefined };
}

/** An upstream call's result, or the call cut short by abandon(). */
type SettledCall = UpstreamResult | { readonly kind: 'abandoned'; readonly error: Error };

type Attempt =
  | { readonly kind: 'result'; readonly result: EngineResult }
  | { readonly kind: 'owned'; readonly lease: Lease }
  /** `unclaimed`: the lock is held but there is no record (see WAIT_UNCLAIMED_FIRST_MS). */
  | { readonly kind: 'in_flight'; readonly unclaimed?: true }
  /** A waiter whose client left. */
  | { readonly kind: 'abandoned' };

/** The answer an existing record dictates, or undefined when it is in flight (the caller decides). */
function keyReused(): EngineResult {
  return problem(
    'mismatch',
    new SidecarError('key-reused', {
      detail:
        'This idempotency key was already used for a different request (method, path, query or body differ). Use a new key for a new request.',
    }),
  );
}

function decideExisting(record: FoundRecord, fingerprint: string): EngineResult | undefined {
  if (record.fingerprint !== fingerprint) return keyReused();
  switch (record.state) {
    case 'completed':
      if (record.response) return { kind: 'replayed', outcome: 'replayed', response: record.response };
      return undefined;
    case 'unknown':
      return problem(
        'unknown',
        new SidecarError('outcome-unknown', {
          detail:
            'The original request with this key was sent upstream but its outcome is unknown. It will not be run again until the key expires or an operator releases it.',
        }),
      );
    case 'in_flight':
      return undefined;
  }
}

function unreadable(error: RecordUnreadableError): EngineResult {
  return problem(
    'unreadable',
    new SidecarError('record-unreadable', {
      detail:
        'A response is stored for this idempotency key, but the sidecar cannot decrypt it with its configured keys. The request was not forwarded and will not run again while the record lives; an operator must restore the key.',
      cause: error,
    }),
  );
}

/**
 * The store refused a new key for want of room. Always 503, even under
 * IDEMPOTENCY_STORE_UNAVAILABLE=passthrough: the store is up, and forwarding unguarded would give
 * up the guarantee for exactly the keys a flood pushes out.
 */
function storeFull(error: StoreFullError): EngineResult {
  return problem(
    'unavailable',
    new SidecarError('store-full', {
      detail: `The idempotency record store holds its maximum of ${error.maxRecords} records and cannot record a new key until some expire; the request was not forwarded. Retry later.`,
      retryAfterSeconds: STORE_RETRY_AFTER_SECONDS,
      cause: error,
    }),
  );
}

/** The answer to a call sent upstream that got no response: the outcome is unknown. */
function unknownOutcome(result: Extract<SettledCall, { kind: 'timeout' | 'reset' | 'abandoned' }>, consequence: string): SidecarError {
  switch (result.kind) {
    case 'timeout':
      return new SidecarError('upstream-timeout', {
        detail: `The request was sent but the upstream did not answer in time; it may have executed. ${consequence}`,
        cause: result.error,
      });
    case 'reset':
      return new SidecarError('upstream-reset', {
        detail: `The request was sent but the upstream closed the connection before answering; it may have executed. ${consequence}`,
        cause: result.error,
      });
    case 'abandoned':
      return new SidecarError('upstream-abandoned', {
        detail: `The request was sent but this sidecar shut down before the upstream answered; it may have executed. ${consequence}`,
        cause: result.error,
      });
  }
}

/** This replica is stopping: nothing was forwarded and no key is held, so a retry (to another replica) is safe. */
function shuttingDown(): EngineResult {
  return problem(
    'unavailable',
    new SidecarError('shutting-down', {
      detail: 'This sidecar is shutting down; the request was not forwarded. Retry.',
      retryAfterSeconds: STORE_RETRY_AFTER_SECONDS,
    }),
  );
}

function inFlight(waited: boolean): EngineResult {
  return problem(
    'conflict',
    new SidecarError('request-in-flight', {
      detail: waited
        ? 'The original request with this key did not finish within the wait timeout. Retry later.'
        : 'The original request with this key is still being processed. Retry later.',
      retryAfterSeconds: IN_FLIGHT_RETRY_AFTER_SECONDS,
    }),
  );
}

function problem(outcome: GuardOutcome, error: SidecarError): Extract<EngineResult, { kind: 'problem' }> {
  return { kind: 'problem', outcome, error };
}

/** Resolves when `changed` does or after `ms`, whichever comes first; leaves no timer behind. */
function settledOrElapsed(clock: Clock, changed: Promise<void>, ms: number): Promise<void> {
  let cancel: (() => void) | undefined;
  const elapsed = new Promise<void>((resolve) => {
    cancel = clock.setTimer(ms, resolve);
  });
  return Promise.race([changed, elapsed]).finally(() => cancel?.());
}

function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}
