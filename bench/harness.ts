/**
 * The benchmark: every process of its own, every scenario run in interleaved rounds, Redis and
 * memory measured around each run. bench/run.ts is the command line; this module does the work
 * and returns the report (bench/report.ts prints and writes it).
 *
 * Processes: the store Redis and three lock Redis (test/helpers/redis-server.ts), the payment
 * upstream, the two plain pass-through proxies, the floor, the Express peer, two sidecars (one on
 * the store Redis alone, one with a Redlock quorum of the three lock Redis) and the load
 * generator. Only the harness talks to all of them, and it is idle while a scenario runs.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { type RedisHandle, startRedis } from '../test/helpers/redis-server';
import { seededRandom } from '../test/helpers/seeded-random';
import { type BaselineSource, prepareBaseline } from './baseline';
import { paymentRequestBody } from './payload';
import {
  type BenchProcess,
  cpuSecondsOf,
  findRepoRoot,
  forkServer,
  forkWorker,
  freePort,
  machineBusySeconds,
  memoryOf,
  resetPeak,
  sleep,
  startSidecarProcess,
} from './processes';
import { type ProfileSummary, summariseProfile } from './profile';
import type { KeyMode, LoadJob, LoadResult, WorkerMessage } from './protocol';
import { type CommandDelta, commandDelta, loadRedlockScriptNames, loadScriptNames, median, RedisProbe, type RedisSnapshot, type TraceResult, traceRoundTrips } from './redis-stats';

export type ScenarioId =
  | 'upstream'
  | 'http-proxy'
  | 'undici-proxy'
  | 'floor'
  | 'peer'
  | 'peer-replay'
  | 'unguarded'
  | 'first'
  | 'replay'
  | 'inflight'
  | 'redlock'
  | 'first-baseline'
  | 'replay-baseline';
type TargetName = 'upstream' | 'httpProxy' | 'undiciProxy' | 'floorProxy' | 'peerProxy' | 'sidecar' | 'redlockSidecar' | 'baselineSidecar';

/** The baselines forked from bench/servers/ (each its own process; port over IPC). */
const FORKED_BASELINES = {
  httpProxy: { name: 'http-proxy pass-through', script: 'http-proxy-passthrough.js' },
  undiciProxy: { name: 'undici pass-through', script: 'undici-passthrough.js' },
  floorProxy: { name: 'redis floor pass-through', script: 'redis-floor-passthrough.js' },
  peerProxy: { name: 'Express + @node-idempotency peer', script: 'express-idempotency-peer.js' },
} as const satisfies Partial<Record<TargetName, { readonly name: string; readonly script: string }>>;
type ForkedBaseline = keyof typeof FORKED_BASELINES;
/** Targets --profile accepts besides the plain sidecar: the forked baselines. */
export const PROFILED_BASELINES: ReadonlySet<TargetName> = new Set(Object.keys(FORKED_BASELINES) as ForkedBaseline[]);
function isForkedBaseline(target: TargetName): target is ForkedBaseline {
  return target in FORKED_BASELINES;
}
type KeyKind = 'none' | 'unique' | 'replay' | 'inflight';

export interface Scenario {
  readonly id: ScenarioId;
  /** The numbering: 1, 2a, 2b, 3 ... 7. */
  readonly number: string;
  readonly label: string;
  readonly target: TargetName;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly keys: KeyKind;
  /** The status every response should have. */
  readonly expectedStatus: (status: number) => boolean;
  /** The Express peer's scenario doing the same job, for the report's "vs peer" ratio. */
  readonly peer?: ScenarioId;
  /** A scenario of the baseline sidecar: the scenario of the build under test it is compared with. */
  readonly baselineOf?: ScenarioId;
}

const ok = (status: number): boolean => status === 200 || status === 201;
export const SCENARIOS: readonly Scenario[] = [
  { id: 'upstream', number: '1', label: 'upstream direct', target: 'upstream', method: 'POST', path: '/payments/direct', keys: 'none', expectedStatus: ok },
  { id: 'http-proxy', number: '2a', label: 'pass-through, http-proxy', target: 'httpProxy', method: 'POST', path: '/payments/http-proxy', keys: 'none', expectedStatus: ok },
  { id: 'undici-proxy', number: '2b', label: 'pass-through, undici Pool', target: 'undiciProxy', method: 'POST', path: '/payments/undici', keys: 'none', expectedStatus: ok },
  { id: 'floor', number: '2c', label: 'floor: undici Pool + 2 Redis calls', target: 'floorProxy', method: 'POST', path: '/payments/floor', keys: 'unique', expectedStatus: ok },
  { id: 'peer', number: '2d', label: 'peer: Express + @node-idempotency, first-time', target: 'peerProxy', method: 'POST', path: '/payments/peer', keys: 'unique', expectedStatus: ok },
  { id: 'peer-replay', number: '2e', label: 'peer: Express + @node-idempotency, replays', target: 'peerProxy', method: 'POST', path: '/payments/peer-replay', keys: 'replay', expectedStatus: ok },
  { id: 'unguarded', number: '3', label: 'sidecar, unguarded GET', target: 'sidecar', method: 'GET', path: '/payments/unguarded', keys: 'none', expectedStatus: ok },
  { id: 'first', number: '4', label: 'sidecar, guarded first-time', target: 'sidecar', method: 'POST', path: '/payments/first', keys: 'unique', expectedStatus: ok, peer: 'peer' },
  { id: 'replay', number: '5', label: 'sidecar, replays', target: 'sidecar', method: 'POST', path: '/payments/replay', keys: 'replay', expectedStatus: ok, peer: 'peer-replay' },
  { id: 'inflight', number: '6', label: 'sidecar, in-flight duplicate 409', target: 'sidecar', method: 'POST', path: '/slow/inflight', keys: 'inflight', expectedStatus: (status) => status === 409 },
  { id: 'redlock', number: '7', label: 'sidecar + Redlock quorum of 3, first-time', target: 'redlockSidecar', method: 'POST', path: '/payments/redlock', keys: 'unique', expectedStatus: ok },
];

