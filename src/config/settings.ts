/**
 * The validated, frozen configuration. `load.ts` builds it from flags, environment and a YAML
 * file (highest first) and `schema.ts` validates it; nothing else reads process.env or argv.
 * Durations are milliseconds; header names are lower case.
 */

export type ConcurrentMode = 'reject' | 'wait';
export type StoreUnavailableMode = 'reject' | 'passthrough';
export type OnUnknownMode = 'hold' | 'release';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export type KeySource =
  | { readonly from: 'header'; readonly name: string }
  /** RFC 6901 JSON pointer into a JSON request body, e.g. `/order_id`. */
  | { readonly from: 'body'; readonly pointer: string };

export interface RouteRule {
  /** Exact path, or a prefix ending in `/*` that matches the prefix itself and all below it. */
  readonly path: string;
  /** Upper case. Absent: the guarded methods. */
  readonly methods?: readonly string[];
  readonly guard?: boolean;
  readonly requireKey?: boolean;
  readonly ttlMs?: number;
  readonly concurrent?: ConcurrentMode;
  readonly key?: KeySource;
}

export interface Config {
  /** Origin of the protected API, `http://host:port` (no path). */
  readonly upstream: URL;
  readonly port: number;
  readonly host: string;
  readonly adminPort: number;
  readonly redisUrl?: string;
  /** `host:port` seeds. */
  readonly redisClusterNodes?: readonly string[];
  readonly redlockUrls?: readonly string[];
  /** Upper case. */
  readonly methods: readonly string[];
  /** Lower case. */
  readonly keyHeader: string;
  readonly requireKey: boolean;
  readonly ttlMs: number;
  readonly lockTtlMs: number;
  readonly concurrent: ConcurrentMode;
  readonly waitTimeoutMs: number;
  readonly upstreamTimeoutMs: number;
  readonly maxBody: number;
  /** Lower case; may be empty (no tenant scoping). */
  readonly tenantHeaders: readonly string[];
  readonly storeUnavailable: StoreUnavailableMode;
  readonly releaseStatuses: readonly number[];
  readonly onUnknown: OnUnknownMode;
  readonly adminToken?: string;
  readonly storeTimeoutMs: number;
  readonly shutdownGraceMs: number;
  readonly logLevel: LogLevel;
  readonly routes: readonly RouteRule[];
}
