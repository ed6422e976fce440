import { channelName, lockResource, recordKey, recordNames, recordPattern } from '../../src/store/keys';

describe('recordNames', () => {
  test.each(['k1', 'order-{42}', 'x'.repeat(255)])('is what recordKey and channelName give one by one, for %j', (key) => {
    const scope = { tenant: '0123456789abcdef', key };
    expect(recordNames(scope)).toEqual({ record: recordKey(scope), channel: channelName(scope) });
    // One slot: every name carries the same hash tag, and so does the lookup's pattern.
    const tags = [...Object.values(recordNames(scope)), lockResource(scope), recordPattern(key).pattern].map((name) => /\{[^}]*\}/.exec(name)?.[0]);
    expect(new Set(tags).size).toBe(1);
  });
});

describe('recordPattern', () => {
  /** Redis's glob match (stringmatchlen) for the subset the pattern uses: `*`, and `\` escapes. */
  function globMatches(pattern: string, name: string): boolean {
    const source = pattern.replace(/\\(.)|(\*)|([^\\*])/g, (_all, escaped: string | undefined, star: string | undefined, plain: string | undefined) =>
      star !== undefined ? '.*' : (escaped ?? plain ?? '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    );
    return new RegExp(`^${source}$`, 's').test(name);
  }

  test('matches every tenant of the key, and nothing else', () => {
    const { pattern, tenantAt } = recordPattern('order-1');
    for (const tenant of ['alice', '{tenant}', 'x*y']) {
      const name = recordKey({ tenant, key: 'order-1' });
      expect(globMatches(pattern, name)).toBe(true);
      expect(name.slice(tenantAt)).toBe(tenant);
    }
    expect(globMatches(pattern, recordKey({ tenant: 'alice', key: 'order-2' }))).toBe(false);
    expect(globMatches(pattern, lockResource({ tenant: 'alice', key: 'order-1' }))).toBe(false);
    expect(globMatches(pattern, channelName({ tenant: 'alice', key: 'order-1' }))).toBe(false);
  });
});
