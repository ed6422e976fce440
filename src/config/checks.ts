/**
 * The checks of single setting values: each takes a value that is present (a string from a flag or
 * a variable, or what YAML made of it) and returns the parsed value, or INVALID after reporting
 * why. The messages are the product here: they start with the value as given (never a secret),
 * say what is wrong and what is accepted. The settings table (table.ts) names a check per row.
 */

import { constants as bufferConstants } from 'node:buffer';
import { isIP } from 'node:net';
import { DURATION_HINT, parseDuration } from './duration';
import { parseEncryptionKeys, type EncryptionKey } from './encryption-keys';
import type { ConcurrentMode, LogLevel, OnUnknownMode, StoreUnavailableMode, TenantMissingMode, TenantSource } from './settings';

export const CONCURRENT_MODES = ['reject', 'wait'] as const satisfies readonly ConcurrentMode[];
export const STORE_UNAVAILABLE_MODES = ['reject', 'passthrough'] as const satisfies readonly StoreUnavailableMode[];
export const ON_UNKNOWN_MODES = ['hold', 'release'] as const satisfies readonly OnUnknownMode[];
export const TENANT_SOURCES = ['headers', 'client-certificate'] as const satisfies readonly TenantSource[];
export const TENANT_MISSING_MODES = ['reject', 'shared'] as const satisfies readonly TenantMissingMode[];
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const satisfies readonly LogLevel[];

export const INVALID: unique symbol = Symbol('invalid');
export type Invalid = typeof INVALID;
export type Path = readonly (string | number)[];
/** Records a problem (at `path` below the field, for list items and nested keys). */
export type Report = (message: string, path?: Path) => Invalid;
export type Check<T> = (value: unknown, report: Report) => T | Invalid;

