import { parseIdempotencyKey, MAX_KEY_LENGTH } from '../../src/engine/key';

describe('parseIdempotencyKey', () => {
  test.each([
    ['abc', 'abc'],
    ['8e03978e-40d5-43e8-bc93-6894a57f9324', '8e03978e-40d5-43e8-bc93-6894a57f9324'],
    ['"abc"', 'abc'],
    ['"a\\"b"', 'a"b'],
    ['"a\\\\b"', 'a\\b'],
    ['  padded  ', 'padded'],
    ['!~', '!~'],
    ['k'.repeat(MAX_KEY_LENGTH), 'k'.repeat(MAX_KEY_LENGTH)],
  ])('accepts %j as %j', (header, key) => {
    expect(parseIdempotencyKey(header)).toEqual({ ok: true, key });
  });

  test.each([
    ['', /empty/],
    ['""', /empty/],
    ['k'.repeat(MAX_KEY_LENGTH + 1), /256 characters/],
    ['a b', /visible ASCII/],
    ['"a b"', /visible ASCII/],
    ['clé', /visible ASCII/],
    ['tab\there', /visible ASCII/],
    ['"abc', /no closing quote/],
    ['"abc";p=1', /after the closing quote/],
    ['"a\\nb"', /only escape/],
    ['"caf\u00e9"', /printable ASCII/],
  ])('rejects %j', (header, reason) => {
    const result = parseIdempotencyKey(header);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });
});