/**
 * The A/B scenarios (--baseline, --baseline-dist, --sidecar-node-args): 4 and 5 against the
 * baseline sidecar, another build on the same store Redis and upstream, run only when there is one.
 */
export const BASELINE_SCENARIOS: readonly Scenario[] = [
  { id: 'first-baseline', number: '4 base', label: 'baseline sidecar, guarded first-time', target: 'baselineSidecar', method: 'POST', path: '/payments/first-baseline', keys: 'unique', expectedStatus: ok, baselineOf: 'first' },
  { id: 'replay-baseline', number: '5 base', label: 'baseline sidecar, replays', target: 'baselineSidecar', method: 'POST', path: '/payments/replay-baseline', keys: 'replay', expectedStatus: ok, baselineOf: 'replay' },
];

export const ALL_SCENARIOS: readonly Scenario[] = [...SCENARIOS, ...BASELINE_SCENARIOS];

/** The processes under test that are a sidecar (their Redis CPU counts, they are traced). */
const SIDECAR_TARGETS: ReadonlySet<TargetName> = new Set(['sidecar', 'redlockSidecar', 'baselineSidecar']);

export interface BenchOptions {
  /** Seconds per scenario per round. */
  readonly durationS: number;
  readonly rounds: number;
  /** Seconds per scenario of the unmeasured warm-up pass (0: none). */
  readonly warmupS: number;
  readonly connections: number;
  readonly bodySizes: readonly number[];
  /** Requests of the round-trip trace per sidecar scenario and body size (0: no trace). */
  readonly traceRequests: number;
  readonly replayKeys: number;
  readonly inflightKeys: number;
  readonly flood: { readonly segments: number; readonly segmentS: number; readonly bodyBytes: number };
  /**
   * The latency phase: the scenarios of FIXED_RATE_SCENARIOS at this many requests per second
   * (open loop, below every target's saturation), at the smallest body size; 0: skipped.
   */
  readonly fixedRate: number;
  /** Profile this scenario of the plain sidecar with --cpu-prof in a separate sidecar; false: none. */
  readonly profile: ScenarioId | false;
  readonly seed: number;
  readonly only?: readonly ScenarioId[];
  /** The other build of the sidecar the A/B scenarios run against; none: no A/B scenarios. */
  readonly baseline?: BaselineSource;
  /** Flags for node when it starts this build's sidecars (never the baseline's), e.g. --max-semi-space-size=16. */
  readonly sidecarNodeArgs: readonly string[];
  /** Where profiles and logs go (.bench/). */
  readonly outDir: string;
  /** Progress lines (stderr). */
  readonly log: (line: string) => void;
}

export interface RoundResult {
  readonly round: number;
  readonly position: number;
  readonly load: LoadResult;
  readonly redis: Readonly<Record<string, CommandDelta>>;
  readonly upstreamCalls: number;
  readonly peakRssBytes: number | null;
  readonly rssBytes: number | null;
  /**
   * CPU seconds used during the run: `target` (the process under test), `upstream`, `redis`
   * (the store) and `locks` (the three lock servers together, Redlock only).
   */
  readonly cpuSeconds: Readonly<Record<string, number>>;
  /**
   * CPU the rest of the machine used during the run, in cores (busy time of all CPUs less that of
   * every process of the benchmark, over the run's length): other work on a shared machine, and
   * kernel time (softirq) no process is charged for. High values mean a noisy measurement.
   */
  readonly otherCpuCores: number | null;
}

export interface CellResult {
  readonly scenario: ScenarioId;
  readonly bodyBytes: number;
  readonly rounds: RoundResult[];
  trace?: TraceResult;
  readonly checks: string[];
}

export interface FloodResult {
  readonly bodyBytes: number;
  readonly segmentS: number;
  readonly rssBeforeBytes: number | null;
  readonly segments: readonly { readonly rps: number; readonly rssBytes: number | null; readonly peakRssBytes: number | null }[];
  /** RSS at the end of the last segment less the highest at the end of an earlier one. */
  readonly growthBytes: number | null;
  readonly bounded: boolean | null;
}

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryBytes: number;
  readonly os: string;
  readonly node: string;
  readonly redis: string;
  readonly autocannon: string;
  /** The commit measured, and whether src/ differed from it (uncommitted work was measured). */
  readonly commit: string;
  readonly srcModified: boolean | null;
  /** When the dist/ the run measured was built (its .build-stamp). */
  readonly distBuiltAt?: string;
}

export interface RawRun {
  readonly startedAt: string;
  readonly elapsedS: number;
  readonly options: Omit<BenchOptions, 'log'>;
  readonly machine: Machine;
  readonly orders: readonly (readonly string[])[];
  readonly cells: readonly CellResult[];
  readonly flood: FloodResult | null;
  readonly fixedRate: FixedRateResult | null;
  readonly sidecarPeakRssBytes: number | null;
  readonly peakResettable: boolean;
  /** `responses`: answered in the profiled window, so self time can be given per request. */
  readonly profile: (ProfileSummary & { readonly scenario: ScenarioId; readonly responses: number }) | null;
  /** The baseline sidecar of the A/B scenarios, when there was one. */
  readonly baseline: { readonly label: string; readonly commit: string | null; readonly distBuiltAt: string } | null;
  readonly notes: readonly string[];
}

