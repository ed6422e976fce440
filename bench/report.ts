/**
 * From the raw run to the report: medians per scenario, ratios against the plain pass-through,
 * the targets with pass or fail, and three renderings (a text table for stdout, JSON, and the
 * generated block of docs/performance.md). Targets are reported, never asserted.
 */
import fs from 'node:fs';
import { ALL_SCENARIOS, type CellResult, mb, median, type RawRun, SCENARIOS, type ScenarioId } from './harness';
import type { TraceSide } from './redis-stats';

export interface RoundTrips {
  /** On the store Redis while the request was in flight (its critical path), and after it. */
  readonly store: number;
  readonly storeAfter: number;
  /** Per lock server (all three in parallel), Redlock scenario only. */
  readonly perLockServer: number | null;
  readonly perLockServerAfter: number | null;
  readonly storeSequence: string;
  readonly storeSequenceAfter: string;
  readonly lockSequence: string | null;
  readonly lockSequenceAfter: string | null;
  /** All commands (script-internal included) and top-level commands per request, from the trace. */
  readonly storeCommands: number;
  readonly storeTopLevelCommands: number;
}

export interface ScenarioSummary {
  readonly id: ScenarioId;
  readonly number: string;
  readonly label: string;
  readonly bodyBytes: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly perRound: readonly { readonly round: number; readonly rps: number; readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number }[];
  /** rps over the plain pass-through's (the faster of 2a and 2b at this body size). */
  readonly ratioVsPlain: number | null;
  readonly ratioVsHttpProxy: number | null;
  /** rps over the Express peer's doing the same job (its scenario's `peer`), first-time and replays. */
  readonly ratioVsPeer: number | null;
  /** p99 less the plain pass-through's p99, ms. */
  readonly addedP99Ms: number | null;
  /** Per Redis role: every command executed (script-internal included) per response, under load. */
  readonly redisCommandsPerRequest: Readonly<Record<string, number>>;
  /** Per Redis role: script calls (EVALSHA, EVAL, FCALL) per response, under load. */
  readonly redisScriptsPerRequest: Readonly<Record<string, number>>;
  readonly redisCommandMix: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly roundTrips: RoundTrips | null;
  /**
   * CPU time per response, microseconds: `target` (the process under test), `upstream`, `redis`
   * (the store), `locks` (the three lock servers together).
   */
  readonly cpuMicrosPerRequest: Readonly<Record<string, number>>;
  /** The largest CPU use, in cores, by anything but the benchmark during one of its runs. */
  readonly otherCpuCoresMax: number | null;
  /** Peak RSS (VmHWM) of the process under test during its runs, bytes. */
  readonly peakRssBytes: number | null;
  readonly upstreamCallsPerResponse: number;
  readonly responses: number;
  readonly statuses: Readonly<Record<string, number>>;
  readonly errors: number;
  readonly timeouts: number;
  readonly checks: readonly string[];
}

export interface TargetResult {
  readonly target: string;
  readonly measured: string;
  readonly limit: string;
  /** null: not measured in this run. */
  readonly pass: boolean | null;
}

/** One scenario of this build against the same scenario of the baseline sidecar (an A/B run). */
export interface BaselineComparison {
  readonly id: ScenarioId;
  readonly baselineId: ScenarioId;
  readonly bodyBytes: number;
  /** This build's median rps over the baseline's. */
  readonly throughputRatio: number | null;
  /** The same per round (both ran in each round, in shuffled order): how much the ratio moves. */
  readonly perRoundRatios: readonly number[];
  /** CPU time of each sidecar per response, microseconds. */
  readonly cpuMicrosPerRequest: number | null;
  readonly baselineCpuMicrosPerRequest: number | null;
}

export interface Report extends Omit<RawRun, 'cells'> {
  readonly version: 1;
  readonly command: string;
  readonly plainPassThrough: Readonly<Record<string, ScenarioId>>;
  readonly scenarios: readonly ScenarioSummary[];
  readonly targets: readonly TargetResult[];
  /** Empty unless the run had a baseline sidecar. */
  readonly baselineComparisons: readonly BaselineComparison[];
}

export function buildReport(run: RawRun, command: string): Report {
  const summaries = run.cells.map(summarise);
  const find = (id: ScenarioId, body: number): ScenarioSummary | undefined => summaries.find((s) => s.id === id && s.bodyBytes === body);
  const plain: Record<string, ScenarioId> = {};
  for (const body of run.options.bodySizes) {
    const a = find('http-proxy', body);
    const b = find('undici-proxy', body);
    const faster = a && b ? (b.rps > a.rps ? b : a) : (a ?? b);
    if (faster) plain[String(body)] = faster.id;
  }
  const scenarios = summaries.map((summary) => {
    const plainId = plain[String(summary.bodyBytes)];
    const base = plainId ? find(plainId, summary.bodyBytes) : undefined;
    const httpProxy = find('http-proxy', summary.bodyBytes);
    const peerId = ALL_SCENARIOS.find((scenario) => scenario.id === summary.id)?.peer;
    const peer = peerId ? find(peerId, summary.bodyBytes) : undefined;
    return {
      ...summary,
      ratioVsPlain: base && base.rps > 0 ? summary.rps / base.rps : null,
      ratioVsHttpProxy: httpProxy && httpProxy.rps > 0 ? summary.rps / httpProxy.rps : null,
      ratioVsPeer: peer && peer.rps > 0 ? summary.rps / peer.rps : null,
      addedP99Ms: base ? summary.p99Ms - base.p99Ms : null,
    };
  });
  const { cells: _cells, ...rest } = run;
  const report: Report = { ...rest, version: 1, command, plainPassThrough: plain, scenarios, targets: [], baselineComparisons: compareWithBaseline(scenarios) };
  return { ...report, targets: evaluateTargets(report) };
}

