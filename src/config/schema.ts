/**
 * The one schema of the sidecar's settings: raw values (strings from flags and environment, typed
 * values from YAML) in, a frozen `Config` out, or every problem at once, each naming the setting as
 * the operator must fix it (`IDEMPOTENCY_TTL`, `--ttl` or `config.yaml: routes[1].ttl`).
 *
 * Each field is a zod transform around a small check that writes its own message, because the
 * messages are the product here: they say what was given, what is wrong and what is accepted.
 * zod supplies the rest: unknown keys, lists of rules, and collecting every issue in one pass.
 */

import { constants as bufferConstants } from 'node:buffer';
import fs from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { DURATION_HINT, formatDuration, parseDuration } from './duration';
import { parseEncryptionKeys } from './encryption-keys';
import { normalizePath, pathCovers } from './routes';
import type {
  Config,
  ConcurrentMode,
  KeySource,
  LogLevel,
  OnUnknownMode,
  RouteRule,
  StoreUnavailableMode,
  TenantMissingMode,
  TenantSource,
} from './settings';

// ---------------------------------------------------------------------------------------------
// Names

/** Every setting, by its YAML name. Env and flag names derive from it (see envName, flagName). */
export const SETTING_NAMES = [
  'upstream',
  'port',
  'host',
  'adminPort',
  'redisUrl',
  'redisClusterNodes',
  'redisSentinels',
  'redisSentinelMaster',
  'redisUsername',
  'redisPassword',
  'redisTls',
  'redisTlsCaFile',
  'redisTlsCertFile',
  'redisTlsKeyFile',
  'redisWaitReplicas',
  'redisWaitTimeout',
  'redlockUrls',
  'methods',
  'keyHeader',
  'requireKey',
  'ttl',
  'lockTtl',
  'concurrent',
  'waitTimeout',
  'maxWaiters',
  'upstreamTimeout',
  'maxBody',
  'maxBodyMemory',
  'tenantHeaders',
  'tenantFrom',
  'tenantMissing',
  'tlsCertFile',
  'tlsKeyFile',
  'tlsClientCaFile',
  'encryptionKeys',
  'encryptionKeysFile',
  'clientHeaderTimeout',
  'clientRequestTimeout',
  'maxHeaderSize',
  'memoryStoreMaxRecords',
  'storeUnavailable',
  'releaseStatuses',
  'onUnknown',
  'adminToken',
  'storeTimeout',
  'shutdownGrace',
  'logLevel',
  'routes',
] as const;

export type SettingName = (typeof SETTING_NAMES)[number];

/** Settings only the YAML file can hold: a list of rules does not fit in a variable or a flag. */
const FILE_ONLY: ReadonlySet<SettingName> = new Set(['routes']);

/** `adminPort` -> `IDEMPOTENCY_ADMIN_PORT`. */
export function envName(setting: string): string {
  return `IDEMPOTENCY_${setting.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** `adminPort` -> `--admin-port`. */
export function flagName(setting: string): string {
  return `--${setting.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

// ---------------------------------------------------------------------------------------------
// Defaults

const CONCURRENT_MODES = ['reject', 'wait'] as const satisfies readonly ConcurrentMode[];
const STORE_UNAVAILABLE_MODES = ['reject', 'passthrough'] as const satisfies readonly StoreUnavailableMode[];
const ON_UNKNOWN_MODES = ['hold', 'release'] as const satisfies readonly OnUnknownMode[];
const TENANT_SOURCES = ['headers', 'client-certificate'] as const satisfies readonly TenantSource[];
const TENANT_MISSING_MODES = ['reject', 'shared'] as const satisfies readonly TenantMissingMode[];
const LOG_LEVELS = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
] as const satisfies readonly LogLevel[];

/** What a setting is when nobody set it. Settings without a default are required or optional. */
export type Defaults = Omit<
  Config,
  | 'upstream'
  | 'redisUrl'
  | 'redisClusterNodes'
  | 'redisSentinels'
  | 'redisSentinelMaster'
  | 'redisUsername'
  | 'redisPassword'
  | 'redisTlsCaFile'
  | 'redisTlsCertFile'
  | 'redisTlsKeyFile'
  | 'redlockUrls'
  | 'tlsCertFile'
  | 'tlsKeyFile'
  | 'tlsClientCaFile'
  | 'encryptionKeys'
  | 'encryptionKeysFile'
  | 'adminToken'
>;

export const DEFAULTS: Defaults = deepFreeze({
  port: 8080,
  host: '0.0.0.0',
  adminPort: 9090,
  redisTls: false,
  redisWaitReplicas: 0,
  redisWaitTimeoutMs: 500,
  methods: ['POST', 'PATCH'],
  keyHeader: 'idempotency-key',
  requireKey: false,
  ttlMs: 24 * 3_600_000,
  lockTtlMs: 10_000,
  concurrent: 'reject',
  waitTimeoutMs: 30_000,
  maxWaiters: 1_000,
  upstreamTimeoutMs: 30_000,
  maxBody: 1_048_576,
  maxBodyMemory: 64 * 1_048_576,
  tenantHeaders: ['authorization'],
  tenantFrom: 'headers',
  tenantMissing: 'reject',
  clientHeaderTimeoutMs: 10_000,
  clientRequestTimeoutMs: 60_000,
  maxHeaderSize: 16_384,
  memoryStoreMaxRecords: 100_000,
  storeUnavailable: 'reject',
  releaseStatuses: [408, 409, 425, 429, 503],
  onUnknown: 'hold',
  storeTimeoutMs: 1_000,
  shutdownGraceMs: 25_000,
  logLevel: 'info',
  routes: [],
});

// ---------------------------------------------------------------------------------------------
// The table behind --help: one row per setting, defaults rendered from DEFAULTS.

export interface SettingInfo {
  readonly name: SettingName;
  /** Undefined for settings only the YAML file can hold. */
  readonly env: string | undefined;
  readonly flag: string | undefined;
  /** True when a bare flag means `true` (`--require-key`). */
  readonly boolean: boolean;
  readonly default: string;
  readonly meaning: string;
}

const list = (items: readonly (string | number)[]): string => (items.length === 0 ? '(none)' : items.join(','));
/** `idempotency-key` -> `Idempotency-Key`, as the contract and most docs write header names. */
const headerCase = (name: string): string => name.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase());

