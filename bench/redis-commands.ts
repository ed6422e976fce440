/**
 * What one request asks of Redis: `npm run bench:redis`. A count, not a timing benchmark: it can
 * run beside other work, and its figures do not depend on how busy the machine is (except the
 * Redis CPU, which is a CPU time, not a rate).
 *
 * Starts its own redis-server on a free port, the benchmark's upstream (bench/servers/upstream.ts),
 * the built sidecar on that Redis (bin/idempotency-sidecar.js, default settings) and the floor
 * (bench/servers/redis-floor-passthrough.ts: a SET NX before the upstream call and a SET after it,
 * nothing else). Then, per scenario, two passes:
 *
 *  - one request at a time (`--sequential=N`): round trips per request, from `INFO stats`
 *    `total_reads_processed` (one read event per thing a client sent and waited for; with one
 *    request in flight, that is the sidecar's round trips; the closing INFO's own read is taken
 *    off), and the commands of one request;
 *  - `--concurrency=C` requests at a time, `--requests=N` in all: commands per request from
 *    `INFO commandstats` (Redis 7 counts every command a Lua script runs, and the EVALSHA itself),
 *    and Redis CPU per request from `INFO cpu` (used_cpu_user + used_cpu_sys, microsecond
 *    resolution), both as deltas over the pass divided by its responses.
 *
 * Scenarios: the sidecar's first-time requests (a new key each), replays (keys completed by the
 * first pass), in-flight duplicates (`reject` mode: 10 keys whose first requests the upstream
 * holds), and the floor's first-time requests. Every response's status is checked.
 *
 *   npm run bench:redis
 *   npm run bench:redis -- --requests=4000 --concurrency=32 --json=.bench/redis-commands.json
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Pool } from 'undici';
import { startRedis } from '../test/helpers/redis-server';
import { paymentRequestBody } from './payload';
import { type BenchProcess, findRepoRoot, forkServer, freePort, startSidecarProcess } from './processes';
import { commandDelta, parseInfo, RedisProbe } from './redis-stats';

interface Options {
  readonly requests: number;
  readonly sequential: number;
  readonly concurrency: number;
  readonly json?: string;
}

interface PassFigures {
  readonly requests: number;
  /** Every command executed per response, script-internal ones included. */
  readonly commands: number;
  /** Of those, EVALSHA/EVAL calls: each is one script run. */
  readonly scripts: number;
  readonly byCommand: Readonly<Record<string, number>>;
}

interface ScenarioFigures {
  readonly scenario: string;
  readonly expectedStatus: number;
  /** One request at a time. */
  readonly sequential: PassFigures & { readonly roundTrips: number };
  /** `concurrency` at a time. */
  readonly concurrent: PassFigures & { readonly cpuMicros: number };
}

/** One request: resolves with its status once the whole response is in. */
type Send = (index: number) => Promise<number>;

const BODY = paymentRequestBody(200);
const TENANT = 'Bearer bench-redis-commands';
const HELD_KEYS = 10;

function parseOptions(argv: readonly string[]): Options {
  const value = (name: string, fallback: number): number => {
    const flag = argv.find((arg) => arg.startsWith(`--${name}=`));
    if (flag === undefined) return fallback;
    const parsed = Number(flag.slice(name.length + 3));
    if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`--${name} must be a whole number of at least 1 (got ${flag})`);
    return parsed;
  };
  const json = argv.find((arg) => arg.startsWith('--json='))?.slice('--json='.length);
  return { requests: value('requests', 2_000), sequential: value('sequential', 200), concurrency: value('concurrency', 16), ...(json ? { json } : {}) };
}

async function cpuMicros(probe: RedisProbe): Promise<number> {
  const text = (await probe.client.call('INFO', 'cpu')) as string;
  const field = (name: string): number => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(text)?.[1] ?? NaN);
  return (field('used_cpu_user') + field('used_cpu_sys')) * 1e6;
}

async function stats(probe: RedisProbe): ReturnType<RedisProbe['snapshot']> {
  return parseInfo((await probe.client.call('INFO', 'stats', 'commandstats')) as string);
}