/** What a request costs in latency when nothing is saturated: each scenario at one fixed rate. */
export interface FixedRateResult {
  readonly rate: number;
  readonly bodyBytes: number;
  readonly durationS: number;
  readonly rows: readonly {
    readonly scenario: ScenarioId;
    /** Per round, in milliseconds; the report takes medians. */
    readonly rounds: readonly { readonly rps: number; readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number; readonly unexpected: number }[];
  }[];
}

/**
 * The scenarios of the latency phase: the upstream alone, the plain undici proxy (the base of the
 * added latency), the floor, and the sidecar's first-time requests and replays.
 */
export const FIXED_RATE_SCENARIOS: readonly ScenarioId[] = ['upstream', 'undici-proxy', 'floor', 'first', 'replay'];

type Target = BenchProcess & { readonly url: string };

interface Context {
  readonly options: BenchOptions;
  readonly root: string;
  readonly runId: string;
  readonly upstream: BenchProcess & { readonly url: string };
  /** The baseline sidecar only in an A/B run: targetOf() says so when a scenario needs it. */
  readonly targets: Record<Exclude<TargetName, 'baselineSidecar'>, Target> & { readonly baselineSidecar?: Target };
  readonly store: RedisProbe;
  readonly locks: readonly RedisProbe[];
  readonly worker: LoadWorker;
  readonly dispatcher: Agent;
  readonly scriptNames: ReadonlyMap<string, string>;
  readonly notes: string[];
  /** Process ids of the store Redis and the lock Redis, for their CPU time. */
  readonly redisPids: { readonly store: number; readonly locks: readonly number[] };
  /** Every process of the benchmark, the harness included. */
  readonly allPids: readonly number[];
  peakResettable: boolean;
  sidecarPeak: number | null;
}

// ------------------------------------------------------------------------------ the load worker

class LoadWorker {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (result: LoadResult) => void; reject: (error: Error) => void }>();

  constructor(readonly process: BenchProcess) {
    process.child.on('message', (message: WorkerMessage) => {
      if (message.type === 'ready') return;
      const waiter = this.waiting.get(message.id);
      if (!waiter) return;
      this.waiting.delete(message.id);
      if (message.type === 'result') waiter.resolve(message.result);
      else waiter.reject(new Error(`load generator: ${message.error}`));
    });
    process.child.once('exit', (code, signal) => {
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`load generator exited (${code ?? signal}): ${process.stderrTail()}`));
      this.waiting.clear();
    });
  }

  run(job: Omit<LoadJob, 'id'>): Promise<LoadResult> {
    const id = this.nextId++;
    const limitMs = job.durationS * 1000 + 30_000;
    return new Promise<LoadResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`load generator: no result within ${limitMs} ms`));
      }, limitMs);
      this.waiting.set(id, {
        resolve: (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.process.child.send({ ...job, id } satisfies LoadJob);
    });
  }
}

// ------------------------------------------------------------------------------ the run