/** A value as the operator wrote it, for messages. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (value !== null && typeof value === 'object') return 'a mapping';
  return String(value);
}

/** `a, b or c` (or `a, b and c`). */
export function wordList(words: readonly string[], conjunction: 'or' | 'and'): string {
  return words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} ${conjunction} ${words.at(-1) ?? ''}`;
}

export const orList = (words: readonly string[]): string => wordList(words, 'or');

export function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A non-negative safe integer, from a number or a string of digits. */
export function wholeNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value.trim())) return undefined;
  const n = Number(value.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A listener's port; 0 binds a free one, named in the "listening" log line. */
export const port: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n > 65_535) {
    return report(`${show(value)} is not a port; use a whole number from 1 to 65535, or 0 for any free port`);
  }
  return n;
};

export const TRUE_WORDS = new Set(['true', '1', 'yes']);
export const FALSE_WORDS = new Set(['false', '0', 'no']);

export const boolean: Check<boolean> = (value, report) => {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.has(word)) return true;
    if (FALSE_WORDS.has(word)) return false;
  }
  return report(`${show(value)} is not a boolean; use true or false`);
};

/** setTimeout fires at once (with only a warning) for anything longer than this. */
export const LONGEST_TIMER_MS = 2_147_483_647;

export function duration(options: { readonly timer: boolean }): Check<number> {
  return (value, report) => {
    if (typeof value === 'number') {
      return report(`${value} has no unit, and seconds or milliseconds would be a guess; use a suffix: 250ms, 2s, 24h`);
    }
    if (typeof value !== 'string') return report(`${show(value)} is not a duration; ${DURATION_HINT}`);
    const text = value.trim();
    if (/^-\d/.test(text)) return report(`${show(value)} is negative; it must be longer than 0, e.g. 2s`);
    const ms = parseDuration(text);
    if (ms === undefined) return report(`${show(value)} is not a duration; ${DURATION_HINT}`);
    if (ms === 0) return report(`${show(value)} is zero; it must be longer than 0, e.g. 2s`);
    if (options.timer && ms > LONGEST_TIMER_MS) {
      return report(`${show(value)} is longer than ${LONGEST_TIMER_MS}ms (about 24.8 days), the longest timer Node.js can set`);
    }
    return ms;
  };
}

/** Lower case: matches a value whatever case the operator wrote (REJECT, Wait). */
export function oneOf<T extends string>(words: readonly T[]): Check<T> {
  return (value, report) => {
    if (typeof value === 'string') {
      const word = value.trim().toLowerCase();
      const hit = words.find((w) => w === word);
      if (hit !== undefined) return hit;
    }
    return report(`${show(value)} is not accepted; use ${orList(words)}`);
  };
}

/**
 * A comma-separated string or a YAML list. Empty items of a string are dropped (`POST,PATCH,`);
 * items of a YAML list are reported at their index (`methods[2]`). Duplicates are dropped unless
 * the caller wants to see them (a Redlock master listed twice is a mistake, not a repetition).
 */
export function listOf<T>(item: Check<T>, options: { readonly keepDuplicates?: boolean } = {}): Check<readonly T[]> {
  return (value, report) => {
    let items: { readonly value: unknown; readonly path: Path | undefined }[];
    if (typeof value === 'string') {
      items = value
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part !== '')
        .map((part) => ({ value: part, path: undefined }));
    } else if (Array.isArray(value)) {
      items = value.map((entry: unknown, i) => ({ value: typeof entry === 'string' ? entry.trim() : entry, path: [i] }));
    } else {
      return report(`${show(value)} is not a list; use a comma-separated string or a YAML list`);
    }
    const out: T[] = [];
    let failed = false;
    for (const entry of items) {
      const parsed = item(entry.value, (message, path) => report(message, [...(entry.path ?? []), ...(path ?? [])]));
      if (parsed === INVALID) failed = true;
      else if (options.keepDuplicates === true || !out.includes(parsed)) out.push(parsed);
    }
    return failed ? INVALID : out;
  };
}

export function nonEmpty<T>(check: Check<readonly T[]>, whenEmpty: string): Check<readonly T[]> {
  return (value, report) => {
    const items = check(value, report);
    if (items !== INVALID && items.length === 0) return report(whenEmpty);
    return items;
  };
}

/** RFC 9110 token: what a method or a header field name may be made of. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export const SAFE_METHODS: Readonly<Record<string, string>> = {
  GET: 'GET is a safe method',
  HEAD: 'HEAD is a safe method',
  OPTIONS: 'OPTIONS is a safe method',
  TRACE: 'TRACE is a safe method',
  CONNECT: 'CONNECT opens a tunnel',
};

export const method: Check<string> = (value, report) => {
  if (typeof value !== 'string' || !TOKEN.test(value)) {
    return report(`${show(value)} is not an HTTP method; use names like POST, PUT, PATCH, DELETE`);
  }
  const upper = value.toUpperCase();
  const safe = SAFE_METHODS[upper];
  if (safe !== undefined) {
    return report(`${safe}: it always passes through and cannot be guarded; list methods that change state, e.g. POST,PATCH`);
  }
  return upper;
};

export const methodList = nonEmpty(listOf(method), 'lists no method; give the methods to guard, e.g. POST,PATCH');

/** Headers a proxy consumes or rewrites: a key or tenant there would not be what the client sent. */
export const UNUSABLE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  'content-length',
]);

export function headerName(options: { readonly forKey: boolean }): Check<string> {
  const example = options.forKey ? 'Idempotency-Key' : 'Authorization';
  return (value, report) => {
    if (typeof value !== 'string' || !TOKEN.test(value)) {
      return report(`${show(value)} is not a header name; use letters, digits and dashes, e.g. ${example}`);
    }
    const lower = value.toLowerCase();
    if (options.forKey && UNUSABLE_HEADERS.has(lower)) {
      return report(`${show(value)} is a hop-by-hop or framing header that proxies rewrite; use another name, e.g. Idempotency-Key`);
    }
    return lower;
  };
}

export const status: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 100 || n > 599) {
    return report(`${show(value)} is not an HTTP status; use whole numbers from 100 to 599, e.g. 408,429,503`);
  }
  if (n >= 200 && n <= 299) {
    return report(
      `${show(value)} is a success: the upstream acted on the request, so releasing the key would let a retry run it again; ` +
        'list only statuses that mean it was not acted on, e.g. 408,409,425,429,503',
    );
  }
  return n;
};

export const HOST_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** A DNS name (underscores allowed: container runtimes hand them out) or an IP address. */
export function isHost(text: string): boolean {
  if (isIP(text) !== 0) return true;
  const name = text.endsWith('.') ? text.slice(0, -1) : text;
  return name.length > 0 && name.length <= 253 && name.split('.').every((label) => HOST_LABEL.test(label));
}

export const host: Check<string> = (value, report) => {
  const text = typeof value === 'string' ? value.trim() : '';
  if (!isHost(text)) {
    return report(`${show(value)} is not an address; give a host name or IP address without a port, e.g. 0.0.0.0 or ::`);
  }
  return text;
};

export const upstream: Check<URL> = (value, report) => {
  const text = typeof value === 'string' ? value.trim() : '';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return report(`${text.includes('@') ? 'is not a URL (not shown: it may hold a password)' : `${show(value)} is not a URL`}; use http://host:port or https://host:port`);
  }
  if (url.username !== '' || url.password !== '') {
    return report('has credentials in it, which the sidecar would not send; remove them');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return report(`${show(value)} is not an http:// or https:// URL; e.g. http://127.0.0.1:3000`);
  }
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(text)) {
    return report(`${show(value)} has a path, query or fragment; give the origin only, e.g. ${url.origin} (requests keep their own paths)`);
  }
  return new URL(url.origin);
};

