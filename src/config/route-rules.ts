/**
 * The `routes:` setting (YAML only): a list of rules, each a mapping checked with zod (unknown
 * keys, absent paths) around the same value checks as the top-level settings, so a rule's problem
 * reads like any other: `config.yaml: routes[1].ttl: "2" has no unit ...`.
 */

import { z } from 'zod';
import {
  boolean,
  CONCURRENT_MODES,
  duration,
  headerName,
  INVALID,
  isMapping,
  methodList,
  oneOf,
  show,
  suggest,
  wordList,
  type Check,
  type Invalid,
  type Report,
} from './checks';
import { normalizePath } from './routes';
import type { KeySource, RouteRule } from './settings';

/** A zod field around `check`; `absent` decides what an unset value becomes. */
function field<T>(check: Check<T>, absent: (report: Report) => T | Invalid) {
  return z
    .unknown()
    .optional()
    .transform((value, ctx): T => {
      const state = { failed: false };
      const report: Report = (message, path) => {
        state.failed = true;
        ctx.addIssue({ code: 'custom', message, path: path === undefined ? [] : [...path] });
        return INVALID;
      };
      const result = value === undefined ? absent(report) : check(value, report);
      return state.failed || result === INVALID ? z.NEVER : result;
    });
}

const optional = <T>(check: Check<T>) => field<T | undefined>(check, () => undefined);

/** For a field without a default: being unset is itself the problem. */
const required =
  (message: string) =>
  (report: Report): Invalid =>
    report(message);


const rulePath: Check<string> = (value, report) => {
  if (typeof value !== 'string' || !value.startsWith('/')) {
    return report(`${show(value)} is not a path; start it with /, e.g. /payments or /payments/*`);
  }
  if (/[\s?#]/.test(value)) return report(`${show(value)} has a space, query or fragment; rules match the path only`);
  if (value.slice(0, value.endsWith('/*') ? -2 : undefined).includes('*')) {
    return report(`${show(value)} has a * that is not a final /*; use an exact path or a prefix like /payments/*`);
  }
  const normal = normalizePath(value);
  if (typeof normal !== 'string') {
    return report(`${show(value)} has ${normal.refused}, which a guarded request's path is refused for; write the path as the upstream routes it`);
  }
  if (normal !== value) {
    return report(
      `${show(value)} would never match: requests are matched after merging //, decoding %-escaped letters and digits ` +
        `and leaving out ;parameters; write ${normal}`,
    );
  }
  return value;
};

/** RFC 6901: empty (the whole body) or `/`-separated tokens where `~` is only `~0` or `~1`. */
const JSON_POINTER = /^(\/([^~]|~[01])*)*$/;

const KEY_SOURCE_HINT = 'use { from: header, name: X-Order-Id } or { from: body, pointer: /order_id }';

const keySource: Check<KeySource> = (value, report) => {
  if (!isMapping(value)) return report(`${show(value)} is not a key source; ${KEY_SOURCE_HINT}`);
  const from = value['from'];
  if (from !== 'header' && from !== 'body') {
    return report(`${from === undefined ? 'is missing' : `${show(from)} is not accepted`}; use header or body`, ['from']);
  }
  const wanted = from === 'header' ? 'name' : 'pointer';
  for (const key of Object.keys(value)) {
    if (key !== 'from' && key !== wanted) {
      report(`unknown key ${JSON.stringify(key)}; a key from the ${from} takes only from and ${wanted}`);
    }
  }
  const given = value[wanted];
  if (from === 'header') {
    if (given === undefined) return report('is missing; name the header that carries the key, e.g. X-Order-Id', ['name']);
    const name = headerName({ forKey: true })(given, (message) => report(message, ['name']));
    return name === INVALID ? INVALID : { from, name };
  }
  if (typeof given !== 'string' || !JSON_POINTER.test(given)) {
    return report(
      `${given === undefined ? 'is missing' : `${show(given)} is not a JSON pointer`}; use an RFC 6901 pointer, e.g. /order_id or /order/id`,
      ['pointer'],
    );
  }
  return { from, pointer: given };
};

export const ROUTE_KEYS = ['path', 'methods', 'guard', 'requireKey', 'ttl', 'concurrent', 'key', 'caseInsensitive', 'trailingSlash'] as const;

const routeRule = z
  .strictObject(
    {
      path: field(rulePath, required('is required: the path this rule applies to, e.g. /payments/*')),
      methods: optional(methodList),
      guard: optional(boolean),
      requireKey: optional(boolean),
      ttl: optional(duration({ timer: false })),
      concurrent: optional(oneOf(CONCURRENT_MODES)),
      key: optional(keySource),
      caseInsensitive: optional(boolean),
      trailingSlash: optional(boolean),
    },
    { error: 'is not a route rule; each rule is a mapping, e.g. { path: /payments/*, requireKey: true }' },
  )
  .superRefine((rule, ctx) => {
    if (rule.trailingSlash === true && rule.path.endsWith('/*')) {
      ctx.addIssue({
        code: 'custom',
        path: ['trailingSlash'],
        message: `has no effect on ${rule.path}: a /* rule matches its path with a trailing slash already; remove it`,
      });
    }
    if (rule.guard !== false) return;
    const pointless = (['requireKey', 'ttl', 'concurrent', 'key'] as const).filter((k) => rule[k] !== undefined);
    if (pointless.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['guard'],
        message:
          pointless.length === 1
            ? `is false, so ${pointless.join('')} has no effect; remove it or the guard: false`
            : `is false, so ${wordList(pointless, 'and')} have no effect; remove them or the guard: false`,
      });
    }
  })
  .transform((rule): RouteRule => {
    // Unset options stay absent, so --config-test shows what the rule sets and nothing else.
    const out: { -readonly [K in keyof RouteRule]: RouteRule[K] } = { path: rule.path };
    if (rule.methods !== undefined) out.methods = rule.methods;
    if (rule.guard !== undefined) out.guard = rule.guard;
    if (rule.requireKey !== undefined) out.requireKey = rule.requireKey;
    if (rule.ttl !== undefined) out.ttlMs = rule.ttl;
    if (rule.concurrent !== undefined) out.concurrent = rule.concurrent;
    if (rule.key !== undefined) out.key = rule.key;
    if (rule.caseInsensitive !== undefined) out.caseInsensitive = rule.caseInsensitive;
    if (rule.trailingSlash !== undefined) out.trailingSlash = rule.trailingSlash;
    return out;
  });

/** The rules in order; each problem is reported at its index, below the setting (`routes[1].ttl`). */
export const routeRules: Check<readonly RouteRule[]> = (value, report) => {
  if (!Array.isArray(value)) return report('is not a list of route rules; write routes: followed by - path: ... items');
  const rules: RouteRule[] = [];
  let failed = false;
  value.forEach((item: unknown, i) => {
    const result = routeRule.safeParse(item);
    if (result.success) {
      rules.push(result.data);
      return;
    }
    failed = true;
    for (const issue of result.error.issues) {
      const path = [i, ...issue.path.map((part) => (typeof part === 'symbol' ? String(part) : part))];
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          const hint = suggest(key, ROUTE_KEYS);
          report(`unknown key ${JSON.stringify(key)}${hint === undefined ? '' : `; did you mean ${hint}?`}`, path);
        }
      } else {
        report(issue.message, path);
      }
    }
  });
  return failed ? INVALID : rules;
};
