/**
 * The record store over Redis (one server or a Cluster). Each state transition is one Lua script
 * (scripts/*.lua, one per transition, KEYS and ARGV documented in each file's header), so a
 * transition is atomic and fenced by the owner's token inside Redis; time comes from the server's
 * clock, never from a replica's. A replay is one round trip: HGETALL of the record.
 *
 * A record is a hash: state, fp, token, createdAt, expiresAt, leaseUntil, and once completed
 * status, headers (JSON array of [name, value]) and body (raw bytes). Redis expires the hash at
 * exactly `expiresAt` (PEXPIREAT), so a record past its expiry is simply absent.
 *
 * The scripts that settle a record also PUBLISH on its channel; watches subscribe to it over a
 * connection of their own (redis-watch.ts).
 */
import { readFileSync } from 'node:fs';
import { Cluster } from 'ioredis';
import path from 'node:path';
import type { ClaimRequest, ClaimResult, RecordStore, RecordWatch } from '../engine/ports';
import type { HeaderPair, IdempotencyRecord, RecordScope, RecordState, StoredResponse, TenantRecord } from '../engine/record';
import { StoreUnavailableError } from '../errors';
import { DEFAULT_KEY_PREFIX, Keyspace } from './keys';
import { closeClient, type RedisClient, whenReady, withDeadline } from './redis-connection';
import { RedisWatchHub } from './redis-watch';
import { checkReplicaAckOptions, evalAcknowledged, type ReplicaAckOptions } from './replica-ack';

export interface RedisRecordStoreOptions {
  /** Longest one operation may take before it fails with StoreUnavailableError. */
  readonly storeTimeoutMs: number;
  /** Prefix of every key name; default `idem:`. */
  readonly keyPrefix?: string;
  /**
   * Replicas that must acknowledge a claim and a completion (WAIT) before they count as done;
   * 0 or absent: none, and the scripts go out alone (replica-ack.ts says why and how).
   */
  readonly waitReplicas?: number;
  /** WAIT's timeout; required when waitReplicas > 0, and below storeTimeoutMs. */
  readonly waitTimeoutMs?: number;
}

/** The scripts, by the command name they are registered under (prefixed: the client may be shared). */
const SCRIPTS = {
  idemClaim: 'claim-2.lua',
  idemRenew: 'renew-1.lua',
  idemComplete: 'complete-2.lua',
  idemMarkUnknown: 'mark-unknown-1.lua',
  idemRelease: 'release-2.lua',
  idemRemove: 'remove-2.lua',
  idemList: 'list-1.lua',
} as const;

type ScriptName = keyof typeof SCRIPTS;
/** ioredis also defines `<name>Buffer`, whose replies are Buffers: used where a body comes back. */
type CommandName = ScriptName | `${ScriptName}Buffer`;
type RedisArgument = string | Buffer;

interface LoadedScript {
  readonly lua: string;
  readonly numberOfKeys: number;
}

let loaded: ReadonlyMap<ScriptName, LoadedScript> | undefined;

/**
 * Reads the scripts from `scripts/` next to this module: src/store/scripts under ts-jest and
 * ts-node, dist/store/scripts once built (scripts/copy-assets.js copies them there).
 */
function loadScripts(): ReadonlyMap<ScriptName, LoadedScript> {
  if (loaded) return loaded;
  const scripts = new Map<ScriptName, LoadedScript>();
  for (const [name, file] of Object.entries(SCRIPTS) as [ScriptName, string][]) {
    const numberOfKeys = Number(/-(\d+)\.lua$/.exec(file)?.[1]);
    if (!Number.isInteger(numberOfKeys)) throw new Error(`script ${file} is not named <verb>-<numKeys>.lua`);
    scripts.set(name, { lua: readFileSync(path.join(__dirname, 'scripts', file), 'utf8'), numberOfKeys });
  }
  loaded = scripts;
  return scripts;
}

const STATES: ReadonlySet<string> = new Set<RecordState>(['in_flight', 'completed', 'unknown']);

