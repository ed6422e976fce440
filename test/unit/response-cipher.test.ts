/**
 * The response cipher: a sealed response opens to the same bytes, and any change to what it is
 * bound to (ciphertext, tag, IV, key id, status, tenant, key) makes it refuse instead of returning
 * garbage. Rotation: a record sealed with the old key opens once a new key is put first.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type { EncryptionKey } from '../../src/config/encryption-keys';
import type { RecordScope, StoredResponse } from '../../src/engine/record';
import { ResponseCipher, SEALED_HEADER, sealedKeyId } from '../../src/store/response-cipher';

const OLD: EncryptionKey = { id: 'k-old', key: randomBytes(32) };
const NEW: EncryptionKey = { id: 'k-new', key: randomBytes(32) };
const SCOPE: RecordScope = { tenant: 'tenant-a', key: 'order-42' };
const CARD = '4111111111111111';

function response(): StoredResponse {
  return {
    status: 201,
    headers: [
      ['content-type', 'application/json'],
      ['x-card-last4', '1111'],
    ],
    body: Buffer.from(JSON.stringify({ id: 'pay_1', card: CARD })),
  };
}

/** A copy of `sealed` with one byte of the body flipped at `offset`. */
function flipped(sealed: StoredResponse, offset: number): StoredResponse {
  const body = Buffer.from(sealed.body);
  body[offset] = (body[offset] ?? 0) ^ 0x01;
  return { ...sealed, body };
}