function compareWithBaseline(scenarios: readonly ScenarioSummary[]): BaselineComparison[] {
  const out: BaselineComparison[] = [];
  for (const baseline of scenarios) {
    const ours = ALL_SCENARIOS.find((scenario) => scenario.id === baseline.id)?.baselineOf;
    const summary = scenarios.find((s) => s.id === ours && s.bodyBytes === baseline.bodyBytes);
    if (!ours || !summary) continue;
    const perRoundRatios = summary.perRound.flatMap((round) => {
      const other = baseline.perRound.find((candidate) => candidate.round === round.round);
      return other && other.rps > 0 ? [round.rps / other.rps] : [];
    });
    out.push({
      id: ours,
      baselineId: baseline.id,
      bodyBytes: baseline.bodyBytes,
      throughputRatio: baseline.rps > 0 ? summary.rps / baseline.rps : null,
      perRoundRatios,
      cpuMicrosPerRequest: summary.cpuMicrosPerRequest['target'] ?? null,
      baselineCpuMicrosPerRequest: baseline.cpuMicrosPerRequest['target'] ?? null,
    });
  }
  return out;
}

function summarise(cell: CellResult): ScenarioSummary {
  const scenario = ALL_SCENARIOS.find((candidate) => candidate.id === cell.scenario);
  if (!scenario) throw new Error(`no scenario ${cell.scenario}`);
  const rounds = cell.rounds;
  const responses = rounds.reduce((sum, round) => sum + round.load.responses, 0);
  const statuses: Record<string, number> = {};
  for (const round of rounds) for (const [status, n] of Object.entries(round.load.statuses)) statuses[status] = (statuses[status] ?? 0) + n;
  const commands: Record<string, number> = {};
  const scripts: Record<string, number> = {};
  const mix: Record<string, Record<string, number>> = {};
  for (const round of rounds) {
    for (const [role, delta] of Object.entries(round.redis)) {
      commands[role] = (commands[role] ?? 0) + delta.total;
      scripts[role] = (scripts[role] ?? 0) + delta.scripts;
      const roleMix = (mix[role] ??= {});
      for (const [name, n] of Object.entries(delta.byCommand)) roleMix[name] = (roleMix[name] ?? 0) + n;
    }
  }
  const perResponse = (n: number): number => (responses > 0 ? n / responses : 0);
  const cpu: Record<string, number> = {};
  for (const round of rounds) for (const [role, seconds] of Object.entries(round.cpuSeconds)) cpu[role] = (cpu[role] ?? 0) + seconds;
  const peaks = rounds.map((round) => round.peakRssBytes).filter((peak): peak is number => peak !== null);
  return {
    id: scenario.id,
    number: scenario.number,
    label: scenario.label,
    bodyBytes: cell.bodyBytes,
    rps: median(rounds.map((round) => round.load.rps)),
    p50Ms: median(rounds.map((round) => round.load.latencyMs.p50)),
    p99Ms: median(rounds.map((round) => round.load.latencyMs.p99)),
    maxMs: Math.max(...rounds.map((round) => round.load.latencyMs.max)),
    perRound: rounds.map((round) => ({ round: round.round, rps: round.load.rps, p50Ms: round.load.latencyMs.p50, p99Ms: round.load.latencyMs.p99, maxMs: round.load.latencyMs.max })),
    ratioVsPlain: null,
    ratioVsHttpProxy: null,
    ratioVsPeer: null,
    addedP99Ms: null,
    redisCommandsPerRequest: mapValues(commands, perResponse),
    redisScriptsPerRequest: mapValues(scripts, perResponse),
    redisCommandMix: Object.fromEntries(Object.entries(mix).map(([role, names]) => [role, mapValues(names, perResponse)])),
    roundTrips: cell.trace ? roundTripsOf(cell.trace.sides) : null,
    cpuMicrosPerRequest: mapValues(cpu, (seconds) => perResponse(seconds * 1e6)),
    otherCpuCoresMax: maxOrNull(rounds.map((round) => round.otherCpuCores)),
    peakRssBytes: peaks.length > 0 ? Math.max(...peaks) : null,
    upstreamCallsPerResponse: perResponse(rounds.reduce((sum, round) => sum + round.upstreamCalls, 0)),
    responses,
    statuses,
    errors: rounds.reduce((sum, round) => sum + round.load.errors, 0),
    timeouts: rounds.reduce((sum, round) => sum + round.load.timeouts, 0),
    checks: cell.checks,
  };
}

