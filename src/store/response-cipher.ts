/**
 * Encryption at rest of a stored response: AES-256-GCM (node:crypto), a fresh random 96-bit IV
 * per record, and the id of the key that sealed it stored with it, so a reader finds the key again
 * after a rotation.
 *
 * A sealed response is still a StoredResponse, so that every store keeps it unchanged:
 *
 *   status   in the clear: the admin API lists it without decrypting, and it is not customer data;
 *            it is bound into the authenticated data, so changing it breaks decryption
 *   headers  one pseudo-header [':encrypted', <key id>]: a name no HTTP response can carry (a
 *            field name is a token, which has no ':'), so a sealed record is never mistaken for a
 *            plain one, nor a plain one for sealed
 *   body     version (1 byte) | IV (12) | GCM tag (16) | ciphertext of the headers and the body
 *
 * The authenticated data binds the ciphertext to its record: the format version, the key id, the
 * status, the tenant and the idempotency key. A sealed value copied under another tenant or key,
 * or given another key id or status, fails to decrypt instead of being replayed.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { HeaderPair, RecordScope, StoredResponse } from '../engine/record';

/** AES-256. */
export const KEY_BYTES = 32;

export interface EncryptionKey {
  /** Stored with every record it encrypts: how a reader finds the key again after a rotation. */
  readonly id: string;
  /** KEY_BYTES bytes. */
  readonly key: Buffer;
}

export const SEALED_HEADER = ':encrypted';

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;
/** The plaintext starts with the length of the headers' JSON, then the JSON, then the body. */
const LENGTH_BYTES = 4;

export type OpenResult =
  | { readonly ok: true; readonly response: StoredResponse }
  | { readonly ok: false; readonly keyId: string; readonly reason: 'unknown-key' | 'corrupt' };

/** Whether a stored response is sealed, and by which key id. */
export function sealedKeyId(stored: StoredResponse): string | undefined {
  const [first] = stored.headers;
  return stored.headers.length === 1 && first !== undefined && first[0] === SEALED_HEADER ? first[1] : undefined;
}

export class ResponseCipher {
  private readonly encrypting: EncryptionKey;
  private readonly byId: ReadonlyMap<string, Buffer>;

  /** `keys[0]` seals; every key opens. */
  constructor(keys: readonly EncryptionKey[]) {
    const [first] = keys;
    if (first === undefined) throw new TypeError('keys must hold at least one key');
    const byId = new Map<string, Buffer>();
    for (const { id, key } of keys) {
      if (key.length !== KEY_BYTES) throw new TypeError(`key ${id} must be ${KEY_BYTES} bytes (got ${key.length})`);
      if (byId.has(id)) throw new TypeError(`key id ${id} is given twice`);
      byId.set(id, key);
    }
    this.encrypting = first;
    this.byId = byId;
  }

  get keyId(): string {
    return this.encrypting.id;
  }

  seal(scope: RecordScope, response: StoredResponse): StoredResponse {
    const { id, key } = this.encrypting;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(associatedData(VERSION, id, response.status, scope));
    const headers = Buffer.from(JSON.stringify(response.headers), 'utf8');
    const length = Buffer.alloc(LENGTH_BYTES);
    length.writeUInt32BE(headers.length);
    const parts = [cipher.update(length), cipher.update(headers), cipher.update(response.body), cipher.final()];
    // One copy of the body into the envelope: the tag is known once final() has run.
    const body = Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ...parts]);
    return { status: response.status, headers: [[SEALED_HEADER, id]], body };
  }

  /** The response a sealed one holds; `stored` must be sealed (see sealedKeyId). */
  open(scope: RecordScope, stored: StoredResponse): OpenResult {
    const keyId = sealedKeyId(stored) ?? '';
    const key = this.byId.get(keyId);
    if (key === undefined) return { ok: false, keyId, reason: 'unknown-key' };
    const corrupt = { ok: false, keyId, reason: 'corrupt' } as const;
    const envelope = stored.body;
    if (envelope.length < HEADER_BYTES || envelope[0] !== VERSION) return corrupt;
    const iv = envelope.subarray(1, 1 + IV_BYTES);
    const tag = envelope.subarray(1 + IV_BYTES, HEADER_BYTES);
    let plaintext: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(associatedData(VERSION, keyId, stored.status, scope));
      decipher.setAuthTag(tag);
      plaintext = Buffer.concat([decipher.update(envelope.subarray(HEADER_BYTES)), decipher.final()]);
    } catch {
      // final() throws when the tag does not authenticate the ciphertext, IV and associated data.
      return corrupt;
    }
    // Authenticated, so written by this format: a bad layout now would be a bug, still refused.
    if (plaintext.length < LENGTH_BYTES) return corrupt;
    const headersEnd = LENGTH_BYTES + plaintext.readUInt32BE(0);
    if (headersEnd > plaintext.length) return corrupt;
    const headers = parseHeaders(plaintext.subarray(LENGTH_BYTES, headersEnd).toString('utf8'));
    if (headers === undefined) return corrupt;
    return { ok: true, response: { status: stored.status, headers, body: plaintext.subarray(headersEnd) } };
  }
}

/** JSON of a fixed-shape array: unambiguous whatever the tenant or key contain. */
function associatedData(version: number, keyId: string, status: number, scope: RecordScope): Buffer {
  return Buffer.from(JSON.stringify(['idempotency-sidecar', version, keyId, status, scope.tenant, scope.key]), 'utf8');
}

function parseHeaders(json: string): HeaderPair[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  const isPair = (pair: unknown): pair is HeaderPair =>
    Array.isArray(pair) && pair.length === 2 && typeof pair[0] === 'string' && typeof pair[1] === 'string';
  return Array.isArray(parsed) && parsed.every(isPair) ? parsed : undefined;
}