/** Runs `count` sends, `concurrency` at a time, and checks every status. */
async function drive(send: Send, first: number, count: number, concurrency: number, expected: number): Promise<void> {
  let next = first;
  const end = first + count;
  const unexpected: string[] = [];
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < end) {
        const index = next++;
        const status = await send(index);
        if (status !== expected && unexpected.length < 5) unexpected.push(`request ${index}: ${status}`);
      }
    }),
  );
  if (unexpected.length > 0) throw new Error(`expected ${expected} on every response; got ${unexpected.join(', ')}`);
}

function perRequest(delta: ReturnType<typeof commandDelta>, requests: number): PassFigures {
  const byCommand: Record<string, number> = {};
  for (const [name, calls] of Object.entries(delta.byCommand)) byCommand[name] = calls / requests;
  return { requests, commands: delta.total / requests, scripts: delta.scripts / requests, byCommand };
}

async function measureScenario(
  probe: RedisProbe,
  scenario: string,
  send: Send,
  expectedStatus: number,
  options: Options,
): Promise<ScenarioFigures> {
  // One at a time: the reads between the two snapshots are the requests' round trips, plus the
  // closing INFO's own read.
  const seqBefore = await stats(probe);
  await drive(send, 0, options.sequential, 1, expectedStatus);
  const seqAfter = await stats(probe);
  const roundTrips = (seqAfter.reads - seqBefore.reads - 1) / options.sequential;

  const before = await stats(probe);
  const cpuBefore = await cpuMicros(probe);
  await drive(send, options.sequential, options.requests, options.concurrency, expectedStatus);
  const cpuAfter = await cpuMicros(probe);
  const after = await stats(probe);
  return {
    scenario,
    expectedStatus,
    sequential: { ...perRequest(commandDelta(seqBefore, seqAfter), options.sequential), roundTrips },
    // The INFO cpu call between the snapshots costs Redis a few microseconds: noise over N requests.
    concurrent: { ...perRequest(commandDelta(before, after), options.requests), cpuMicros: (cpuAfter - cpuBefore) / options.requests },
  };
}

function poster(pool: Pool, pathOf: (index: number) => string, keyOf: (index: number) => string): Send {
  return async (index) => {
    const response = await pool.request({
      method: 'POST',
      path: pathOf(index),
      headers: { 'content-type': 'application/json', 'idempotency-key': keyOf(index), authorization: TENANT },
      body: BODY,
    });
    await response.body.arrayBuffer();
    return response.statusCode;
  };
}