function roundTripsOf(sides: readonly TraceSide[]): RoundTrips | null {
  const [store, ...locks] = sides;
  if (!store) return null;
  const lock = locks[0];
  return {
    store: store.roundTrips,
    storeAfter: store.roundTripsAfter,
    perLockServer: locks.length > 0 ? median(locks.map((side) => side.roundTrips)) : null,
    perLockServerAfter: locks.length > 0 ? median(locks.map((side) => side.roundTripsAfter)) : null,
    storeSequence: store.sequence,
    storeSequenceAfter: store.sequenceAfter,
    lockSequence: lock?.sequence ?? null,
    lockSequenceAfter: lock?.sequenceAfter ?? null,
    storeCommands: store.commands,
    storeTopLevelCommands: store.topLevelCommands,
  };
}

function maxOrNull(values: readonly (number | null)[]): number | null {
  const known = values.filter((value): value is number => value !== null && Number.isFinite(value));
  return known.length > 0 ? Math.max(...known) : null;
}

/** A line on how much else the machine did during the measured runs. */
export function noiseLine(report: Report): string {
  const all = report.scenarios.map((s) => s.otherCpuCoresMax).filter((value): value is number => value !== null);
  if (all.length === 0) return 'Other load on the machine: not measured.';
  const worst = Math.max(...all);
  const noisy = report.scenarios.filter((s) => (s.otherCpuCoresMax ?? 0) > NOISY_CORES);
  return (
    `Other load on the machine during the measured runs (CPU not used by the benchmark's processes, kernel softirq included): at most ${worst.toFixed(2)} cores in one run` +
    (noisy.length > 0 ? `; above ${NOISY_CORES} cores in ${noisy.length} of ${report.scenarios.length} scenarios (${noisy.map((s) => `${s.id}/${bodyLabel(s.bodyBytes)}`).join(', ')}): those figures are noisy.` : '.')
  );
}

/** Other CPU use above which a run is flagged as noisy (kernel softirq alone stays well below). */
const NOISY_CORES = 0.25;

function mapValues(record: Readonly<Record<string, number>>, f: (n: number) => number): Record<string, number> {
  return Object.fromEntries(Object.entries(record).map(([key, value]) => [key, f(value)]));
}

// ------------------------------------------------------------------------------ targets

const MB = 1024 * 1024;

