import { fingerprint, FingerprintBuilder } from '../../src/engine/fingerprint';
import { tenantId } from '../../src/engine/tenant';
import { keyFromJsonBody, resolvePointer } from '../../src/engine/json-pointer';

describe('fingerprint', () => {
  const base = fingerprint('POST', '/payments?a=1', Buffer.from('{"amount":1}'));

  test('is stable for the same request', () => {
    expect(fingerprint('POST', '/payments?a=1', Buffer.from('{"amount":1}'))).toBe(base);
  });

  test.each([
    ['method', 'PATCH', '/payments?a=1', '{"amount":1}'],
    ['path', 'POST', '/payment?a=1', '{"amount":1}'],
    ['query', 'POST', '/payments?a=2', '{"amount":1}'],
    ['body', 'POST', '/payments?a=1', '{"amount":2}'],
    ['empty body', 'POST', '/payments?a=1', ''],
  ])('changes with the %s', (_what, method, path, body) => {
    expect(fingerprint(method, path, Buffer.from(body))).not.toBe(base);
  });

  test('a path/body boundary shift does not collide', () => {
    expect(fingerprint('POST', '/ab', Buffer.from('c'))).not.toBe(fingerprint('POST', '/a', Buffer.from('bc')));
  });

  test('fed in chunks equals fed at once', () => {
    const builder = new FingerprintBuilder('POST', '/payments?a=1');
    builder.update(Buffer.from('{"amou'));
    builder.update(Buffer.from('nt":1}'));
    expect(builder.digest()).toBe(base);
  });
});

describe('tenantId', () => {
  test('is 16 hex characters and stable', () => {
    expect(tenantId(['Bearer a'])).toMatch(/^[0-9a-f]{16}$/);
    expect(tenantId(['Bearer a'])).toBe(tenantId(['Bearer a']));
  });

  test('separates credentials, absent from empty, and header boundaries', () => {
    const ids = [tenantId(['Bearer a']), tenantId(['Bearer b']), tenantId([undefined]), tenantId(['']), tenantId(['ab', 'c']), tenantId(['a', 'bc'])];
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('key from a JSON body', () => {
  const body = Buffer.from(JSON.stringify({ order_id: 'o-1', n: 42, nested: { 'a/b': { '~k': 'deep' } }, items: [{ id: 'i0' }], obj: {} }));

  test.each([
    ['/order_id', 'o-1'],
    ['/n', '42'],
    ['/nested/a~1b/~0k', 'deep'],
    ['/items/0/id', 'i0'],
  ])('%s gives %j', (pointer, key) => {
    expect(keyFromJsonBody(body, pointer)).toEqual({ kind: 'present', key });
  });

  test.each(['/missing', '/items/01/id', '/items/5/id', 'order_id'])('%s gives no key', (pointer) => {
    expect(keyFromJsonBody(body, pointer)).toEqual({ kind: 'absent' });
  });

  test('a body that is not JSON gives no key', () => {
    expect(keyFromJsonBody(Buffer.from('order_id=o-1'), '/order_id')).toEqual({ kind: 'absent' });
  });

  test('a field that holds an object is an invalid key, not a missing one', () => {
    expect(keyFromJsonBody(body, '/obj')).toEqual({ kind: 'invalid', reason: expect.stringMatching(/an object/) });
  });

  test('the empty pointer is the whole document', () => {
    expect(resolvePointer({ a: 1 }, '')).toEqual({ a: 1 });
  });
});
