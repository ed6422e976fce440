import { loadConfig } from '../../src/config/load';
import { createRouteResolver, normalizePath, pathCovers, resolveRoute } from '../../src/config/routes';
import type { Config } from '../../src/config/settings';

/** A config from YAML, the way operators write rules. */
function configFrom(yaml: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    argv: ['--config', 'routes.yaml'],
    env: { IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000', ...env },
    readFile: () => yaml,
  });
}

const GLOBAL_KEY = { from: 'header', name: 'idempotency-key' } as const;

describe('resolveRoute without rules', () => {
  const config = configFrom('ttl: 2h\nconcurrent: wait\nrequireKey: true\n');

  it('guards the guarded methods with the global settings', () => {
    expect(resolveRoute(config, 'POST', '/anything')).toEqual({
      guarded: true,
      requireKey: true,
      ttlMs: 7_200_000,
      concurrent: 'wait',
      key: GLOBAL_KEY,
    });
    expect(resolveRoute(config, 'PATCH', '/').guarded).toBe(true);
  });

  it.each(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])('passes %s through, with requireKey off', (method) => {
    expect(resolveRoute(config, method, '/anything')).toEqual({
      guarded: false,
      requireKey: false,
      ttlMs: 7_200_000,
      concurrent: 'wait',
      key: GLOBAL_KEY,
    });
  });

  it('compares methods case-sensitively (RFC 9110): "post" is not POST', () => {
    expect(resolveRoute(config, 'post', '/anything').guarded).toBe(false);
  });
});

describe('resolveRoute with rules', () => {
  const config = configFrom(
    `
keyHeader: X-Idem
routes:
  - path: /healthz
    guard: false
  - path: /payments/refunds
    ttl: 5m
  - path: /payments/*
    methods: [POST]
    requireKey: true
    ttl: 48h
  - path: /legacy/orders
    methods: [POST]
    concurrent: wait
    key: { from: body, pointer: /order_id }
  - path: /partners/*
    methods: [POST, PUT]
    key: { from: header, name: X-Request-Id }
  - path: /internal/*
    guard: false
`,
  );
  const resolve = createRouteResolver(config);
  const globalKey = { from: 'header', name: 'x-idem' };

  it('turns guarding off for a guard: false rule, and requireKey with it', () => {
    expect(resolve('POST', '/healthz')).toEqual({
      guarded: false,
      requireKey: false,
      ttlMs: 86_400_000,
      concurrent: 'reject',
      key: globalKey,
    });
    expect(resolve('PATCH', '/internal/jobs/1').guarded).toBe(false);
  });

  it('lets the first matching rule win', () => {
    // /payments/refunds comes before /payments/*: its own ttl, and no requireKey.
    expect(resolve('POST', '/payments/refunds')).toEqual({
      guarded: true,
      requireKey: false,
      ttlMs: 300_000,
      concurrent: 'reject',
      key: globalKey,
    });
    expect(resolve('POST', '/payments/charges')).toEqual({
      guarded: true,
      requireKey: true,
      ttlMs: 172_800_000,
      concurrent: 'reject',
      key: globalKey,
    });
  });

  it('matches a /* rule on its prefix and everything below it, and nothing else', () => {
    expect(resolve('POST', '/payments').requireKey).toBe(true);
    expect(resolve('POST', '/payments/').requireKey).toBe(true);
    expect(resolve('POST', '/payments/x/y/z').requireKey).toBe(true);
    expect(resolve('POST', '/paymentsx').requireKey).toBe(false);
    expect(resolve('POST', '/payment').requireKey).toBe(false);
    expect(resolve('POST', '/v1/payments/x').requireKey).toBe(false);
  });

  it('matches an exact rule exactly: no trailing slash, nothing below', () => {
    expect(resolve('POST', '/healthz').guarded).toBe(false);
    expect(resolve('POST', '/healthz/').guarded).toBe(true);
    expect(resolve('POST', '/healthz/deep').guarded).toBe(true);
    expect(resolve('POST', '/HEALTHZ').guarded).toBe(true);
  });

  it('falls through a rule whose methods do not include the request method', () => {
    // /payments/* lists POST only: a PATCH there follows the global settings.
    expect(resolve('PATCH', '/payments/x')).toEqual({
      guarded: true,
      requireKey: false,
      ttlMs: 86_400_000,
      concurrent: 'reject',
      key: globalKey,
    });
  });

  it('takes the key from the body or another header when the rule says so', () => {
    expect(resolve('POST', '/legacy/orders')).toEqual({
      guarded: true,
      requireKey: false,
      ttlMs: 86_400_000,
      concurrent: 'wait',
      key: { from: 'body', pointer: '/order_id' },
    });
    expect(resolve('POST', '/partners/a').key).toEqual({ from: 'header', name: 'x-request-id' });
  });

  it('guards a method outside the guarded set only where a rule lists it', () => {
    expect(resolve('PUT', '/partners/a').guarded).toBe(true);
    expect(resolve('PUT', '/partners/a').key).toEqual({ from: 'header', name: 'x-request-id' });
    expect(resolve('PUT', '/payments/x').guarded).toBe(false);
    expect(resolve('DELETE', '/partners/a').guarded).toBe(false);
  });

  it('a rule without methods matches only the guarded methods', () => {
    // /healthz has no methods: it matches POST and PATCH; a PUT there was never guarded.
    expect(resolve('PUT', '/healthz').guarded).toBe(false);
    expect(resolve('GET', '/payments/x').guarded).toBe(false);
  });

  it('ignores the query string', () => {
    expect(resolve('POST', '/healthz?deep=1').guarded).toBe(false);
    expect(resolve('POST', '/payments/x?a=/b').requireKey).toBe(true);
  });

  it('matches paths the way an upstream that normalizes them would route them', () => {
    expect(resolve('POST', '/x/../payments/charge').requireKey).toBe(true);
    expect(resolve('POST', '/./payments/charge').requireKey).toBe(true);
    expect(resolve('POST', '//payments//charge').requireKey).toBe(true);
    expect(resolve('POST', '/p%61yments/charge').requireKey).toBe(true);
    expect(resolve('POST', '/payments/%2e%2e/healthz').guarded).toBe(false);
    expect(resolve('POST', '/payments%2Fcharge').requireKey).toBe(false);
  });

  it('takes the path of an absolute-form target', () => {
    expect(resolve('POST', 'http://api.example/payments/x').requireKey).toBe(true);
  });

  it('gives the same frozen answer object for the same rule', () => {
    const first = resolve('POST', '/payments/a');
    expect(resolve('POST', '/payments/b')).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
  });
});