function evaluateTargets(report: Report): TargetResult[] {
  const targets: TargetResult[] = [];
  const find = (id: ScenarioId, body: number): ScenarioSummary | undefined => report.scenarios.find((s) => s.id === id && s.bodyBytes === body);
  const ratio = (value: number | null): string => (value === null ? '-' : `${value.toFixed(2)}x`);
  for (const body of report.options.bodySizes) {
    const size = bodyLabel(body);
    const first = find('first', body);
    const replay = find('replay', body);
    const inflight = find('inflight', body);
    const unguarded = find('unguarded', body);
    const floor = find('floor', body);
    targets.push({
      target: `guarded first-time throughput vs plain pass-through (${size})`,
      measured: ratio(first?.ratioVsPlain ?? null),
      limit: '>= 0.75x',
      pass: first?.ratioVsPlain == null ? null : first.ratioVsPlain >= 0.75,
    });
    const vsFloor = first && floor && floor.rps > 0 ? first.rps / floor.rps : null;
    targets.push({
      target: `guarded first-time throughput vs the floor (${size})`,
      measured: ratio(vsFloor),
      limit: '>= 0.9x',
      pass: vsFloor === null ? null : vsFloor >= 0.9,
    });
    targets.push({
      target: `guarded first-time throughput vs the Express peer (${size})`,
      measured: ratio(first?.ratioVsPeer ?? null),
      limit: '>= 2x',
      pass: first?.ratioVsPeer == null ? null : first.ratioVsPeer >= 2,
    });
    targets.push({
      target: `replay throughput vs plain pass-through (${size})`,
      measured: ratio(replay?.ratioVsPlain ?? null),
      limit: '>= 1.2x',
      pass: replay?.ratioVsPlain == null ? null : replay.ratioVsPlain >= 1.2,
    });
    targets.push({
      target: `in-flight 409 throughput vs plain pass-through (${size})`,
      measured: ratio(inflight?.ratioVsPlain ?? null),
      limit: '>= 1.2x',
      pass: inflight?.ratioVsPlain == null ? null : inflight.ratioVsPlain >= 1.2,
    });
    targets.push({
      target: `unguarded throughput vs http-proxy pass-through (${size})`,
      measured: ratio(unguarded?.ratioVsHttpProxy ?? null),
      limit: '>= 0.95x',
      pass: unguarded?.ratioVsHttpProxy == null ? null : unguarded.ratioVsHttpProxy >= 0.95,
    });
    const firstTrips = first?.roundTrips?.store;
    targets.push({
      target: `Redis round trips on the critical path, first-time, one Redis (${size})`,
      measured: firstTrips === undefined ? '-' : String(firstTrips),
      limit: '<= 2',
      pass: firstTrips === undefined || Number.isNaN(firstTrips) ? null : firstTrips <= 2,
    });
    const replayTrips = replay?.roundTrips?.store;
    targets.push({
      target: `Redis round trips on the critical path, replay (${size})`,
      measured: replayTrips === undefined ? '-' : String(replayTrips),
      limit: '<= 1',
      pass: replayTrips === undefined || Number.isNaN(replayTrips) ? null : replayTrips <= 1,
    });
    const commands = (summary: ScenarioSummary | undefined): number | undefined => summary?.redisCommandsPerRequest['store'];
    for (const [summary, limit, what] of [
      [first, 6, 'first-time'],
      [replay, 2, 'replay'],
    ] as const) {
      const measured = commands(summary);
      targets.push({
        target: `Redis commands per ${what} request, script-internal included (${size})`,
        measured: measured === undefined ? '-' : measured.toFixed(1),
        limit: `<= ${limit}`,
        // Under load a few commands of other requests' retries could land in the window: half a command of slack.
        pass: measured === undefined ? null : measured <= limit + 0.5,
      });
    }
    const firstRedisCpu = first?.cpuMicrosPerRequest['redis'];
    const floorRedisCpu = floor?.cpuMicrosPerRequest['redis'];
    const redisCpuRatio = firstRedisCpu !== undefined && floorRedisCpu !== undefined && floorRedisCpu > 0 ? firstRedisCpu / floorRedisCpu : null;
    targets.push({
      target: `Redis CPU per first-time request vs the floor's (${size})`,
      measured: redisCpuRatio === null ? '-' : `${ratio(redisCpuRatio)} (${fixed(firstRedisCpu ?? null, 0)} vs ${fixed(floorRedisCpu ?? null, 0)} us)`,
      limit: '<= 2x',
      pass: redisCpuRatio === null ? null : redisCpuRatio <= 2,
    });
    for (const summary of [unguarded, first, replay]) {
      if (!summary) continue;
      targets.push({
        target: `added p99 latency over plain pass-through, ${summary.label.replace('sidecar, ', '')} (${size})`,
        measured: summary.addedP99Ms === null ? '-' : `${signed(summary.addedP99Ms)} ms`,
        limit: '<= 2 ms',
        pass: summary.addedP99Ms === null ? null : summary.addedP99Ms <= 2,
      });
    }
  }
  const rate = report.fixedRate;
  if (rate) {
    const p99Of = (id: ScenarioId): number | null => {
      const row = rate.rows.find((candidate) => candidate.scenario === id);
      return row ? median(row.rounds.map((round) => round.p99Ms)) : null;
    };
    const floorP99 = p99Of('floor');
    const firstP99 = p99Of('first');
    const added = floorP99 === null || firstP99 === null ? null : firstP99 - floorP99;
    targets.push({
      target: `p99 of guarded first-time requests over the floor's, at a fixed ${rate.rate} req/s (${bodyLabel(rate.bodyBytes)})`,
      measured: added === null ? '-' : `${signed(added)} ms (${fixed(firstP99, 2)} vs ${fixed(floorP99, 2)} ms)`,
      limit: '<= 1 ms',
      pass: added === null ? null : added <= 1,
    });
  }
  targets.push({
    target: 'sidecar peak RSS during the benchmark',
    measured: report.sidecarPeakRssBytes === null ? '-' : `${mb(report.sidecarPeakRssBytes)} MB`,
    limit: '<= 150 MB',
    pass: report.sidecarPeakRssBytes === null ? null : report.sidecarPeakRssBytes <= 150 * MB,
  });
  const flood = report.flood;
  targets.push({
    target: `RSS after a flood of ${flood ? bodyLabel(flood.bodyBytes) : '16 KiB'} bodies: bounded`,
    measured:
      flood === null || flood.growthBytes === null
        ? '-'
        : `${flood.segments.map((segment) => mb(segment.rssBytes)).join(' -> ')} MB (last ${signed(flood.growthBytes / MB)} MB over the highest before)`,
    limit: 'last <= highest earlier + 16 MB (10 %)',
    pass: flood?.bounded ?? null,
  });
  return targets;
}

// ------------------------------------------------------------------------------ rendering