export class RedisRecordStore implements RecordStore {
  private readonly client: RedisClient;
  private readonly timeoutMs: number;
  private readonly keys: Keyspace;
  private readonly watches: RedisWatchHub;
  private readonly replicaAck: ReplicaAckOptions | undefined;
  /**
   * With replica acknowledgement on: connections of their own for the writes that wait for it.
   * WAIT blocks the connection it runs on until the replicas answer, so on the shared connection
   * every read, renewal and readiness PING queued behind it would wait too, and the writes would
   * take turns one replica round trip at a time. Several, so that they do not.
   */
  private readonly ackClients: readonly RedisClient[];
  private nextAckClient = 0;

  constructor(client: RedisClient, options: RedisRecordStoreOptions) {
    if (!Number.isInteger(options.storeTimeoutMs) || options.storeTimeoutMs <= 0) {
      throw new TypeError(`storeTimeoutMs must be a positive integer (got ${String(options.storeTimeoutMs)})`);
    }
    this.client = client;
    this.timeoutMs = options.storeTimeoutMs;
    this.keys = new Keyspace(options.keyPrefix ?? DEFAULT_KEY_PREFIX);
    this.watches = new RedisWatchHub(client, this.timeoutMs);
    this.replicaAck = replicaAckOptions(options);
    this.ackClients = this.replicaAck === undefined ? [] : Array.from({ length: ACK_CONNECTIONS }, () => duplicateClient(client));
    for (const [name, script] of loadScripts()) {
      // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT (a restarted or failed-over
      // server has an empty script cache), so scripts survive a Redis restart.
      client.defineCommand(name, { lua: script.lua, numberOfKeys: script.numberOfKeys });
    }
  }

  async read(scope: RecordScope): Promise<IdempotencyRecord | null> {
    const fields = await this.run('read', () => this.client.hgetallBuffer(this.keys.record(scope)));
    return parseRecord(new Map(Object.entries(fields)));
  }

  async claim(scope: RecordScope, request: ClaimRequest): Promise<ClaimResult> {
    const names = this.keys.names(scope);
    const reply = await this.settlingScript(scope, 'claim', 'idemClaim', [names.record, names.index], [
      request.token,
      request.fingerprint,
      milliseconds(request.leaseMs, 'leaseMs'),
      milliseconds(request.ttlMs, 'ttlMs'),
      request.onExpiredLease,
      scope.tenant,
      names.channel,
      String(Math.max(0, Math.round(request.expiryGraceMs ?? 0))),
    ]);
    if (!Array.isArray(reply) || !reply.every((item) => Buffer.isBuffer(item)) || reply.length === 0) {
      throw malformed('claim reply');
    }
    const [outcome, ...pairs] = reply;
    if (outcome?.toString() === 'claimed') return { claimed: true };
    const record = parseRecord(pairsToMap(pairs));
    if (outcome?.toString() !== 'existing' || record === null) throw malformed('claim reply');
    return { claimed: false, record };
  }

  async renew(scope: RecordScope, token: string, leaseMs: number): Promise<boolean> {
    return isOne(
      await this.script('renew', 'idemRenew', [this.keys.record(scope)], [token, milliseconds(leaseMs, 'leaseMs')]),
    );
  }

  async complete(scope: RecordScope, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
    const names = this.keys.names(scope);
    const reply = await this.settlingScript(scope, 'complete', 'idemComplete', [names.record, names.index], [
      token,
      milliseconds(ttlMs, 'ttlMs'),
      String(response.status),
      JSON.stringify(response.headers),
      response.body,
      scope.tenant,
      names.channel,
    ]);
    return isOne(reply);
  }

  async markUnknown(scope: RecordScope, token: string): Promise<boolean> {
    const names = this.keys.names(scope);
    return isOne(await this.script('mark unknown', 'idemMarkUnknown', [names.record], [token, names.channel]));
  }

  async release(scope: RecordScope, token: string): Promise<boolean> {
    const names = this.keys.names(scope);
    return isOne(await this.settlingScript(scope, 'release', 'idemRelease', [names.record, names.index], [token, scope.tenant, names.channel]));
  }

