/**
 * The record store in process memory, for a single replica (no IDEMPOTENCY_REDIS_URL): the same
 * semantics as the Redis store (the shared contract suite runs against both), with the process's
 * clock in place of the server's. Records vanish with the process. Watches are woken in process,
 * by the same transitions whose Redis scripts publish.
 */
import type { ClaimRequest, ClaimResult, RecordStore, RecordWatch } from '../engine/ports';
import type { IdempotencyRecord, RecordScope, RecordState, StoredResponse, TenantRecord } from '../engine/record';
import { StoreFullError, StoreUnavailableError } from '../errors';
import { WatchRegistry } from './watch-registry';

export interface MemoryRecordStoreOptions {
  /** How often expired records are swept out; lookups also drop them lazily. Default 60 s. */
  readonly sweepIntervalMs?: number;
  /** Epoch milliseconds; default Date.now. */
  readonly now?: () => number;
  /**
   * Most records kept (IDEMPOTENCY_MEMORY_STORE_MAX_RECORDS); default 100000. A new key beyond it
   * is refused with StoreFullError: a live record is never evicted, since its key would then run
   * again.
   */
  readonly maxRecords?: number;
  /**
   * Called when the store starts refusing new keys: once per episode of being full, and at most
   * once a minute, so that a store hovering at its limit does not flood the log.
   */
  readonly onFull?: (maxRecords: number) => void;
}

/** When full, expired records are swept out at most this often before a new key is refused. */
const FULL_SWEEP_INTERVAL_MS = 1_000;
const FULL_REPORT_INTERVAL_MS = 60_000;

interface Entry {
  state: RecordState;
  readonly fingerprint: string;
  readonly token: string;
  readonly createdAt: number;
  expiresAt: number;
  leaseUntil: number;
  /** When a claim first saw the lease lapsed (see ClaimRequest.expiryGraceMs). */
  expiredSeenAt?: number;
  response?: StoredResponse;
}

export class MemoryRecordStore implements RecordStore {
  /** key -> tenant -> record: listByKey reads one inner map, as Redis reads one index. */
  private readonly records = new Map<string, Map<string, Entry>>();
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;
  private readonly watches = new WatchRegistry();
  private closed = false;
  /** Records held, expired or not, across all keys and tenants. */
  private size = 0;
  private readonly maxRecords: number;
  private readonly onFull: (maxRecords: number) => void;
  private full = false;
  private lastFullSweep = Number.NEGATIVE_INFINITY;
  private lastFullReport = Number.NEGATIVE_INFINITY;

  constructor(options: MemoryRecordStoreOptions = {}) {
    const interval = options.sweepIntervalMs ?? 60_000;
    if (!Number.isFinite(interval) || interval <= 0) {
      throw new TypeError(`sweepIntervalMs must be a positive number (got ${String(interval)})`);
    }
    const maxRecords = options.maxRecords ?? 100_000;
    if (!Number.isSafeInteger(maxRecords) || maxRecords < 1) {
      throw new TypeError(`maxRecords must be a whole number greater than 0 (got ${String(maxRecords)})`);
    }
    this.maxRecords = maxRecords;
    this.onFull = options.onFull ?? (() => undefined);
    this.now = options.now ?? Date.now;
    this.sweeper = setInterval(() => this.sweep(), interval);
    // The sweep is housekeeping: it must not keep the process alive on shutdown.
    this.sweeper.unref();
  }

  async read(scope: RecordScope): Promise<IdempotencyRecord | null> {
    this.checkOpen();
    const entry = this.live(scope);
    return entry ? snapshot(entry) : null;
  }

  async claim(scope: RecordScope, request: ClaimRequest): Promise<ClaimResult> {
    this.checkOpen();
    const now = this.now();
    const entry = this.live(scope);
    if (entry === undefined) return this.create(scope, request, now);
    if (entry.state === 'in_flight' && entry.leaseUntil < now && now - (entry.expiredSeenAt ??= now) >= (request.expiryGraceMs ?? 0)) {
      // The owner stopped renewing (it died or stalled): the upstream may have executed.
      if (request.onExpiredLease === 'release') {
        const claimed = this.create(scope, request, now);
        this.settled(scope);
        return claimed;
      }
      entry.state = 'unknown';
      this.settled(scope);
    }
    return { claimed: false, record: snapshot(entry) };
  }

  async renew(scope: RecordScope, token: string, leaseMs: number): Promise<boolean> {
    this.checkOpen();
    const entry = this.live(scope);
    if (entry?.state !== 'in_flight' || entry.token !== token) return false;
    entry.leaseUntil = this.now() + leaseMs;
    delete entry.expiredSeenAt;
    return true;
  }

  async complete(scope: RecordScope, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
    this.checkOpen();
    const entry = this.live(scope);
    if (entry === undefined || entry.token !== token) return false;
    // Completing twice with the same token keeps the first response: retries are idempotent.
    if (entry.state === 'completed') return true;
    entry.state = 'completed';
    entry.expiresAt = this.now() + ttlMs;
    entry.response = copyResponse(response);
    this.settled(scope);
    return true;
  }