export function bodyLabel(bytes: number): string {
  return bytes >= 1024 && bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

function signed(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(2)}`;
}

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

function redisColumn(summary: ScenarioSummary): string {
  const store = summary.redisCommandsPerRequest['store'];
  if (store === undefined) return '-';
  const locks = Object.entries(summary.redisCommandsPerRequest).filter(([role]) => role.startsWith('lock-'));
  if (locks.length === 0) return fixed(store, 1);
  const perLock = median(locks.map(([, n]) => n));
  return `${fixed(store, 1)} + ${locks.length}x${fixed(perLock, 1)}`;
}

function roundTripColumn(summary: ScenarioSummary): string {
  const trips = summary.roundTrips;
  if (!trips) return '-';
  let text = fixed(trips.store, 0);
  if (trips.perLockServer !== null) text += ` + ${fixed(trips.perLockServer, 0)}/lock`;
  const after = trips.storeAfter + (trips.perLockServerAfter ?? 0);
  if (after > 0) text += ` (+${fixed(trips.storeAfter, 0)}${trips.perLockServerAfter ? ` + ${fixed(trips.perLockServerAfter, 0)}/lock` : ''} after)`;
  return text;
}

const COLUMNS = ['#', 'scenario', 'body', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'vs plain', 'vs peer', '+p99 ms', 'Redis cmds/req', 'round trips/req', 'CPU us/req', 'peak RSS MB'] as const;

function rows(report: Report): string[][] {
  return report.scenarios.map((s) => [
    s.number,
    s.label,
    bodyLabel(s.bodyBytes),
    Math.round(s.rps).toLocaleString('en-US'),
    fixed(s.p50Ms, 2),
    fixed(s.p99Ms, 2),
    fixed(s.maxMs, 1),
    s.ratioVsPlain === null ? '-' : `${s.ratioVsPlain.toFixed(2)}x`,
    s.ratioVsPeer === null ? '-' : `${s.ratioVsPeer.toFixed(2)}x`,
    s.addedP99Ms === null || s.id === 'upstream' ? '-' : signed(s.addedP99Ms),
    redisColumn(s),
    roundTripColumn(s),
    fixed(s.cpuMicrosPerRequest['target'], 0),
    mb(s.peakRssBytes),
  ]);
}

/** The latency phase as table rows: medians of the rounds, and what each adds over the undici proxy. */
function fixedRateRows(report: Report): string[][] {
  const phase = report.fixedRate;
  if (!phase) return [];
  const medians = phase.rows.map((row) => ({
    scenario: row.scenario,
    rps: median(row.rounds.map((r) => r.rps)),
    p50: median(row.rounds.map((r) => r.p50Ms)),
    p99: median(row.rounds.map((r) => r.p99Ms)),
    max: Math.max(...row.rounds.map((r) => r.maxMs)),
    unexpected: row.rounds.reduce((sum, r) => sum + r.unexpected, 0),
  }));
  const base = medians.find((row) => row.scenario === 'undici-proxy');
  return medians.map((row) => {
    const scenario = SCENARIOS.find((candidate) => candidate.id === row.scenario);
    return [
      scenario?.number ?? row.scenario,
      scenario?.label ?? row.scenario,
      Math.round(row.rps).toLocaleString('en-US'),
      fixed(row.p50, 2),
      fixed(row.p99, 2),
      fixed(row.max, 1),
      base && row.scenario !== 'upstream' ? signed(row.p50 - base.p50) : '-',
      base && row.scenario !== 'upstream' ? signed(row.p99 - base.p99) : '-',
      String(row.unexpected),
    ];
  });
}

const FIXED_RATE_COLUMNS = ['#', 'scenario', 'req/s', 'p50 ms', 'p99 ms', 'max ms', '+p50 ms', '+p99 ms', 'unexpected'] as const;

function fixedRateTitle(report: Report): string {
  const phase = report.fixedRate;
  if (!phase) return '';
  return `latency at a fixed rate: ${phase.rate} req/s open loop, ${bodyLabel(phase.bodyBytes)}, ${report.options.connections} connections, ${phase.rows[0]?.rounds.length ?? 0} round(s) of ${phase.durationS} s, medians; + columns over the undici pass-through`;
}

/** The sidecar's guarded first-time rows as a share of the floor's throughput and CPU. */
function floorComparison(report: Report): string[] {
  const out: string[] = [];
  for (const body of report.options.bodySizes) {
    const floor = report.scenarios.find((s) => s.id === 'floor' && s.bodyBytes === body);
    const first = report.scenarios.find((s) => s.id === 'first' && s.bodyBytes === body);
    if (!floor || !first || floor.rps <= 0) continue;
    const floorCpu = floor.cpuMicrosPerRequest['target'];
    const firstCpu = first.cpuMicrosPerRequest['target'];
    const cpu = floorCpu !== undefined && firstCpu !== undefined ? `; CPU ${fixed(firstCpu, 0)} vs ${fixed(floorCpu, 0)} us/req` : '';
    const floorRatio = floor.ratioVsPlain === null ? '' : ` (the floor itself: ${floor.ratioVsPlain.toFixed(2)}x the plain pass-through)`;
    out.push(`guarded first-time, ${bodyLabel(body)}: ${(first.rps / floor.rps).toFixed(2)}x the floor's throughput${cpu}${floorRatio}`);
  }
  return out;
}

/** The sidecar's rows that have a peer scenario, as a share of the peer's throughput and CPU. */
function peerComparison(report: Report): string[] {
  const out: string[] = [];
  for (const summary of report.scenarios) {
    const peerId = ALL_SCENARIOS.find((scenario) => scenario.id === summary.id)?.peer;
    const peer = report.scenarios.find((s) => s.id === peerId && s.bodyBytes === summary.bodyBytes);
    if (!peer || summary.ratioVsPeer === null) continue;
    const cpu = `; CPU ${fixed(summary.cpuMicrosPerRequest['target'], 0)} vs ${fixed(peer.cpuMicrosPerRequest['target'], 0)} us/req`;
    out.push(`${summary.label.replace('sidecar, ', '')}, ${bodyLabel(summary.bodyBytes)}: ${summary.ratioVsPeer.toFixed(2)}x the peer's throughput (${peer.number})${cpu}`);
  }
  return out;
}

