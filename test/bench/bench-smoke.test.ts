/**
 * The short form of `npm run bench` that CI runs so the benchmark never rots: every scenario at
 * both body sizes for one second, one round, with the trace, the flood and the profile, through
 * the same command line, with the A/B scenarios (4 and 5 on a baseline sidecar: this build
 * without --sidecar-node-args). It asserts that every scenario produced throughput, that the report
 * has every field and that no replay reached the upstream (the Express peer's included); never a
 * threshold (a shared CI machine measures nothing worth comparing).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ALL_SCENARIOS, BASELINE_SCENARIOS, FIXED_RATE_SCENARIOS } from '../../bench/harness';
import type { Report } from '../../bench/report';

const ROOT = path.resolve(__dirname, '..', '..');
const BODIES = [200, 16384];

jest.setTimeout(150_000);

function runBench(args: readonly string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, '.bench', 'build', 'bench', 'run.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // SIGINT: the harness stops its processes on the way out.
    const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('npm run bench, short form', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-smoke-'));
    const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(ROOT, 'bench', 'tsconfig.json')], { cwd: ROOT, encoding: 'utf8' });
    if (tsc.status !== 0) throw new Error(`bench does not compile:\n${tsc.stdout}${tsc.stderr}`);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs every scenario at both body sizes and reports every field', async () => {
    const json = path.join(dir, 'report.json');
    // --sidecar-node-args alone: the A/B scenarios against this same build without the flag (no
    // baseline to extract and compile, so the wiring of the A/B mode costs a few seconds here).
    const args = ['--duration=1', '--rounds=1', '--warmup=0', '--trace=2', '--flood-segments=2', '--flood-seconds=0.5', '--profile', '--sidecar-node-args=--max-semi-space-size=16', '--no-docs', `--json=${json}`];
    const started = Date.now();
    const result = await runBench(args, 120_000);
    if (result.code !== 0) throw new Error(`bench exited with ${result.code}:\n${result.stderr.slice(-4000)}`);
    process.stdout.write(`bench smoke run: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);

    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as Report;
    expect(report.version).toBe(1);
    expect(report.machine.cpus).toBeGreaterThan(0);
    for (const field of ['cpuModel', 'os', 'node', 'redis', 'autocannon', 'commit'] as const) expect(report.machine[field]).toEqual(expect.any(String));
    expect(Object.keys(report.plainPassThrough).sort()).toEqual(BODIES.map(String).sort());

    for (const scenario of ALL_SCENARIOS) {
      for (const body of BODIES) {
        const summary = report.scenarios.find((s) => s.id === scenario.id && s.bodyBytes === body);
        const name = `${scenario.id}/${body}`;
        expect([name, summary !== undefined]).toEqual([name, true]);
        if (!summary) continue;
        expect([name, summary.rps > 0, summary.responses > 0]).toEqual([name, true, true]);
        for (const value of [summary.p50Ms, summary.p99Ms, summary.maxMs, summary.ratioVsPlain, summary.addedP99Ms, summary.peakRssBytes, summary.upstreamCallsPerResponse, summary.cpuMicrosPerRequest['target']]) {
          expect([name, Number.isFinite(value)]).toEqual([name, true]);
        }
        expect(summary.perRound).toHaveLength(1);
        const sidecar = scenario.target === 'sidecar' || scenario.target === 'redlockSidecar' || scenario.target === 'baselineSidecar';
        if (sidecar) {
          expect([name, Number.isFinite(summary.redisCommandsPerRequest['store'])]).toEqual([name, true]);
          expect([name, Number.isFinite(summary.roundTrips?.store)]).toEqual([name, true]);
          expect(summary.roundTrips?.storeSequence).toEqual(expect.any(String));
        }
        if (scenario.target === 'redlockSidecar') expect([name, Number.isFinite(summary.roundTrips?.perLockServer)]).toEqual([name, true]);
        // Guarded scenarios reach Redis; the others never do.
        if (scenario.keys === 'none') expect([name, summary.redisCommandsPerRequest['store'] ?? 0]).toEqual([name, 0]);
        else expect([name, (summary.redisCommandsPerRequest['store'] ?? 0) > 0]).toEqual([name, true]);
        // A replay never reaches the upstream, the sidecar's nor the Express peer's.
        if (scenario.keys === 'replay') expect([name, summary.upstreamCallsPerResponse, summary.checks]).toEqual([name, 0, []]);
        if (scenario.peer !== undefined) expect([name, Number.isFinite(summary.ratioVsPeer)]).toEqual([name, true]);
      }
    }

    expect(report.options.sidecarNodeArgs).toEqual(['--max-semi-space-size=16']);
    expect(report.baseline?.label).toEqual(expect.any(String));
    expect(report.baselineComparisons.map((c) => `${c.baselineId}/${c.bodyBytes}`).sort()).toEqual(BASELINE_SCENARIOS.flatMap((s) => BODIES.map((body) => `${s.id}/${body}`)).sort());
    for (const comparison of report.baselineComparisons) {
      const name = `${comparison.baselineId}/${comparison.bodyBytes}`;
      expect([name, Number.isFinite(comparison.throughputRatio), Number.isFinite(comparison.cpuMicrosPerRequest), Number.isFinite(comparison.baselineCpuMicrosPerRequest)]).toEqual([name, true, true, true]);
    }
    expect(result.stdout).toContain('this build vs baseline');

    expect(report.targets.length).toBeGreaterThanOrEqual(8);
    for (const target of report.targets) expect([target.target, [true, false, null].includes(target.pass)]).toEqual([target.target, true]);
    expect(report.sidecarPeakRssBytes).toBeGreaterThan(0);
    expect(report.flood?.segments).toHaveLength(2);
    expect(report.flood?.segments.every((segment) => segment.rps > 0 && (segment.rssBytes ?? 0) > 0)).toBe(true);
    expect(report.fixedRate?.rows.map((row) => row.scenario)).toEqual([...FIXED_RATE_SCENARIOS]);
    for (const row of report.fixedRate?.rows ?? []) {
      expect([row.scenario, row.rounds.length, (row.rounds[0]?.rps ?? 0) > 0, row.rounds[0]?.unexpected]).toEqual([row.scenario, 1, true, 0]);
    }
    expect(result.stdout).toContain('latency at a fixed rate');
    expect(report.profile?.topFunctions.length).toBeGreaterThan(0);
    expect(report.profile?.topOwners.length).toBeGreaterThan(0);
    expect(result.stdout).toContain('req/s');
    expect(result.stdout).toContain('targets (reported, not asserted)');
    expect(result.stdout).toContain("the floor's throughput");
    expect(result.stdout).toContain("the peer's throughput");
  });
});
