/**
 * The record store over Redis (one server or a Cluster). Each state transition is one Lua script
 * (scripts/*.lua, one per transition, KEYS and ARGV documented in each file's header; shared
 * pieces in scripts/includes, expanded by lua-scripts.ts), so a transition is atomic and fenced
 * by the owner's token inside Redis; time comes from the server's clock, never from a replica's.
 *
 * A record is one string (record-value.ts; scripts/includes/record.lua) under a key that Redis
 * expires at the record's end: a record past its expiry is simply absent. A first-time request
 * costs Redis six commands in two round trips (claim: EVALSHA + SET NX GET PX; complete: EVALSHA
 * + GET + PTTL + SET PX), a replay two in one (the claim's), measured by `npm run bench:redis`.
 *
 * The scripts that settle a record PUBLISH on its channel when a duplicate waits on it; watches
 * subscribe to it over a connection of their own (redis-watch.ts).
 */
import { Cluster, type Redis } from 'ioredis';
import path from 'node:path';
import type { ClaimRequest, ClaimResult, ReadOptions, RecordStore, RecordWatch } from '../engine/ports';
import type { IdempotencyRecord, RecordScope, RecordState, StoredResponse, TenantRecord } from '../engine/record';
import { StoreUnavailableError } from '../errors';
import { recordNames, recordPattern } from './keys';
import { readScript } from './lua-scripts';
import { decodeFound, decodeWithExpiry, encodeInFlight, encodeResponse, malformed, parseHeaders } from './record-value';
import { closeClient, type RedisClient, whenReady, withDeadline } from './redis-connection';
import { RedisWatchHub } from './redis-watch';
import { checkReplicaAckOptions, evalAcknowledged, type ReplicaAckOptions } from './replica-ack';

export interface RedisRecordStoreOptions {
  /** Longest one operation may take before it fails with StoreUnavailableError. */
  readonly storeTimeoutMs: number;
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
  idemClaim: 'claim-1.lua',
  idemRead: 'read-1.lua',
  idemRenew: 'renew-1.lua',
  idemComplete: 'complete-1.lua',
  idemMarkUnknown: 'mark-unknown-1.lua',
  idemRelease: 'release-1.lua',
  idemRemove: 'remove-1.lua',
} as const;

/** Keys SCAN looks at per call in the admin lookup: each call stays short, so requests queued behind it wait little. */
const SCAN_COUNT = 1_000;

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
    scripts.set(name, { lua: readScript(path.join(__dirname, 'scripts'), file), numberOfKeys });
  }
  loaded = scripts;
  return scripts;
}

const LEGACY_STATES: ReadonlySet<string> = new Set<RecordState>(['in_flight', 'completed', 'unknown']);

