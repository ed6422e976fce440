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
 *   magic: `/orders` does not match `/orders/` unless the rule says `trailingSlash: true`, nor
 *   `/Orders` unless it says `caseInsensitive: true` (Express, for one, routes both to the same
 *   handler by default: such an upstream wants both). `/orders/*` matches `/orders`, `/orders/`
 *   and everything below, never `/ordersx`.
 * - Methods compare case-sensitively, as RFC 9110 section 9.1 says; Node's parser hands us upper case.
 * - Paths are compared in the form most upstreams route on (RFC 3986 section 6.2.2): %-escaped
 *   letters, digits and `-._~` decoded, `//` merged, and a segment's parameters (`;v=1`, which
 *   servlet containers strip before routing) left out, so `/p%61yments/x` or `/payments;v=1`
 *   cannot slip past a `requireKey` rule on `/payments/*`.
 * - Spellings that upstreams resolve in different ways are refused instead of guessed at, for the
 *   methods that may be guarded: an encoded slash, backslash or NUL (`%2F`, `%5C`, `%00`), a raw
 *   backslash, and a `.` or `..` segment in any spelling (`..`, `%2e%2e`, `.;x`). One upstream
 *   decodes `%2F` into a separator, another does not; one resolves `..`, another routes it as a
 *   name: whichever the sidecar chose, a request could be matched by one rule and executed by the
 *   handler of another. The fingerprint and the forwarded request keep the raw path; only
 *   matching sees this form.
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

/** A request path that a method which may be guarded must not carry: the client gets 400. */
export interface RefusedPath {
  /** What makes it ambiguous, for the client's problem detail, e.g. "an encoded slash (%2F)". */
  readonly refused: string;
}

/** `path` is the request target's path; a query string, if left on, is ignored. */
export type RouteResolver = (method: string, path: string) => ResolvedRoute | RefusedPath;

interface CompiledRule {
  /** Set for an exact rule (lower case when the rule is case-insensitive). */
  readonly exact: string | undefined;
  /** The exact path with a `/` added, when the rule accepts a trailing slash; else undefined. */
  readonly exactSlash: string | undefined;
  /** Set for a `/*` rule: the part before `/*` (empty for `/*`) and that part plus `/`. */
  readonly prefix: string | undefined;
  readonly prefixSlash: string;
  readonly caseInsensitive: boolean;
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
    const caseInsensitive = rule.caseInsensitive === true;
    const path = caseInsensitive ? rule.path.toLowerCase() : rule.path;
    const prefix = prefixOf(path);
    const exact = prefix === undefined ? path : undefined;
    return {
      exact,
      exactSlash: exact !== undefined && rule.trailingSlash === true && exact !== '/' ? `${exact}/` : undefined,
      prefix,
      prefixSlash: prefix === undefined ? '' : `${prefix}/`,
      caseInsensitive,
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
    const matched = normalizePath(rawPath);
    if (typeof matched !== 'string') return matched;
    let lower: string | undefined;
    for (const rule of rules) {
      if (!(rule.methods ?? guardedMethods).has(method)) continue;
      const path = rule.caseInsensitive ? (lower ??= matched.toLowerCase()) : matched;
      const hit =
        rule.exact !== undefined
          ? path === rule.exact || path === rule.exactSlash
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
export function resolveRoute(config: Config, method: string, path: string): ResolvedRoute | RefusedPath {
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

/** The parts of a rule that decide which paths it matches. */
export interface RulePath {
  readonly path: string;
  readonly caseInsensitive?: boolean;
  readonly trailingSlash?: boolean;
}

/**
 * True when every path that rule `later` matches is also matched by `earlier`, so a rule with
 * `later` placed after one with `earlier` (and no more methods) can never win.
 */
export function pathCovers(earlier: RulePath | string, later: RulePath | string): boolean {
  const e = typeof earlier === 'string' ? { path: earlier } : earlier;
  const l = typeof later === 'string' ? { path: later } : later;
  // A case-insensitive later rule matches spellings a case-sensitive earlier one does not.
  if (l.caseInsensitive === true && e.caseInsensitive !== true) return false;
  const fold = (path: string): string => (e.caseInsensitive === true ? path.toLowerCase() : path);
  const earlierPath = fold(e.path);
  const laterPath = fold(l.path);
  const earlierPrefix = prefixOf(earlierPath);
  if (earlierPrefix === undefined) {
    if (prefixOf(laterPath) !== undefined) return false;
    if (earlierPath === laterPath) return l.trailingSlash !== true || e.trailingSlash === true;
    return e.trailingSlash === true && laterPath === `${earlierPath}/` && earlierPath !== '/';
  }
  const laterBase = prefixOf(laterPath) ?? laterPath;
  return laterBase === earlierPrefix || laterBase.startsWith(`${earlierPrefix}/`);
}

const NEEDS_NORMALIZING = /[%;]|\/\/|\/\./;
const ESCAPE = /%([0-9A-Fa-f]{2})/g;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const ENCODED_SEPARATOR = /%(?:2f|5c|00)/i;

/**
 * The path as matching sees it (see the top of this file), or why it is refused. Drops a query
 * string; takes the path of an absolute-form target (`http://host/x`); leaves anything else that
 * does not start with `/` (`*` of `OPTIONS *`) as it is, which no rule matches. Rule paths are
 * validated to already be in this form, so both sides compare alike.
 */
export function normalizePath(target: string): string | RefusedPath {
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
  if (path.includes('\\')) return { refused: 'a backslash' };
  if (!NEEDS_NORMALIZING.test(path)) return path;
  if (ENCODED_SEPARATOR.test(path)) return { refused: 'an encoded slash, backslash or NUL (%2F, %5C, %00)' };

  path = path.replace(ESCAPE, (escape: string, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
  });
  path = path.replace(/\/{2,}/g, '/');

  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i] as string;
    const parameters = segment.indexOf(';');
    const name = parameters === -1 ? segment : segment.slice(0, parameters);
    if (name === '.' || name === '..') return { refused: 'a dot segment (. or .., in any spelling)' };
    segments[i] = name;
  }
  return segments.join('/');
}