describe('ResponseCipher', () => {
  const cipher = new ResponseCipher([OLD]);

  test('round trip: the opened response equals the sealed one, and nothing of it is in the clear but the status', () => {
    const original = response();
    const sealed = cipher.seal(SCOPE, original);
    expect(sealed.status).toBe(201);
    expect(sealed.headers).toEqual([[SEALED_HEADER, 'k-old']]);
    expect(sealedKeyId(sealed)).toBe('k-old');
    expect(sealed.body.includes(CARD)).toBe(false);
    expect(sealed.body.includes('x-card-last4')).toBe(false);
    expect(sealed.body.includes('application/json')).toBe(false);
    expect(cipher.open(SCOPE, sealed)).toEqual({ ok: true, response: original });
  });

  test('round trip of any headers and body bytes, for any scope', () => {
    const header = fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ maxLength: 40 }));
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.array(header, { maxLength: 8 }),
        fc.uint8Array({ maxLength: 2048 }),
        fc.string({ minLength: 1, maxLength: 64 }),
        fc.string({ minLength: 1, maxLength: 255 }),
        (status, headers, body, tenant, key) => {
          const original: StoredResponse = { status, headers, body: Buffer.from(body) };
          const opened = cipher.open({ tenant, key }, cipher.seal({ tenant, key }, original));
          expect(opened.ok).toBe(true);
          if (opened.ok) {
            expect(opened.response.status).toBe(status);
            expect(opened.response.headers).toEqual(headers);
            expect(Buffer.compare(opened.response.body, original.body)).toBe(0);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test('an empty body and no headers round trip', () => {
    const empty: StoredResponse = { status: 204, headers: [], body: Buffer.alloc(0) };
    expect(cipher.open(SCOPE, cipher.seal(SCOPE, empty))).toEqual({ ok: true, response: empty });
  });

  test('every record gets a fresh IV: the same response seals to different bytes', () => {
    const ivs = new Set(Array.from({ length: 50 }, () => cipher.seal(SCOPE, response()).body.subarray(1, 13).toString('hex')));
    expect(ivs.size).toBe(50);
  });

  // Layout of the sealed body: version (1) | IV (12) | tag (16) | ciphertext.
  test.each([
    ['the version byte', 0],
    ['the IV', 1],
    ['the last IV byte', 12],
    ['the tag', 13],
    ['the last tag byte', 28],
    ['the ciphertext', 29],
    ['the last ciphertext byte', -1],
  ])('a flipped bit in %s is refused as corrupt', (_part, offset) => {
    const sealed = cipher.seal(SCOPE, response());
    const at = offset < 0 ? sealed.body.length + offset : offset;
    expect(cipher.open(SCOPE, flipped(sealed, at))).toEqual({ ok: false, keyId: 'k-old', reason: 'corrupt' });
  });

  test('a truncated or emptied body is refused as corrupt', () => {
    const sealed = cipher.seal(SCOPE, response());
    expect(cipher.open(SCOPE, { ...sealed, body: sealed.body.subarray(0, sealed.body.length - 1) })).toMatchObject({ ok: false, reason: 'corrupt' });
    expect(cipher.open(SCOPE, { ...sealed, body: sealed.body.subarray(0, 20) })).toMatchObject({ ok: false, reason: 'corrupt' });
    expect(cipher.open(SCOPE, { ...sealed, body: Buffer.alloc(0) })).toMatchObject({ ok: false, reason: 'corrupt' });
  });

  test('a changed status (kept in the clear, but authenticated) is refused', () => {
    const sealed = cipher.seal(SCOPE, response());
    expect(cipher.open(SCOPE, { ...sealed, status: 200 })).toMatchObject({ ok: false, reason: 'corrupt' });
  });

  test('a key id changed to another configured key is refused as corrupt; to an unconfigured one, as unknown', () => {
    const both = new ResponseCipher([OLD, NEW]);
    const sealed = both.seal(SCOPE, response());
    expect(both.open(SCOPE, { ...sealed, headers: [[SEALED_HEADER, 'k-new']] })).toEqual({ ok: false, keyId: 'k-new', reason: 'corrupt' });
    expect(both.open(SCOPE, { ...sealed, headers: [[SEALED_HEADER, 'k-gone']] })).toEqual({ ok: false, keyId: 'k-gone', reason: 'unknown-key' });
  });

  test('the same id holding another key is refused as corrupt', () => {
    const sealed = cipher.seal(SCOPE, response());
    const impostor = new ResponseCipher([{ id: 'k-old', key: randomBytes(32) }]);
    expect(impostor.open(SCOPE, sealed)).toEqual({ ok: false, keyId: 'k-old', reason: 'corrupt' });
  });

  test.each([
    ['another tenant', { tenant: 'tenant-b', key: SCOPE.key }],
    ['another key', { tenant: SCOPE.tenant, key: 'order-43' }],
    ['tenant and key run together differently', { tenant: 'tenant-ao', key: 'rder-42' }],
  ])('a sealed response copied to %s is refused', (_name, other) => {
    const sealed = cipher.seal(SCOPE, response());
    expect(cipher.open(other, sealed)).toMatchObject({ ok: false, reason: 'corrupt' });
  });

  test('rotation: a record sealed with the old key opens once the new key is first, and new records use the new key', () => {
    const sealedOld = cipher.seal(SCOPE, response());
    const rotated = new ResponseCipher([NEW, OLD]);
    expect(rotated.keyId).toBe('k-new');
    expect(rotated.open(SCOPE, sealedOld)).toEqual({ ok: true, response: response() });
    const sealedNew = rotated.seal(SCOPE, response());
    expect(sealedKeyId(sealedNew)).toBe('k-new');
    // The old key alone cannot open what the new key sealed; the new key alone no longer opens the old record.
    expect(cipher.open(SCOPE, sealedNew)).toEqual({ ok: false, keyId: 'k-new', reason: 'unknown-key' });
    expect(new ResponseCipher([NEW]).open(SCOPE, sealedOld)).toEqual({ ok: false, keyId: 'k-old', reason: 'unknown-key' });
  });

  test('a plain response is not taken for a sealed one', () => {
    expect(sealedKeyId(response())).toBeUndefined();
    expect(sealedKeyId({ status: 200, headers: [], body: Buffer.alloc(0) })).toBeUndefined();
    expect(sealedKeyId({ status: 200, headers: [[SEALED_HEADER, 'k'], ['a', 'b']], body: Buffer.alloc(0) })).toBeUndefined();
  });

  test('bad keys are refused when the cipher is built', () => {
    expect(() => new ResponseCipher([])).toThrow(TypeError);
    expect(() => new ResponseCipher([{ id: 'short', key: randomBytes(16) }])).toThrow(/32 bytes/);
    expect(() => new ResponseCipher([OLD, { id: 'k-old', key: randomBytes(32) }])).toThrow(/twice/);
  });
});