const HELP: Readonly<Record<SettingName, { readonly default: string; readonly meaning: string }>> = {
  upstream: { default: 'required', meaning: 'base URL of the protected API (http://host:port)' },
  port: { default: String(DEFAULTS.port), meaning: 'port of the proxy listener; 0: a free port, named in the listening log line' },
  host: { default: DEFAULTS.host, meaning: 'address of both listeners' },
  adminPort: {
    default: String(DEFAULTS.adminPort),
    meaning: 'port of health, readiness, metrics and the admin API; 0: a free port, named in the listening log line',
  },
  redisUrl: {
    default: 'unset',
    meaning:
      'redis:// or rediss:// URL of the record store; unset: an in-process store, for one replica only',
  },
  redisClusterNodes: {
    default: 'unset',
    meaning: 'comma-separated host:port seeds of a Redis Cluster used as the record store instead',
  },
  redisSentinels: {
    default: 'unset',
    meaning: 'comma-separated host:port of Redis Sentinels; with redisSentinelMaster, the record store is the master they name',
  },
  redisSentinelMaster: { default: 'unset', meaning: 'name of the master the Sentinels monitor (sentinel monitor <name> ...)' },
  redisUsername: { default: 'unset', meaning: 'ACL user for Cluster and Sentinel-managed nodes (URLs carry their own user)' },
  redisPassword: { default: 'unset', meaning: 'password for Cluster and Sentinel-managed nodes (URLs carry their own password)' },
  redisTls: { default: 'false', meaning: 'true: TLS to Cluster and Sentinel-managed nodes (URLs ask for TLS with rediss://)' },
  redisTlsCaFile: { default: 'system CAs', meaning: 'PEM file of the CA that signed the Redis servers\' certificates (store and locks)' },
  redisTlsCertFile: { default: 'unset', meaning: 'PEM client certificate presented to Redis (with redisTlsKeyFile)' },
  redisTlsKeyFile: { default: 'unset', meaning: 'PEM private key of redisTlsCertFile' },
  redisWaitReplicas: {
    default: String(DEFAULTS.redisWaitReplicas),
    meaning: 'replicas that must acknowledge a claim and a stored response (WAIT) before the sidecar acts on it; 0: do not wait',
  },
  redisWaitTimeout: {
    default: formatDuration(DEFAULTS.redisWaitTimeoutMs),
    meaning: 'longest wait for those acknowledgements; shorter than storeTimeout',
  },
  redlockUrls: {
    default: 'the record store',
    meaning: 'comma-separated URLs of independent Redis masters that hold the per-key locks (Redlock quorum)',
  },
  methods: { default: list(DEFAULTS.methods), meaning: 'methods that are guarded' },
  keyHeader: { default: headerCase(DEFAULTS.keyHeader), meaning: 'name of the key header' },
  requireKey: {
    default: String(DEFAULTS.requireKey),
    meaning: 'true: a guarded request without a key gets 400',
  },
  ttl: { default: formatDuration(DEFAULTS.ttlMs), meaning: 'how long a completed response is kept and replayed' },
  lockTtl: {
    default: formatDuration(DEFAULTS.lockTtlMs),
    meaning: 'lock lease; renewed while the upstream call runs; bounds how long a crashed replica can hold a key',
  },
  concurrent: {
    default: DEFAULTS.concurrent,
    meaning: 'reject: an in-flight duplicate gets 409 at once; wait: it waits for the first and gets its response',
  },
  waitTimeout: {
    default: formatDuration(DEFAULTS.waitTimeoutMs),
    meaning: 'longest wait in wait mode before answering 409',
  },
  maxWaiters: {
    default: String(DEFAULTS.maxWaiters),
    meaning: 'most duplicates this process keeps waiting at once in wait mode; the next one gets 409 without waiting',
  },
  upstreamTimeout: {
    default: formatDuration(DEFAULTS.upstreamTimeoutMs),
    meaning: "longest wait for the upstream's response",
  },
  maxBody: { default: String(DEFAULTS.maxBody), meaning: 'largest guarded request body, in bytes' },
  maxBodyMemory: {
    default: String(DEFAULTS.maxBodyMemory),
    meaning: 'most bytes of guarded request bodies held in memory at once; a guarded request past it gets 503 with Retry-After',
  },
  tenantHeaders: {
    default: list(DEFAULTS.tenantHeaders.map(headerCase)),
    meaning: 'comma-separated request headers whose values scope keys to a client; empty: no scoping',
  },
  tenantFrom: {
    default: DEFAULTS.tenantFrom,
    meaning: "headers: the tenant headers scope keys; client-certificate: the verified client certificate's subject does",
  },
  tenantMissing: {
    default: DEFAULTS.tenantMissing,
    meaning: 'reject: a keyed guarded request with none of the tenant headers gets 400 tenant-missing; shared: such requests share one tenant',
  },
  tlsCertFile: { default: 'unset', meaning: 'PEM certificate of the proxy listener; with tlsKeyFile it speaks HTTPS' },
  tlsKeyFile: { default: 'unset', meaning: 'PEM private key of tlsCertFile' },
  tlsClientCaFile: { default: 'unset', meaning: 'PEM CA bundle client certificates are verified against; set: a client certificate is required' },
  encryptionKeys: {
    default: 'unset',
    meaning: 'keys that encrypt stored responses (AES-256-GCM): id:base64-of-32-bytes, comma-separated, the first encrypts; unset: stored in the clear',
  },
  encryptionKeysFile: { default: 'unset', meaning: 'file with the same keys, one id:base64 per line (instead of encryptionKeys)' },
  clientHeaderTimeout: {
    default: formatDuration(DEFAULTS.clientHeaderTimeoutMs),
    meaning: 'longest a client may take to send its request headers',
  },
  clientRequestTimeout: {
    default: formatDuration(DEFAULTS.clientRequestTimeoutMs),
    meaning: 'longest a client may take to send its whole request, body included',
  },
  maxHeaderSize: { default: String(DEFAULTS.maxHeaderSize), meaning: 'largest request header block in bytes; larger gets 431' },
  memoryStoreMaxRecords: {
    default: String(DEFAULTS.memoryStoreMaxRecords),
    meaning: 'most records the in-process store keeps (no redisUrl); a new key beyond it gets 503',
  },
  storeUnavailable: {
    default: DEFAULTS.storeUnavailable,
    meaning: 'reject: guarded requests get 503 while Redis is down; passthrough: they go through unguarded',
  },
  releaseStatuses: {
    default: list(DEFAULTS.releaseStatuses),
    meaning: 'upstream statuses that are not stored: the key is released and a retry runs again',
  },
  onUnknown: {
    default: DEFAULTS.onUnknown,
    meaning: 'when the request was sent but no response came: hold the key, or release it',
  },
  adminToken: { default: 'unset', meaning: 'bearer token of the admin API; unset: the admin API is off' },
  storeTimeout: {
    default: formatDuration(DEFAULTS.storeTimeoutMs),
    meaning: 'longest a request waits on the record store before the store counts as down',
  },
  shutdownGrace: {
    default: formatDuration(DEFAULTS.shutdownGraceMs),
    meaning: 'how long SIGTERM lets in-flight requests finish; calls still in flight then are abandoned as unknown outcomes',
  },
  logLevel: { default: DEFAULTS.logLevel, meaning: `least severe log level written: ${LOG_LEVELS.join(', ')}` },
  routes: { default: '(none)', meaning: 'per-path rules, YAML file only (see config/example.yaml)' },
};

