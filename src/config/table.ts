/**
 * The settings table: one row per setting, and everything else about settings derives from it.
 * A row says how the value is parsed and checked, its default (or that it is required or may stay
 * unset), its help text, whether it is a secret, and which commands read it. From the rows come
 * the flag (`--admin-port`), the variable (`IDEMPOTENCY_ADMIN_PORT`), the YAML key (`adminPort`),
 * `--help`, the redaction of `--config-test` and the type of the values (SettingValues).
 *
 * Adding a setting is one row here plus the code that uses it; a setting that depends on others
 * gets its cross-check in schema.ts, where the Config is assembled.
 *
 * Two groups, because they are two programs with their own names: the sidecar's settings
 * (`IDEMPOTENCY_*`, flags, the YAML file; read by the proxy and, for its two rows, the
 * healthcheck) and the webhook's (`IDEMPOTENCY_WEBHOOK_*` and flags; no file).
 */

import { formatDuration } from './duration';
import {
  adminToken,
  bodyMemory,
  boolean,
  clusterNode,
  CONCURRENT_MODES,
  duration,
  encryptionKeys,
  filePath,
  headerName,
  headerSize,
  host,
  listOf,
  LOG_LEVELS,
  maxBody,
  methodList,
  nonEmpty,
  ON_UNKNOWN_MODES,
  oneOf,
  port,
  recordCount,
  redisUrl,
  redisUsername,
  redlockUrls,
  secretText,
  sentinelMaster,
  status,
  STORE_UNAVAILABLE_MODES,
  TENANT_MISSING_MODES,
  TENANT_SOURCES,
  upstream,
  waiterCount,
  waitReplicas,
  type Check,
} from './checks';
import { routeRules } from './route-rules';

/** The programs that read settings; a row lists the ones that read it. */
export type Command = 'proxy' | 'healthcheck' | 'webhook';

/** What an unset value becomes. */
export type Absent<T> = { readonly default: T } | { readonly required: string } | 'optional';

export interface Row<T> {
  readonly check: Check<T>;
  readonly absent: Absent<T>;
  readonly help: string;
  /** The default as --help prints it. */
  readonly shownDefault: string;
  /** `value`: never printed; `url-password`: printed with the URL's password blanked. */
  readonly secret?: 'value' | 'url-password';
  readonly commands: readonly Command[];
  /** A bare flag means true (`--require-key`). */
  readonly flagIsBoolean: boolean;
  /** Only the YAML file can hold it: a list of rules fits in no variable or flag. */
  readonly fileOnly: boolean;
  /** The Config's name for it when it differs (durations are milliseconds: `ttl` -> `ttlMs`). */
  readonly key?: string;
}

interface RowOptions {
  readonly help: string;
  readonly shownDefault?: string;
  readonly secret?: 'value' | 'url-password';
  readonly commands?: readonly Command[];
  readonly fileOnly?: boolean;
}

const PROXY_ONLY: readonly Command[] = ['proxy'];

const list = (items: readonly (string | number)[]): string => (items.length === 0 ? '(none)' : items.join(','));

function shown(value: unknown): string {
  if (Array.isArray(value)) return list(value.map(String));
  return String(value);
}

function row<T, A extends Absent<T>, K extends string | undefined>(
  check: Check<T>,
  absent: A,
  options: RowOptions & { readonly key?: K },
): Row<T> & { readonly absent: A; readonly key: K | undefined } {
  const fallback: Absent<T> = absent;
  return Object.freeze({
    check,
    absent,
    help: options.help,
    shownDefault:
      options.shownDefault ?? (fallback === 'optional' ? 'unset' : 'default' in fallback ? shown(fallback.default) : 'required'),
    ...(options.secret === undefined ? {} : { secret: options.secret }),
    commands: options.commands ?? PROXY_ONLY,
    flagIsBoolean: (check as Check<unknown>) === boolean,
    fileOnly: options.fileOnly ?? false,
    key: options.key,
  });
}

/** A setting with a default. */
const withDefault = <T, const K extends string | undefined = undefined>(check: Check<T>, fallback: T, options: RowOptions & { readonly key?: K }) =>
  row(check, { default: fallback }, options);

/** A setting that may stay unset. */
const optional = <T, const K extends string | undefined = undefined>(check: Check<T>, options: RowOptions & { readonly key?: K }) =>
  row(check, 'optional' as const, options);

