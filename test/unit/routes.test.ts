import { loadConfig } from '../../src/config/load';
import {
  createRouteResolver,
  normalizePath,
  pathCovers,
  type RefusedPath,
  type ResolvedRoute,
  resolveRoute as resolveRouteOrRefusal,
  type RouteResolver,
} from '../../src/config/routes';
import type { Config } from '../../src/config/settings';

/** The route, failing the test when the path was refused instead. */
function routeOf(result: ResolvedRoute | RefusedPath): ResolvedRoute {
  if ('refused' in result) throw new Error(`refused: ${result.refused}`);
  return result;
}

function resolveRoute(config: Config, method: string, path: string): ResolvedRoute {
  return routeOf(resolveRouteOrRefusal(config, method, path));
}

function routesOnly(resolver: RouteResolver): (method: string, path: string) => ResolvedRoute {
  return (method, path) => routeOf(resolver(method, path));
}

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
  const raw = createRouteResolver(config);
  const resolve = routesOnly(raw);
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

  it('matches paths the way upstreams route them: escaped letters decoded, // merged, ;parameters left out', () => {
    expect(resolve('POST', '//payments//charge').requireKey).toBe(true);
    expect(resolve('POST', '/p%61yments/charge').requireKey).toBe(true);
    expect(resolve('POST', '/payments;x=1').requireKey).toBe(true);
    expect(resolve('POST', '/payments;jsessionid=1/charge').requireKey).toBe(true);
    expect(resolve('POST', '/legacy/orders;v=1').key).toEqual({ from: 'body', pointer: '/order_id' });
  });

  it.each([
    ['/x/../payments/charge', /dot segment/],
    ['/./payments/charge', /dot segment/],
    ['/payments/%2e%2e/healthz', /dot segment/],
    ['/payments/.%2E/healthz', /dot segment/],
    ['/payments/..;x=1/healthz', /dot segment/],
    ['/healthz/..%2Fpayments', /encoded slash/],
    ['/payments%2Fcharge', /encoded slash/],
    ['/payments%2fcharge', /encoded slash/],
    ['/payments%5Ccharge', /encoded slash/],
    ['/payments%00', /NUL/],
    ['/payments\\x', /backslash/],
  ])('refuses %s on a method that may be guarded (%s)', (path, reason) => {
    const result = raw('POST', path);
    expect('refused' in result && result.refused).toMatch(reason);
  });

  it('never refuses a method that cannot be guarded: it passes through untouched', () => {
    expect(raw('GET', '/x/../payments%2Fcharge')).toMatchObject({ guarded: false });
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
    ['//a///b', '/a/b'],
    ['/%61%2D%5f%7E', '/a-_~'],
    ['/a%20b', '/a%20b'],
    ['/a%c3%a9', '/a%C3%A9'],
    ['/a;p=1/b;q', '/a/b'],
    ['/.well-known/x', '/.well-known/x'],
    ['*', '*'],
    ['https://h:1/p/q?z', '/p/q'],
  ])('%j -> %j', (input, output) => {
    expect(normalizePath(input)).toBe(output);
  });

  it.each(['/a/./b', '/a/b/.', '/a/b/..', '/%2e%2E/x', '/a%2fb', '/a%5cb', '/a%00', '/a\\b', '/a/..;x'])('refuses %j', (input) => {
    expect(normalizePath(input)).toEqual({ refused: expect.any(String) });
  });
});

describe('caseInsensitive and trailingSlash', () => {
  const config = configFrom(`
routes:
  - path: /legacy/orders
    caseInsensitive: true
    trailingSlash: true
    requireKey: true
  - path: /payments/*
    caseInsensitive: true
    requireKey: true
  - path: /exact
    requireKey: true
`);
  const resolve = routesOnly(createRouteResolver(config));

  it.each(['/legacy/orders', '/legacy/orders/', '/Legacy/Orders', '/LEGACY/ORDERS/', '/legacy/orders;v=1'])('%s matches the rule', (path) => {
    expect(resolve('POST', path).requireKey).toBe(true);
  });

  it.each(['/Payments', '/PAYMENTS/x', '/payments/X'])('%s matches a case-insensitive prefix rule', (path) => {
    expect(resolve('POST', path).requireKey).toBe(true);
  });

  it.each(['/Exact', '/exact/', '/legacy/orders/x'])('%s does not match: the rule did not ask', (path) => {
    expect(resolve('POST', path).requireKey).toBe(false);
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

  it('takes case and trailing slashes into account', () => {
    expect(pathCovers({ path: '/a', caseInsensitive: true }, { path: '/A' })).toBe(true);
    expect(pathCovers({ path: '/a' }, { path: '/a', caseInsensitive: true })).toBe(false);
    expect(pathCovers({ path: '/a', trailingSlash: true }, { path: '/a/' })).toBe(true);
    expect(pathCovers({ path: '/a' }, { path: '/a', trailingSlash: true })).toBe(false);
    expect(pathCovers({ path: '/a/*', caseInsensitive: true }, { path: '/A/b' })).toBe(true);
  });
});
