/**
 * Per-key locks over one or several independent Redis masters (Redlock), for replicas that share
 * a store. Wraps @sesamecare-oss/redlock and translates what it reports:
 *
 * - a lock held by another owner comes back from the library as a generic quorum ExecutionError,
 *   just like an unreachable quorum; its per-server votes tell the two apart. Held -> null (the
 *   engine answers 409 or waits), unreachable -> StoreUnavailableError (503 or pass-through).
 * - the library never times out by itself; every operation here is bounded by the store timeout.
 *
 * No retries (retryCount 0): what to do with a held lock is the engine's decision, and a retry
 * loop here would spend the request's store timeout.
 */
import { ExecutionError, type Lock, Redlock, ResourceLockedError, type Settings } from '@sesamecare-oss/redlock';
import { Cluster } from 'ioredis';
import type { Lease, LockProvider } from '../engine/ports';
import { StoreUnavailableError } from '../errors';
import { closeClient, type RedisClient, toStoreUnavailable } from './redis-connection';

export interface RedlockLockProviderOptions {
  /** Longest one acquire, extend or release may take. */
  readonly storeTimeoutMs: number;
}

export class RedlockLockProvider implements LockProvider {
  private readonly clients: readonly RedisClient[];
  private readonly settings: Settings;
  private readonly timeoutMs: number;

  constructor(clients: readonly RedisClient[], options: RedlockLockProviderOptions) {
    if (clients.length === 0) throw new TypeError('RedlockLockProvider needs at least one Redis client');
    if (!Number.isInteger(options.storeTimeoutMs) || options.storeTimeoutMs <= 0) {
      throw new TypeError(`storeTimeoutMs must be a positive integer (got ${String(options.storeTimeoutMs)})`);
    }
    this.clients = clients;
    this.timeoutMs = options.storeTimeoutMs;
    this.settings = {
      retryCount: 0,
      // The library's scripts SELECT a database themselves (0 unless told): keep the locks in the
      // database the URLs name, next to the records.
      db: commonDatabase(clients),
    };
  }

  async acquire(resource: string, ttlMs: number): Promise<Lease | null> {
    const duration = wholeMilliseconds(ttlMs);
    // One Redlock per acquisition (it is a thin object over the shared clients): it emits every
    // server's vote against as an 'error' event, and a private instance attributes them to this
    // acquisition alone. Its Lock, and so the lease's extend and release, use it too.
    // Clients still connecting would vote against at once (no offline queue): give a quorum of
    // them the store timeout to come up, as the record store does.
    const deadline = Date.now() + this.timeoutMs;
    await quorumReady(this.clients, this.timeoutMs);
    const redlock = new Redlock(this.clients, this.settings);
    const votesAgainst: Error[] = [];
    const collect = (error: unknown): void => {
      if (error instanceof Error) votesAgainst.push(error);
    };
    redlock.on('error', collect);
    const attempt = redlock.acquire([resource], duration).then(
      (lock): Lease => new RedlockLease(lock, this.timeoutMs),
      (error: unknown): null => {
        if (error instanceof ExecutionError && heldByAnother(votesAgainst)) return null;
        throw toStoreUnavailable(`lock ${resource}`, error);
      },
    );
    try {
      const outcome = await raceDeadline(attempt, Math.max(1, deadline - Date.now()));
      if (outcome.timedOut) {
        // Too late for this request; a lock won after the deadline would block the key for its
        // TTL with nobody to release it.
        attempt.then((lease) => lease?.release(), () => undefined);
        throw new StoreUnavailableError(`lock ${resource}: no quorum answer within ${this.timeoutMs} ms`);
      }
      return outcome.value;
    } finally {
      attempt.finally(() => redlock.off('error', collect)).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((client) => closeClient(client, this.timeoutMs)));
  }
}

class RedlockLease implements Lease {
  private lock: Lock;
  private readonly timeoutMs: number;

  constructor(lock: Lock, timeoutMs: number) {
    this.lock = lock;
    this.timeoutMs = timeoutMs;
  }

  /** The lock's random value: the record carries it as its fencing token. */
  get token(): string {
    return this.lock.value;
  }

  async extend(ttlMs: number): Promise<boolean> {
    const attempt = this.lock.extend(wholeMilliseconds(ttlMs));
    try {
      const outcome = await raceDeadline(attempt, this.timeoutMs);
      if (outcome.timedOut) {
        attempt.catch(() => undefined);
        return false;
      }
      // Redlock returns a new Lock and invalidates the old one.
      this.lock = outcome.value;
      return true;
    } catch {
      // Expired locally, taken by another owner, or no quorum: either way we cannot show we hold
      // it, and the engine must act as if it lost it.
      return false;
    }
  }

  async release(): Promise<void> {
    const attempt = this.lock.release();
    try {
      await raceDeadline(attempt, this.timeoutMs);
    } catch {
      // Best effort: a lock that was not released expires by itself after its TTL.
    } finally {
      attempt.catch(() => undefined);
    }
  }
}

type Raced<T> = { readonly timedOut: false; readonly value: T } | { readonly timedOut: true };

async function raceDeadline<T>(promise: Promise<T>, timeoutMs: number): Promise<Raced<T>> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Raced<T>>((resolve) => {
    timer = setTimeout(() => resolve({ timedOut: true }), timeoutMs);
  });
  try {
    return await Promise.race([promise.then((value): Raced<T> => ({ timedOut: false, value })), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * True when the failed acquisition met the lock of another owner; false when it failed for want
 * of servers. Any "locked" vote counts as held, even when the rest of the quorum was unreachable:
 * the owner may hold a quorum we cannot see, and reporting "unavailable" would let a pass-through
 * configuration forward a duplicate. (The library also reports the votes as promises of
 * ExecutionStats on the error, but those settle only once every server has answered, so a paused
 * server would turn "held" into a timeout; the events are there as soon as the quorum is.)
 * A "locked" vote can only come from a server holding another value: on the servers that voted
 * for us, the library's clean-up release succeeds.
 */
function heldByAnother(votesAgainst: readonly Error[]): boolean {
  return votesAgainst.some((vote) => vote instanceof ResourceLockedError);
}

function wholeMilliseconds(ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new TypeError(`lock TTL must be a positive number of ms (got ${String(ms)})`);
  return Math.ceil(ms);
}

/** The database every client uses (Redlock takes one); a Cluster has only database 0. */
function commonDatabase(clients: readonly RedisClient[]): number {
  const databases = new Set(clients.map((client) => (client instanceof Cluster ? 0 : Number(client.options.db ?? 0))));
  if (databases.size !== 1) {
    throw new TypeError(`the Redlock servers must all use one database (got ${[...databases].join(', ')})`);
  }
  return [...databases][0] ?? 0;
}

/** Resolves when a quorum of the clients is ready, or after `timeoutMs` (the attempt then fails by itself). */
async function quorumReady(clients: readonly RedisClient[], timeoutMs: number): Promise<void> {
  const quorum = Math.floor(clients.length / 2) + 1;
  const ready = (): number => clients.filter((client) => client.status === 'ready').length;
  if (ready() >= quorum) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      for (const client of clients) client.off('ready', check);
      resolve();
    };
    const check = (): void => {
      if (ready() >= quorum) done();
    };
    const timer = setTimeout(done, timeoutMs);
    for (const client of clients) client.on('ready', check);
  });
}