/** A setting without which the command cannot run; `why` finishes the line "X: is required: ...". */
const required = <T, const K extends string | undefined = undefined>(check: Check<T>, why: string, options: RowOptions & { readonly key?: K }) =>
  row(check, { required: why }, options);

/** A duration row: milliseconds in the Config (`key`), written as 24h in help. */
const durationSetting = <const K extends string>(fallback: number, key: K, help: string, timer = true) =>
  withDefault(duration({ timer }), fallback, { key, help, shownDefault: formatDuration(fallback) });

/** `idempotency-key` -> `Idempotency-Key`, as the contract and most docs write header names. */
const headerCase = (name: string): string => name.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase());

const LISTENERS: readonly Command[] = ['proxy', 'healthcheck'];

/** The sidecar's settings, by YAML name, in the order --help lists them. */
export const SIDECAR_SETTINGS = {
  upstream: required(
    upstream,
    'the base URL of the protected API, e.g. http://127.0.0.1:3000 (or --upstream, or upstream: in the YAML file)',
    { help: 'base URL of the protected API (http://host:port)' },
  ),
  port: withDefault(port, 8080, { help: 'port of the proxy listener; 0: a free port, named in the listening log line' }),
  host: withDefault(host, '0.0.0.0', { help: 'address of both listeners', commands: LISTENERS }),
  adminPort: withDefault(port, 9090, {
    help: 'port of health, readiness, metrics and the admin API; 0: a free port, named in the listening log line',
    commands: LISTENERS,
  }),
  redisUrl: optional(redisUrl, {
    help: 'redis:// or rediss:// URL of the record store; unset: an in-process store, for one replica only',
    secret: 'url-password',
  }),
  redisClusterNodes: optional(
    nonEmpty(listOf(clusterNode), 'lists no node; give host:port seeds, e.g. redis-0:6379,redis-1:6379, or unset it'),
    { help: 'comma-separated host:port seeds of a Redis Cluster used as the record store instead' },
  ),
  redisSentinels: optional(
    nonEmpty(listOf(clusterNode), 'lists no Sentinel; give host:port of each, e.g. sentinel-0:26379,sentinel-1:26379, or unset it'),
    { help: 'comma-separated host:port of Redis Sentinels; with redisSentinelMaster, the record store is the master they name' },
  ),
  redisSentinelMaster: optional(sentinelMaster, { help: 'name of the master the Sentinels monitor (sentinel monitor <name> ...)' }),
  redisUsername: optional(redisUsername, { help: 'ACL user for Cluster and Sentinel-managed nodes (URLs carry their own user)' }),
  redisPassword: optional(secretText, {
    help: 'password for Cluster and Sentinel-managed nodes (URLs carry their own password)',
    secret: 'value',
  }),
  redisTls: withDefault(boolean, false, { help: 'true: TLS to Cluster and Sentinel-managed nodes (URLs ask for TLS with rediss://)' }),
  redisTlsCaFile: optional(filePath, {
    help: "PEM file of the CA that signed the Redis servers' certificates (store and locks)",
    shownDefault: 'system CAs',
  }),
  redisTlsCertFile: optional(filePath, { help: 'PEM client certificate presented to Redis (with redisTlsKeyFile)' }),
  redisTlsKeyFile: optional(filePath, { help: 'PEM private key of redisTlsCertFile' }),
  redisWaitReplicas: withDefault(waitReplicas, 0, {
    help: 'replicas that must acknowledge a claim and a stored response (WAIT) before the sidecar acts on it; 0: do not wait',
  }),
  redisWaitTimeout: durationSetting(500, 'redisWaitTimeoutMs', 'longest wait for those acknowledgements; shorter than storeTimeout'),
  redlockUrls: optional(redlockUrls, {
    help: 'comma-separated URLs of independent Redis masters that hold the per-key locks (Redlock quorum)',
    shownDefault: 'the record store',
    secret: 'url-password',
  }),
  methods: withDefault(methodList, ['POST', 'PATCH'], { help: 'methods that are guarded' }),
  keyHeader: withDefault(headerName({ forKey: true }), 'idempotency-key', {
    help: 'name of the key header',
    shownDefault: headerCase('idempotency-key'),
  }),
  requireKey: withDefault(boolean, false, { help: 'true: a guarded request without a key gets 400' }),
  ttl: durationSetting(24 * 3_600_000, 'ttlMs', 'how long a completed response is kept and replayed', false),
  lockTtl: durationSetting(
    10_000,
    'lockTtlMs',
    'lock lease; renewed while the upstream call runs; bounds how long a crashed replica can hold a key',
  ),
  concurrent: withDefault(oneOf(CONCURRENT_MODES), 'reject', {
    help: 'reject: an in-flight duplicate gets 409 at once; wait: it waits for the first and gets its response',
  }),
  waitTimeout: durationSetting(30_000, 'waitTimeoutMs', 'longest wait in wait mode before answering 409'),
  maxWaiters: withDefault(waiterCount, 1_000, {
    help: 'most duplicates this process keeps waiting at once in wait mode; the next one gets 409 without waiting',
  }),
  upstreamTimeout: durationSetting(30_000, 'upstreamTimeoutMs', "longest wait for the upstream's response"),
  maxBody: withDefault(maxBody, 1_048_576, { help: 'largest guarded request body, in bytes' }),
  maxBodyMemory: withDefault(bodyMemory, 64 * 1_048_576, {
    help: 'most bytes of guarded request bodies held in memory at once; a guarded request past it gets 503 with Retry-After',
  }),
  tenantHeaders: withDefault(listOf(headerName({ forKey: false })), ['authorization'], {
    help: 'comma-separated request headers whose values scope keys to a client; empty: no scoping',
    shownDefault: headerCase('authorization'),
  }),
  tenantFrom: withDefault(oneOf(TENANT_SOURCES), 'headers', {
    help: "headers: the tenant headers scope keys; client-certificate: the verified client certificate's subject does",
  }),
  tenantMissing: withDefault(oneOf(TENANT_MISSING_MODES), 'reject', {
    help: 'reject: a keyed guarded request with none of the tenant headers gets 400 tenant-missing; shared: such requests share one tenant',
  }),
  tlsCertFile: optional(filePath, { help: 'PEM certificate of the proxy listener; with tlsKeyFile it speaks HTTPS' }),
  tlsKeyFile: optional(filePath, { help: 'PEM private key of tlsCertFile' }),
  tlsClientCaFile: optional(filePath, {
    help: 'PEM CA bundle client certificates are verified against; set: a client certificate is required',
  }),
  encryptionKeys: optional(encryptionKeys, {
    help: 'keys that encrypt stored responses (AES-256-GCM): id:base64-of-32-bytes, comma-separated, the first encrypts; unset: stored in the clear',
    secret: 'value',
  }),
  encryptionKeysFile: optional(filePath, { help: 'file with the same keys, one id:base64 per line (instead of encryptionKeys)' }),
  clientHeaderTimeout: durationSetting(10_000, 'clientHeaderTimeoutMs', 'longest a client may take to send its request headers'),
  clientRequestTimeout: durationSetting(
    60_000,
    'clientRequestTimeoutMs',
    'longest a client may take to send its whole request, body included',
  ),
  maxHeaderSize: withDefault(headerSize, 16_384, { help: 'largest request header block in bytes; larger gets 431' }),
  memoryStoreMaxRecords: withDefault(recordCount, 100_000, {
    help: 'most records the in-process store keeps (no redisUrl); a new key beyond it gets 503',
  }),
  storeUnavailable: withDefault(oneOf(STORE_UNAVAILABLE_MODES), 'reject', {
    help: 'reject: guarded requests get 503 while Redis is down; passthrough: they go through unguarded',
  }),
  releaseStatuses: withDefault(listOf(status), [408, 409, 425, 429, 503], {
    help: 'upstream statuses that are not stored: the key is released and a retry runs again',
  }),
  onUnknown: withDefault(oneOf(ON_UNKNOWN_MODES), 'hold', {
    help: 'when the request was sent but no response came: hold the key, or release it',
  }),
  adminToken: optional(adminToken, { help: 'bearer token of the admin API; unset: the admin API is off', secret: 'value' }),
  storeTimeout: durationSetting(
    1_000,
    'storeTimeoutMs',
    'longest a request waits on the record store before the store counts as down',
  ),
  shutdownGrace: durationSetting(
    25_000,
    'shutdownGraceMs',
    'how long SIGTERM lets in-flight requests finish; calls still in flight then are abandoned as unknown outcomes',
  ),
  logLevel: withDefault(oneOf(LOG_LEVELS), 'info', { help: `least severe log level written: ${LOG_LEVELS.join(', ')}` }),
  routes: withDefault(routeRules, [], { help: 'per-path rules, YAML file only (see config/example.yaml)', fileOnly: true }),
} as const;