  async listByKey(key: string): Promise<TenantRecord[]> {
    // Admin only: two round trips (the index, then the records of its slot in one pipeline).
    const tenants = await this.script('list', 'idemList', [this.keys.index(key)], []);
    if (!Array.isArray(tenants) || !tenants.every((tenant): tenant is string => typeof tenant === 'string')) {
      throw malformed('list reply');
    }
    if (tenants.length === 0) return [];
    const replies = await this.run('list', async () => {
      const pipeline = this.client.pipeline();
      for (const tenant of tenants) pipeline.hgetallBuffer(this.keys.record({ tenant, key }));
      return pipeline.exec();
    });
    const records: TenantRecord[] = [];
    tenants.forEach((tenant, i) => {
      const [error, fields] = replies?.[i] ?? [new Error('no reply'), null];
      if (error) throw new StoreUnavailableError(`list: ${error.message}`, { cause: error });
      const record = parseRecord(new Map(Object.entries(fields as Record<string, Buffer>)));
      if (record) records.push({ ...record, tenant });
    });
    return records;
  }

  async remove(scope: RecordScope): Promise<boolean> {
    const names = this.keys.names(scope);
    return isOne(await this.script('remove', 'idemRemove', [names.record, names.index], [scope.tenant, names.channel]));
  }

  async ping(): Promise<void> {
    await this.run('ping', () => this.client.ping());
  }

  watch(scope: RecordScope): Promise<RecordWatch> {
    return this.watches.watch(this.keys.channel(scope));
  }

  async close(): Promise<void> {
    await this.watches.close();
    await Promise.all(this.ackClients.map((ackClient) => closeClient(ackClient, this.timeoutMs)));
    await closeClient(this.client, this.timeoutMs);
  }

  /**
   * While the connection is being (re)established, a command would fail at once (no offline
   * queue); instead it waits for the connection within the same store timeout, so a sidecar that
   * just started, or a Redis that blinked, costs latency rather than a 503.
   */
  private run<T>(what: string, operation: () => Promise<T>, client: RedisClient = this.client): Promise<T> {
    if (client.status === 'ready') return withDeadline(what, this.timeoutMs, operation);
    return withDeadline(what, this.timeoutMs, async () => {
      await whenReady(client, this.timeoutMs);
      return operation();
    });
  }

  /**
   * A claim, a completion or a release. A claim and a completion are the writes a client's answer
   * rests on (a lost claim can mean a second execution, a lost completion a lost response). A
   * release is waited for too: a lost one (often the undo of a claim that failed) would bring the
   * claim back after a failover, with nobody working on it, and its key would end held as unknown
   * though the upstream never saw it. With replica acknowledgement on, the script and its WAIT go
   * out together; otherwise the script alone, as every other transition. Marks and renewals are
   * not waited for: losing one leaves the record in flight, which its lease turns unknown (or its
   * owner settles again), never a second execution. Replies are Buffers either way (a claim's reply
   * may carry a body).
   */
  private settlingScript(scope: RecordScope, what: string, name: ScriptName, keys: string[], args: RedisArgument[]): Promise<unknown> {
    const ack = this.replicaAck;
    if (ack === undefined) return this.script(what, `${name}Buffer`, keys, args);
    const script = loadScripts().get(name);
    if (script === undefined) throw new Error(`script ${name} is not loaded`);
    const client = this.ackClients[this.nextAckClient++ % this.ackClients.length] ?? this.client;
    // A claim that found the record wrote nothing a failover could lose (or only what the next
    // claim derives again: a lapsed lease judged unknown): its answer stands whatever WAIT says.
    const mustHold = what === 'claim' ? claimed : undefined;
    return this.run(what, () => evalAcknowledged(client, script, keys, args, ack, { operation: what, scope }, mustHold), client);
  }