export const SETTINGS: readonly SettingInfo[] = Object.freeze(
  SETTING_NAMES.map((name) =>
    Object.freeze({
      name,
      env: FILE_ONLY.has(name) ? undefined : envName(name),
      flag: FILE_ONLY.has(name) ? undefined : flagName(name),
      boolean: name === 'requireKey' || name === 'redisTls',
      default: HELP[name].default,
      meaning: HELP[name].meaning,
    }),
  ),
);

// ---------------------------------------------------------------------------------------------
// Field checks. Each takes a value that is present (not undefined) and returns the parsed value
// or INVALID after reporting why. Messages start with the value as given and never echo secrets.

const INVALID: unique symbol = Symbol('invalid');
type Invalid = typeof INVALID;
type Path = readonly (string | number)[];
/** Records a problem (at `path` below the field, for list items and nested keys). */
type Report = (message: string, path?: Path) => Invalid;
type Check<T> = (value: unknown, report: Report) => T | Invalid;

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

const withDefault = <T>(check: Check<T>, fallback: T) => field(check, () => fallback);
const optional = <T>(check: Check<T>) => field<T | undefined>(check, () => undefined);

/** A value as the operator wrote it, for messages. */
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (value !== null && typeof value === 'object') return 'a mapping';
  return String(value);
}