/** The webhook's settings (`IDEMPOTENCY_WEBHOOK_*`), by name, in the order --help lists them. */
export const WEBHOOK_SETTINGS = {
  port: withDefault(port, 8443, { help: 'port of the HTTPS listener (POST /mutate, GET /healthz)', commands: ['webhook'] }),
  host: withDefault(host, '0.0.0.0', { help: 'address of the HTTPS listener', commands: ['webhook'] }),
  tlsCert: required(filePath, 'the path of the PEM serving certificate, e.g. /etc/webhook/tls/tls.crt', {
    help: 'PEM file of the serving certificate (with its chain); re-read when it changes',
    commands: ['webhook'],
  }),
  tlsKey: required(filePath, 'the path of its PEM private key, e.g. /etc/webhook/tls/tls.key', {
    help: 'PEM file of the private key of tlsCert; re-read when it changes',
    commands: ['webhook'],
  }),
  tlsReloadInterval: withDefault(duration({ timer: true }), 10_000, {
    key: 'tlsReloadIntervalMs',
    help: 'how often the certificate and key files are re-read; a new pair that does not load is refused and the old one kept',
    shownDefault: formatDuration(10_000),
    commands: ['webhook'],
  }),
  sidecarTemplate: required(filePath, 'the path of the sidecar template, e.g. /etc/webhook/template/sidecar.yaml', {
    help: 'YAML or JSON file: the Kubernetes Container to inject, plus nativeSidecar: true|false (see config/webhook-sidecar-template.yaml)',
    commands: ['webhook'],
  }),
  logLevel: withDefault(oneOf(LOG_LEVELS), 'info', {
    help: `least severe log level written: ${LOG_LEVELS.join(', ')}`,
    commands: ['webhook'],
  }),
} as const;

