/**
 * `npm run bench`: the command line of the benchmark (docs/performance.md says what it measures).
 *
 *   npm run bench                     full form: 3 rounds x 5 s per scenario; writes the doc
 *   npm run bench -- --quick          1 round x 1 s, short warm-up, trace and flood; no doc
 *   npm run bench -- --profile        also profiles scenario 4 with --cpu-prof (BENCH_PROFILE=1);
 *                                     --profile=ID (BENCH_PROFILE=ID): another scenario of the sidecar
 *   npm run bench -- --baseline=REV   A/B: also runs 4 and 5 (first-baseline, replay-baseline) on a
 *                                     second sidecar built from git revision REV (extracted and built
 *                                     once into .bench/baseline-<commit>/), in the same shuffled rounds;
 *                                     the report compares this build with it per body size
 *   npm run bench -- --baseline-dist=DIR   the same with a build as it is: a checkout with dist/ built
 *   npm run bench -- --sidecar-node-args="--max-semi-space-size=16"
 *                                     node flags for this build's sidecars only (never the baseline's);
 *                                     without --baseline*, the baseline is this same build without them
 *
 * Short A/B: npm run bench -- --quick --only=first,first-baseline --baseline=HEAD~1
 * Flags: --duration=S --rounds=N --warmup=S --trace=N --flood-segments=N --flood-seconds=S
 * --bodies=200,16384 --only=first,replay --seed=N --json=PATH --docs / --no-docs
 * --rate=N (the latency phase's requests per second, default 1000; 0 skips it).
 * Environment: BENCH_DURATION, BENCH_ROUNDS, BENCH_PROFILE=1.
 * Progress goes to stderr; the table to stdout; the report to .bench/latest.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type BaselineSource } from './baseline';
import { ALL_SCENARIOS, BASELINE_SCENARIOS, type BenchOptions, FIXED_RATE_SCENARIOS, PROFILED_BASELINES, runBenchmark, SCENARIOS, type ScenarioId } from './harness';
import { findRepoRoot } from './processes';
import { buildReport, renderText, updateDoc } from './report';

/** The whole command gives up after this long, whatever it is doing. */
const HARD_LIMIT_FLOOR_MS = 10 * 60_000;

interface Cli {
  readonly options: BenchOptions;
  readonly json: string;
  readonly docs: boolean;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

function positive(name: string, value: string | undefined, integer: boolean, allowZero = false): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0) || (integer && !Number.isInteger(n))) {
    fail(`${name}: ${JSON.stringify(value)} is not a ${integer ? 'whole ' : ''}number${allowZero ? '' : ' above 0'}`);
  }
  return n;
}