/** The URL with its password blanked, for messages and --config-test. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password !== '') url.password = 'REDACTED';
    return url.href;
  } catch {
    return text.includes('@') ? '(not shown: it may hold a password)' : text;
  }
}

export const redisUrl: Check<string> = (value, report) => {
  if (typeof value !== 'string') return report(`${show(value)} is not a URL; use redis://host:6379 or rediss://host:6380`);
  const text = value.trim();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    const what = text.includes('@') ? 'is not a URL (not shown: it may hold a password)' : `${show(text)} is not a URL`;
    return report(`${what}; use redis://host:6379 or rediss://host:6380`);
  }
  const shown = JSON.stringify(redactUrl(text));
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    return report(`${shown} is not a redis:// or rediss:// URL; e.g. redis://redis:6379`);
  }
  if (url.hostname === '') return report(`${shown} has no host; e.g. redis://redis:6379`);
  if (!/^\/?\d*$/.test(url.pathname)) {
    return report(`${shown} has a path other than a database number; e.g. redis://redis:6379/0`);
  }
  return text;
};

export const clusterNode: Check<string> = (value, report) => {
  const text = typeof value === 'string' ? value : '';
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s]+):(\d+)$/.exec(text);
  const hostPart = match?.[1] ?? '';
  const bareHost = hostPart.startsWith('[') ? hostPart.slice(1, -1) : hostPart;
  const portNumber = wholeNumber(match?.[2]);
  if (
    match === null ||
    !(hostPart.startsWith('[') ? isIP(bareHost) === 6 : isHost(bareHost)) ||
    portNumber === undefined ||
    portNumber < 1 ||
    portNumber > 65_535
  ) {
    return report(`${show(value)} is not host:port; e.g. redis-0:6379 or [::1]:7000`);
  }
  return text;
};

/** A Redis master named twice would count twice toward the Redlock quorum. */
export const redlockUrls: Check<readonly string[]> = (value, report) => {
  const urls = listOf(redisUrl, { keepDuplicates: true })(value, report);
  if (urls === INVALID) return INVALID;
  if (urls.length === 0) return report('lists no URL; give the Redis masters that hold the locks, or unset it to use the record store');
  const seen = new Set<string>();
  for (const text of urls) {
    const url = new URL(text);
    const where = `${url.hostname}:${url.port || '6379'}${url.pathname.replace(/^\/?$/, '/0')}`;
    if (seen.has(where)) {
      return report(`names ${where} twice; each Redlock master must be a different server, or the quorum means nothing`);
    }
    seen.add(where);
  }
  return urls;
};

