/**
 * Idempotency-Key parsing (draft-ietf-httpapi-idempotency-key-header): the header is a
 * structured-field string (`"abc"`), and many clients send the bare value (`abc`). Both are
 * accepted; either way the key is 1 to 255 characters of visible ASCII (0x21 to 0x7E).
 */

/** What looking for a request's key found: none, a valid key, or one to refuse with a reason. */
export type KeyLookup =
  | { readonly kind: 'absent' }
  | { readonly kind: 'present'; readonly key: string }
  | { readonly kind: 'invalid'; readonly reason: string };

export const MAX_KEY_LENGTH = 255;

export type KeyParseResult =
  | { readonly ok: true; readonly key: string }
  | { readonly ok: false; readonly reason: string };

const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

export function parseIdempotencyKey(headerValue: string): KeyParseResult {
  // Only optional whitespace (SP, HTAB) surrounds a field value. String.trim would also strip
  // NBSP (0xA0, obs-text) and other Unicode spaces, turning a key with an odd byte into another key.
  const raw = trimOws(headerValue);
  const unquoted = raw.startsWith('"') ? parseStructuredFieldString(raw) : { ok: true as const, key: raw };
  if (!unquoted.ok) return unquoted;
  return validateKey(unquoted.key);
}

/** Strips SP and HTAB at both ends; a loop, since a regex anchored at the end backtracks quadratically. */
function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isOws(value.charCodeAt(start))) start++;
  while (end > start && isOws(value.charCodeAt(end - 1))) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

export function validateKey(key: string): KeyParseResult {
  if (key.length === 0) return { ok: false, reason: 'the key is empty' };
  if (key.length > MAX_KEY_LENGTH) {
    return { ok: false, reason: `the key is ${key.length} characters long; at most ${MAX_KEY_LENGTH} are allowed` };
  }
  if (!VISIBLE_ASCII.test(key)) {
    return { ok: false, reason: 'the key may hold only visible ASCII characters (0x21 to 0x7E)' };
  }
  return { ok: true, key };
}

/** RFC 8941 section 4.2.5: a quoted string where only `\"` and `\\` are escapes. */
function parseStructuredFieldString(raw: string): KeyParseResult {
  let key = '';
  for (let i = 1; i < raw.length; i++) {
    const char = raw[i] as string;
    const code = char.charCodeAt(0);
    if (char === '\\') {
      const next = raw[i + 1];
      if (next !== '"' && next !== '\\') {
        return { ok: false, reason: 'a structured-field string may only escape " and \\' };
      }
      key += next;
      i++;
    } else if (char === '"') {
      if (i !== raw.length - 1) {
        // Parameters (`"abc";p=1`) or trailing garbage: the draft defines the key as a bare string.
        return { ok: false, reason: 'unexpected characters after the closing quote' };
      }
      return { ok: true, key };
    } else if (code < 0x20 || code > 0x7e) {
      return { ok: false, reason: 'a structured-field string holds only printable ASCII' };
    } else {
      key += char;
    }
  }
  return { ok: false, reason: 'the structured-field string has no closing quote' };
}