export class RedisRecordStore implements RecordStore {
  private readonly client: RedisClient;
  private readonly timeoutMs: number;
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
    this.watches = new RedisWatchHub(client, this.timeoutMs);
    this.replicaAck = replicaAckOptions(options);
    this.ackClients = this.replicaAck === undefined ? [] : Array.from({ length: ACK_CONNECTIONS }, () => duplicateClient(client));
    for (const [name, script] of loadScripts()) {
      // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT (a restarted or failed-over
      // server has an empty script cache), so scripts survive a Redis restart.
      client.defineCommand(name, { lua: script.lua, numberOfKeys: script.numberOfKeys });
    }
  }

  async read(scope: RecordScope, options?: ReadOptions): Promise<IdempotencyRecord | null> {
    return parseRead(await this.script('read', 'idemReadBuffer', [recordNames(scope).record], [options?.watching === true ? '1' : '0']));
  }

  async claim(scope: RecordScope, request: ClaimRequest): Promise<ClaimResult> {
    const names = recordNames(scope);
    const leaseMs = milliseconds(request.leaseMs, 'leaseMs');
    const ttlMs = milliseconds(request.ttlMs, 'ttlMs');
    const reply = await this.settlingScript(scope, 'claim', 'idemClaim', [names.record], [
      encodeInFlight(request.fingerprint, request.token, leaseMs, ttlMs),
      String(ttlMs),
      request.onExpiredLease,
      names.channel,
      String(Math.max(0, Math.round(request.expiryGraceMs ?? 0))),
      request.watching === true ? '1' : '0',
    ]);
    if (!Array.isArray(reply) || !reply.every((item) => Buffer.isBuffer(item)) || reply.length === 0) {
      throw malformed('claim reply');
    }
    const [outcome, ...rest] = reply;
    switch (outcome?.toString()) {
      case 'claimed':
        return { claimed: true };
      case 'existing':
        if (rest.length !== 1 || rest[0] === undefined) throw malformed('claim reply');
        return { claimed: false, record: decodeFound(rest[0]) };
      case 'legacy': {
        const record = parseLegacyRecord(pairsToMap(rest));
        if (record === null) throw malformed('claim reply');
        return { claimed: false, record };
      }
      default:
        throw malformed('claim reply');
    }
  }

  async renew(scope: RecordScope, token: string, leaseMs: number): Promise<boolean> {
    return isOne(
      await this.script('renew', 'idemRenew', [recordNames(scope).record], [token, String(milliseconds(leaseMs, 'leaseMs'))]),
    );
  }

  async complete(scope: RecordScope, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
    const names = recordNames(scope);
    const reply = await this.settlingScript(scope, 'complete', 'idemComplete', [names.record], [
      token,
      String(milliseconds(ttlMs, 'ttlMs')),
      encodeResponse(response),
      names.channel,
    ]);
    return isOne(reply);
  }

  async markUnknown(scope: RecordScope, token: string): Promise<boolean> {
    const names = recordNames(scope);
    return isOne(await this.script('mark unknown', 'idemMarkUnknown', [names.record], [token, names.channel]));
  }

  async release(scope: RecordScope, token: string): Promise<boolean> {
    const names = recordNames(scope);
    return isOne(await this.settlingScript(scope, 'release', 'idemRelease', [names.record], [token, names.channel]));
  }

  /**
   * Admin only, and the one lookup that costs Redis more than a payment does: SCAN for the key's
   * records (every master of a Cluster), in calls of SCAN_COUNT keys each within the store
   * timeout, then each record read (one pipeline: they share the key's slot). A record deleted
   * in between is simply absent.
   */
  async listByKey(key: string): Promise<TenantRecord[]> {
    const { pattern, tenantAt } = recordPattern(key);
    const names = await this.scan(pattern);
    if (names.length === 0) return [];
    const replies = await this.run('list', async () => {
      const pipeline = this.client.pipeline();
      // defineCommand adds the method to pipelines too, at run time: the type does not know it.
      const read: unknown = (pipeline as unknown as Record<string, unknown>)['idemReadBuffer'];
      if (typeof read !== 'function') throw new Error('script command idemReadBuffer is not defined');
      for (const name of names) Reflect.apply(read, pipeline, [name, '0']);
      return pipeline.exec();
    });
    const records: TenantRecord[] = [];
    names.forEach((name, i) => {
      const [error, reply] = replies?.[i] ?? [new Error('no reply'), null];
      if (error) throw new StoreUnavailableError(`list: ${error.message}`, { cause: error });
      const record = parseRead(reply);
      if (record) records.push({ ...record, tenant: name.slice(tenantAt) });
    });
    return records;
  }

  async remove(scope: RecordScope): Promise<boolean> {
    const names = recordNames(scope);
    return isOne(await this.script('remove', 'idemRemove', [names.record], [names.channel]));
  }

  async ping(): Promise<void> {
    await this.run('ping', () => this.client.ping());
  }

  watch(scope: RecordScope): Promise<RecordWatch> {
    return this.watches.watch(recordNames(scope).channel);
  }

  async close(): Promise<void> {
    await this.watches.close();
    await Promise.all(this.ackClients.map((ackClient) => closeClient(ackClient, this.timeoutMs)));
    await closeClient(this.client, this.timeoutMs);
  }

  /** The names that match `pattern`, on every node that holds keys. */
  private async scan(pattern: string): Promise<string[]> {
    const nodes: readonly Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    const names = new Set<string>();
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, found] = await this.run('list', () => node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT), node);
        for (const name of found) names.add(name);
        cursor = next;
      } while (cursor !== '0');
    }
    return [...names];
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

/** ms as Redis expects them: a positive whole number (the scripts use PX). */
function milliseconds(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TypeError(`${name} must be a positive number of milliseconds (got ${String(value)})`);
  }
  return Math.ceil(value);
}

function isOne(reply: unknown): boolean {
  return reply === 1;
}

/** read-1's reply: no record, a record with its expiry, or a hash of the earlier layout. */
function parseRead(reply: unknown): IdempotencyRecord | null {
  if (!Array.isArray(reply) || !reply.every((part) => Buffer.isBuffer(part) || typeof part === 'number')) throw malformed('read reply');
  if (reply.length === 0) return null;
  const [first, ...rest] = reply;
  if (Buffer.isBuffer(first) && first.toString() === 'legacy') {
    if (!rest.every((part) => Buffer.isBuffer(part))) throw malformed('read reply');
    return parseLegacyRecord(pairsToMap(rest));
  }
  const [expiresAt] = rest;
  if (!Buffer.isBuffer(first) || typeof expiresAt !== 'number' || rest.length !== 1) throw malformed('read reply');
  return decodeWithExpiry(first, expiresAt);
}

function pairsToMap(pairs: readonly Buffer[]): Map<string, Buffer> {
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    fields.set((pairs[i] as Buffer).toString(), pairs[i + 1] as Buffer);
  }
  return fields;
}

/**
 * A hash record of the layout before the one-string record (scripts/includes/legacy-hash.lua),
 * or null for an empty hash: read while such records live out their TTL after an upgrade.
 */
function parseLegacyRecord(fields: ReadonlyMap<string, Buffer>): IdempotencyRecord | null {
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
  if (!LEGACY_STATES.has(state)) throw malformed(`record (state ${state})`);
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
  return { ...record, response: { status: integer('status'), headers: parseHeaders(text('headers')), body } };
}
