/**
 * Which requests are guarded, and how (CONTRACT.md section 2): the first route rule whose path and
 * method match wins; with none, a request is guarded when its method is in the guarded set. Rules
 * are compiled once per config, because this runs on every request.
 *
 * Choices the contract leaves open, made here:
 * - A rule without `methods` matches the guarded methods only. A method outside the guarded set
 *   (PUT, DELETE, ...) is guarded on a path only when a rule lists it explicitly: naming a method
 *   in a rule is the one way to guard it there without guarding it everywhere.
 * - A rule path without `*` matches exactly that path, case-sensitively, with no trailing-slash
 *   magic: `/orders` does not match `/orders/`. `/orders/*` matches `/orders`, `/orders/` and
 *   everything below, never `/ordersx`.
 * - Methods compare case-sensitively, as RFC 9110 section 9.1 says; Node's parser hands us upper case.
 * - Paths are compared after the normalization most upstreams apply before routing (RFC 3986
 *   section 6.2.2): %-escaped letters, digits and `-._~` decoded, `//` merged, `.` and `..`
 *   segments resolved. Otherwise `/payments/../payments/x` or `/p%61yments/x` would slip past a
 *   `requireKey` rule on `/payments/*` while the upstream still routes them to payments. The
 *   fingerprint and the forwarded request keep the raw path; only matching sees this form.
 */

import type { Config, ConcurrentMode, KeySource } from './settings';

export interface ResolvedRoute {
  readonly guarded: boolean;
  /** Always false when `guarded` is false. */
  readonly requireKey: boolean;
  readonly ttlMs: number;
  readonly concurrent: ConcurrentMode;
  readonly key: KeySource;
}

/** `path` is the request target's path; a query string, if left on, is ignored. */
export type RouteResolver = (method: string, path: string) => ResolvedRoute;

interface CompiledRule {
  /** Set for an exact rule. */
  readonly exact: string | undefined;
  /** Set for a `/*` rule: the part before `/*` (empty for `/*`) and that part plus `/`. */
  readonly prefix: string | undefined;
  readonly prefixSlash: string;
  /** Undefined: the guarded methods. */
  readonly methods: ReadonlySet<string> | undefined;
  readonly result: ResolvedRoute;
}

/** Compiles `config.routes` once; the returned function does no allocation on the common paths. */
export function createRouteResolver(config: Config): RouteResolver {
  const guardedMethods: ReadonlySet<string> = new Set(config.methods);
  const defaultKey: KeySource = Object.freeze({ from: 'header', name: config.keyHeader });
  const unguarded: ResolvedRoute = Object.freeze({
    guarded: false,
    requireKey: false,
    ttlMs: config.ttlMs,
    concurrent: config.concurrent,
    key: defaultKey,
  });
  const guardedDefault: ResolvedRoute = Object.freeze({
    guarded: true,
    requireKey: config.requireKey,
    ttlMs: config.ttlMs,
    concurrent: config.concurrent,
    key: defaultKey,
  });

  const rules = config.routes.map((rule): CompiledRule => {
    const result: ResolvedRoute =
      rule.guard === false
        ? unguarded
        : Object.freeze({
            guarded: true,
            requireKey: rule.requireKey ?? config.requireKey,
            ttlMs: rule.ttlMs ?? config.ttlMs,
            concurrent: rule.concurrent ?? config.concurrent,
            key: rule.key ?? defaultKey,
          });
    const prefix = prefixOf(rule.path);
    return {
      exact: prefix === undefined ? rule.path : undefined,
      prefix,
      prefixSlash: prefix === undefined ? '' : `${prefix}/`,
      methods: rule.methods === undefined ? undefined : new Set(rule.methods),
      result,
    };
  });

  // A method no rule names and the guarded set lacks (GET, HEAD, ... : most traffic) can never be
  // guarded, so it is answered before any path work.
  const mayBeGuarded = new Set(guardedMethods);
  for (const rule of rules) rule.methods?.forEach((method) => mayBeGuarded.add(method));

  return (method, rawPath) => {
    if (!mayBeGuarded.has(method)) return unguarded;
    const path = normalizePath(rawPath);
    for (const rule of rules) {
      if (!(rule.methods ?? guardedMethods).has(method)) continue;
      const hit =
        rule.exact !== undefined
          ? path === rule.exact
          : path === rule.prefix || path.startsWith(rule.prefixSlash);
      if (hit) return rule.result;
    }
    return guardedMethods.has(method) ? guardedDefault : unguarded;
  };
}

const resolvers = new WeakMap<Config, RouteResolver>();

/**
 * `createRouteResolver(config)(method, path)`, with the compiled rules cached per config object.
 * Hot paths should hold on to a resolver from `createRouteResolver` instead.
 */
export function resolveRoute(config: Config, method: string, path: string): ResolvedRoute {
  let resolver = resolvers.get(config);
  if (resolver === undefined) {
    resolver = createRouteResolver(config);
    resolvers.set(config, resolver);
  }
  return resolver(method, path);
}

/** The part of a `/*` rule path before `/*` (`''` for `/*`), or undefined for an exact path. */
function prefixOf(rulePath: string): string | undefined {
  return rulePath.endsWith('/*') ? rulePath.slice(0, -2) : undefined;
}

/**
 * True when every path that rule path `later` matches is also matched by `earlier`, so a rule
 * with `later` placed after one with `earlier` (and no more methods) can never win.
 */
export function pathCovers(earlier: string, later: string): boolean {
  const earlierPrefix = prefixOf(earlier);
  if (earlierPrefix === undefined) return earlier === later;
  const laterBase = prefixOf(later) ?? later;
  return laterBase === earlierPrefix || laterBase.startsWith(`${earlierPrefix}/`);
}

const NEEDS_NORMALIZING = /%|\/\/|\/\./;
const ESCAPE = /%([0-9A-Fa-f]{2})/g;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * The path as matching sees it (see the top of this file). Drops a query string; takes the path
 * of an absolute-form target (`http://host/x`); leaves anything else that does not start with
 * `/` (`*` of `OPTIONS *`) as it is, which no rule matches. Rule paths are validated to already
 * be in this form, so both sides compare alike.
 */
export function normalizePath(target: string): string {
  const query = target.indexOf('?');
  let path = query === -1 ? target : target.slice(0, query);
  if (!path.startsWith('/')) {
    if (!/^https?:\/\//i.test(path)) return path;
    try {
      path = new URL(path).pathname;
    } catch {
      return path;
    }
  }
  if (!NEEDS_NORMALIZING.test(path)) return path;

  path = path.replace(ESCAPE, (escape: string, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
  });
  path = path.replace(/\/{2,}/g, '/');

  // RFC 3986 section 5.2.4, on a path that starts with `/`.
  const segments = path.split('/').slice(1);
  const out: string[] = [];
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    if (segment === '.' || segment === '..') {
      if (segment === '..') out.pop();
      if (last) out.push('');
    } else {
      out.push(segment);
    }
  }
  return `/${out.join('/')}`;
}
