/**
 * `npm run bench`: the command line of the benchmark (docs/performance.md says what it measures).
 *
 *   npm run bench                     full form: 3 rounds x 5 s per scenario; writes the doc
 *   npm run bench -- --quick          1 round x 1 s, short warm-up, trace and flood; no doc
 *   npm run bench -- --profile        also profiles scenario 4 with --cpu-prof (BENCH_PROFILE=1);
 *                                     --profile=ID (BENCH_PROFILE=ID): another scenario of the sidecar
 *
 * Flags: --duration=S --rounds=N --warmup=S --trace=N --flood-segments=N --flood-seconds=S
 * --bodies=200,16384 --only=first,replay --seed=N --json=PATH --docs / --no-docs
 * --rate=N (the latency phase's requests per second, default 1000; 0 skips it).
 * Environment: BENCH_DURATION, BENCH_ROUNDS, BENCH_PROFILE=1.
 * Progress goes to stderr; the table to stdout; the report to .bench/latest.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type BenchOptions, FIXED_RATE_SCENARIOS, runBenchmark, SCENARIOS, type ScenarioId } from './harness';
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
  const known = new Set(['quick', 'duration', 'rounds', 'warmup', 'trace', 'flood-segments', 'flood-seconds', 'bodies', 'only', 'seed', 'json', 'docs', 'no-docs', 'profile', 'rate']);
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
  for (const id of only ?? []) if (!SCENARIOS.some((scenario) => scenario.id === id)) fail(`--only: no scenario ${id} (${SCENARIOS.map((s) => s.id).join(', ')})`);
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
  if (profile !== false && SCENARIOS.find((scenario) => scenario.id === profile)?.target !== 'sidecar') {
    fail(`--profile / BENCH_PROFILE: ${profileFlag} is not a scenario of the plain sidecar (${SCENARIOS.filter((s) => s.target === 'sidecar').map((s) => s.id).join(', ')})`);
  }
  const full = durationS >= 5 && rounds >= 3 && only === undefined;
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
      outDir,
      log: (line) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`),
    },
    json: path.resolve(flags.get('json') ?? path.join(outDir, 'latest.json')),
    docs,
  };
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
  const cells = (options.only?.length ?? SCENARIOS.length) * options.bodySizes.length;
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