/** `a, b or c` (or `a, b and c`). */
function wordList(words: readonly string[], conjunction: 'or' | 'and'): string {
  return words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} ${conjunction} ${words.at(-1) ?? ''}`;
}

const orList = (words: readonly string[]): string => wordList(words, 'or');

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A non-negative safe integer, from a number or a string of digits. */
function wholeNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value.trim())) return undefined;
  const n = Number(value.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A listener's port; 0 binds a free one, named in the "listening" log line. */
const port: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n > 65_535) {
    return report(`${show(value)} is not a port; use a whole number from 1 to 65535, or 0 for any free port`);
  }
  return n;
};

const TRUE_WORDS = new Set(['true', '1', 'yes']);
const FALSE_WORDS = new Set(['false', '0', 'no']);

const boolean: Check<boolean> = (value, report) => {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.has(word)) return true;
    if (FALSE_WORDS.has(word)) return false;
  }
  return report(`${show(value)} is not a boolean; use true or false`);
};

/** setTimeout fires at once (with only a warning) for anything longer than this. */
const LONGEST_TIMER_MS = 2_147_483_647;

function duration(options: { readonly timer: boolean }): Check<number> {
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
function oneOf<T extends string>(words: readonly T[]): Check<T> {
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
function listOf<T>(item: Check<T>, options: { readonly keepDuplicates?: boolean } = {}): Check<readonly T[]> {
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

function nonEmpty<T>(check: Check<readonly T[]>, whenEmpty: string): Check<readonly T[]> {
  return (value, report) => {
    const items = check(value, report);
    if (items !== INVALID && items.length === 0) return report(whenEmpty);
    return items;
  };
}

/** RFC 9110 token: what a method or a header field name may be made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const SAFE_METHODS: Readonly<Record<string, string>> = {
  GET: 'GET is a safe method',
  HEAD: 'HEAD is a safe method',
  OPTIONS: 'OPTIONS is a safe method',
  TRACE: 'TRACE is a safe method',
  CONNECT: 'CONNECT opens a tunnel',
};

const method: Check<string> = (value, report) => {
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

const methodList = nonEmpty(listOf(method), 'lists no method; give the methods to guard, e.g. POST,PATCH');

/** Headers a proxy consumes or rewrites: a key or tenant there would not be what the client sent. */
const UNUSABLE_HEADERS = new Set([
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

function headerName(options: { readonly forKey: boolean }): Check<string> {
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

const status: Check<number> = (value, report) => {
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

const HOST_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** A DNS name (underscores allowed: container runtimes hand them out) or an IP address. */
function isHost(text: string): boolean {
  if (isIP(text) !== 0) return true;
  const name = text.endsWith('.') ? text.slice(0, -1) : text;
  return name.length > 0 && name.length <= 253 && name.split('.').every((label) => HOST_LABEL.test(label));
}

const host: Check<string> = (value, report) => {
  const text = typeof value === 'string' ? value.trim() : '';
  if (!isHost(text)) {
    return report(`${show(value)} is not an address; give a host name or IP address without a port, e.g. 0.0.0.0 or ::`);
  }
  return text;
};

const upstream: Check<URL> = (value, report) => {
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

const redisUrl: Check<string> = (value, report) => {
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

const clusterNode: Check<string> = (value, report) => {
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
const redlockUrls: Check<readonly string[]> = (value, report) => {
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

const maxBody: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 1) {
    return report(`${show(value)} is not a size; use a whole number of bytes greater than 0, e.g. 1048576`);
  }
  if (n > bufferConstants.MAX_LENGTH) {
    return report(`${n} is larger than the largest buffer Node.js can hold (${bufferConstants.MAX_LENGTH} bytes)`);
  }
  return n;
};

const bodyMemory: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 1) {
    return report(`${show(value)} is not a size; use a whole number of bytes greater than 0, e.g. 67108864 (64 MiB)`);
  }
  return n;
};

const waiterCount: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined) return report(`${show(value)} is not a count; use a whole number, e.g. 1000 (0: no duplicate waits)`);
  return n;
};

/** A readable file, named by its path; the sidecar reads it at start-up. */
const readableFile: Check<string> = (value, report) => {
  if (typeof value !== 'string' || value.trim() === '') return report(`${show(value)} is not a file path; give the path of a readable file`);
  const text = value.trim();
  try {
    fs.accessSync(text, fs.constants.R_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    return report(`${JSON.stringify(text)} cannot be read (${code}); mount the file there, or fix the path`);
  }
  return text;
};

const sentinelMaster: Check<string> = (value, report) => {
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(value.trim())) {
    return report(`${show(value)} is not a master name; use the name given to sentinel monitor, e.g. mymaster`);
  }
  return value.trim();
};

const redisUsername: Check<string> = (value, report) => {
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,256}$/.test(value)) {
    return report(`${show(value)} is not an ACL user name; use visible ASCII without spaces`);
  }
  return value;
};

/** Never echoed. */
const secretText: Check<string> = (value, report) => {
  if (typeof value !== 'string') return report('is not a string; quote it in YAML');
  if (value === '') return report('is empty; unset it, or give the secret');
  if (!/^[\x21-\x7e]+$/.test(value)) {
    return report('contains spaces or control characters (a trailing newline from a secret file?); use visible ASCII only');
  }
  return value;
};

const waitReplicas: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n > 64) return report(`${show(value)} is not a replica count; use a whole number from 0 (do not wait) to 64`);
  return n;
};

const headerSize: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 1_024 || n > 1_048_576) {
    return report(`${show(value)} is not a header size; use a whole number of bytes from 1024 to 1048576, e.g. 16384`);
  }
  return n;
};

const recordCount: Check<number> = (value, report) => {
  const n = wholeNumber(value);
  if (n === undefined || n < 1) return report(`${show(value)} is not a record count; use a whole number greater than 0, e.g. 100000`);
  return n;
};

/** Never echoes a key: a message about a secret must not leak it. */
const encryptionKeys: Check<string> = (value, report) => {
  if (typeof value !== 'string') return report('is not a string; quote it in YAML');
  const parsed = parseEncryptionKeys(value, ',');
  if (!parsed.ok) return report(parsed.problem);
  return value;
};

/**
 * The key file is read and parsed here, not only at start-up: --config-test then catches a file
 * that holds no valid key, with the same line the start would print.
 */
const encryptionKeysFile: Check<string> = (value, report) => {
  const file = readableFile(value, report);
  if (typeof file !== 'string') return file;
  const parsed = parseEncryptionKeys(fs.readFileSync(file, 'utf8'), '\n');
  if (!parsed.ok) return report(`${JSON.stringify(file)} ${parsed.problem}`);
  return file;
};

const MIN_TOKEN_LENGTH = 16;

/** Never echoed: a message about a token must not leak the token. */
const adminToken: Check<string> = (value, report) => {
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

/** For a setting without a default: being unset is itself the problem. */
const required =
  (message: string) =>
  (report: Report): Invalid =>
    report(message);

// ---------------------------------------------------------------------------------------------
// Route rules

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

const ROUTE_KEYS = ['path', 'methods', 'guard', 'requireKey', 'ttl', 'concurrent', 'key', 'caseInsensitive', 'trailingSlash'] as const;

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

// ---------------------------------------------------------------------------------------------
// The schema

/** Cross-setting checks run only when the settings they compare parsed cleanly. */
function parsedCleanly(settings: readonly SettingName[]) {
  return (payload: { readonly issues: readonly { readonly path?: readonly PropertyKey[] | undefined }[] }): boolean =>
    !payload.issues.some((issue) => settings.some((s) => issue.path?.[0] === s));
}

export const settingsSchema = z
  .strictObject({
    upstream: field(
      upstream,
      required('is required: the base URL of the protected API, e.g. http://127.0.0.1:3000 (or --upstream, or upstream: in the YAML file)'),
    ),
    port: withDefault(port, DEFAULTS.port),
    host: withDefault(host, DEFAULTS.host),
    adminPort: withDefault(port, DEFAULTS.adminPort),
    redisUrl: optional(redisUrl),
    redisClusterNodes: optional(
      nonEmpty(listOf(clusterNode), 'lists no node; give host:port seeds, e.g. redis-0:6379,redis-1:6379, or unset it'),
    ),
    redisSentinels: optional(
      nonEmpty(listOf(clusterNode), 'lists no Sentinel; give host:port of each, e.g. sentinel-0:26379,sentinel-1:26379, or unset it'),
    ),
    redisSentinelMaster: optional(sentinelMaster),
    redisUsername: optional(redisUsername),
    redisPassword: optional(secretText),
    redisTls: withDefault(boolean, DEFAULTS.redisTls),
    redisTlsCaFile: optional(readableFile),
    redisTlsCertFile: optional(readableFile),
    redisTlsKeyFile: optional(readableFile),
    redisWaitReplicas: withDefault(waitReplicas, DEFAULTS.redisWaitReplicas),
    redisWaitTimeout: withDefault(duration({ timer: true }), DEFAULTS.redisWaitTimeoutMs),
    redlockUrls: optional(redlockUrls),
    methods: withDefault(methodList, DEFAULTS.methods),
    keyHeader: withDefault(headerName({ forKey: true }), DEFAULTS.keyHeader),
    requireKey: withDefault(boolean, DEFAULTS.requireKey),
    ttl: withDefault(duration({ timer: false }), DEFAULTS.ttlMs),
    lockTtl: withDefault(duration({ timer: true }), DEFAULTS.lockTtlMs),
    concurrent: withDefault(oneOf(CONCURRENT_MODES), DEFAULTS.concurrent),
    waitTimeout: withDefault(duration({ timer: true }), DEFAULTS.waitTimeoutMs),
    maxWaiters: withDefault(waiterCount, DEFAULTS.maxWaiters),
    upstreamTimeout: withDefault(duration({ timer: true }), DEFAULTS.upstreamTimeoutMs),
    maxBody: withDefault(maxBody, DEFAULTS.maxBody),
    maxBodyMemory: withDefault(bodyMemory, DEFAULTS.maxBodyMemory),
    tenantHeaders: withDefault(listOf(headerName({ forKey: false })), DEFAULTS.tenantHeaders),
    tenantFrom: withDefault(oneOf(TENANT_SOURCES), DEFAULTS.tenantFrom),
    tenantMissing: withDefault(oneOf(TENANT_MISSING_MODES), DEFAULTS.tenantMissing),
    tlsCertFile: optional(readableFile),
    tlsKeyFile: optional(readableFile),
    tlsClientCaFile: optional(readableFile),
    encryptionKeys: optional(encryptionKeys),
    encryptionKeysFile: optional(encryptionKeysFile),
    clientHeaderTimeout: withDefault(duration({ timer: true }), DEFAULTS.clientHeaderTimeoutMs),
    clientRequestTimeout: withDefault(duration({ timer: true }), DEFAULTS.clientRequestTimeoutMs),
    maxHeaderSize: withDefault(headerSize, DEFAULTS.maxHeaderSize),
    memoryStoreMaxRecords: withDefault(recordCount, DEFAULTS.memoryStoreMaxRecords),
    storeUnavailable: withDefault(oneOf(STORE_UNAVAILABLE_MODES), DEFAULTS.storeUnavailable),
    releaseStatuses: withDefault(listOf(status), DEFAULTS.releaseStatuses),
    onUnknown: withDefault(oneOf(ON_UNKNOWN_MODES), DEFAULTS.onUnknown),
    adminToken: optional(adminToken),
    storeTimeout: withDefault(duration({ timer: true }), DEFAULTS.storeTimeoutMs),
    shutdownGrace: withDefault(duration({ timer: true }), DEFAULTS.shutdownGraceMs),
    logLevel: withDefault(oneOf(LOG_LEVELS), DEFAULTS.logLevel),
    routes: z
      .array(routeRule, { error: 'is not a list of route rules; write routes: followed by - path: ... items' })
      .optional(),
  } satisfies Record<SettingName, z.ZodType>)
  .superRefine(
    (s, ctx) => {
      // Two zeros are two free ports, never the same one.
      if (s.port === s.adminPort && s.port !== 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['adminPort'],
          params: { also: ['port'] },
          message: `are both ${s.port}; the proxy and the admin listener need different ports`,
        });
      }
    },
    { when: parsedCleanly(['port', 'adminPort']) },
  )
  .superRefine(
    (s, ctx) => {
      const stores = (['redisUrl', 'redisClusterNodes', 'redisSentinels'] as const).filter((name) => s[name] !== undefined);
      if (stores.length > 1) {
        ctx.addIssue({
          code: 'custom',
          path: [stores[0] as string],
          params: { also: stores.slice(1) },
          message: `are ${stores.length === 2 ? 'both' : 'all'} set; the record store is one Redis, one Redis Cluster or one Sentinel-managed master: keep one`,
        });
      }
      if ((s.redisSentinels === undefined) !== (s.redisSentinelMaster === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: [s.redisSentinels === undefined ? 'redisSentinelMaster' : 'redisSentinels'],
          message:
            s.redisSentinels === undefined
              ? `is set without ${envName('redisSentinels')}; name the Sentinels too, or unset it`
              : `needs ${envName('redisSentinelMaster')} too: the name of the master they monitor, e.g. mymaster`,
        });
      }
      if (s.redlockUrls !== undefined && stores.length === 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['redlockUrls'],
          message:
            `needs a Redis record store too (${envName('redisUrl')}, ${envName('redisClusterNodes')} or ${envName('redisSentinels')}): ` +
            'with the in-process store each replica keeps its own records, so shared locks cannot stop a second run',
        });
      }
      const nodeSettings = [
        ...(s.redisUsername === undefined ? [] : ['redisUsername']),
        ...(s.redisPassword === undefined ? [] : ['redisPassword']),
        ...(s.redisTls ? ['redisTls'] : []),
      ];
      if (nodeSettings.length > 0 && s.redisClusterNodes === undefined && s.redisSentinels === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [nodeSettings[0] as string],
          params: { also: nodeSettings.slice(1) },
          message:
            `apply to a Redis Cluster or Sentinel set only; a single Redis takes its user, password and TLS from its URL ` +
            '(rediss://user:password@host:6380): put them there, or unset these',
        });
      }
      if ((s.redisTlsCertFile === undefined) !== (s.redisTlsKeyFile === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: [s.redisTlsCertFile === undefined ? 'redisTlsKeyFile' : 'redisTlsCertFile'],
          message: `needs ${envName(s.redisTlsCertFile === undefined ? 'redisTlsCertFile' : 'redisTlsKeyFile')} too: a client certificate goes with its key`,
        });
      }
      if (s.redisWaitReplicas > 0 && stores.length === 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['redisWaitReplicas'],
          message: 'needs a Redis record store with replicas; the in-process store has none: unset it or set 0',
        });
      }
    },
    { when: parsedCleanly(['redisUrl', 'redisClusterNodes', 'redisSentinels', 'redisSentinelMaster', 'redlockUrls', 'redisUsername', 'redisPassword', 'redisTls', 'redisTlsCertFile', 'redisTlsKeyFile', 'redisWaitReplicas']) },
  )
  .superRefine(
    (s, ctx) => {
      if (s.redisWaitReplicas > 0 && s.redisWaitTimeout >= s.storeTimeout) {
        ctx.addIssue({
          code: 'custom',
          path: ['redisWaitTimeout'],
          params: { also: ['storeTimeout'] },
          message:
            `is ${formatDuration(s.redisWaitTimeout)}, not shorter than the store timeout (${formatDuration(s.storeTimeout)}): ` +
            'a WAIT that outlasts it counts the store as down; shorten it or lengthen the store timeout',
        });
      }
    },
    { when: parsedCleanly(['redisWaitReplicas', 'redisWaitTimeout', 'storeTimeout']) },
  )
  .superRefine(
    (s, ctx) => {
      if ((s.tlsCertFile === undefined) !== (s.tlsKeyFile === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: [s.tlsCertFile === undefined ? 'tlsKeyFile' : 'tlsCertFile'],
          message: `needs ${envName(s.tlsCertFile === undefined ? 'tlsCertFile' : 'tlsKeyFile')} too: the listener's certificate goes with its key`,
        });
      }
      if (s.tlsClientCaFile !== undefined && s.tlsCertFile === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['tlsClientCaFile'],
          message: `needs the listener to speak HTTPS: set ${envName('tlsCertFile')} and ${envName('tlsKeyFile')} too`,
        });
      }
      if (s.tenantFrom === 'client-certificate' && s.tlsClientCaFile === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['tenantFrom'],
          message: `is client-certificate, but no client certificate is verified: set ${envName('tlsClientCaFile')} (and the listener's certificate and key)`,
        });
      }
      if (s.encryptionKeys !== undefined && s.encryptionKeysFile !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['encryptionKeys'],
          params: { also: ['encryptionKeysFile'] },
          message: 'are both set; give the keys one way: keep one',
        });
      }
      if (s.tenantFrom === 'headers' && s.tenantHeaders.length === 0 && s.tenantMissing === 'reject') {
        ctx.addIssue({
          code: 'custom',
          path: ['tenantHeaders'],
          params: { also: ['tenantMissing'] },
          message:
            `is empty while ${envName('tenantMissing')} is reject: every keyed request would get 400 tenant-missing; ` +
            `name the headers that identify a client, or set ${envName('tenantMissing')}=shared for an API with a single client`,
        });
      }
      if (s.maxBodyMemory < s.maxBody) {
        ctx.addIssue({
          code: 'custom',
          path: ['maxBodyMemory'],
          params: { also: ['maxBody'] },
          message: `is ${s.maxBodyMemory} bytes, less than one body of the largest size (${s.maxBody}); raise it, or lower the body limit`,
        });
      }
      if (s.clientHeaderTimeout > s.clientRequestTimeout) {
        ctx.addIssue({
          code: 'custom',
          path: ['clientHeaderTimeout'],
          params: { also: ['clientRequestTimeout'] },
          message: `is longer than the request timeout (${formatDuration(s.clientRequestTimeout)}), which includes the headers; shorten it`,
        });
      }
    },
    { when: parsedCleanly(['tlsCertFile', 'tlsKeyFile', 'tlsClientCaFile', 'tenantFrom', 'tenantHeaders', 'tenantMissing', 'maxBody', 'maxBodyMemory', 'encryptionKeys', 'encryptionKeysFile', 'clientHeaderTimeout', 'clientRequestTimeout']) },
  )
  .superRefine(
    (s, ctx) => {
      const rules = s.routes ?? [];
      rules.forEach((later, j) => {
        const laterMethods = later.methods ?? s.methods;
        const i = rules.findIndex(
          (earlier, k) =>
            k < j &&
            pathCovers(earlier, later) &&
            laterMethods.every((m) => (earlier.methods ?? s.methods).includes(m)),
        );
        if (i !== -1) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', j, 'path'],
            message: `${later.path} can never match: routes[${i}] (${rules[i]?.path ?? ''}) comes first and matches every request it would; put the more specific rule first`,
          });
        }
      });
    },
    { when: parsedCleanly(['routes', 'methods']) },
  )
  .transform(
    (s): Config => ({
      upstream: s.upstream,
      port: s.port,
      host: s.host,
      adminPort: s.adminPort,
      ...(s.redisUrl === undefined ? {} : { redisUrl: s.redisUrl }),
      ...(s.redisClusterNodes === undefined ? {} : { redisClusterNodes: s.redisClusterNodes }),
      ...(s.redisSentinels === undefined ? {} : { redisSentinels: s.redisSentinels }),
      ...(s.redisSentinelMaster === undefined ? {} : { redisSentinelMaster: s.redisSentinelMaster }),
      ...(s.redisUsername === undefined ? {} : { redisUsername: s.redisUsername }),
      ...(s.redisPassword === undefined ? {} : { redisPassword: s.redisPassword }),
      redisTls: s.redisTls,
      ...(s.redisTlsCaFile === undefined ? {} : { redisTlsCaFile: s.redisTlsCaFile }),
      ...(s.redisTlsCertFile === undefined ? {} : { redisTlsCertFile: s.redisTlsCertFile }),
      ...(s.redisTlsKeyFile === undefined ? {} : { redisTlsKeyFile: s.redisTlsKeyFile }),
      redisWaitReplicas: s.redisWaitReplicas,
      redisWaitTimeoutMs: s.redisWaitTimeout,
      ...(s.redlockUrls === undefined ? {} : { redlockUrls: s.redlockUrls }),
      methods: s.methods,
      keyHeader: s.keyHeader,
      requireKey: s.requireKey,
      ttlMs: s.ttl,
      lockTtlMs: s.lockTtl,
      concurrent: s.concurrent,
      waitTimeoutMs: s.waitTimeout,
      maxWaiters: s.maxWaiters,
      upstreamTimeoutMs: s.upstreamTimeout,
      maxBody: s.maxBody,
      maxBodyMemory: s.maxBodyMemory,
      tenantHeaders: s.tenantHeaders,
      tenantFrom: s.tenantFrom,
      tenantMissing: s.tenantMissing,
      ...(s.tlsCertFile === undefined ? {} : { tlsCertFile: s.tlsCertFile }),
      ...(s.tlsKeyFile === undefined ? {} : { tlsKeyFile: s.tlsKeyFile }),
      ...(s.tlsClientCaFile === undefined ? {} : { tlsClientCaFile: s.tlsClientCaFile }),
      ...(s.encryptionKeys === undefined ? {} : { encryptionKeys: s.encryptionKeys }),
      ...(s.encryptionKeysFile === undefined ? {} : { encryptionKeysFile: s.encryptionKeysFile }),
      clientHeaderTimeoutMs: s.clientHeaderTimeout,
      clientRequestTimeoutMs: s.clientRequestTimeout,
      maxHeaderSize: s.maxHeaderSize,
      memoryStoreMaxRecords: s.memoryStoreMaxRecords,
      storeUnavailable: s.storeUnavailable,
      releaseStatuses: s.releaseStatuses,
      onUnknown: s.onUnknown,
      ...(s.adminToken === undefined ? {} : { adminToken: s.adminToken }),
      storeTimeoutMs: s.storeTimeout,
      shutdownGraceMs: s.shutdownGrace,
      logLevel: s.logLevel,
      routes: s.routes ?? [],
    }),
  );

