/**
 * What the sidecar asks of Redis, measured on the Redis side.
 *
 * Under load: `INFO commandstats` before and after a scenario; the difference, divided by the
 * responses, is the commands per request. Redis 7 counts the commands a Lua script runs as calls
 * of their own (an EVALSHA that runs HGETALL and HSET counts evalsha 1, hgetall 1, hset 1), so this
 * is every command executed, inside scripts included; `total_commands_processed` counts the same
 * way, so neither tells top-level commands from script-internal ones.
 *
 * Round trips come from a trace: requests sent one at a time, each between two `INFO stats` on
 * every Redis involved, with MONITOR on. `total_reads_processed` grows by one per read event on
 * a client socket; with one request in flight, every read is one request from the sidecar that
 * it waited for (a pipeline, or commands sent together, arrive as one read), so the reads between
 * the two INFOs, less the closing INFO's own, are the round trips of that request on that
 * server. The reads after the closing INFO and before the next request's are round trips the
 * sidecar made after the client had its response (off the critical path). MONITOR tells which
 * commands those were: top-level ones with the client's address, script-internal ones marked
 * `lua`, in execution order.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Redis from 'ioredis';
import { readScript } from '../src/store/lua-scripts';

/** Commands the harness itself sends (snapshots, markers, flushes): never counted. */
const HARNESS_COMMANDS = new Set(['info', 'echo', 'flushall', 'client', 'monitor', 'config']);

export interface RedisSnapshot {
  /** Calls per command name (`cmdstat_<name>`), lower case, subcommands as `config|get`. */
  readonly calls: ReadonlyMap<string, number>;
  readonly totalCommands: number;
  readonly reads: number;
}

export class RedisProbe {
  readonly client: Redis;
  private address: string | undefined;

  constructor(
    readonly role: string,
    readonly url: string,
  ) {
    this.client = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 5_000, lazyConnect: false });
    this.client.on('error', () => undefined);
  }

  async snapshot(sections: 'stats' | 'all' = 'all'): Promise<RedisSnapshot> {
    const text = (await (sections === 'all' ? this.client.call('INFO', 'stats', 'commandstats') : this.client.call('INFO', 'stats'))) as string;
    return parseInfo(text);
  }

  async flush(): Promise<void> {
    await this.client.call('FLUSHALL', 'SYNC');
  }

  /** `ip:port` of this probe's connection, as MONITOR shows it. */
  async clientAddress(): Promise<string> {
    if (this.address === undefined) {
      const info = (await this.client.call('CLIENT', 'INFO')) as string;
      const match = /(?:^|\s)addr=(\S+)/.exec(info);
      if (!match?.[1]) throw new Error(`${this.role}: no addr in CLIENT INFO: ${info}`);
      this.address = match[1];
    }
    return this.address;
  }

  /** The server's process id (INFO server), for its CPU time. */
  async pid(): Promise<number> {
    const text = (await this.client.call('INFO', 'server')) as string;
    return Number(/^process_id:(\d+)/m.exec(text)?.[1] ?? NaN);
  }

  async usedMemory(): Promise<number> {
    const text = (await this.client.call('INFO', 'memory')) as string;
    return Number(/^used_memory:(\d+)/m.exec(text)?.[1] ?? NaN);
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}

export function parseInfo(text: string): RedisSnapshot {
  const calls = new Map<string, number>();
  let totalCommands = NaN;
  let reads = NaN;
  for (const line of text.split('\r\n')) {
    const stat = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (stat?.[1] && stat[2]) calls.set(stat[1].toLowerCase(), Number(stat[2]));
    else if (line.startsWith('total_commands_processed:')) totalCommands = Number(line.split(':')[1]);
    else if (line.startsWith('total_reads_processed:')) reads = Number(line.split(':')[1]);
  }
  return { calls, totalCommands, reads };
}

export interface CommandDelta {
  /** Every command executed, script-internal ones included, less the harness's own. */
  readonly total: number;
  /** Of those, EVAL/EVALSHA/FCALL (and their _RO forms): the script calls. */
  readonly scripts: number;
  readonly byCommand: Readonly<Record<string, number>>;
}