  private script(what: string, name: CommandName, keys: string[], args: RedisArgument[]): Promise<unknown> {
    return this.run(what, async () => {
      // defineCommand adds the method at run time, so the client's type does not know it.
      const command: unknown = (this.client as unknown as Record<string, unknown>)[name];
      if (typeof command !== 'function') throw new Error(`script command ${name} is not defined`);
      return (await Reflect.apply(command, this.client, [...keys, ...args])) as unknown;
    });
  }
}

/** Connections for the writes that wait for replicas (see ackClients). */
const ACK_CONNECTIONS = 8;

/** A second connection like `client`, for the writes that wait for replicas. */
function duplicateClient(client: RedisClient): RedisClient {
  const copy = client instanceof Cluster ? client.duplicate() : client.duplicate();
  // The main connection's listener reports outages (redis-diagnosis.ts); the copies follow it.
  copy.on('error', () => undefined);
  return copy;
}

/** A claim script's reply: did it take the key? */
function claimed(reply: unknown): boolean {
  return Array.isArray(reply) && Buffer.isBuffer(reply[0]) && reply[0].toString() === 'claimed';
}

function replicaAckOptions(options: RedisRecordStoreOptions): ReplicaAckOptions | undefined {
  const replicas = options.waitReplicas ?? 0;
  if (replicas === 0) return undefined;
  const timeoutMs = options.waitTimeoutMs;
  if (timeoutMs === undefined) throw new TypeError('waitTimeoutMs is required when waitReplicas > 0');
  if (timeoutMs >= options.storeTimeoutMs) {
    // The WAIT would outlast the store timeout: every short acknowledgement would read as a dead store.
    throw new TypeError(`waitTimeoutMs (${timeoutMs}) must be shorter than storeTimeoutMs (${options.storeTimeoutMs})`);
  }
  return checkReplicaAckOptions({ replicas, timeoutMs });
}

/** ms as Redis expects them: a positive whole number (the scripts use PEXPIREAT). */
function milliseconds(value: number, name: string): string {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TypeError(`${name} must be a positive number of milliseconds (got ${String(value)})`);
  }
  return String(Math.ceil(value));
}

function isOne(reply: unknown): boolean {
  return reply === 1;
}

function malformed(what: string): StoreUnavailableError {
  return new StoreUnavailableError(`malformed ${what} from Redis`);
}

function pairsToMap(pairs: readonly Buffer[]): Map<string, Buffer> {
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    fields.set((pairs[i] as Buffer).toString(), pairs[i + 1] as Buffer);
  }
  return fields;
}

/** The record a hash holds, or null for an empty (absent) hash. */
function parseRecord(fields: ReadonlyMap<string, Buffer>): IdempotencyRecord | null {
  if (fields.size === 0) return null;
  const text = (name: string): string => {
    const value = fields.get(name);
    if (value === undefined) throw malformed(`record (no ${name})`);
    return value.toString('utf8');
  };
  const integer = (name: string): number => {
    const value = Number(text(name));
    if (!Number.isSafeInteger(value)) throw malformed(`record (${name} is not an integer)`);
    return value;
  };
  const state = text('state');
  if (!STATES.has(state)) throw malformed(`record (state ${state})`);
  const record: IdempotencyRecord = {
    state: state as RecordState,
    fingerprint: text('fp'),
    token: text('token'),
    createdAt: integer('createdAt'),
    expiresAt: integer('expiresAt'),
    leaseUntil: integer('leaseUntil'),
  };
  if (state !== 'completed') return record;
  const body = fields.get('body');
  if (body === undefined) throw malformed('record (no body)');
  const response: StoredResponse = { status: integer('status'), headers: parseHeaders(text('headers')), body };
  return { ...record, response };
}

function parseHeaders(json: string): HeaderPair[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw new StoreUnavailableError('malformed record (headers are not JSON)', { cause: error });
  }
  const isPair = (pair: unknown): pair is HeaderPair =>
    Array.isArray(pair) && pair.length === 2 && typeof pair[0] === 'string' && typeof pair[1] === 'string';
  if (!Array.isArray(parsed) || !parsed.every(isPair)) throw malformed('record (headers)');
  return parsed;
}
