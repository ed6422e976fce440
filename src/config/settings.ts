/**
 * The validated, frozen configuration. `reader.ts` reads the settings the table (`table.ts`) has
 * rows for, from flags, environment and a YAML file (highest first); `schema.ts` checks them
 * against each other and assembles this Config, with what the files they name hold already read
 * and parsed. Nothing else reads process.env or argv. Durations are milliseconds; header names
 * are lower case.
 */
import type { ConfiguredKeys } from './encryption-keys';
import type { KeyPair, KeyPairPaths } from '../tls/key-pair';
import type { RedisTlsOptions } from '../tls/redis-tls-files';
import type { SettingValues, SIDECAR_SETTINGS } from './table';

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

/** The rows that describe the record store: assembled into `Config.store`, not fields of their own. */
type StoreRows =
  | 'redisUrl'
  | 'redisClusterNodes'
  | 'redisSentinels'
  | 'redisSentinelMaster'
  | 'redisUsername'
  | 'redisPassword'
  | 'redisTls'
  | 'redisTlsCaFile'
  | 'redisTlsCertFile'
  | 'redisTlsKeyFile'
  | 'redisWaitReplicas'
  | 'redisWaitTimeout'
  | 'redlockUrls'
  | 'memoryStoreMaxRecords';

/** Rows whose files are read into `listenerTls` and `encryption`. */
type MaterialRows = 'tlsCertFile' | 'tlsKeyFile' | 'tlsClientCaFile' | 'encryptionKeys' | 'encryptionKeysFile';

/** Every sidecar setting as its row parsed it, by Config name (what --config-test prints). */
export type SidecarValues = SettingValues<typeof SIDECAR_SETTINGS>;

/** The ACL user and password of Cluster and Sentinel-managed nodes (a URL carries its own). */
export interface NodeAuth {
  readonly username?: string;
  readonly password?: string;
}

interface RedisStoreCommon {
  /** Replicas that must acknowledge a claim and a completion (WAIT) before the sidecar acts on it; 0: none. */
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  /** Independent masters holding the per-key locks (Redlock); absent: the store's claim is the lock. */
  readonly redlockUrls?: readonly string[];
  /** The CA and client certificate of every TLS connection to Redis, the store's and the locks', read and checked. */
  readonly tls: RedisTlsOptions;
  /** True when TLS files were given: a warning when no connection uses TLS. */
  readonly tlsFilesGiven: boolean;
}

/** The record store: exactly one kind, with what that kind needs and nothing else. */
export type StoreConfig =
  | { readonly kind: 'memory'; readonly maxRecords: number }
  | (RedisStoreCommon & { readonly kind: 'redis'; readonly url: string })
  | (RedisStoreCommon & {
      readonly kind: 'cluster';
      /** `host:port` seeds. */
      readonly nodes: readonly string[];
      readonly auth: NodeAuth;
      /** TLS to the nodes (a URL says it with rediss://). */
      readonly nodeTls: boolean;
    })
  | (RedisStoreCommon & {
      readonly kind: 'sentinel';
      /** `host:port` of the Sentinels; the store is the master they name. */
      readonly sentinels: readonly string[];
      readonly masterName: string;
      readonly auth: NodeAuth;
      readonly nodeTls: boolean;
    });

export type RedisStoreConfig = Exclude<StoreConfig, { readonly kind: 'memory' }>;

/** The proxy listener's certificate and key (and client CA), with the paths they are re-read from. */
export interface ListenerTls {
  readonly paths: KeyPairPaths;
  readonly pair: KeyPair;
}

/** The rows' values but the ones assembled below, then the assembled parts. */
export type Config = SettingValues<Omit<typeof SIDECAR_SETTINGS, StoreRows | MaterialRows>> & {
  readonly store: StoreConfig;
  /** Set: the proxy listener speaks HTTPS. */
  readonly listenerTls?: ListenerTls;
  /** The keys that encrypt stored responses; none: stored in the clear. */
  readonly encryption: ConfiguredKeys;
};