const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);

export function commandDelta(before: RedisSnapshot, after: RedisSnapshot): CommandDelta {
  const byCommand: Record<string, number> = {};
  let total = 0;
  let scripts = 0;
  for (const [name, calls] of after.calls) {
    if (HARNESS_COMMANDS.has(name.split('|')[0] ?? name)) continue;
    const delta = calls - (before.calls.get(name) ?? 0);
    if (delta <= 0) continue;
    byCommand[name] = delta;
    total += delta;
    if (SCRIPT_COMMANDS.has(name)) scripts += delta;
  }
  return { total, scripts, byCommand };
}

// ------------------------------------------------------------------------------ the trace

export interface TraceSide {
  readonly role: string;
  /** Median round trips (read events) on this server while the request was in flight. */
  readonly roundTrips: number;
  /** Median round trips after the response, before the next request. */
  readonly roundTripsAfter: number;
  /** Mean commands per request, all (script-internal included) and top-level, while in flight. */
  readonly commands: number;
  readonly topLevelCommands: number;
  /** The most common sequence of top-level commands while in flight, and after the response. */
  readonly sequence: string;
  readonly sequenceAfter: string;
  readonly requests: number;
}

export interface TraceResult {
  readonly sides: readonly TraceSide[];
  /** Statuses of the traced requests. */
  readonly statuses: Readonly<Record<string, number>>;
}

interface MonitorEvent {
  readonly args: readonly string[];
  readonly source: string;
}

/**
 * Sends `requests` requests one at a time through `send` (which resolves with the status once
 * the whole response is in) and measures each one's round trips on every probe.
 */
export async function traceRoundTrips(
  probes: readonly RedisProbe[],
  requests: number,
  send: (index: number) => Promise<number>,
  scriptNames: ReadonlyMap<string, string>,
  gapMs = 30,
): Promise<TraceResult> {
  const addresses = await Promise.all(probes.map((probe) => probe.clientAddress()));
  const monitors: Redis[] = [];
  const events: MonitorEvent[][] = probes.map(() => []);
  const endMarker = `bench-trace-end-${process.pid}-${Date.now()}`;
  const seenEnd: boolean[] = probes.map(() => false);
  const statuses: Record<string, number> = {};
  try {
    for (const [i, probe] of probes.entries()) {
      const monitor = await probe.client.monitor();
      monitor.on('error', () => undefined);
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        events[i]?.push({ args, source });
        if (args[0]?.toLowerCase() === 'echo' && args[1] === endMarker) seenEnd[i] = true;
      });
      monitors.push(monitor);
    }
    const snapshots: RedisSnapshot[][] = probes.map(() => []);
    const snapAll = async (): Promise<void> => {
      for (const [i, probe] of probes.entries()) snapshots[i]?.push(await probe.snapshot('stats'));
    };
    for (let i = 0; i < requests; i += 1) {
      await snapAll();
      const status = await send(i);
      statuses[status] = (statuses[status] ?? 0) + 1;
      await snapAll();
      await sleep(gapMs);
    }
    await snapAll();
    for (const probe of probes) await probe.client.call('ECHO', endMarker);
    const deadline = Date.now() + 3_000;
    while (!seenEnd.every(Boolean) && Date.now() < deadline) await sleep(10);

    const sides = probes.map((probe, p) =>
      summariseSide(probe.role, addresses[p] ?? '', events[p] ?? [], snapshots[p] ?? [], requests, scriptNames),
    );
    return { sides, statuses };
  } finally {
    for (const monitor of monitors) monitor.disconnect();
  }
}

