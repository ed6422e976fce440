/**
 * ioredis clients set up for a request path, and the two helpers every Redis-backed port uses to
 * keep its promise of "StoreUnavailableError, and never slower than the store timeout".
 *
 * ioredis's defaults suit a batch job: commands wait in an offline queue while the connection is
 * down, each is retried 20 times, and none ever times out. On a request path that turns a dead
 * Redis into requests that hang. Here every option that matters is set on purpose.
 */
import { Cluster, Redis } from 'ioredis';
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';
import type { ConnectionOptions } from 'node:tls';
import { StoreUnavailableError } from '../errors';
import type { RedisTlsOptions } from '../tls/redis-tls-files';

export type RedisClient = Redis | Cluster;

export interface RedisConnectionOptions {
  /** Longest a command may take before the store counts as down (IDEMPOTENCY_STORE_TIMEOUT). */
  readonly storeTimeoutMs: number;
  /** CLIENT SETNAME, so that an operator's CLIENT LIST shows who holds each connection. */
  readonly name: string;
  /**
   * Connection errors (refused, reset, reconnect attempts). ioredis emits them as 'error' events;
   * without a listener it prints them to stderr. Readiness and the store's own errors already
   * report an outage, so the default drops them; the composition root may log them instead.
   */
  readonly onError?: (error: Error) => void;
  /**
   * CA, client certificate and key (tls/redis-tls-files.ts) for a connection that uses TLS. Whether one
   * does is not decided here: createRedisClient uses TLS for a `rediss:` URL only, and
   * createRedisCluster for every node when this is given (IDEMPOTENCY_REDIS_TLS).
   */
  readonly tls?: RedisTlsOptions;
}

/** The ACL user of nodes that have no URL to carry one (Cluster, and Sentinel-managed nodes). */
export interface NodeCredentials {
  readonly username?: string;
  readonly password?: string;
}

export function credentials(options: NodeCredentials): Pick<RedisOptions, 'username' | 'password'> {
  return {
    ...(options.username === undefined ? {} : { username: options.username }),
    ...(options.password === undefined ? {} : { password: options.password }),
  };
}

/** True for a `rediss:` URL: ioredis speaks TLS to it. */
export function isTlsUrl(url: string): boolean {
  return /^rediss:/i.test(url);
}

/** Reconnect delay: grows 100 ms per attempt up to 2 s, and never gives up. */
export function reconnectDelay(attempt: number): number {
  return Math.min(attempt * 100, 2_000);
}

function checkOptions(options: RedisConnectionOptions): void {
  if (!Number.isInteger(options.storeTimeoutMs) || options.storeTimeoutMs <= 0) {
    throw new TypeError(`storeTimeoutMs must be a positive integer (got ${String(options.storeTimeoutMs)})`);
  }
  if (options.name.length === 0 || /\s/.test(options.name)) {
    throw new TypeError(`name must be a non-empty word without spaces (got ${JSON.stringify(options.name)})`);
  }
}

function connectionOptions(options: RedisConnectionOptions): RedisOptions {
  return {
    connectionName: options.name,
    // Commands issued in the same tick (many requests in flight at once) go out in one write and
    // come back in one read: under load the socket writes, not Redis, are the cost per request.
    enableAutoPipelining: true,
    // Fail fast: a command issued while the connection is down must not wait in a queue for a
    // reconnection that may never come. It fails at once and the request gets its 503 (or passes
    // through, as configured).
    enableOfflineQueue: false,
    // A command in flight when the connection drops is not resent after reconnecting: a claim or
    // completion that may already have run must not run a second time behind the engine's back
    // (a resent claim would find its own record and report it as someone else's).
    maxRetriesPerRequest: 0,
    // A server that accepts the connection but stops answering (paused, swapping, a partition
    // that drops packets) must not hold a request longer than the store timeout.
    commandTimeout: options.storeTimeoutMs,
    // A connect attempt that hangs (a blackholed address) is abandoned and retried; at least 2 s
    // so that a TLS handshake on a slow link still fits.
    connectTimeout: Math.max(2_000, options.storeTimeoutMs),
    // Waiting for a loading server (after a restart with persistence) keeps the client "not
    // ready", so commands fail fast instead of meeting LOADING errors.
    enableReadyCheck: true,
    // After a failover, a connection left on the demoted primary answers READONLY: reconnect, so
    // that DNS or the URL leads to the new primary. The failed command is not resent (see above).
    reconnectOnError: (error: Error) => (error.message.startsWith('READONLY') ? 1 : false),
    // Connect now, not at the first command; when Redis is down this does not throw: the client
    // keeps retrying in the background and readiness reports 503 until it is up.
    lazyConnect: false,
  };
}

