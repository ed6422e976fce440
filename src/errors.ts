/**
 * Every answer the sidecar makes itself, with a stable code, an HTTP status and the problem type
 * that RFC 9457 clients dispatch on. Errors keep their `cause` so logs show what went wrong
 * underneath; both listeners render them in one place (problem.ts).
 */

export const PROBLEM_TYPE_BASE = 'urn:idempotency-sidecar:problem:';

export type ProblemCode =
  | 'bad-request'
  | 'path-ambiguous'
  | 'transfer-coding-unsupported'
  | 'tenant-missing'
  | 'overloaded'
  | 'headers-too-large'
  | 'request-timeout'
  | 'key-required'
  | 'key-malformed'
  | 'body-too-large'
  | 'key-reused'
  | 'request-in-flight'
  | 'outcome-unknown'
  | 'lease-lost'
  | 'store-unavailable'
  | 'store-full'
  | 'response-not-recorded'
  | 'upstream-unreachable'
  | 'upstream-timeout'
  | 'upstream-reset'
  | 'upstream-abandoned'
  | 'upstream-error'
  | 'shutting-down'
  | 'record-unreadable'
  | 'internal-error'
  // The admin listener's own answers (admin/admin-server.ts).
  | 'not-found'
  | 'unauthorized'
  | 'method-not-allowed'
  | 'invalid-admin-request';

interface ProblemDefinition {
  readonly status: number;
  readonly title: string;
}

const DEFINITIONS: Readonly<Record<ProblemCode, ProblemDefinition>> = {
  'bad-request': { status: 400, title: 'Malformed HTTP request' },
  'path-ambiguous': { status: 400, title: 'Ambiguous request path' },
  'transfer-coding-unsupported': { status: 501, title: 'Transfer coding not supported' },
  'tenant-missing': { status: 400, title: 'No tenant to scope the idempotency key to' },
  'overloaded': { status: 503, title: 'The sidecar holds as many guarded requests as it may' },
  'headers-too-large': { status: 431, title: 'Request header fields too large' },
  'request-timeout': { status: 408, title: 'Request not received in time' },
  'key-required': { status: 400, title: 'Idempotency key required' },
  'key-malformed': { status: 400, title: 'Malformed idempotency key' },
  'body-too-large': { status: 413, title: 'Request body too large' },
  'key-reused': { status: 422, title: 'Idempotency key reused for a different request' },
  'request-in-flight': { status: 409, title: 'A request with this idempotency key is in flight' },
  'outcome-unknown': { status: 409, title: 'Outcome of the original request is unknown' },
  'lease-lost': { status: 409, title: 'This request lost its idempotency key while the upstream worked' },
  'store-unavailable': { status: 503, title: 'Idempotency record store unavailable' },
  'store-full': { status: 503, title: 'Idempotency record store full' },
  'response-not-recorded': { status: 503, title: 'The upstream answered, but the response is not recorded yet' },
  'upstream-unreachable': { status: 502, title: 'Upstream unreachable' },
  'upstream-timeout': { status: 504, title: 'Upstream timed out' },
  'upstream-reset': { status: 502, title: 'Upstream closed the connection' },
  // 504, as a timeout: the sidecar stopped waiting for an answer that had not come.
  'upstream-abandoned': { status: 504, title: 'Upstream call abandoned at shutdown' },
  'upstream-error': { status: 502, title: 'Upstream failed' },
  'shutting-down': { status: 503, title: 'Sidecar shutting down' },
  // 500, not 503: the record is there and the store answers; what is missing is a key only an
  // operator can restore, so a Retry-After would only invite a retry storm.
  'record-unreadable': { status: 500, title: 'Stored response cannot be decrypted' },
  'internal-error': { status: 500, title: 'Internal sidecar error' },
  'not-found': { status: 404, title: 'Not found' },
  'unauthorized': { status: 401, title: 'A valid bearer token is required' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  'invalid-admin-request': { status: 400, title: 'Invalid admin request' },
};

export interface SidecarErrorOptions {
  readonly detail: string;
  /** Whole seconds; rendered as `Retry-After`. */
  readonly retryAfterSeconds?: number;
  readonly cause?: unknown;
}

export class SidecarError extends Error {
  readonly code: ProblemCode;
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ProblemCode, options: SidecarErrorOptions) {
    super(options.detail, options.cause === undefined ? undefined : { cause: options.cause });
    const definition = DEFINITIONS[code];
    this.name = 'SidecarError';
    this.code = code;
    this.status = definition.status;
    this.title = definition.title;
    this.detail = options.detail;
    this.retryAfterSeconds =
      options.retryAfterSeconds === undefined ? undefined : Math.max(1, Math.ceil(options.retryAfterSeconds));
  }

  get type(): string {
    return PROBLEM_TYPE_BASE + this.code;
  }
}

/**
 * The record store or the lock quorum could not answer in time. Thrown by store and lock
 * implementations; the engine turns it into 503 or a pass-through, as configured.
 */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

export type UnreadableReason =
  /** The record names a key id that is not configured (removed too early, or encryption is off). */
  | 'unknown-key'
  /** AES-GCM authentication failed or the envelope is malformed: altered, or copied from another key. */
  | 'corrupt';

/**
 * A stored response that the configured keys cannot decrypt. Thrown by the encrypting store on
 * read and claim; the engine answers `record-unreadable` and never forwards the request, since
 * the record proves it already ran. The message is for the operator: it names the key id and the
 * setting to fix, never key material.
 */
export class RecordUnreadableError extends Error {
  readonly keyId: string;
  readonly reason: UnreadableReason;
  /**
   * The unreadable record's fingerprint (stored in the clear): a request with another one gets
   * the contract's 422, which it would have got had the record been readable.
   */
  readonly fingerprint: string | undefined;
  constructor(message: string, options: { keyId: string; reason: UnreadableReason; fingerprint?: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RecordUnreadableError';
    this.keyId = options.keyId;
    this.reason = options.reason;
    this.fingerprint = options.fingerprint;
  }
}

/**
 * The in-process record store holds as many records as it may (IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS)
 * and none has expired: a new key cannot be recorded. Evicting a live record instead would let its
 * key run a second time, so the new key is refused (503) until records expire.
 */
export class StoreFullError extends Error {
  readonly maxRecords: number;
  constructor(maxRecords: number) {
    super(`the in-process record store holds its maximum of ${maxRecords} live records`);
    this.name = 'StoreFullError';
    this.maxRecords = maxRecords;
  }
}

/**
 * A write that landed on the master but that fewer replicas acknowledged than
 * IDEMPOTENCY_REDIS_WAIT_REPLICAS asks, within the wait timeout: a failover now could lose it. A
 * StoreUnavailableError, so that a completion is retried like any store failure; but the store is
 * up, so a claim refused this way is never let through unguarded (a retry after the claim is
 * undone would run the request again): the engine answers 503 even under passthrough.
 */
export class ReplicasNotAcknowledgedError extends StoreUnavailableError {
  constructor(operation: string, wanted: number, acknowledged: number, timeoutMs: number) {
    super(`${operation}: ${acknowledged} of ${wanted} replica(s) acknowledged the write within ${timeoutMs} ms (WAIT)`);
    this.name = 'ReplicasNotAcknowledgedError';
  }
}

/** A configuration value is wrong; `setting` names the variable or flag an operator must fix. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