// ---------------------------------------------------------------------------------------------
// Validation with operator-facing names

/** Where a raw value came from; decides how a problem names the setting. */
export type SettingSource =
  | { readonly kind: 'flag' }
  | { readonly kind: 'env' }
  | { readonly kind: 'file'; readonly file: string };

export type SettingSources = Readonly<Partial<Record<string, SettingSource>>>;

export interface SettingProblem {
  /** The setting (YAML name) the problem is about, or the unknown key. */
  readonly setting: string;
  /** One line, starting with the name to fix: `IDEMPOTENCY_TTL: "24" is not a duration; ...`. */
  readonly message: string;
}

export type CheckResult =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly problems: readonly SettingProblem[] };

/**
 * Validates raw settings, keyed by YAML name, into a deeply frozen Config, or lists every problem.
 * `sources` says where each raw value came from; a setting without one is named by its variable.
 */
export function checkSettings(raw: Readonly<Record<string, unknown>>, sources: SettingSources): CheckResult {
  const result = settingsSchema.safeParse(raw);
  if (result.success) return { ok: true, config: deepFreeze(result.data) };
  return { ok: false, problems: result.error.issues.flatMap((issue) => describeIssue(issue, sources)) };
}

function describeIssue(issue: z.core.$ZodIssue, sources: SettingSources): SettingProblem[] {
  const path = issue.path.map((part) => (typeof part === 'symbol' ? String(part) : part));
  if (issue.code === 'unrecognized_keys') {
    const known: readonly string[] = path.length === 0 ? SETTING_NAMES : ROUTE_KEYS;
    return issue.keys.map((key) => {
      const setting = path.length === 0 ? key : String(path[0]);
      const what = path.length === 0 ? 'unknown setting' : 'unknown key';
      const hint = suggest(key, known);
      const at = path.length === 0 ? '' : ` ${yamlPath(path)}:`;
      return {
        setting,
        message: `${fileOf(setting, sources)}:${at} ${what} ${JSON.stringify(key)}${hint === undefined ? '' : `; did you mean ${hint}?`}`,
      };
    });
  }
  const setting = String(path[0] ?? '');
  const also = (issue.code === 'custom' ? (issue.params?.['also'] as unknown) : undefined) ?? [];
  const related = Array.isArray(also) ? also.map(String) : [];
  return [{ setting, message: `${label([setting, ...related], path, sources)}: ${issue.message}` }];
}