function listen(client: RedisClient, options: RedisConnectionOptions): void {
  const onError = options.onError ?? (() => undefined);
  const forward = (error: unknown): void => {
    onError(error instanceof Error ? error : new Error(String(error)));
  };
  client.on('error', forward);
  // A Cluster emits 'error' only when no node answers; one node's failure (its TLS handshake,
  // its password) comes as 'node error'.
  if (client instanceof Cluster) client.on('node error', forward);
}

/**
 * A client of one Redis (`redis://` or `rediss://`; ioredis turns `rediss:` into TLS and reads
 * user, password and database from the URL). Never throws when Redis is down.
 */
export function createRedisClient(url: string, options: RedisConnectionOptions): Redis {
  checkOptions(options);
  const client = new Redis(url, {
    ...connectionOptions(options),
    // Given with a plain redis:// URL, the files would turn it into TLS: the URL decides.
    ...(options.tls !== undefined && isTlsUrl(url) ? { tls: { ...options.tls } } : {}),
    // Never returns null: a Redis that comes back is used again without restarting the sidecar.
    retryStrategy: reconnectDelay,
  });
  listen(client, options);
  return client;
}

/**
 * A client of a Redis Cluster, from `host:port` seeds. Never throws when the cluster is down.
 * Every node, seed or discovered, gets the same user, password and TLS options.
 */
export function createRedisCluster(
  nodes: readonly (string | ClusterNode)[],
  options: RedisConnectionOptions & NodeCredentials,
): Cluster {
  checkOptions(options);
  const { enableOfflineQueue: _setBelow, ...perNode } = connectionOptions(options);
  const clusterOptions: ClusterOptions = {
    // See connectionOptions: fail fast rather than queue (the cluster keeps its own queue).
    enableOfflineQueue: false,
    redisOptions: {
      ...perNode,
      ...credentials(options),
      ...(options.tls === undefined ? {} : { tls: { ...options.tls } }),
      // The Cluster's own ready check (CLUSTER INFO, cluster_state:ok) goes to a node as soon as
      // the slot map is read, and without an offline queue it fails if that node is not ready
      // yet: it is, when its connection skips the per-node INFO round trip. Otherwise a slower
      // handshake (TLS) loses that race on every reconnect and the store never comes up. A node
      // still loading answers LOADING, which fails the request fast, like any node error.
      enableReadyCheck: false,
    },
    // Never gives up on the seeds: the cluster is used again once it answers.
    clusterRetryStrategy: reconnectDelay,
    // A node that restarts without a slot change is reconnected, not left for a MOVED to reveal.
    clusterNodeRetryStrategy: reconnectDelay,
    // Retries after MOVED/CLUSTERDOWN/TRYAGAIN stay within one store timeout.
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: Math.max(1_000, options.storeTimeoutMs),
    lazyConnect: false,
  };
  const cluster = new Cluster([...nodes], clusterOptions);
  listen(cluster, options);
  return cluster;
}