export async function runBenchmark(options: BenchOptions): Promise<RawRun> {
  const started = Date.now();
  const root = findRepoRoot();
  const build = path.join(root, '.bench', 'build', 'bench');
  if (!fs.existsSync(path.join(root, 'dist', 'cli.js'))) throw new Error('dist/ is missing: run `node scripts/ensure-built.js` first (npm run bench does)');
  fs.mkdirSync(options.outDir, { recursive: true });
  const log = options.log;
  const snapshot = snapshotSidecar(root, path.join(options.outDir, `sidecar-${process.pid}`));
  const bin = snapshot.bin;
  const baselineBuild = options.baseline ? prepareBaseline(root, options.baseline, log) : undefined;
  const baselineSnapshot = baselineBuild ? snapshotSidecar(baselineBuild.dir, path.join(options.outDir, `sidecar-baseline-${process.pid}`)) : undefined;
  const notes: string[] = [];

  const redis: RedisHandle[] = [];
  const processes: BenchProcess[] = [];
  const probes: RedisProbe[] = [];
  const dispatcher = new Agent({ connections: 32, keepAliveTimeout: 2_000 });
  try {
    log('starting 4 redis-server processes (store + 3 lock servers)');
    for (let i = 0; i < 4; i += 1) redis.push(await startRedis());
    const [storeRedis, ...lockRedis] = redis as [RedisHandle, ...RedisHandle[]];
    const store = new RedisProbe('store', storeRedis.url);
    const locks = lockRedis.map((handle, i) => new RedisProbe(`lock-${i}`, handle.url));
    probes.push(store, ...locks);

    log('starting the upstream, the three pass-through proxies, the Express peer and the load generator');
    const upstream = await forkServer('upstream', path.join(build, 'servers', 'upstream.js'));
    processes.push(upstream);
    const baselineEnv = { BENCH_UPSTREAM: upstream.url, BENCH_REDIS: storeRedis.url };
    const forkBaseline = async (target: ForkedBaseline): Promise<BenchProcess & { readonly url: string }> => {
      const { name, script } = FORKED_BASELINES[target];
      const child = await forkServer(name, path.join(build, 'servers', script), baselineEnv);
      processes.push(child);
      return child;
    };
    const httpProxy = await forkBaseline('httpProxy');
    const undiciProxy = await forkBaseline('undiciProxy');
    const floorProxy = await forkBaseline('floorProxy');
    const peerProxy = await forkBaseline('peerProxy');
    const workerProcess = await forkWorker('load generator', path.join(build, 'load-worker.js'));
    processes.push(workerProcess);

    const sidecarEnv = sidecarSettings(options, storeRedis.url);
    log('starting the sidecars (store Redis alone; Redlock quorum of 3)');
    const nodeArgs = options.sidecarNodeArgs;
    const sidecar = await startSidecarProcess({ name: 'sidecar', bin, upstream: upstream.url, port: await freePort(), adminPort: await freePort(), env: sidecarEnv, nodeArgs });
    processes.push(sidecar);
    const redlockSidecar = await startSidecarProcess({
      name: 'sidecar (redlock)',
      bin,
      upstream: upstream.url,
      port: await freePort(),
      adminPort: await freePort(),
      env: { ...sidecarEnv, IDEMPOTENCY_REDLOCK_URLS: lockRedis.map((handle) => handle.url).join(',') },
      nodeArgs,
    });
    processes.push(redlockSidecar);
    let baselineSidecar: Target | undefined;
    if (baselineBuild && baselineSnapshot) {
      log(`starting the baseline sidecar: ${baselineBuild.label}`);
      baselineSidecar = await startSidecarProcess({ name: 'sidecar (baseline)', bin: baselineSnapshot.bin, upstream: upstream.url, port: await freePort(), adminPort: await freePort(), env: sidecarEnv });
      processes.push(baselineSidecar);
    }

    const ctx: Context = {
      options,
      root,
      runId: randomBytes(4).toString('hex'),
      upstream,
      targets: { upstream, httpProxy, undiciProxy, floorProxy, peerProxy, sidecar, redlockSidecar, ...(baselineSidecar ? { baselineSidecar } : {}) },
      store,
      locks,
      worker: new LoadWorker(workerProcess),
      dispatcher,
      // The baseline's scripts may differ from this build's: the trace names both.
      scriptNames: new Map([
        ...(baselineSnapshot ? loadScriptNames(path.join(baselineSnapshot.dir, 'dist')) : []),
        ...loadScriptNames(path.join(snapshot.dir, 'dist')),
        ...loadRedlockScriptNames(root),
      ]),
      notes,
      redisPids: { store: await store.pid(), locks: await Promise.all(locks.map((probe) => probe.pid())) },
      allPids: [process.pid, ...processes.map((child) => child.pid), ...(await Promise.all([store, ...locks].map((probe) => probe.pid())))],
      peakResettable: true,
      sidecarPeak: null,
    };

    const scenarios = [...SCENARIOS, ...(baselineSidecar ? BASELINE_SCENARIOS : [])].filter((scenario) => options.only === undefined || options.only.includes(scenario.id));
    const cells: CellResult[] = [];
    for (const scenario of scenarios) {
      for (const bodyBytes of options.bodySizes) cells.push({ scenario: scenario.id, bodyBytes, rounds: [], checks: [] });
    }

    if (options.warmupS > 0) {
      log(`warm-up: every scenario for ${options.warmupS} s (not measured)`);
      for (const cell of cells) await runCell(ctx, cell, options.warmupS, undefined);
    }

    if (options.traceRequests > 0) {
      log(`round-trip trace: ${options.traceRequests} requests one at a time per sidecar scenario, MONITOR on`);
      for (const cell of cells) {
        const scenario = scenarioOf(cell.scenario);
        if (SIDECAR_TARGETS.has(scenario.target)) cell.trace = await traceCell(ctx, cell);
      }
    }

    const random = seededRandom(options.seed);
    const orders: string[][] = [];
    for (let round = 1; round <= options.rounds; round += 1) {
      const order = shuffle([...cells], random);
      orders.push(order.map((cell) => `${cell.scenario}/${cell.bodyBytes}`));
      log(`round ${round}/${options.rounds}: ${order.length} runs of ${options.durationS} s, order ${orders[orders.length - 1]?.join(' ')}`);
      for (const [position, cell] of order.entries()) {
        await runCell(ctx, cell, options.durationS, { round, position });
        const last = cell.rounds[cell.rounds.length - 1];
        if (last) log(`  ${cell.scenario}/${cell.bodyBytes}: ${Math.round(last.load.rps)} req/s, p99 ${last.load.latencyMs.p99.toFixed(2)} ms`);
      }
    }

    let fixedRate: FixedRateResult | null = null;
    if (options.fixedRate > 0) fixedRate = await runFixedRate(ctx, random);

    let flood: FloodResult | null = null;
    if (options.flood.segments > 0 && (options.only === undefined || options.only.includes('first'))) {
      flood = await runFlood(ctx);
    }

    let profile: RawRun['profile'] = null;
    if (options.profile !== false) {
      const profiled = scenarioOf(options.profile);
      const target = profiled.target;
      if (isForkedBaseline(target)) {
        const { name, script } = FORKED_BASELINES[target];
        const start = (): ReturnType<typeof forkServer> => forkServer(`${name} (profiled)`, path.join(build, 'servers', script), baselineEnv, 15_000, cpuProfileArgs(ctx, profiled));
        profile = await runProfile(ctx, profiled, start, stopForked);
      } else {
        const start = async (): Promise<Target> =>
          startSidecarProcess({ name: 'sidecar (profiled)', bin, upstream: upstream.url, port: await freePort(), adminPort: await freePort(), env: sidecarEnv, nodeArgs: [...nodeArgs, ...cpuProfileArgs(ctx, profiled)] });
        profile = await runProfile(ctx, profiled, start, (child) => child.stop(15_000));
      }
    }

    const machine = { ...describeMachine(root), distBuiltAt: snapshot.builtAt };
    return {
      startedAt: new Date(started).toISOString(),
      elapsedS: (Date.now() - started) / 1000,
      options: withoutLog(options),
      machine,
      orders,
      cells,
      flood,
      fixedRate,
      sidecarPeakRssBytes: ctx.sidecarPeak,
      peakResettable: ctx.peakResettable,
      profile,
      baseline: baselineBuild && baselineSnapshot ? { label: baselineBuild.label, commit: baselineBuild.commit, distBuiltAt: baselineSnapshot.builtAt } : null,
      notes,
    };
  } finally {
    log('stopping every process');
    for (const probe of probes) await probe.close().catch(() => undefined);
    await Promise.all(processes.reverse().map((child) => child.stop().catch(() => undefined)));
    await Promise.all(redis.map((handle) => handle.stop().catch(() => undefined)));
    await dispatcher.close().catch(() => undefined);
    fs.rmSync(snapshot.dir, { recursive: true, force: true });
    if (baselineSnapshot) fs.rmSync(baselineSnapshot.dir, { recursive: true, force: true });
  }
}