function summariseSide(
  role: string,
  ownAddress: string,
  events: readonly MonitorEvent[],
  snapshots: readonly RedisSnapshot[],
  requests: number,
  scriptNames: ReadonlyMap<string, string>,
): TraceSide {
  // Split the stream at our own INFOs: [A0] during 0 [B0] after 0 [A1] during 1 [B1] ... [C].
  const segments: MonitorEvent[][] = [];
  let current: MonitorEvent[] | undefined;
  for (const event of events) {
    if (event.source === ownAddress) {
      if (event.args[0]?.toLowerCase() === 'info') {
        current = [];
        segments.push(current);
      }
      continue;
    }
    current?.push(event);
  }
  const during: number[] = [];
  const after: number[] = [];
  const commands: number[] = [];
  const topLevel: number[] = [];
  const sequences = new Map<string, number>();
  const sequencesAfter = new Map<string, number>();
  for (let i = 0; i < requests; i += 1) {
    const a = snapshots[2 * i];
    const b = snapshots[2 * i + 1];
    const next = snapshots[2 * i + 2];
    if (!a || !b || !next) continue;
    during.push(b.reads - a.reads - 1);
    after.push(next.reads - b.reads - 1);
    commands.push(b.totalCommands - a.totalCommands - 1);
    const duringEvents = segments[2 * i] ?? [];
    const afterEvents = segments[2 * i + 1] ?? [];
    topLevel.push(duringEvents.filter((event) => event.source !== 'lua').length);
    count(sequences, describe(duringEvents, scriptNames));
    count(sequencesAfter, describe(afterEvents, scriptNames));
  }
  return {
    role,
    roundTrips: median(during),
    roundTripsAfter: median(after),
    commands: mean(commands),
    topLevelCommands: mean(topLevel),
    sequence: mostCommon(sequences),
    sequenceAfter: mostCommon(sequencesAfter),
    requests: during.length,
  };
}

/** `hgetall, evalsha(claim-2: hgetall hset ...)`: top-level commands, each script with what it ran. */
function describe(events: readonly MonitorEvent[], scriptNames: ReadonlyMap<string, string>): string {
  const parts: string[] = [];
  let inner: string[] | undefined;
  let label = '';
  const close = (): void => {
    if (inner !== undefined) parts.push(`${label}[${[...new Set(inner)].join(' ')}]`);
    inner = undefined;
  };
  for (const event of events) {
    const name = (event.args[0] ?? '?').toLowerCase();
    if (event.source === 'lua') {
      inner?.push(name);
      continue;
    }
    close();
    if (name === 'evalsha' || name === 'evalsha_ro') {
      const sha = (event.args[1] ?? '').toLowerCase();
      label = `${name}:${scriptNames.get(sha) ?? sha.slice(0, 7)}`;
      inner = [];
    } else if (name === 'eval' || name === 'eval_ro' || name === 'fcall' || name === 'fcall_ro') {
      label = name;
      inner = [];
    } else {
      parts.push(name);
    }
  }
  close();
  return parts.length === 0 ? '-' : parts.join(', ');
}

/** sha1 -> file name of the sidecar's Lua scripts (dist/store/scripts), for the trace's labels. */
export function loadScriptNames(distDir: string): Map<string, string> {
  const names = new Map<string, string>();
  const dir = path.join(distDir, 'store', 'scripts');
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((file) => file.endsWith('.lua'));
  } catch {
    return names;
  }
  for (const file of files) {
    // Redis knows a script by the digest of its text with the includes expanded, as the store sends it.
    const sha = createHash('sha1').update(readScript(dir, file)).digest('hex');
    names.set(sha, file.replace(/\.lua$/, ''));
  }
  return names;
}

/**
 * sha1 -> command name of the Redlock library's scripts, which it registers on each client with
 * defineCommand: asked of the library itself with a client that only records the definitions.
 */
export function loadRedlockScriptNames(root: string): Map<string, string> {
  const names = new Map<string, string>();
  try {
    const file = path.join(root, 'node_modules', '@sesamecare-oss', 'redlock', 'build', 'scripts.js');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const scripts = require(file) as { ensureCommands?: (client: unknown) => void };
    scripts.ensureCommands?.({
      defineCommand: (name: string, definition: { lua: string }) => {
        names.set(createHash('sha1').update(definition.lua).digest('hex'), `redlock.${name}`);
      },
    });
  } catch {
    // another version of the library: its scripts are shown by sha
  }
  return names;
}

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function mostCommon(map: ReadonlyMap<string, number>): string {
  let best = '-';
  let bestCount = 0;
  for (const [key, n] of map) {
    if (n > bestCount) {
      best = key;
      bestCount = n;
    }
  }
  return best;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
