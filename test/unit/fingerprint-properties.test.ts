/**
 * Property-based tests of the request fingerprint (fast-check): deterministic, blind to how the
 * body arrives in chunks, and different whenever the method, the target or the body differs.
 */
import fc from 'fast-check';
import { FingerprintBuilder, fingerprint } from '../../src/engine/fingerprint';

const RUNS = { numRuns: 1_000 };
const method = fc.oneof(fc.constantFrom('POST', 'PATCH', 'PUT', 'DELETE'), fc.string({ minLength: 1, maxLength: 12 }));
const target = fc.oneof(fc.webPath().map((path) => path || '/'), fc.string({ unit: 'binary', maxLength: 200 }));
const body = fc.uint8Array({ maxLength: 4_096 }).map((bytes) => Buffer.from(bytes));

/** The body cut at the given offsets (sorted, deduplicated, clamped), empty pieces included. */
function split(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    pieces.push(bytes.subarray(from, point));
    from = point;
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

describe('fingerprint', () => {
  test('is deterministic', () => {
    fc.assert(
      fc.property(method, target, body, (m, t, b) => {
        expect(fingerprint(m, t, b)).toBe(fingerprint(m, t, Buffer.from(b)));
      }),
      RUNS,
    );
  });

  test('does not depend on how the body is split into chunks', () => {
    fc.assert(
      fc.property(method, target, body, fc.array(fc.nat(), { maxLength: 20 }), (m, t, b, cuts) => {
        const builder = new FingerprintBuilder(m, t);
        for (const piece of split(b, cuts)) builder.update(piece);
        expect(builder.digest()).toBe(fingerprint(m, t, b));
      }),
      RUNS,
    );
  });

  test('changes when the method, the target or the body changes', () => {
    fc.assert(
      fc.property(method, target, body, method, target, body, (m1, t1, b1, m2, t2, b2) => {
        fc.pre(m1 !== m2 || t1 !== t2 || !b1.equals(b2));
        expect(fingerprint(m1, t1, b1)).not.toBe(fingerprint(m2, t2, b2));
      }),
      RUNS,
    );
  });

  test('moving bytes across the method/target/body boundaries changes it', () => {
    fc.assert(
      fc.property(method, target, body, fc.string({ minLength: 1, maxLength: 8 }), (m, t, b, moved) => {
        const base = fingerprint(m + moved, t, b);
        expect(fingerprint(m, moved + t, b)).not.toBe(base);
        expect(fingerprint(m, t + moved, b)).not.toBe(fingerprint(m, t, Buffer.concat([Buffer.from(moved), b])));
      }),
      RUNS,
    );
  });

  test('one flipped body byte changes it', () => {
    fc.assert(
      fc.property(method, target, body.filter((b) => b.length > 0), fc.nat(), fc.integer({ min: 1, max: 255 }), (m, t, b, at, mask) => {
        const flipped = Buffer.from(b);
        const i = at % flipped.length;
        flipped[i] = (flipped[i] as number) ^ mask;
        expect(fingerprint(m, t, flipped)).not.toBe(fingerprint(m, t, b));
      }),
      RUNS,
    );
  });
});
