/**
 * The idempotency record and its states. The state machine is drawn in README.md ("How a request
 * flows"):
 *
 *   (absent) --claim--> in_flight --complete--> completed --TTL--> (absent)
 *                          |  \--release (refused, release status)--> (absent)
 *                          \--mark unknown (timeout, reset, lease expired)--> unknown --TTL or admin delete--> (absent)
 */

export type RecordState = 'in_flight' | 'completed' | 'unknown';

/** One response header as the upstream sent it; names are lower case. */
export type HeaderPair = readonly [name: string, value: string];

export interface StoredResponse {
  readonly status: number;
  /** End-to-end headers only; hop-by-hop headers are stripped before storing. */
  readonly headers: readonly HeaderPair[];
  readonly body: Buffer;
}

/** Who a record belongs to: records never cross tenants. */
export interface RecordScope {
  /** Hash of the tenant headers' values, as the logs and the admin API show it. */
  readonly tenant: string;
  /** The idempotency key as the client sent it (after structured-field unquoting). */
  readonly key: string;
}

export interface IdempotencyRecord {
  readonly state: RecordState;
  readonly fingerprint: string;
  /** The lock token of the request that owns (or owned) the record; completions are fenced by it. */
  readonly token: string;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly expiresAt: number;
  /** While in flight: the owner must renew before this instant, or the outcome becomes unknown. */
  readonly leaseUntil: number;
  /** Present when `state` is `completed`. */
  readonly response?: StoredResponse;
}

/**
 * What a claim that finds the key returns: all that the request's answer depends on. Without the
 * record's instants, which a store need not read on that path (the Redis store would need one
 * more command per replay for them).
 */
export type FoundRecord = Pick<IdempotencyRecord, 'state' | 'fingerprint' | 'token' | 'response'>;

export interface TenantRecord extends IdempotencyRecord {
  readonly tenant: string;
}