/**
 * An A/B run, one line per body size: "this build vs baseline REV: first-time 1.03x throughput,
 * CPU 180 vs 190 us/req; replays ...".
 */
function baselineLines(report: Report): string[] {
  if (!report.baseline || report.baselineComparisons.length === 0) return [];
  const what: Partial<Record<ScenarioId, string>> = { first: 'first-time', replay: 'replays' };
  const out: string[] = [];
  for (const body of report.options.bodySizes) {
    const parts = report.baselineComparisons
      .filter((comparison) => comparison.bodyBytes === body)
      .map((c) => {
        const rounds = c.perRoundRatios.length > 1 ? ` (per round ${c.perRoundRatios.map((ratio) => ratio.toFixed(2)).join(', ')})` : '';
        return `${what[c.id] ?? c.id} ${fixed(c.throughputRatio, 2)}x throughput${rounds}, CPU ${fixed(c.cpuMicrosPerRequest, 0)} vs ${fixed(c.baselineCpuMicrosPerRequest, 0)} us/req`;
      });
    if (parts.length > 0) out.push(`${bodyLabel(body)}: this build vs baseline ${report.baseline.label}: ${parts.join('; ')}`);
  }
  return out;
}

function baselineTitle(report: Report): string {
  const args = report.options.sidecarNodeArgs.length > 0 ? `; this build's sidecars ran with node ${report.options.sidecarNodeArgs.join(' ')}` : '';
  return `A/B against the baseline sidecar (${report.baseline?.label ?? '-'}, dist/ built ${report.baseline?.distBuiltAt ?? '-'}), same rounds, same store Redis and upstream${args}:`;
}

/** What the "vs peer" column compares with: one source for the text and the doc. */
const PEER_TITLE = 'the Express peer (2d, 2e: Express 5 + @node-idempotency/core on its Redis adapter + http-proxy-middleware, the same job users build instead)';

function passText(pass: boolean | null): string {
  return pass === null ? 'not measured' : pass ? 'PASS' : 'MISS';
}