export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv, root: string): Cli {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match?.[1]) fail(`unknown argument ${arg} (see the header of bench/run.ts)`);
    flags.set(match[1], match[2] ?? 'true');
  }
  const known = new Set(['quick', 'duration', 'rounds', 'warmup', 'trace', 'flood-segments', 'flood-seconds', 'bodies', 'only', 'seed', 'json', 'docs', 'no-docs', 'profile', 'rate', 'baseline', 'baseline-dist', 'sidecar-node-args']);
  for (const name of flags.keys()) if (!known.has(name)) fail(`unknown flag --${name}`);
  const quick = flags.has('quick');
  const durationS = positive('--duration', flags.get('duration'), false) ?? positive('BENCH_DURATION', env['BENCH_DURATION'], false) ?? (quick ? 1 : 5);
  const rounds = positive('--rounds', flags.get('rounds'), true) ?? positive('BENCH_ROUNDS', env['BENCH_ROUNDS'], true) ?? (quick ? 1 : 3);
  const warmupS = positive('--warmup', flags.get('warmup'), false, true) ?? (quick ? 0.5 : 1);
  const traceRequests = positive('--trace', flags.get('trace'), true, true) ?? (quick ? 5 : 20);
  const floodSegments = positive('--flood-segments', flags.get('flood-segments'), true, true) ?? 4;
  const floodSeconds = positive('--flood-seconds', flags.get('flood-seconds'), false) ?? durationS;
  const bodySizes = (flags.get('bodies') ?? '200,16384').split(',').map((size) => positive('--bodies', size, true) ?? fail('--bodies: empty size'));
  const only = flags.get('only')?.split(',') as ScenarioId[] | undefined;
  for (const id of only ?? []) if (!ALL_SCENARIOS.some((scenario) => scenario.id === id)) fail(`--only: no scenario ${id} (${ALL_SCENARIOS.map((s) => s.id).join(', ')})`);
  const sidecarNodeArgs = (flags.get('sidecar-node-args') ?? '').split(/\s+/).filter((arg) => arg !== '');
  for (const arg of sidecarNodeArgs) if (!arg.startsWith('-')) fail(`--sidecar-node-args: ${JSON.stringify(arg)} is not a node flag (give them as --sidecar-node-args="--flag=value --other")`);
  const baseline = baselineOf(flags, sidecarNodeArgs);
  const needsBaseline = only?.filter((id) => BASELINE_SCENARIOS.some((scenario) => scenario.id === id)) ?? [];
  if (baseline === undefined && needsBaseline.length > 0) fail(`--only: ${needsBaseline.join(', ')} need a baseline sidecar: give --baseline=REV, --baseline-dist=DIR or --sidecar-node-args`);
  const seed = positive('--seed', flags.get('seed'), true, true) ?? 1;
  // The latency phase's open-loop rate: well below the slowest target's saturation here (the
  // Redlock sidecar is not in it; the sidecar's first-time requests saturate near 4-6k/s).
  const fixedRate = positive('--rate', flags.get('rate'), true, true) ?? 1_000;
  // --profile or BENCH_PROFILE=1: scenario 4; --profile=ID or BENCH_PROFILE=ID: that scenario.
  const profileFlag = flags.get('profile') ?? env['BENCH_PROFILE'];
  const profile: ScenarioId | false =
    profileFlag === undefined || profileFlag === '' || profileFlag === '0' || profileFlag === 'false'
      ? false
      : profileFlag === 'true' || profileFlag === '1'
        ? 'first'
        : (profileFlag as ScenarioId);
  const profileable = SCENARIOS.filter((s) => s.target === 'sidecar' || PROFILED_BASELINES.has(s.target));
  if (profile !== false && !profileable.some((scenario) => scenario.id === profile)) {
    fail(`--profile / BENCH_PROFILE: ${profileFlag} is not a scenario of the plain sidecar or of a forked baseline (${profileable.map((s) => s.id).join(', ')})`);
  }
  // An A/B run measures a change, not the product: it never writes the doc unless told to.
  const full = durationS >= 5 && rounds >= 3 && only === undefined && baseline === undefined && sidecarNodeArgs.length === 0;
  const docs = flags.has('no-docs') ? false : flags.has('docs') ? true : full;
  const outDir = path.join(root, '.bench');
  return {
    options: {
      durationS,
      rounds,
      warmupS,
      connections: 50,
      bodySizes,
      traceRequests,
      replayKeys: 100,
      inflightKeys: 10,
      flood: { segments: floodSegments, segmentS: floodSeconds, bodyBytes: 16 * 1024 },
      fixedRate,
      profile,
      seed,
      ...(only ? { only } : {}),
      ...(baseline ? { baseline } : {}),
      sidecarNodeArgs,
      outDir,
      log: (line) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`),
    },
    json: path.resolve(flags.get('json') ?? path.join(outDir, 'latest.json')),
    docs,
  };
}

/** --baseline=REV or --baseline-dist=DIR (not both); only --sidecar-node-args: this build without them. */
function baselineOf(flags: ReadonlyMap<string, string>, sidecarNodeArgs: readonly string[]): BaselineSource | undefined {
  const rev = flags.get('baseline');
  const dir = flags.get('baseline-dist');
  if (rev !== undefined && dir !== undefined) fail('--baseline and --baseline-dist: give one of them');
  if (rev === 'true' || rev === '') fail('--baseline: give a git revision, e.g. --baseline=HEAD~1');
  if (dir === 'true' || dir === '') fail('--baseline-dist: give a directory, e.g. --baseline-dist=../other-checkout');
  if (rev !== undefined) return { kind: 'rev', rev };
  if (dir !== undefined) return { kind: 'dist', dir };
  return sidecarNodeArgs.length > 0 ? { kind: 'same' } : undefined;
}

function commandLine(argv: readonly string[]): string {
  const args = argv.join(' ');
  if (process.env['npm_lifecycle_event'] === 'bench') return `npm run bench${args ? ` -- ${args}` : ''}`;
  return `node .bench/build/bench/run.js${args ? ` ${args}` : ''}`;
}

async function main(): Promise<void> {
  const root = findRepoRoot();
  const argv = process.argv.slice(2);
  const cli = parseArgs(argv, process.env, root);
  const { options } = cli;
  const cells = (options.only?.length ?? SCENARIOS.length + (options.baseline ? BASELINE_SCENARIOS.length : 0)) * options.bodySizes.length;
  const expectedMs =
    1000 * (cells * (options.rounds * (options.durationS + 0.6) + options.warmupS + 0.6 + options.traceRequests * 0.05) + options.flood.segments * options.flood.segmentS + (options.profile !== false ? options.durationS + 10 : 0) +
      (options.fixedRate > 0 ? FIXED_RATE_SCENARIOS.length * options.rounds * (options.durationS + 1.8) : 0)) +
    30_000;
  const limitMs = Math.max(HARD_LIMIT_FLOOR_MS, 2 * expectedMs);
  options.log(`about ${Math.round(expectedMs / 1000)} s expected; the run is stopped after ${Math.round(limitMs / 1000)} s whatever happens`);
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: still running after ${Math.round(limitMs / 1000)} s: giving up\n`);
    process.exit(1);
  }, limitMs);
  watchdog.unref();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    // The exit hooks of the process helpers kill every child.
    process.once(signal, () => process.exit(130));
  }

  const run = await runBenchmark(options);
  const report = buildReport(run, commandLine(argv));
  fs.mkdirSync(path.dirname(cli.json), { recursive: true });
  fs.writeFileSync(cli.json, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${renderText(report)}\n`);
  options.log(`report written to ${path.relative(root, cli.json) || cli.json}`);
  if (cli.docs) {
    const doc = path.join(root, 'docs', 'performance.md');
    updateDoc(doc, report);
    options.log(`docs/performance.md updated`);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
