/**
 * Every Redis key name the sidecar uses, built here and nowhere else.
 *
 * Layout (every name starts with `idem:`):
 *
 *   idem:{<keyhash>}:r:<tenant>   string      the record of (tenant, key) (record-value.ts)
 *   idem:{<keyhash>}:l:<tenant>   string      the Redlock lock of (tenant, key)
 *   idem:{<keyhash>}:c:<tenant>   channel     pub/sub: the scripts that settle the record of
 *                                             (tenant, key) publish on it (RecordStore.watch)
 *
 * There is no index of the tenants that hold a record of a key: keeping one cost a first-time
 * request six of its Redis commands, for the sake of the admin API. The admin lookup of a key
 * instead SCANs for `idem:{<keyhash>}:r:*` (recordPattern), which costs Redis a walk of its
 * keyspace per lookup, in small steps, and a payment nothing. (Earlier versions kept a sorted
 * set at `idem:{<keyhash>}:t`; left alone, it expires by itself.)
 *
 * The hash tag `{<keyhash>}` is derived from the client's key alone, so that every tenant's record
 * of one key and its lock live in one Redis Cluster slot. It is a hash, not the key itself, because a key may contain `{`
 * and `}`, which would move or split the tag, and because a hash bounds the key name's length.
 * The tenant (itself a hash of the tenant headers) follows the tag, so it cannot change the slot
 * whatever it contains.
 */
import { hash } from 'node:crypto';
import type { RecordScope } from '../engine/record';

/** What every name starts with. It has no glob character, so SCAN patterns need no escaping. */
export const KEY_PREFIX = 'idem:';

/**
 * The slot tag of a client key: SHA-256, base64url (43 characters, never a brace). The tag is
 * also the key's identity in every name, so it keeps all 256 bits: two keys must never share a
 * record.
 */
export function keyTag(key: string): string {
  // One-shot crypto.hash: no Hash object per call (a visible share of a request's CPU in the profile).
  return hash('sha256', key, 'base64url');
}

/** The record of (tenant, key). */
export function recordKey(scope: RecordScope): string {
  return recordNames(scope).record;
}

/** The lock resource of (tenant, key), passed to LockProvider.acquire. */
export function lockResource(scope: RecordScope): string {
  return `${KEY_PREFIX}{${keyTag(scope.key)}}:l:${scope.tenant}`;
}

/**
 * The pub/sub channel on which the record of (tenant, key) announces that it settled. It has the
 * record's hash tag too, though classic PUBLISH ignores slots (see redis-watch.ts): a move to
 * sharded pub/sub (SPUBLISH, which must stay in the record's slot) would need no new name.
 */
export function channelName(scope: RecordScope): string {
  return recordNames(scope).channel;
}

/**
 * The SCAN pattern that matches the records of every tenant under this key, and the length of
 * what precedes the tenant in each name. Neither the prefix nor the tag (base64url) has a glob
 * character to escape.
 */
export function recordPattern(key: string): { readonly pattern: string; readonly tenantAt: number } {
  const head = `${KEY_PREFIX}{${keyTag(key)}}:r:`;
  return { pattern: `${head}*`, tenantAt: head.length };
}

/** Every name a transition of one record needs. */
export interface RecordNames {
  readonly record: string;
  readonly channel: string;
}

/**
 * Names already worked out, per scope object: a request's claim and its completion (and any
 * renewal) pass the same scope, so its key is hashed once, and the entry goes with the request.
 */
const namesOf = new WeakMap<RecordScope, RecordNames>();

/**
 * The record and channel names at once, hashing the key once: a script call needs both, and a
 * SHA-256 digest per name was a visible share of a request's CPU.
 */
export function recordNames(scope: RecordScope): RecordNames {
  let names = namesOf.get(scope);
  if (names === undefined) {
    const base = `${KEY_PREFIX}{${keyTag(scope.key)}}:`;
    names = { record: `${base}r:${scope.tenant}`, channel: `${base}c:${scope.tenant}` };
    namesOf.set(scope, names);
  }
  return names;
}