  async markUnknown(scope: RecordScope, token: string): Promise<boolean> {
    this.checkOpen();
    const entry = this.live(scope);
    if (entry?.state !== 'in_flight' || entry.token !== token) return false;
    entry.state = 'unknown';
    this.settled(scope);
    return true;
  }

  async release(scope: RecordScope, token: string): Promise<boolean> {
    this.checkOpen();
    const entry = this.live(scope);
    if (entry === undefined || entry.token !== token) return false;
    this.delete(scope);
    this.settled(scope);
    return true;
  }

  async listByKey(key: string): Promise<TenantRecord[]> {
    this.checkOpen();
    const tenants = [...(this.records.get(key)?.keys() ?? [])];
    const records: TenantRecord[] = [];
    for (const tenant of tenants) {
      const entry = this.live({ tenant, key });
      if (entry) records.push({ ...snapshot(entry), tenant });
    }
    return records;
  }

  async remove(scope: RecordScope): Promise<boolean> {
    this.checkOpen();
    const entry = this.live(scope);
    if (entry === undefined) return false;
    this.delete(scope);
    this.settled(scope);
    return true;
  }

  async watch(scope: RecordScope): Promise<RecordWatch> {
    this.checkOpen();
    // Settles wake watchers synchronously in this process: the watch is active at once.
    return this.watches.open(watchName(scope)).watch;
  }

  async ping(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.records.clear();
    this.size = 0;
    // Waiters look again and meet the closed store at once, rather than at their fallback.
    this.watches.clear();
  }

  /** Wakes the watches of a record that just settled (what the Redis scripts PUBLISH). */
  private settled(scope: RecordScope): void {
    this.watches.notify(watchName(scope));
  }

  /** How many records the store holds, expired ones not yet swept included. */
  recordCount(): number {
    return this.size;
  }

  private create(scope: RecordScope, request: ClaimRequest, now: number): ClaimResult {
    const replacing = this.records.get(scope.key)?.has(scope.tenant) === true;
    // Before the lookup below: making room may sweep this key's map away.
    if (!replacing) this.makeRoom(now);
    let tenants = this.records.get(scope.key);
    if (tenants === undefined) {
      tenants = new Map();
      this.records.set(scope.key, tenants);
    }
    if (!replacing) this.size++;
    tenants.set(scope.tenant, {
      state: 'in_flight',
      fingerprint: request.fingerprint,
      token: request.token,
      createdAt: now,
      expiresAt: now + request.ttlMs,
      leaseUntil: now + request.leaseMs,
    });
    return { claimed: true };
  }

  /**
   * Throws StoreFullError when a new record would pass the limit even after expired records are
   * dropped. The sweep walks every record, so under a flood of new keys it runs at most once per
   * FULL_SWEEP_INTERVAL_MS rather than once per refused key.
   */
  private makeRoom(now: number): void {
    if (this.size < this.maxRecords) {
      this.full = false;
      return;
    }
    if (now - this.lastFullSweep >= FULL_SWEEP_INTERVAL_MS) {
      this.lastFullSweep = now;
      this.sweep();
      if (this.size < this.maxRecords) {
        this.full = false;
        return;
      }
    }
    if (!this.full && now - this.lastFullReport >= FULL_REPORT_INTERVAL_MS) {
      this.lastFullReport = now;
      this.onFull(this.maxRecords);
    }
    this.full = true;
    throw new StoreFullError(this.maxRecords);
  }

  /** The record unless it has expired; an expired one is deleted on the way (as Redis does). */
  private live(scope: RecordScope): Entry | undefined {
    const entry = this.records.get(scope.key)?.get(scope.tenant);
    if (entry === undefined) return undefined;
    // Past expiresAt, as Redis judges a key past its PEXPIREAT instant.
    if (this.now() > entry.expiresAt) {
      this.delete(scope);
      return undefined;
    }
    return entry;
  }

  private delete(scope: RecordScope): void {
    const tenants = this.records.get(scope.key);
    if (tenants?.delete(scope.tenant) === true) this.size--;
    if (tenants?.size === 0) this.records.delete(scope.key);
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, tenants] of this.records) {
      for (const [tenant, entry] of tenants) {
        if (now > entry.expiresAt && tenants.delete(tenant)) this.size--;
      }
      if (tenants.size === 0) this.records.delete(key);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreUnavailableError('the in-memory record store is closed');
  }
}

/** One name per (tenant, key); JSON keeps the pair unambiguous whatever either contains. */
function watchName(scope: RecordScope): string {
  return JSON.stringify([scope.tenant, scope.key]);
}

/** A copy the caller may keep or mutate without touching the stored record. */
function snapshot(entry: Entry): IdempotencyRecord {
  const record: IdempotencyRecord = {
    state: entry.state,
    fingerprint: entry.fingerprint,
    token: entry.token,
    createdAt: entry.createdAt,
    expiresAt: entry.expiresAt,
    leaseUntil: entry.leaseUntil,
  };
  return entry.response ? { ...record, response: copyResponse(entry.response) } : record;
}

function copyResponse(response: StoredResponse): StoredResponse {
  return {
    status: response.status,
    headers: response.headers.map(([name, value]) => [name, value] as const),
    body: Buffer.from(response.body),
  };
}
