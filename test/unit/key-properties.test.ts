/**
 * Property-based tests of key parsing (fast-check): whatever a client puts in the header, the
 * parser answers without throwing, accepts exactly the keys the contract allows (section 3), and
 * reads the structured-field form as the bare form.
 */
import fc from 'fast-check';
import { MAX_KEY_LENGTH, parseIdempotencyKey } from '../../src/engine/key';

const RUNS = { numRuns: 2_000 };

/** Visible ASCII, 0x21 to 0x7E: the characters a key is made of. */
const visibleChar = fc.integer({ min: 0x21, max: 0x7e }).map((code) => String.fromCharCode(code));
const validKey = fc.array(visibleChar, { minLength: 1, maxLength: MAX_KEY_LENGTH }).map((chars) => chars.join(''));
/** Characters a header value can carry once Node has decoded it (latin1), plus any UTF-16 unit. */
const anyChar = fc.oneof(
  fc.integer({ min: 0, max: 0xff }).map((code) => String.fromCharCode(code)),
  fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)),
  fc.constantFrom('"', '\\', ' ', '\t'),
);
const anyValue = fc.oneof(
  fc.array(anyChar, { maxLength: 300 }).map((chars) => chars.join('')),
  fc.string({ unit: 'binary', maxLength: 300 }),
  validKey.map((key) => `"${key}"`),
);
const ows = fc.array(fc.constantFrom(' ', '\t'), { maxLength: 4 }).map((chars) => chars.join(''));

/** The sf-string form of a key: quotes around it, `"` and `\` escaped (RFC 8941 4.1.6). */
function quoted(key: string): string {
  return `"${key.replace(/[\\"]/g, (char) => `\\${char}`)}"`;
}

/** An oracle written from the contract's words, independent of the parser's code. */
function contractKey(value: string): string | undefined {
  const trimmed = value.replace(/^[ \t]*/, '').split('').reverse().join('').replace(/^[ \t]*/, '').split('').reverse().join('');
  let key = trimmed;
  if (trimmed.startsWith('"')) {
    const match = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/.exec(trimmed);
    if (match === null) return undefined;
    key = (match[1] as string).replace(/\\(["\\])/g, '$1');
  }
  return /^[\x21-\x7e]{1,255}$/.test(key) ? key : undefined;
}

describe('parseIdempotencyKey, for any input', () => {
  test('never throws, and a key it accepts is 1 to 255 visible ASCII characters', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        const result = parseIdempotencyKey(value);
        if (result.ok) expect(result.key).toMatch(/^[\x21-\x7e]{1,255}$/);
        else expect(result.reason.length).toBeGreaterThan(0);
      }),
      RUNS,
    );
  });

  test('accepts exactly the keys the contract allows, as the contract reads them', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        const expected = contractKey(value);
        const result = parseIdempotencyKey(value);
        expect(result.ok ? result.key : undefined).toBe(expected);
      }),
      RUNS,
    );
  });

  test('every valid bare key is accepted as itself, with or without surrounding whitespace', () => {
    fc.assert(
      fc.property(validKey.filter((key) => !key.startsWith('"')), ows, ows, (key, before, after) => {
        expect(parseIdempotencyKey(before + key + after)).toEqual({ ok: true, key });
      }),
      RUNS,
    );
  });

  test('the quoted structured-field form parses to the same key as the bare form', () => {
    fc.assert(
      fc.property(validKey, (key) => {
        expect(parseIdempotencyKey(quoted(key))).toEqual({ ok: true, key });
        if (!key.startsWith('"')) expect(parseIdempotencyKey(quoted(key))).toEqual(parseIdempotencyKey(key));
      }),
      RUNS,
    );
  });

  test('one odd character anywhere in a key (control, DEL, obs-text, Unicode space) makes it malformed', () => {
    const odd = fc.oneof(
      fc.integer({ min: 0x00, max: 0x1f }),
      fc.constant(0x7f),
      fc.integer({ min: 0x80, max: 0xff }),
      fc.constantFrom(0x2028, 0xfeff, 0x3000),
    ).map((code) => String.fromCharCode(code));
    fc.assert(
      fc.property(validKey.filter((key) => key.length < MAX_KEY_LENGTH && !key.startsWith('"')), odd, fc.nat(), (key, char, at) => {
        const position = at % (key.length + 1);
        const value = key.slice(0, position) + char + key.slice(position);
        // Whitespace at either end is optional whitespace, not part of the key.
        fc.pre(!(char === '\t' && (position === 0 || position === key.length)));
        expect(parseIdempotencyKey(value).ok).toBe(false);
        expect(parseIdempotencyKey(quoted(value)).ok).toBe(false);
      }),
      RUNS,
    );
  });

  test('a key longer than 255 characters is malformed, bare or quoted', () => {
    fc.assert(
      fc.property(fc.array(visibleChar, { minLength: MAX_KEY_LENGTH + 1, maxLength: 2_000 }).map((c) => c.join('')), (key) => {
        expect(parseIdempotencyKey(key).ok).toBe(false);
        expect(parseIdempotencyKey(quoted(key)).ok).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  test('a long run of whitespace is handled in linear time (no backtracking trim)', () => {
    const value = `${' '.repeat(1_000_000)}x${' '.repeat(1_000_000)}y`;
    expect(parseIdempotencyKey(value).ok).toBe(false);
  });
});
