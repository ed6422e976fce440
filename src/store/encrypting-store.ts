/**
 * A RecordStore decorator that encrypts stored responses at rest (response-cipher.ts): it seals
 * the response on complete and opens what read and claim return, so both stores get it and the
 * Redis round trips stay what they were (the cipher runs in process, before and after them).
 *
 * Only the response is sealed. The state, fingerprint (a hash), token, times and status stay in
 * the clear: the scripts and the admin API read them, and none is customer data.
 *
 * A record that cannot be opened (its key id is not configured, or it fails authentication)
 * throws RecordUnreadableError: never replayed as ciphertext, never run again. The same happens
 * with no keys configured at all (encryption turned off while sealed records live), which is why
 * the composition root always wraps the store, keys or not: without keys, responses are written
 * in the clear and only the check remains. Records written in the clear before encryption was
 * turned on are replayed as they are, so turning it on loses no record.
 */
import type { ClaimRequest, ClaimResult, ReadOptions, RecordStore, RecordWatch } from '../engine/ports';
import type { FoundRecord, IdempotencyRecord, RecordScope, StoredResponse, TenantRecord } from '../engine/record';
import { RecordUnreadableError } from '../errors';
import { type ResponseCipher, sealedKeyId } from './response-cipher';

export interface EncryptingStoreOptions {
  /** Absent: no keys are configured; responses are stored in the clear. */
  readonly cipher?: ResponseCipher;
  /** The setting the keys came from, named in the operator's message when a record is unreadable. */
  readonly keySetting: string;
}

export class EncryptingRecordStore implements RecordStore {
  constructor(
    private readonly inner: RecordStore,
    private readonly options: EncryptingStoreOptions,
  ) {}

  async read(scope: RecordScope, options?: ReadOptions): Promise<IdempotencyRecord | null> {
    const record = await this.inner.read(scope, options);
    return record === null ? null : this.open(scope, record);
  }

  async claim(scope: RecordScope, request: ClaimRequest): Promise<ClaimResult> {
    const result = await this.inner.claim(scope, request);
    return result.claimed ? result : { claimed: false, record: this.open(scope, result.record) };
  }

  renew(scope: RecordScope, token: string, leaseMs: number): Promise<boolean> {
    return this.inner.renew(scope, token, leaseMs);
  }

  complete(scope: RecordScope, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
    const { cipher } = this.options;
    return this.inner.complete(scope, token, cipher ? cipher.seal(scope, response) : response, ttlMs);
  }

  markUnknown(scope: RecordScope, token: string): Promise<boolean> {
    return this.inner.markUnknown(scope, token);
  }

  release(scope: RecordScope, token: string): Promise<boolean> {
    return this.inner.release(scope, token);
  }

  /**
   * The admin API shows the status and never a body, so nothing is decrypted here: a sealed
   * response is listed with its (clear) status and empty headers and body. An operator can then
   * list, and delete, records whose key is gone.
   */
  async listByKey(key: string): Promise<TenantRecord[]> {
    const records = await this.inner.listByKey(key);
    return records.map((record) =>
      record.response !== undefined && sealedKeyId(record.response) !== undefined
        ? { ...record, response: { status: record.response.status, headers: [], body: Buffer.alloc(0) } }
        : record,
    );
  }

  remove(scope: RecordScope): Promise<boolean> {
    return this.inner.remove(scope);
  }

  watch(scope: RecordScope): Promise<RecordWatch> {
    return this.inner.watch(scope);
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private open<T extends FoundRecord>(scope: RecordScope, record: T): T {
    const stored = record.response;
    if (stored === undefined) return record;
    const keyId = sealedKeyId(stored);
    if (keyId === undefined) return record;
    const { cipher, keySetting } = this.options;
    if (cipher === undefined) {
      throw new RecordUnreadableError(
        `stored response was encrypted with key id ${keyId}, but no encryption key is configured: set IDEMPOTENCY_ENCRYPTION_KEYS (or IDEMPOTENCY_ENCRYPTION_KEYS_FILE) with key ${keyId} among the keys`,
        { keyId, reason: 'unknown-key', fingerprint: record.fingerprint },
      );
    }
    const opened = cipher.open(scope, stored);
    if (opened.ok) return { ...record, response: opened.response };
    if (opened.reason === 'unknown-key') {
      throw new RecordUnreadableError(
        `stored response was encrypted with key id ${keyId}, which ${keySetting} does not hold: add ${keyId}:<its base64> back after the first key, and keep it until the records it encrypted have expired`,
        { keyId, reason: 'unknown-key', fingerprint: record.fingerprint },
      );
    }
    throw new RecordUnreadableError(
      `stored response encrypted with key id ${keyId} failed authentication: it was altered in the store or copied from another record, or ${keySetting} holds a different key under the id ${keyId}; the key stays refused until its TTL ends or an operator deletes the record (DELETE /keys/{key}?tenant=ID)`,
      { keyId, reason: 'corrupt', fingerprint: record.fingerprint },
    );
  }
}
