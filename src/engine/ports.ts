/**
 * What the engine needs from the outside world. Implementations live in store/ (memory, Redis),
 * proxy/ (the upstream call) and system-clock.ts; the engine imports neither Redis nor HTTP, and
 * reads no time of its own.
 */
import type { FoundRecord, IdempotencyRecord, RecordScope, StoredResponse, TenantRecord } from './record';

export type OnUnknown = 'hold' | 'release';

export interface ClaimRequest {
  readonly fingerprint: string;
  /** The lease token: the lock's value, so that the record and the lock name one owner. */
  readonly token: string;
  readonly leaseMs: number;
  /** How long the record lives at most (the route's TTL). */
  readonly ttlMs: number;
  /**
   * What to do with an in-flight record whose lease has run out (its replica died or stalled):
   * `hold` turns it into `unknown`; `release` deletes it and claims the key anew.
   */
  readonly onExpiredLease: OnUnknown;
  /**
   * The expired-lease rule applies only once the lapse has been seen for this long (0 or absent:
   * at once). The first claim that sees it starts the clock. It gives an owner that could not
   * renew because the store was unreachable the time to write its result once the store is back,
   * before a duplicate's claim judges its key unknown (or, under `release`, runs it again).
   */
  readonly expiryGraceMs?: number;
  /** The caller watches this record (RecordStore.watch): see ReadOptions.watching. */
  readonly watching?: boolean;
}

export interface ReadOptions {
  /**
   * The caller watches this record (RecordStore.watch) and will wait for it to settle: a record
   * found in flight is marked as waited on, atomically with this read, so that its settle is
   * reported. Without the mark a store may leave a settle unreported (nobody waits for it).
   */
  readonly watching?: boolean;
}

export type ClaimResult =
  | { readonly claimed: true }
  | { readonly claimed: false; readonly record: FoundRecord };

/**
 * The record store. Every transition is atomic and fenced by the owner's token: a write by a
 * request that no longer owns the record returns false and changes nothing.
 *
 * Any failure to reach the store, or an answer slower than the store timeout, is thrown as
 * `StoreUnavailableError` (errors.ts).
 */
export interface RecordStore {
  /** The record, or null. Expired records are never returned. */
  read(scope: RecordScope, options?: ReadOptions): Promise<IdempotencyRecord | null>;
  /** absent -> in_flight (claimed), or the existing record (after the expired-lease rule). */
  claim(scope: RecordScope, request: ClaimRequest): Promise<ClaimResult>;
  /** Pushes the lease of an in-flight record forward. */
  renew(scope: RecordScope, token: string, leaseMs: number): Promise<boolean>;
  /**
   * in_flight (or unknown) with this token -> completed with the response, kept for `ttlMs`
   * from now. Completing an `unknown` record that still carries our token resolves it.
   * Idempotent: completing again with the same token keeps the first response and returns true,
   * so a completion whose reply was lost (a timeout after the store applied it) can be retried.
   */
  complete(scope: RecordScope, token: string, response: StoredResponse, ttlMs: number): Promise<boolean>;
  /** in_flight with this token -> unknown; keeps the record's expiry. */
  markUnknown(scope: RecordScope, token: string): Promise<boolean>;
  /** Deletes the record if this token owns it, so that a retry runs again. */
  release(scope: RecordScope, token: string): Promise<boolean>;
  /** Admin: the records with this key, one per tenant. */
  listByKey(key: string): Promise<TenantRecord[]>;
  /** Admin: deletes the record whatever its owner. */
  remove(scope: RecordScope): Promise<boolean>;
  /**
   * Subscribes to the settling of one record: its completion, release, marking unknown (by its
   * owner, or by a claim that finds its lease run out) and removal. Creation and renewal are not
   * reported. `wait` mode sleeps on it instead of polling.
   *
   * Resolves once the subscription is active. A settle is reported when a look made after that
   * (a claim or a read with `watching`) found the record in flight, and on removal; a store may
   * report others too, but need not: the Redis store publishes only for records someone marked,
   * so a request nobody waits for costs no notice. So a caller who watches, then looks with
   * `watching`, cannot miss a settle that lands after its look. Delivery is best effort: a notice may be lost (a
   * reconnecting subscriber, a subscription that could not be made within the store timeout, in
   * which case the watch still resolves, deaf), so a caller must bound its wait and read again.
   * Never slower than the store timeout; throws StoreUnavailableError only when the store is
   * closed.
   */
  watch(scope: RecordScope): Promise<RecordWatch>;
  /** Resolves when the store answers; throws StoreUnavailableError otherwise. */
  ping(): Promise<void>;
  /** Also ends every open watch: their `changed` resolves, so that waiters look again. */
  close(): Promise<void>;
}

/** One subscription of RecordStore.watch. */
export interface RecordWatch {
  /** Resolves at the first settle of the record after the watch became active; never rejects. */
  readonly changed: Promise<void>;
  /** Stops delivery and frees the subscription; idempotent. */
  close(): void;
}

/** A held lock. The token is unique to this acquisition. */
export interface Lease {
  readonly token: string;
  /** Renews the lock for `ttlMs` from now; false when it was lost. */
  extend(ttlMs: number): Promise<boolean>;
  /** Best effort: a failed release leaves the lock to expire by itself. */
  release(): Promise<void>;
}

/**
 * Per-key mutual exclusion (Redlock over one or several Redis masters, or in process).
 * `acquire` resolves null when another owner holds the lock, and throws StoreUnavailableError
 * when a quorum cannot be reached.
 */
export interface LockProvider {
  acquire(resource: string, ttlMs: number): Promise<Lease | null>;
  close(): Promise<void>;
}

/** The request the engine forwards; the body is already read (it is part of the fingerprint). */
export interface UpstreamRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: readonly HeaderPairIn[];
  readonly body: Buffer;
}

export type HeaderPairIn = readonly [name: string, value: string];

export type UpstreamResult =
  | { readonly kind: 'response'; readonly response: StoredResponse; readonly durationMs: number }
  /** Nothing reached the upstream (connection refused, DNS, connect timeout): safe to run again. */
  | { readonly kind: 'refused'; readonly error: Error }
  /** The request was sent but no complete response came back: the upstream may have executed. */
  | { readonly kind: 'timeout'; readonly error: Error }
  | { readonly kind: 'reset'; readonly error: Error };

export interface Upstream {
  /**
   * `signal` aborts the call at once (the shutdown's grace period is over): it then resolves with
   * the result the call had reached, `refused` if nothing was sent, else `timeout` or `reset`.
   */
  send(request: UpstreamRequest, signal: AbortSignal): Promise<UpstreamResult>;
}

/** Cancels a timer of Clock.setTimer; calling it again, or after the timer fired, does nothing. */
export type CancelTimer = () => void;

/**
 * Time, for the engine's deadlines, backoffs, lease renewals and waits: the system's in
 * production (system-clock.ts), a fake one in unit tests, which then run on simulated time.
 * Deliberately two calls: one timer per use, so that an implementation may serve them all from
 * one timer wheel.
 */
export interface Clock {
  /** Milliseconds; only the difference between two readings means anything. */
  now(): number;
  /** Calls `fn` once, `ms` from now. */
  setTimer(ms: number, fn: () => void): CancelTimer;
}