describe('resolveRoute', () => {
  it('caches the compiled rules per config', () => {
    const config = configFrom('routes:\n  - path: /a\n    ttl: 1m\n');
    const first = resolveRoute(config, 'POST', '/a');
    expect(first.ttlMs).toBe(60_000);
    expect(resolveRoute(config, 'POST', '/a')).toBe(first);
  });

  it('takes requireKey from the global setting when a rule leaves it out', () => {
    const config = configFrom('routes:\n  - path: /a\n    ttl: 1m\n', { IDEMPOTENCY_REQUIRE_KEY: 'true' });
    expect(resolveRoute(config, 'POST', '/a')).toEqual({
      guarded: true,
      requireKey: true,
      ttlMs: 60_000,
      concurrent: 'reject',
      key: GLOBAL_KEY,
    });
  });

  it('lets a rule turn requireKey off where it is on globally', () => {
    const config = configFrom('routes:\n  - path: /a\n    requireKey: false\n', { IDEMPOTENCY_REQUIRE_KEY: 'true' });
    expect(resolveRoute(config, 'POST', '/a').requireKey).toBe(false);
    expect(resolveRoute(config, 'POST', '/b').requireKey).toBe(true);
  });
});

describe('normalizePath', () => {
  it.each([
    ['/a/b', '/a/b'],
    ['/', '/'],
    ['/a/b?x=1', '/a/b'],
    ['/a/./b', '/a/b'],
    ['/a/b/.', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/a/../../b', '/b'],
    ['/..', '/'],
    ['//a///b', '/a/b'],
    ['/%61%2D%5f%7E', '/a-_~'],
    ['/a%2fb', '/a%2Fb'],
    ['/a%20b', '/a%20b'],
    ['/%2e%2E/x', '/x'],
    ['/.well-known/x', '/.well-known/x'],
    ['*', '*'],
    ['https://h:1/p/../q?z', '/q'],
  ])('%j -> %j', (input, output) => {
    expect(normalizePath(input)).toBe(output);
  });
});

describe('pathCovers', () => {
  it.each([
    ['/a', '/a', true],
    ['/a', '/a/', false],
    ['/a', '/a/*', false],
    ['/a/*', '/a', true],
    ['/a/*', '/a/b', true],
    ['/a/*', '/a/b/*', true],
    ['/a/*', '/a/*', true],
    ['/a/*', '/ab', false],
    ['/a/b/*', '/a/*', false],
    ['/*', '/anything/*', true],
    ['/*', '/', true],
  ])('%s covers %s: %s', (earlier, later, covers) => {
    expect(pathCovers(earlier, later)).toBe(covers);
  });
});
