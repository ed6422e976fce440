/**
 * The keys that encrypt stored responses, as an operator writes them: `id:base64` pairs, the first
 * one encrypting new records and every one decrypting (so a key can rotate: put the new key first
 * and keep the old one until the records it wrote have expired). Parsed in one place for the
 * environment variable and the key file, with messages that never echo a key.
 */

import { KEY_BYTES, type EncryptionKey } from '../store/response-cipher';

export type { EncryptionKey };

export type ParsedKeys = { readonly ok: true; readonly keys: readonly EncryptionKey[] } | { readonly ok: false; readonly problem: string };

const KEY_ID = /^[A-Za-z0-9._-]{1,32}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$|^[A-Za-z0-9_-]+$/;

/**
 * `separator` is ',' for the variable and '\n' for the file (where blank lines and lines starting
 * with # are skipped).
 */
export function parseEncryptionKeys(text: string, separator: ',' | '\n'): ParsedKeys {
  const entries = text
    .split(separator)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '' && !(separator === '\n' && entry.startsWith('#')));
  if (entries.length === 0) return { ok: false, problem: 'holds no key; give id:base64-of-32-random-bytes, e.g. k1:$(openssl rand -base64 32)' };
  const keys: EncryptionKey[] = [];
  for (const [i, entry] of entries.entries()) {
    const where = `key ${i + 1}`;
    const colon = entry.indexOf(':');
    if (colon === -1) return { ok: false, problem: `${where} has no id; write id:base64, e.g. k1:$(openssl rand -base64 32)` };
    const id = entry.slice(0, colon);
    const encoded = entry.slice(colon + 1);
    if (!KEY_ID.test(id)) return { ok: false, problem: `${where} has an id that is not 1 to 32 of A-Z a-z 0-9 . _ -` };
    if (keys.some((key) => key.id === id)) return { ok: false, problem: `${where} reuses the id ${id}; every key needs its own id` };
    const key = BASE64.test(encoded) ? Buffer.from(encoded, encoded.includes('-') || encoded.includes('_') ? 'base64url' : 'base64') : undefined;
    if (key?.length !== KEY_BYTES) {
      return { ok: false, problem: `${where} (id ${id}) is not base64 of exactly ${KEY_BYTES} bytes; make one with openssl rand -base64 32` };
    }
    keys.push({ id, key });
  }
  return { ok: true, keys };
}

export type KeySetting = 'IDEMPOTENCY_ENCRYPTION_KEYS' | 'IDEMPOTENCY_ENCRYPTION_KEYS_FILE';

export interface ConfiguredKeys {
  /** Empty when encryption is off. */
  readonly keys: readonly EncryptionKey[];
  /** Where the keys came from: the setting an operator must fix when a record names a missing key. */
  readonly setting: KeySetting;
}
