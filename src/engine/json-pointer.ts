/**
 * RFC 6901 JSON pointer, for routes that take the key from a body field (`/order_id`,
 * `/payment/reference`, `/items/0/id`).
 */
import type { KeyLookup } from './key';

export function resolvePointer(document: unknown, pointer: string): unknown {
  if (pointer === '') return document;
  if (!pointer.startsWith('/')) return undefined;
  let current: unknown = document;
  for (const rawToken of pointer.slice(1).split('/')) {
    const token = rawToken.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(current)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token)) return undefined;
      current = current[Number(token)];
    } else if (current !== null && typeof current === 'object') {
      if (!Object.prototype.hasOwnProperty.call(current, token)) return undefined;
      current = (current as Record<string, unknown>)[token];
    } else {
      return undefined;
    }
  }
  return current;
}

const ABSENT: KeyLookup = { kind: 'absent' };

/**
 * The key a JSON body holds at `pointer`:
 * - a string: the key as is (validated by the caller like a header's);
 * - a whole number up to 2^53 - 1: its decimal spelling;
 * - no key (the route's no-key rule applies): a body that is not JSON (binary, form data, empty),
 *   a document where the pointer leads nowhere (a JSON array or scalar at the top, a missing
 *   field), or `null`;
 * - invalid (400): an object, an array, a boolean, or any other number. A number that is not a
 *   safe integer cannot be spelled back exactly (12345678901234567891 reads as
 *   12345678901234567000), so two different orders would share one key and the second would get
 *   the first one's response; such a key must be sent as a string.
 */
export function keyFromJsonBody(body: Buffer, pointer: string): KeyLookup {
  let document: unknown;
  try {
    // V8's JSON.parse is not recursive, so deep nesting within the body limit cannot overflow the stack.
    document = JSON.parse(body.toString('utf8'));
  } catch {
    return ABSENT;
  }
  const value = resolvePointer(document, pointer);
  if (value === undefined || value === null) return ABSENT;
  if (typeof value === 'string') return { kind: 'present', key: value };
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) return { kind: 'present', key: String(value) };
    return { kind: 'invalid', reason: 'the field is a number that is not a whole number up to 2^53 - 1, so it cannot be used exactly; send it as a string' };
  }
  const what = Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
  return { kind: 'invalid', reason: `the field holds ${what}, not a string or a whole number` };
}