/**
 * A copy of a built sidecar (dist/, bin/, package.json of `root`, this checkout or the baseline's)
 * that every sidecar of that build is started from, so that a rebuild of dist/ during the run
 * (someone working on src/) cannot mix two versions of the code in one report. The copy lies
 * under .bench/, so packages still resolve from the repository's node_modules.
 */
function snapshotSidecar(root: string, dir: string): { readonly dir: string; readonly bin: string; readonly builtAt: string } {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
  fs.cpSync(path.join(root, 'bin'), path.join(dir, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  let builtAt = 'unknown';
  try {
    builtAt = fs.readFileSync(path.join(dir, 'dist', '.build-stamp'), 'utf8').trim();
  } catch {
    // built by hand, without ensure-built
  }
  return { dir, bin: path.join(dir, 'bin', 'idempotency-sidecar.js'), builtAt };
}

function withoutLog(options: BenchOptions): Omit<BenchOptions, 'log'> {
  const { log: _log, ...rest } = options;
  return rest;
}

function sidecarSettings(options: BenchOptions, redisUrl: string): Record<string, string> {
  // The in-flight requests of scenario 6 are held upstream for a whole run: the upstream timeout
  // must outlast it (the lock and the record's lease are renewed meanwhile).
  const upstreamTimeoutS = Math.max(30, Math.ceil(Math.max(options.durationS, options.warmupS) + 30));
  return {
    IDEMPOTENCY_REDIS_URL: redisUrl,
    IDEMPOTENCY_UPSTREAM_TIMEOUT: `${upstreamTimeoutS}s`,
    IDEMPOTENCY_LOG_LEVEL: process.env['BENCH_LOG_LEVEL'] ?? 'info',
  };
}

function scenarioOf(id: ScenarioId): Scenario {
  const scenario = ALL_SCENARIOS.find((candidate) => candidate.id === id);
  if (!scenario) throw new Error(`no scenario ${id}`);
  return scenario;
}

function targetOf(ctx: Context, scenario: Scenario): Target {
  const target = ctx.targets[scenario.target];
  if (!target) throw new Error(`scenario ${scenario.id} needs the baseline sidecar: give --baseline=REV, --baseline-dist=DIR or --sidecar-node-args`);
  return target;
}

// ------------------------------------------------------------------------------ one scenario run

interface Prepared {
  readonly keys: KeyMode;
  /** After the measurement: releases what prepare() started; what went wrong, if anything. */
  finish(): Promise<string[]>;
}

async function runCell(ctx: Context, cell: CellResult, durationS: number, measured: { round: number; position: number } | undefined): Promise<void> {
  const scenario = scenarioOf(cell.scenario);
  const target = targetOf(ctx, scenario);
  const sidecarTarget = SIDECAR_TARGETS.has(scenario.target);
  const redisProbes = scenario.target === 'redlockSidecar' ? [ctx.store, ...ctx.locks] : [ctx.store];
  // Every run starts on empty Redis servers, so none pays for the records an earlier one left.
  await Promise.all([ctx.store, ...ctx.locks].map((probe) => probe.flush()));
  const prepared = await prepare(ctx, scenario, cell.bodyBytes);
  try {
    if (!resetPeak(target.pid)) ctx.peakResettable = false;
    const before = await Promise.all(redisProbes.map((probe) => probe.snapshot()));
    const callsBefore = await upstreamCalls(ctx, scenario.path);
    const cpuPids: Record<string, readonly number[]> = {
      target: [target.pid],
      ...(scenario.target === 'upstream' ? {} : { upstream: [ctx.upstream.pid] }),
      ...(sidecarTarget || scenario.target === 'floorProxy' || scenario.target === 'peerProxy' ? { redis: [ctx.redisPids.store] } : {}),
      ...(scenario.target === 'redlockSidecar' ? { locks: ctx.redisPids.locks } : {}),
    };
    const cpuBefore = cpuOf(cpuPids);
    const machineBefore = machineBusySeconds();
    const oursBefore = cpuOf({ all: ctx.allPids })['all'];
    const load = await ctx.worker.run({
      origin: target.url,
      method: scenario.method,
      path: scenario.path,
      bodyBytes: cell.bodyBytes,
      keys: prepared.keys,
      connections: ctx.options.connections,
      durationS,
    });
    // Requests the load generator abandoned at the end still finish in the sidecar: let them.
    await sleep(150);
    const cpuAfter = cpuOf(cpuPids);
    const machineAfter = machineBusySeconds();
    const oursAfter = cpuOf({ all: ctx.allPids })['all'];
    const otherCpuSeconds =
      machineBefore === undefined || machineAfter === undefined || oursBefore === undefined || oursAfter === undefined
        ? NaN
        : machineAfter - machineBefore - (oursAfter - oursBefore);
    const after = await Promise.all(redisProbes.map((probe) => probe.snapshot()));
    const callsAfter = await upstreamCalls(ctx, scenario.path);
    const memory = memoryOf(target.pid);
    // The peak RSS target is this build's; the baseline's shows in its own rows.
    if (sidecarTarget && scenario.target !== 'baselineSidecar' && memory) ctx.sidecarPeak = Math.max(ctx.sidecarPeak ?? 0, memory.peak);
    if (measured === undefined) return;
    const redis: Record<string, CommandDelta> = {};
    redisProbes.forEach((probe, i) => {
      redis[probe.role] = commandDelta(before[i] as RedisSnapshot, after[i] as RedisSnapshot);
    });
    const upstreamDelta = callsAfter - callsBefore;
    cell.rounds.push({
      round: measured.round,
      position: measured.position,
      load,
      redis,
      upstreamCalls: upstreamDelta,
      peakRssBytes: memory?.peak ?? null,
      rssBytes: memory?.rss ?? null,
      cpuSeconds: Object.fromEntries(Object.keys(cpuPids).map((role) => [role, (cpuAfter[role] ?? NaN) - (cpuBefore[role] ?? NaN)])),
      otherCpuCores: Number.isFinite(otherCpuSeconds) && load.durationS > 0 ? otherCpuSeconds / (load.durationS + 0.15) : null,
    });
    const unexpected = Object.entries(load.statuses)
      .filter(([status]) => !scenario.expectedStatus(Number(status)))
      .reduce((sum, [, n]) => sum + n, 0);
    if (unexpected > 0) cell.checks.push(`round ${measured.round}: ${unexpected} of ${load.responses} responses had an unexpected status (${JSON.stringify(load.statuses)})`);
    if (load.errors > 0 || load.timeouts > 0) cell.checks.push(`round ${measured.round}: ${load.errors} errors, ${load.timeouts} timeouts`);
    if ((scenario.keys === 'replay' || scenario.keys === 'inflight') && upstreamDelta !== 0) {
      cell.checks.push(`round ${measured.round}: the upstream was called ${upstreamDelta} times during a run that should not reach it`);
    }
  } finally {
    const problems = await prepared.finish();
    if (measured !== undefined) cell.checks.push(...problems.map((problem) => `round ${measured.round}: ${problem}`));
    else if (problems.length > 0) ctx.notes.push(`warm-up ${cell.scenario}/${cell.bodyBytes}: ${problems.join('; ')}`);
  }
}

/** Sets up the keys of a scenario: completed replay keys, or in-flight keys held upstream. */
async function prepare(ctx: Context, scenario: Scenario, bodyBytes: number): Promise<Prepared> {
  const target = targetOf(ctx, scenario);
  const nothing = async (): Promise<string[]> => [];
  switch (scenario.keys) {
    case 'none':
      return { keys: { kind: 'none' }, finish: nothing };
    case 'unique':
      return { keys: { kind: 'unique', prefix: `${scenario.id}-${ctx.runId}-${randomBytes(6).toString('base64url')}-` }, finish: nothing };
    case 'replay': {
      const keys = Array.from({ length: ctx.options.replayKeys }, (_, i) => `replay-${ctx.runId}-${bodyBytes}-${i}`);
      await inBatches(keys, 10, async (key) => {
        const status = await send(ctx, target.url, scenario, bodyBytes, key);
        if (status !== 201) throw new Error(`completing replay key ${key}: status ${status}`);
      });
      return { keys: { kind: 'set', keys }, finish: nothing };
    }
    case 'inflight': {
      const keys = Array.from({ length: ctx.options.inflightKeys }, (_, i) => `inflight-${ctx.runId}-${randomBytes(4).toString('hex')}-${i}`);
      const callsBefore = await upstreamCalls(ctx, scenario.path);
      const firsts = keys.map((key) => send(ctx, target.url, scenario, bodyBytes, key, 120_000));
      firsts.forEach((first) => void first.catch(() => undefined));
      // In flight once the upstream holds every one of them.
      const deadline = Date.now() + 10_000;
      while ((await upstreamStats(ctx)).held < keys.length) {
        if (Date.now() > deadline) throw new Error(`the upstream did not receive the ${keys.length} in-flight requests within 10 s`);
        await sleep(10);
      }
      return {
        keys: { kind: 'set', keys },
        finish: async () => {
          const problems: string[] = [];
          await release(ctx);
          const statuses = await Promise.all(firsts.map((first) => first.catch((error: unknown) => String(error))));
          const bad = statuses.filter((status) => status !== 201);
          if (bad.length > 0) problems.push(`the in-flight first requests answered ${bad.join(', ')} instead of 201`);
          const calls = (await upstreamCalls(ctx, scenario.path)) - callsBefore;
          if (calls !== keys.length) problems.push(`the upstream executed ${calls} in-flight requests for ${keys.length} keys (duplicates reached it)`);
          return problems;
        },
      };
    }
  }
}

async function send(ctx: Context, origin: string, scenario: Scenario, bodyBytes: number, key: string | undefined, timeoutMs = 10_000): Promise<number> {
  const headers: Record<string, string> = { 'content-type': 'application/json', authorization: 'Bearer bench-client' };
  if (key !== undefined) headers['idempotency-key'] = key;
  const response = await request(`${origin}${scenario.path}`, {
    method: scenario.method,
    headers,
    body: paymentRequestBody(bodyBytes),
    dispatcher: ctx.dispatcher,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  await response.body.arrayBuffer();
  return response.statusCode;
}

/** CPU seconds so far per role, each the sum over its processes. */
function cpuOf(pids: Readonly<Record<string, readonly number[]>>): Record<string, number> {
  const seconds: Record<string, number> = {};
  for (const [role, list] of Object.entries(pids)) seconds[role] = list.reduce((sum, pid) => sum + (cpuSecondsOf(pid) ?? NaN), 0);
  return seconds;
}

async function upstreamStats(ctx: Context): Promise<{ calls: Record<string, number>; held: number }> {
  const response = await request(`${ctx.upstream.url}/__stats`, { dispatcher: ctx.dispatcher, headersTimeout: 5_000 });
  return (await response.body.json()) as { calls: Record<string, number>; held: number };
}

async function upstreamCalls(ctx: Context, urlPath: string): Promise<number> {
  return (await upstreamStats(ctx)).calls[urlPath] ?? 0;
}

async function release(ctx: Context): Promise<void> {
  const response = await request(`${ctx.upstream.url}/__release`, { method: 'POST', dispatcher: ctx.dispatcher, headersTimeout: 5_000 });
  await response.body.arrayBuffer();
}

async function inBatches<T>(items: readonly T[], size: number, work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
}

// ------------------------------------------------------------------------------ trace, flood, profile

async function traceCell(ctx: Context, cell: CellResult): Promise<TraceResult> {
  const scenario = scenarioOf(cell.scenario);
  const target = targetOf(ctx, scenario);
  const probes = scenario.target === 'redlockSidecar' ? [ctx.store, ...ctx.locks] : [ctx.store];
  await Promise.all([ctx.store, ...ctx.locks].map((probe) => probe.flush()));
  const prepared = await prepare(ctx, scenario, cell.bodyBytes);
  try {
    const keyFor = (i: number): string | undefined => {
      const keys = prepared.keys;
      if (keys.kind === 'unique') return `${keys.prefix}trace-${i}`;
      if (keys.kind === 'set') return keys.keys[i % keys.keys.length];
      return undefined;
    };
    const trace = await traceRoundTrips(probes, ctx.options.traceRequests, (i) => send(ctx, target.url, scenario, cell.bodyBytes, keyFor(i)), ctx.scriptNames);
    const store = trace.sides[0];
    ctx.options.log(`  trace ${cell.scenario}/${cell.bodyBytes}: store ${store?.roundTrips} round trips (+${store?.roundTripsAfter} after): ${store?.sequence}`);
    return trace;
  } finally {
    const problems = await prepared.finish();
    cell.checks.push(...problems.map((problem) => `trace: ${problem}`));
  }
}

/**
 * Latency at a fixed rate: at concurrency 50 the load is closed-loop and a proxy that saturates its
 * core queues every request, so the main table's p99 mostly measures throughput. Here each target
 * gets the same open-loop rate (the load worker's own schedule, not autocannon's), low enough that
 * none is saturated, in shuffled order per round:
 * the difference to the undici proxy is what a request pays for the sidecar when the pod has CPU
 * to spare, which is how production runs.
 */
async function runFixedRate(ctx: Context, random: () => number): Promise<FixedRateResult> {
  const { fixedRate: rate, durationS, rounds, connections } = ctx.options;
  const bodyBytes = Math.min(...ctx.options.bodySizes);
  const ids = FIXED_RATE_SCENARIOS.filter((id) => ctx.options.only === undefined || ctx.options.only.includes(id));
  const rows = ids.map((scenario) => ({ scenario, rounds: [] as FixedRateResult['rows'][number]['rounds'][number][] }));
  for (let round = 1; round <= rounds; round += 1) {
    const order = shuffle([...rows], random);
    ctx.options.log(`latency at ${rate} req/s, round ${round}/${rounds}: ${order.map((row) => row.scenario).join(' ')}`);
    for (const row of order) {
      const scenario = scenarioOf(row.scenario);
      await Promise.all([ctx.store, ...ctx.locks].map((probe) => probe.flush()));
      const prepared = await prepare(ctx, scenario, bodyBytes);
      try {
        const load = await ctx.worker.run({
          origin: targetOf(ctx, scenario).url,
          method: scenario.method,
          path: scenario.path,
          bodyBytes,
          keys: prepared.keys,
          connections,
          durationS,
          overallRate: rate,
        });
        const unexpected = Object.entries(load.statuses)
          .filter(([status]) => !scenario.expectedStatus(Number(status)))
          .reduce((sum, [, n]) => sum + n, 0);
        row.rounds.push({ rps: load.rps, p50Ms: load.latencyMs.p50, p99Ms: load.latencyMs.p99, maxMs: load.latencyMs.max, unexpected });
        ctx.options.log(`  ${row.scenario}: ${Math.round(load.rps)} req/s, p50 ${load.latencyMs.p50.toFixed(2)} ms, p99 ${load.latencyMs.p99.toFixed(2)} ms`);
      } finally {
        const problems = await prepared.finish();
        if (problems.length > 0) ctx.notes.push(`latency phase ${row.scenario}: ${problems.join('; ')}`);
      }
      await sleep(150);
    }
  }
  return { rate, bodyBytes, durationS, rows };
}

/** A flood of 16 KiB guarded first-time requests on the same sidecar, RSS after each segment. */
async function runFlood(ctx: Context): Promise<FloodResult> {
  const { segments, segmentS, bodyBytes } = ctx.options.flood;
  const sidecar = ctx.targets.sidecar;
  ctx.options.log(`flood: ${segments} x ${segmentS} s of ${bodyBytes}-byte guarded first-time requests, RSS after each`);
  await ctx.store.flush();
  const rssBefore = memoryOf(sidecar.pid)?.rss ?? null;
  const results: { rps: number; rssBytes: number | null; peakRssBytes: number | null }[] = [];
  for (let i = 0; i < segments; i += 1) {
    const load = await ctx.worker.run({
      origin: sidecar.url,
      method: 'POST',
      path: '/payments/flood',
      bodyBytes,
      keys: { kind: 'unique', prefix: `flood-${ctx.runId}-${i}-` },
      connections: ctx.options.connections,
      durationS: segmentS,
    });
    await sleep(150);
    const memory = memoryOf(sidecar.pid);
    if (memory) ctx.sidecarPeak = Math.max(ctx.sidecarPeak ?? 0, memory.peak);
    results.push({ rps: load.rps, rssBytes: memory?.rss ?? null, peakRssBytes: memory?.peak ?? null });
    ctx.options.log(`  flood segment ${i + 1}: ${Math.round(load.rps)} req/s, RSS ${mb(memory?.rss)} MB`);
  }
  const rss = results.map((result) => result.rssBytes);
  const last = rss[rss.length - 1] ?? null;
  const earlier = rss.slice(0, -1).filter((value): value is number => value !== null);
  const highestEarlier = earlier.length > 0 ? Math.max(...earlier) : null;
  // Bounded: the last segment ends no higher than the highest earlier one plus 16 MB (or 10 %).
  // The heap breathes from one segment to the next; a leak climbs with every segment.
  const growth = last !== null && highestEarlier !== null ? last - highestEarlier : null;
  const bounded = growth === null ? null : growth <= Math.max(16 * 1024 * 1024, 0.1 * (highestEarlier ?? 0));
  return { bodyBytes, segmentS, rssBeforeBytes: rssBefore, segments: results, growthBytes: growth, bounded };
}

/** Where a scenario's profile is written, and the node flags that write it (sampling every 250 us). */
function cpuProfileArgs(ctx: Context, scenario: Scenario): string[] {
  return ['--cpu-prof', '--cpu-prof-dir', path.join(ctx.options.outDir, 'profile'), '--cpu-prof-name', `${scenario.id}.cpuprofile`, '--cpu-prof-interval', '250'];
}

/**
 * A forked baseline exits when its IPC channel closes (process.exit, which still writes a
 * --cpu-prof profile; a SIGTERM would not).
 */
async function stopForked(child: BenchProcess): Promise<void> {
  const exited = child.child.exitCode !== null ? Promise.resolve() : once(child.child, 'exit');
  child.child.disconnect();
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
  await child.stop(1_000);
}

/**
 * A process of its own started with --cpu-prof (a third sidecar, or a second copy of a forked
 * baseline such as the floor, so the two profiles can be set side by side per request) runs one
 * scenario at the smallest body for one run's duration after a warm-up; it then exits gracefully
 * so V8 writes the profile, which is summarised over the measured window only.
 */
async function runProfile<T extends BenchProcess & { readonly url: string }>(
  ctx: Context,
  scenario: Scenario,
  start: () => Promise<T>,
  stop: (child: T) => Promise<void>,
): Promise<RawRun['profile']> {
  const dir = path.join(ctx.options.outDir, 'profile');
  fs.mkdirSync(dir, { recursive: true });
  const name = `${scenario.id}.cpuprofile`;
  fs.rmSync(path.join(dir, name), { force: true });
  const bodyBytes = Math.min(...ctx.options.bodySizes);
  ctx.options.log(`profile: ${scenario.label}, ${bodyBytes}-byte bodies, ${ctx.options.durationS} s under --cpu-prof`);
  await Promise.all([ctx.store, ...ctx.locks].map((probe) => probe.flush()));
  const profiled = await start();
  // The scenario's preparation (replay keys, in-flight keys) against the profiled process.
  const profiledCtx: Context = { ...ctx, targets: { ...ctx.targets, [scenario.target]: profiled } };
  let window: { startUs: number; endUs: number } | undefined;
  let responses: number | undefined;
  try {
    const run = async (durationS: number): Promise<LoadResult> => {
      const prepared = await prepare(profiledCtx, scenario, bodyBytes);
      try {
        return await ctx.worker.run({
          origin: profiled.url,
          method: scenario.method,
          path: scenario.path,
          bodyBytes,
          keys: prepared.keys,
          connections: ctx.options.connections,
          durationS,
        });
      } finally {
        await prepared.finish();
      }
    };
    await run(Math.max(1, ctx.options.warmupS));
    const startUs = Number(process.hrtime.bigint() / 1000n);
    const load = await run(ctx.options.durationS);
    window = { startUs, endUs: Number(process.hrtime.bigint() / 1000n) };
    responses = load.responses;
    ctx.options.log(`  profiled run: ${Math.round(load.rps)} req/s (slower than unprofiled: sampling costs)`);
  } finally {
    await stop(profiled);
  }
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) {
    ctx.notes.push(`profile: no ${file} was written (the profiled process did not exit cleanly)`);
    return null;
  }
  return { ...summariseProfile(file, window), scenario: scenario.id, responses: responses ?? 0 };
}

// ------------------------------------------------------------------------------ small helpers

function describeMachine(root: string): Machine {
  let redisVersion = 'unknown';
  try {
    const text = execFileSync(process.env['REDIS_SERVER_BIN'] ?? 'redis-server', ['--version'], { encoding: 'utf8' });
    redisVersion = /v=(\S+)/.exec(text)?.[1] ?? text.trim();
  } catch {
    // not on PATH (the Docker fallback)
  }
  let autocannonVersion = 'unknown';
  try {
    autocannonVersion = (JSON.parse(fs.readFileSync(path.join(root, 'node_modules', 'autocannon', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // not installed where expected
  }
  // Read-only git queries (no optional index writes), for the record of what was measured.
  const git = (args: string[]): string => execFileSync('git', args, { cwd: root, encoding: 'utf8', env: { ...process.env, GIT_OPTIONAL_LOCKS: '0' }, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  let commit = 'unknown';
  let srcModified: boolean | null = null;
  try {
    commit = git(['rev-parse', '--short=12', 'HEAD']);
    srcModified = git(['diff', '--name-only', 'HEAD', '--', 'src']) !== '';
  } catch {
    // not a git checkout
  }
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: redisVersion,
    autocannon: autocannonVersion,
    commit,
    srcModified,
  };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

export function mb(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined || !Number.isFinite(bytes) ? '-' : (bytes / (1024 * 1024)).toFixed(1);
}

export { median };