/** A group of rows, by YAML name, with how its variables are named. */
export interface SettingGroup<Rows extends Readonly<Record<string, Row<unknown>>>> {
  readonly rows: Rows;
  /** `IDEMPOTENCY_` or `IDEMPOTENCY_WEBHOOK_`. */
  readonly envPrefix: string;
  /** The variable and flag naming a YAML file of the group's settings; absent: no file. */
  readonly file?: { readonly env: string; readonly flag: string };
}

export const SIDECAR = {
  rows: SIDECAR_SETTINGS,
  envPrefix: 'IDEMPOTENCY_',
  file: { env: 'IDEMPOTENCY_CONFIG', flag: '--config' },
} as const satisfies SettingGroup<typeof SIDECAR_SETTINGS>;

export const WEBHOOK = { rows: WEBHOOK_SETTINGS, envPrefix: 'IDEMPOTENCY_WEBHOOK_' } as const satisfies SettingGroup<typeof WEBHOOK_SETTINGS>;

export type SidecarSettingName = keyof typeof SIDECAR_SETTINGS;

// ---------------------------------------------------------------------------------------------
// The values' type, derived from the rows

type ValueOf<R> = R extends Row<infer T> ? (R extends { readonly absent: 'optional' } ? T | undefined : T) : never;
type KeyOf<N extends string, R> = R extends { readonly key: infer K } ? ([Exclude<K, undefined>] extends [never] ? N : Exclude<K, undefined> & string) : N;
type OptionalNames<Rows> = { [N in keyof Rows]: Rows[N] extends { readonly absent: 'optional' } ? N : never }[keyof Rows];

/** What a group's rows parse into, by their Config names: `{ ttlMs: number; redisUrl?: string; ... }`. */
export type SettingValues<Rows> = {
  readonly [N in Exclude<keyof Rows, OptionalNames<Rows>> & string as KeyOf<N, Rows[N]>]: ValueOf<Rows[N]>;
} & {
  readonly [N in OptionalNames<Rows> & string as KeyOf<N, Rows[N]>]?: ValueOf<Rows[N]>;
};

/** The Config's name of a row: its key, or its YAML name. */
export function configKey(name: string, setting: Row<unknown>): string {
  return setting.key ?? name;
}

/** `adminPort` -> `IDEMPOTENCY_ADMIN_PORT` (with the group's prefix). */
export function envName(setting: string, prefix: string = SIDECAR.envPrefix): string {
  return `${prefix}${setting.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** `adminPort` -> `--admin-port`. */
export function flagName(setting: string): string {
  return `--${setting.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