export const maxBody: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 1) {
    return report(`${show(value)} is not a size; use a whole number of bytes greater than 0, e.g. 1048576`);
  }
  if (n > bufferConstants.MAX_LENGTH) {
    return report(`${n} is larger than the largest buffer Node.js can hold (${bufferConstants.MAX_LENGTH} bytes)`);
  }
  return n;
};

export const bodyMemory: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 1) {
    return report(`${show(value)} is not a size; use a whole number of bytes greater than 0, e.g. 67108864 (64 MiB)`);
  }
  return n;
};

export const waiterCount: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined) return report(`${show(value)} is not a count; use a whole number, e.g. 1000 (0: no duplicate waits)`);
  return n;
};

export const sentinelMaster: Check<string> = (value, report) => {
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(value.trim())) {
    return report(`${show(value)} is not a master name; use the name given to sentinel monitor, e.g. mymaster`);
  }
  return value.trim();
};

export const redisUsername: Check<string> = (value, report) => {
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,256}$/.test(value)) {
    return report(`${show(value)} is not an ACL user name; use visible ASCII without spaces`);
  }
  return value;
};

/** Never echoed. */
export const secretText: Check<string> = (value, report) => {
  if (typeof value !== 'string') return report('is not a string; quote it in YAML');
  if (value === '') return report('is empty; unset it, or give the secret');
  if (!/^[\x21-\x7e]+$/.test(value)) {
    return report('contains spaces or control characters (a trailing newline from a secret file?); use visible ASCII only');
  }
  return value;
};

export const waitReplicas: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n > 64) return report(`${show(value)} is not a replica count; use a whole number from 0 (do not wait) to 64`);
  return n;
};

export const headerSize: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 1_024 || n > 1_048_576) {
    return report(`${show(value)} is not a header size; use a whole number of bytes from 1024 to 1048576, e.g. 16384`);
  }
  return n;
};

export const recordCount: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 1) return report(`${show(value)} is not a record count; use a whole number greater than 0, e.g. 100000`);
  return n;
};

export const MIN_TOKEN_LENGTH = 16;

/** Never echoed: a message about a token must not leak the token. */
export const adminToken: Check<string> = (value, report) => {
  if (typeof value !== 'string') return report('is not a string; quote it in YAML');
  if (value === '') return report('is empty; unset it to turn the admin API off, or set a token of at least 16 characters');
  if (!/^[\x21-\x7e]+$/.test(value)) {
    return report('contains spaces or control characters (a trailing newline from a secret file?); use visible ASCII only');
  }
  if (value.length < MIN_TOKEN_LENGTH) {
    return report(
      `is ${value.length} characters; use at least ${MIN_TOKEN_LENGTH} (e.g. openssl rand -hex 32): ` +
        'it alone authorizes deleting records, which lets a retried payment run again',
    );
  }
  return value;
};

/** A file's path; what the file holds is read and checked with the settings it belongs to. */
export const filePath: Check<string> = (value, report) => {
  if (typeof value !== 'string' || value.trim() === '') return report(`${show(value)} is not a file path; give the path of a readable file`);
  return value.trim();
};

/** Never echoes a key: a message about a secret must not leak it. */
export const encryptionKeys: Check<readonly EncryptionKey[]> = (value, report) => {
  if (typeof value !== 'string') return report('is not a string; quote it in YAML');
  const parsed = parseEncryptionKeys(value, ',');
  if (!parsed.ok) return report(parsed.problem);
  return parsed.keys;
};

/** The known name an unknown key was probably meant to be: same letters, or two edits away. */
export function suggest(key: string, known: readonly string[]): string | undefined {
  const squash = (s: string): string => s.toLowerCase().replace(/[-_]/g, '').replace(/^idempotency/, '');
  const wanted = squash(key);
  const same = known.find((k) => squash(k) === wanted);
  if (same !== undefined) return same;
  let best: { name: string; distance: number } | undefined;
  for (const k of known) {
    const distance = editDistance(wanted, squash(k));
    if (distance <= 2 && (best === undefined || distance < best.distance)) best = { name: k, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
