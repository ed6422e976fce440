/**
 * The validated, frozen configuration. `load.ts` builds it from flags, environment and a YAML
 * file (highest first) and `schema.ts` validates it; nothing else reads process.env or argv.
 * Durations are milliseconds; header names are lower case.
 */

export type ConcurrentMode = 'reject' | 'wait';
export type StoreUnavailableMode = 'reject' | 'passthrough';
export type OnUnknownMode = 'hold' | 'release';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/** What scopes a key to one client: the tenant headers, or the verified client certificate's subject. */
export type TenantSource = 'headers' | 'client-certificate';
/** A keyed guarded request without any tenant header: refused (400), or put in one shared tenant. */
export type TenantMissingMode = 'reject' | 'shared';

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
  /** `/Payments` matches `/payments` (for upstreams that route case-insensitively, as Express does). */
  readonly caseInsensitive?: boolean;
  /** An exact rule also matches its path with a trailing `/` (Express's default, too). */
  readonly trailingSlash?: boolean;
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
  /** `host:port` of the Sentinels; with redisSentinelMaster, the record store is that master. */
  readonly redisSentinels?: readonly string[];
  readonly redisSentinelMaster?: string;
  /** ACL user and password of Cluster and Sentinel-managed nodes (URLs carry their own). */
  readonly redisUsername?: string;
  readonly redisPassword?: string;
  /** TLS to Cluster and Sentinel-managed nodes (URLs say it with rediss://). */
  readonly redisTls: boolean;
  /** PEM files for every TLS connection to Redis, the store's and the locks'. */
  readonly redisTlsCaFile?: string;
  readonly redisTlsCertFile?: string;
  readonly redisTlsKeyFile?: string;
  /** Replicas that must acknowledge a claim and a completion (WAIT) before the sidecar acts on it; 0: none. */
  readonly redisWaitReplicas: number;
  readonly redisWaitTimeoutMs: number;
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
  /** Most duplicates one process keeps waiting at once in `wait` mode; the next gets 409 at once. */
  readonly maxWaiters: number;
  readonly upstreamTimeoutMs: number;
  readonly maxBody: number;
  /** Most bytes of guarded request bodies held in memory at once; a request past it gets 503. */
  readonly maxBodyMemory: number;
  /** Lower case; may be empty (no tenant scoping). */
  readonly tenantHeaders: readonly string[];
  readonly tenantFrom: TenantSource;
  readonly tenantMissing: TenantMissingMode;
  /** PEM files of the proxy listener: set both and it speaks HTTPS. */
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  /** CA bundle that client certificates are verified against; set: clients must present one. */
  readonly tlsClientCaFile?: string;
  /**
   * Keys for encrypting stored responses (AES-256-GCM), `id:base64key` separated by commas, the
   * first one encrypting; or the same one per line in a file. Unset: stored in the clear.
   */
  readonly encryptionKeys?: string;
  readonly encryptionKeysFile?: string;
  /** Longest a client may take to send its request headers, and the whole request. */
  readonly clientHeaderTimeoutMs: number;
  readonly clientRequestTimeoutMs: number;
  /** Largest request header block, in bytes; larger gets 431. */
  readonly maxHeaderSize: number;
  /** Most records the in-process store keeps; a new key beyond it gets 503. */
  readonly memoryStoreMaxRecords: number;
  readonly storeUnavailable: StoreUnavailableMode;
  readonly releaseStatuses: readonly number[];
  readonly onUnknown: OnUnknownMode;
  readonly adminToken?: string;
  readonly storeTimeoutMs: number;
  readonly shutdownGraceMs: number;
  readonly logLevel: LogLevel;
  readonly routes: readonly RouteRule[];
}
