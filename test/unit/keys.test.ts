import { Keyspace } from '../../src/store/keys';

describe('Keyspace.names', () => {
  test.each(['k1', 'order-{42}', 'x'.repeat(255)])('is what record, index and channel give one by one, for %j', (key) => {
    const keys = new Keyspace('app:');
    const scope = { tenant: '0123456789abcdef', key };
    expect(keys.names(scope)).toEqual({ record: keys.record(scope), index: keys.index(key), channel: keys.channel(scope) });
    // One slot: every name carries the same hash tag.
    const tags = Object.values(keys.names(scope)).map((name) => /\{[^}]*\}/.exec(name)?.[0]);
    expect(new Set(tags).size).toBe(1);
  });
});