async function upstreamHeld(upstream: BenchProcess & { readonly url: string }, count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const response = await fetch(`${upstream.url}/__stats`);
    const body = (await response.json()) as { held?: number };
    if ((body.held ?? 0) >= count) return;
    if (Date.now() > deadline) throw new Error(`the upstream holds ${body.held ?? 0} requests, not ${count}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function mix(byCommand: Readonly<Record<string, number>>): string {
  return Object.entries(byCommand)
    .sort(([, a], [, b]) => b - a)
    .map(([name, calls]) => `${name} ${Number(calls.toFixed(2))}`)
    .join(', ');
}

function report(figures: readonly ScenarioFigures[], options: Options, redisVersion: string): string {
  const fixed = (value: number, digits = 1): string => value.toFixed(digits);
  const lines = [
    `Redis ${redisVersion}; ${options.sequential} requests one at a time, then ${options.requests} at concurrency ${options.concurrency}, per scenario; 200-byte JSON requests, ~300-byte responses.`,
    '',
    '| scenario | Redis commands/req | of which scripts | round trips/req | Redis CPU us/req | commands (per request, concurrent pass) |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const row of figures) {
    lines.push(
      `| ${row.scenario} | ${fixed(row.concurrent.commands, 2)} | ${fixed(row.concurrent.scripts, 2)} | ${fixed(row.sequential.roundTrips, 2)} | ${fixed(row.concurrent.cpuMicros)} | ${mix(row.concurrent.byCommand)} |`,
    );
  }
  const first = figures.find((row) => row.scenario === 'sidecar, first-time');
  const replay = figures.find((row) => row.scenario === 'sidecar, replay');
  const floor = figures.find((row) => row.scenario === 'floor, first-time');
  if (first && replay && floor) {
    const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
    const cpuRatio = first.concurrent.cpuMicros / floor.concurrent.cpuMicros;
    lines.push(
      '',
      '| target | measured | limit | result |',
      '| --- | --- | --- | --- |',
      `| commands per first-time request | ${fixed(first.concurrent.commands, 2)} | <= 6 | ${verdict(first.concurrent.commands <= 6)} |`,
      `| commands per replay | ${fixed(replay.concurrent.commands, 2)} | <= 2 | ${verdict(replay.concurrent.commands <= 2)} |`,
      `| round trips per first-time request | ${fixed(first.sequential.roundTrips, 2)} | <= 2 | ${verdict(first.sequential.roundTrips <= 2)} |`,
      `| round trips per replay | ${fixed(replay.sequential.roundTrips, 2)} | <= 1 | ${verdict(replay.sequential.roundTrips <= 1)} |`,
      `| Redis CPU per first-time request vs the floor's | ${fixed(cpuRatio, 2)}x (${fixed(first.concurrent.cpuMicros)} / ${fixed(floor.concurrent.cpuMicros)} us) | <= 2x | ${verdict(cpuRatio <= 2)} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const root = findRepoRoot();
  const build = path.join(root, '.bench', 'build', 'bench', 'servers');
  const redis = await startRedis();
  const started: BenchProcess[] = [];
  const pools: Pool[] = [];
  const probe = new RedisProbe('store', redis.url);
  try {
    const upstream = await forkServer('upstream', path.join(build, 'upstream.js'));
    started.push(upstream);
    const sidecar = await startSidecarProcess({
      name: 'sidecar',
      bin: path.join(root, 'bin', 'idempotency-sidecar.js'),
      upstream: upstream.url,
      port: await freePort(),
      adminPort: await freePort(),
      env: { IDEMPOTENCY_REDIS_URL: redis.url, IDEMPOTENCY_LOG_LEVEL: 'warn' },
    });
    started.push(sidecar);
    const floor = await forkServer('floor', path.join(build, 'redis-floor-passthrough.js'), { BENCH_UPSTREAM: upstream.url, BENCH_REDIS: redis.url });
    started.push(floor);

    const connections = options.concurrency + HELD_KEYS + 1;
    const toSidecar = new Pool(sidecar.url, { connections });
    const toFloor = new Pool(floor.url, { connections });
    pools.push(toSidecar, toFloor);
    const run = randomBytes(4).toString('hex');
    const total = options.sequential + options.requests;

    // Warm-up: scripts loaded, connections open; not measured.
    const warm = poster(toSidecar, () => '/payments', (i) => `warm-${run}-${i}`);
    await drive(warm, 0, 20, 4, 201);
    const warmFloor = poster(toFloor, () => '/payments', (i) => `warm-${run}-${i}`);
    await drive(warmFloor, 0, 20, 4, 201);

    const figures: ScenarioFigures[] = [];
    const firstKey = (i: number): string => `first-${run}-${i}`;
    figures.push(await measureScenario(probe, 'sidecar, first-time', poster(toSidecar, () => '/payments', firstKey), 201, options));
    figures.push(await measureScenario(probe, 'sidecar, replay', poster(toSidecar, () => '/payments', (i) => firstKey(i % total)), 201, options));

    // In-flight: the first request of each held key stays with the upstream for the whole pass.
    const heldKey = (i: number): string => `held-${run}-${i % HELD_KEYS}`;
    const holders = Array.from({ length: HELD_KEYS }, (_, i) => poster(toSidecar, () => `/slow/${run}`, heldKey)(i));
    await upstreamHeld(upstream, HELD_KEYS);
    figures.push(await measureScenario(probe, 'sidecar, in-flight duplicate', poster(toSidecar, () => `/slow/${run}`, heldKey), 409, options));
    await fetch(`${upstream.url}/__release`, { method: 'POST' });
    await Promise.all(holders);

    figures.push(await measureScenario(probe, 'floor, first-time', poster(toFloor, () => '/payments', (i) => `floor-${run}-${i}`), 201, options));

    const info = (await probe.client.call('INFO', 'server')) as string;
    const version = /^redis_version:(\S+)/m.exec(info)?.[1] ?? 'unknown';
    process.stdout.write(`${report(figures, options, version)}\n`);
    if (options.json !== undefined) {
      fs.mkdirSync(path.dirname(path.resolve(options.json)), { recursive: true });
      fs.writeFileSync(options.json, `${JSON.stringify({ redisVersion: version, options, figures }, null, 2)}\n`);
    }
  } finally {
    await Promise.all(pools.map((pool) => pool.close()));
    await Promise.all(started.map((child) => child.stop(5_000)));
    await probe.close();
    await redis.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:redis failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