/** Where the Sentinels are and which master they watch; the credentials are the data nodes'. */
export interface SentinelTarget {
  /** `host:port` of each Sentinel (or `{ host, port }`). */
  readonly sentinels: readonly (string | { readonly host: string; readonly port: number })[];
  /** The name given to `sentinel monitor <name> ...`. */
  readonly masterName: string;
  /** ACL user and password of the master and its replicas (not of the Sentinels). */
  readonly username?: string;
  readonly password?: string;
  /** TLS options for the data nodes (and the Sentinels): present means TLS. */
  readonly tls?: ConnectionOptions;
}

function sentinelAddress(entry: SentinelTarget['sentinels'][number]): { host: string; port: number } {
  if (typeof entry !== 'string') return { host: entry.host, port: entry.port };
  const at = entry.lastIndexOf(':');
  const port = Number(entry.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new TypeError(`sentinels: ${JSON.stringify(entry)} is not host:port`);
  }
  return { host: entry.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port };
}

/**
 * A client of the master a Sentinel set names. ioredis asks the Sentinels for the master's address
 * on every (re)connection and checks the node's role before using it, so after a failover the next
 * reconnection lands on the promoted replica. Never throws when Sentinels or master are down.
 */
export function createRedisSentinel(target: SentinelTarget, options: RedisConnectionOptions): Redis {
  checkOptions(options);
  if (target.sentinels.length === 0) throw new TypeError('sentinels must name at least one Sentinel');
  if (target.masterName.length === 0) throw new TypeError('masterName must not be empty');
  const client = new Redis({
    ...connectionOptions(options),
    sentinels: target.sentinels.map(sentinelAddress),
    name: target.masterName,
    role: 'master',
    ...credentials(target),
    ...(target.tls === undefined ? {} : { tls: target.tls, sentinelTLS: target.tls, enableTLSForSentinelMode: true }),
    // Never returns null: neither a master that comes back nor Sentinels that do are given up on.
    retryStrategy: reconnectDelay,
    sentinelRetryStrategy: reconnectDelay,
    // A Sentinel that accepts the connection and stays silent must not stall the lookup.
    sentinelCommandTimeout: options.storeTimeoutMs,
    // Listens for +switch-master on the Sentinels and reconnects at once, instead of waiting for
    // the old master's connection to fail (it may be alive on the wrong side of a partition, or
    // still accept connections as a demoted replica).
    failoverDetector: true,
  });
  listen(client, options);
  return client;
}

/** Resolves once the client is connected and ready; StoreUnavailableError after `timeoutMs`. */
export async function whenReady(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new StoreUnavailableError(`Redis not ready after ${timeoutMs} ms (status ${client.status})`));
    }, timeoutMs);
    client.once('ready', onReady);
  });
}

/**
 * Runs one store operation within the store timeout and translates every failure into
 * StoreUnavailableError (keeping the cause). commandTimeout already bounds each command; the
 * deadline also covers what it does not: a script load after NOSCRIPT, a cluster redirection, a
 * pipeline, or several commands in one operation.
 */
export async function withDeadline<T>(what: string, timeoutMs: number, operation: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let started: Promise<T>;
  try {
    started = operation();
  } catch (error) {
    throw toStoreUnavailable(what, error);
  }
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new StoreUnavailableError(`${what}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([started, deadline]);
  } catch (error) {
    throw toStoreUnavailable(what, error);
  } finally {
    clearTimeout(timer);
    // The operation lost the race or failed: its late rejection is expected and must not surface
    // as an unhandled rejection.
    started.catch(() => undefined);
  }
}

/** Wraps any failure of the store as StoreUnavailableError, keeping it as the cause. */
export function toStoreUnavailable(what: string, error: unknown): StoreUnavailableError {
  if (error instanceof StoreUnavailableError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new StoreUnavailableError(`${what}: ${reason}`, { cause: error });
}

/** Closes a client politely, and forcibly when QUIT cannot be sent (never connected, or down). */
export async function closeClient(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'end') return;
  try {
    await withDeadline('quit', timeoutMs, () => client.quit());
  } catch {
    // QUIT needs a live connection; without one, drop the socket and stop reconnecting.
  } finally {
    client.disconnect(false);
  }
}