function fileOf(setting: string, sources: SettingSources): string {
  const source = sources[setting];
  return source?.kind === 'file' ? source.file : 'config file';
}

/** `IDEMPOTENCY_TTL`, `--ttl`, `config.yaml: routes[1].ttl`; several settings joined with "and". */
function label(settings: readonly string[], path: readonly (string | number)[], sources: SettingSources): string {
  const names = settings.map((setting, i) => {
    const source = sources[setting];
    if (source?.kind === 'flag') return { file: undefined, name: flagName(setting) };
    if (source?.kind === 'file') return { file: source.file, name: i === 0 ? yamlPath(path) : setting };
    return { file: undefined, name: envName(setting) };
  });
  const files = new Set(names.map((n) => n.file));
  const [only] = files;
  if (files.size === 1 && only !== undefined) return `${only}: ${names.map((n) => n.name).join(' and ')}`;
  return names.map((n) => (n.file === undefined ? n.name : `${n.file}: ${n.name}`)).join(' and ');
}

/** `['routes', 1, 'ttl']` -> `routes[1].ttl`. */
function yamlPath(path: readonly (string | number)[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

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

/**
 * Freezes `value` and everything reachable from it. A URL's state lives in internal slots that
 * Object.freeze cannot reach, so `config.upstream` is frozen only as an object; nothing writes it.
 */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    if (!(value instanceof URL)) for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