export function renderText(report: Report): string {
  const body = rows(report);
  const widths = COLUMNS.map((title, i) => Math.max(title.length, ...body.map((row) => (row[i] ?? '').length)));
  const numeric = new Set([3, 4, 5, 6, 7, 8, 9, 12, 13]);
  const line = (cells: readonly string[]): string =>
    cells.map((cell, i) => (numeric.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  const out: string[] = [];
  out.push(`idempotency-sidecar benchmark, ${report.startedAt}: concurrency ${report.options.connections}, ${report.options.rounds} round(s) x ${report.options.durationS} s per scenario, interleaved (seed ${report.options.seed})`);
  out.push(machineLine(report));
  out.push('');
  out.push(line(COLUMNS));
  out.push(line(widths.map((width) => '-'.repeat(width))));
  for (const row of body) out.push(line(row));
  out.push('');
  out.push(noiseLine(report));
  out.push('CPU us/req: CPU time of the process under test per response (user + system, /proc/<pid>/stat); the JSON has the upstream\'s and Redis\'s too');
  out.push(`plain pass-through: ${Object.entries(report.plainPassThrough).map(([body, id]) => `${bodyLabel(Number(body))}: ${id}`).join(', ')}; round trips from the trace (one request at a time), Redis commands under load (script-internal included)`);
  const floorLines = floorComparison(report);
  if (floorLines.length > 0) {
    out.push('');
    out.push('against the floor (2c: the undici pass-through plus the two Redis calls any Redis-backed proxy makes):');
    for (const floorLine of floorLines) out.push(`  ${floorLine}`);
  }
  const peerLines = peerComparison(report);
  if (peerLines.length > 0) {
    out.push('');
    out.push(`against ${PEER_TITLE}:`);
    for (const peerLine of peerLines) out.push(`  ${peerLine}`);
  }
  const abLines = baselineLines(report);
  if (abLines.length > 0) {
    out.push('');
    out.push(baselineTitle(report));
    for (const abLine of abLines) out.push(`  ${abLine}`);
  }
  const rateRows = fixedRateRows(report);
  if (rateRows.length > 0) {
    const rateWidths = FIXED_RATE_COLUMNS.map((title, i) => Math.max(title.length, ...rateRows.map((row) => (row[i] ?? '').length)));
    const rateLine = (cells: readonly string[]): string =>
      cells.map((cell, i) => (i >= 2 ? cell.padStart(rateWidths[i] ?? 0) : cell.padEnd(rateWidths[i] ?? 0))).join('  ').trimEnd();
    out.push('');
    out.push(`${fixedRateTitle(report)}:`);
    out.push(rateLine(FIXED_RATE_COLUMNS));
    out.push(rateLine(rateWidths.map((width) => '-'.repeat(width))));
    for (const row of rateRows) out.push(rateLine(row));
  }
  out.push('');
  out.push('targets (reported, not asserted):');
  const targetWidth = Math.max(...report.targets.map((target) => target.target.length));
  for (const target of report.targets) {
    out.push(`  ${passText(target.pass).padEnd(12)} ${target.target.padEnd(targetWidth)}  ${target.measured} (target ${target.limit})`);
  }
  const misses = report.targets.filter((target) => target.pass === false).length;
  out.push(misses > 0 ? `  ${misses} target(s) MISSED` : '  every measured target met');
  const checks = report.scenarios.flatMap((s) => s.checks.map((check) => `${s.id}/${s.bodyBytes}: ${check}`));
  if (checks.length > 0 || report.notes.length > 0) {
    out.push('');
    out.push('checks:');
    for (const check of [...checks, ...report.notes]) out.push(`  ${check}`);
  }
  if (report.profile) {
    out.push('');
    out.push(...renderProfileText(report));
  }
  return out.join('\n');
}

function machineLine(report: Report): string {
  const m = report.machine;
  return `machine: ${m.cpus} CPUs (${m.cpuModel}), ${(m.memoryBytes / 1024 ** 3).toFixed(1)} GiB, ${m.os}; Node ${m.node}, Redis ${m.redis}, autocannon ${m.autocannon}; source ${m.commit}${m.srcModified ? ' + uncommitted src/ changes' : ''}`;
}

function renderProfileText(report: Report): string[] {
  const profile = report.profile;
  if (!profile) return [];
  const out = [`profile of scenario ${profile.scenario}: ${profile.busyMs.toFixed(0)} ms busy of ${profile.windowMs.toFixed(0)} ms sampled${profile.windowed ? ' (measured window)' : ' (whole process)'}, ${profile.responses} responses (${perRequest(profile, profile.busyMs)} us busy per response); ${profile.file}`];
  out.push('  top self time by function:');
  for (const entry of profile.topFunctions.slice(0, 20)) out.push(`    ${entry.percent.toFixed(1).padStart(5)} %  ${entry.selfMs.toFixed(0).padStart(6)} ms  ${entry.name}  ${entry.where}`);
  out.push('  by place (native functions charged to their JavaScript caller):');
  for (const entry of profile.topPlaces.slice(0, 12)) out.push(`    ${entry.percent.toFixed(1).padStart(5)} %  ${entry.selfMs.toFixed(0).padStart(6)} ms  ${entry.name}`);
  out.push('  by owner (charged to the nearest frame of the sidecar or a package, Node internals included):');
  for (const entry of profile.topOwners.slice(0, 15)) out.push(`    ${entry.percent.toFixed(1).padStart(5)} %  ${perRequest(profile, entry.selfMs).padStart(6)} us/resp  ${entry.name}`);
  return out;
}

/** Milliseconds of a profile's window as microseconds per response: profiles of two processes compare per request. */
function perRequest(profile: { readonly responses: number }, ms: number): string {
  return profile.responses > 0 ? ((1000 * ms) / profile.responses).toFixed(1) : '-';
}

function markdownTable(header: readonly string[], body: readonly (readonly string[])[]): string {
  const escape = (cell: string): string => cell.replace(/\|/g, '\\|');
  return [
    `| ${header.map(escape).join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...body.map((row) => `| ${row.map(escape).join(' | ')} |`),
  ].join('\n');
}

export function renderMarkdown(report: Report): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`Run on ${report.startedAt.slice(0, 10)} with \`${report.command}\` (${Math.round(report.elapsedS)} s in all):`);
  out.push(`${report.options.rounds} rounds of ${report.options.durationS} s per scenario and body size, interleaved in a shuffled order per round`);
  out.push(`(seed ${report.options.seed}), after a ${report.options.warmupS} s warm-up of each; concurrency ${report.options.connections}; medians of the rounds (max: the largest of them).`);
  out.push('');
  out.push(`Source: commit ${m.commit}${m.srcModified ? ' with uncommitted changes in src/' : ''}; dist/ built ${m.distBuiltAt ?? 'at an unknown time'}.`);
  out.push('');
  out.push(`Machine: ${m.cpus} CPUs (${m.cpuModel}), ${(m.memoryBytes / 1024 ** 3).toFixed(1)} GiB memory, ${m.os}; Node ${m.node}; Redis ${m.redis}; autocannon ${m.autocannon}.`);
  out.push('');
  out.push(markdownTable(COLUMNS, rows(report)));
  out.push('');
  out.push(noiseLine(report));
  out.push('');
  const cpuRows = report.scenarios.filter((s) => s.bodyBytes === Math.min(...report.options.bodySizes));
  out.push('CPU time per request, in microseconds (user + system from `/proc/<pid>/stat`, over the responses; smallest body):');
  out.push('');
  out.push(
    markdownTable(
      ['#', 'scenario', 'process under test', 'upstream', 'store Redis', 'lock Redis (3)'],
      cpuRows.map((s) => [s.number, s.label, fixed(s.cpuMicrosPerRequest['target'], 0), fixed(s.cpuMicrosPerRequest['upstream'], 0), fixed(s.cpuMicrosPerRequest['redis'], 0), fixed(s.cpuMicrosPerRequest['locks'], 0)]),
    ),
  );
  out.push('');
  const rateRows = fixedRateRows(report);
  if (rateRows.length > 0) {
    out.push(`The ${fixedRateTitle(report)} (unexpected: responses with another status than the scenario's):`);
    out.push('');
    out.push(markdownTable(FIXED_RATE_COLUMNS, rateRows));
    out.push('');
  }
  const abLines = baselineLines(report);
  if (abLines.length > 0) {
    out.push(baselineTitle(report));
    out.push('');
    for (const abLine of abLines) out.push(`- ${abLine}`);
    out.push('');
  }
  out.push(`"vs peer": against ${PEER_TITLE}, first-time against 2d, replays against 2e.`);
  out.push('');
  out.push(`The plain pass-through (the "vs plain" and "+p99" base) was ${Object.entries(report.plainPassThrough).map(([body, id]) => `${id} at ${bodyLabel(Number(body))}`).join(' and ')}.`);
  out.push('');
  out.push('Targets, as ratios measured in the same run (reported, not asserted):');
  out.push('');
  out.push(markdownTable(['target', 'measured', 'limit', 'result'], report.targets.map((target) => [target.target, target.measured, target.limit, passText(target.pass)])));
  out.push('');
  out.push('The Redis commands of one request, from the trace (top-level commands in order; a script with the commands it ran):');
  out.push('');
  const traced = report.scenarios.filter((s) => s.roundTrips !== null && s.bodyBytes === Math.min(...report.options.bodySizes));
  out.push(
    markdownTable(
      ['#', 'scenario', 'store, before the response', 'store, after it', 'each lock server'],
      traced.map((s) => [
        s.number,
        s.label,
        s.roundTrips?.storeSequence ?? '-',
        s.roundTrips?.storeSequenceAfter ?? '-',
        s.roundTrips?.lockSequence ? `${s.roundTrips.lockSequence}${s.roundTrips.lockSequenceAfter && s.roundTrips.lockSequenceAfter !== '-' ? `; after: ${s.roundTrips.lockSequenceAfter}` : ''}` : '-',
      ]),
    ),
  );
  if (report.flood) {
    const flood = report.flood;
    out.push('');
    out.push(
      `Flood: ${flood.segments.length} x ${flood.segmentS} s of ${bodyLabel(flood.bodyBytes)} guarded first-time requests on the same sidecar (not restarted): RSS ${mb(flood.rssBeforeBytes)} MB before, ` +
        `${flood.segments.map((segment) => `${mb(segment.rssBytes)} MB`).join(', ')} after each segment (${flood.segments.map((segment) => `${Math.round(segment.rps)} req/s`).join(', ')}).`,
    );
  }
  const checks = report.scenarios.flatMap((s) => s.checks.map((check) => `${s.id}/${bodyLabel(s.bodyBytes)}: ${check}`));
  if (checks.length > 0 || report.notes.length > 0) {
    out.push('');
    out.push('Checks that failed during the run:');
    out.push('');
    for (const check of [...checks, ...report.notes]) out.push(`- ${check}`);
  }
  if (report.profile) {
    const profile = report.profile;
    out.push('');
    out.push(`CPU profile under scenario ${SCENARIOS.find((s) => s.id === profile.scenario)?.number ?? profile.scenario} (${profile.busyMs.toFixed(0)} ms busy of ${profile.windowMs.toFixed(0)} ms sampled, ${perRequest(profile, profile.busyMs)} us per response), top self time:`);
    out.push('');
    out.push(markdownTable(['self %', 'function', 'where'], profile.topFunctions.slice(0, 15).map((entry) => [entry.percent.toFixed(1), entry.name, entry.where])));
    out.push('');
    out.push('By owner: each sample charged to the nearest frame, itself or a caller, of the sidecar (`dist/`) or a package, so Node internals count for whoever called them:');
    out.push('');
    out.push(markdownTable(['self %', 'us per response', 'owner'], profile.topOwners.slice(0, 12).map((entry) => [entry.percent.toFixed(1), perRequest(profile, entry.selfMs), entry.name])));
  }
  return out.join('\n');
}

export const DOC_BEGIN = '<!-- bench:begin (generated by npm run bench; do not edit by hand) -->';
export const DOC_END = '<!-- bench:end -->';

/** Replaces the generated block of docs/performance.md (appends one if the markers are missing). */
export function updateDoc(file: string, report: Report): void {
  const block = `${DOC_BEGIN}\n${renderMarkdown(report)}\n${DOC_END}`;
  const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Performance\n';
  const begin = current.indexOf(DOC_BEGIN);
  const end = current.indexOf(DOC_END);
  const next = begin !== -1 && end > begin ? current.slice(0, begin) + block + current.slice(end + DOC_END.length) : `${current.trimEnd()}\n\n${block}\n`;
  fs.writeFileSync(file, next);
}
