import { Keyspace } from '../../src/store/keys';

describe('Keyspace.names', () => {
  test.each(['k1', 'order-{42}', 'x'.repeat(255)])('is what record and channel give one by one, for %j', (key) => {
    const keys = new Keyspace('app:');
    const scope = { tenant: '0123456789abcdef', key };
    expect(keys.names(scope)).toEqual({ record: keys.record(scope), channel: keys.channel(scope) });
    // One slot: every name carries the same hash tag, and so does the lookup's pattern.
    const tags = [...Object.values(keys.names(scope)), keys.recordPattern(key).pattern].map((name) => /\{[^}]*\}/.exec(name)?.[0]);
    expect(new Set(tags).size).toBe(1);
  });
});

describe('Keyspace.recordPattern', () => {
  /** Redis's glob match (stringmatchlen) for the subset the pattern uses: `*`, and `\` escapes. */
  function globMatches(pattern: string, name: string): boolean {
    const source = pattern.replace(/\\(.)|(\*)|([^\\*])/g, (_all, escaped: string | undefined, star: string | undefined, plain: string | undefined) =>
      star !== undefined ? '.*' : (escaped ?? plain ?? '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    );
    return new RegExp(`^${source}$`, 's').test(name);
  }

  test.each(['idem:', 'a*b?[c]\\:'])('matches every tenant of the key under prefix %j, and nothing else', (prefix) => {
    const keys = new Keyspace(prefix);
    const { pattern, tenantAt } = keys.recordPattern('order-1');
    for (const tenant of ['alice', '{tenant}', 'x*y']) {
      const name = keys.record({ tenant, key: 'order-1' });
      expect(globMatches(pattern, name)).toBe(true);
      expect(name.slice(tenantAt)).toBe(tenant);
    }
    expect(globMatches(pattern, keys.record({ tenant: 'alice', key: 'order-2' }))).toBe(false);
    expect(globMatches(pattern, keys.lock({ tenant: 'alice', key: 'order-1' }))).toBe(false);
    expect(globMatches(pattern, keys.channel({ tenant: 'alice', key: 'order-1' }))).toBe(false);
  });
});
