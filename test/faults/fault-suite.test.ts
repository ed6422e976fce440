/**
 * The fault suite: N sidecar replicas (separate OS processes) sharing one store Redis, the locks
 * on a quorum of 3 Redis, a ledger upstream; a payment workload with duplicates, timeouts and
 * retries; faults alone and mixed; a checker that fails the run on any contract violation.
 *
 * `npm test` runs the short form (a few hundred keys per scenario). `npm run test:faults` runs
 * the full one (FAULTS=full: thousands of keys). Other knobs:
 *   FAULTS_SCENARIOS=replica-sigkill,mixed   only these scenarios
 *   FAULTS_SEED=1234                          the plan of keys and faults of an earlier run
 *   FAULTS_REPLICAS=3                         sidecar replicas
 * The report: a table on stdout and .faults/report.json (full) or .faults/report-short.json,
 * replica logs in .faults/logs/<mode>/.
 */
import fs from 'node:fs';
import path from 'node:path';
import { FaultCluster } from './cluster';
import { describeFailure, formatTable, machine, type SuiteReport, writeReport } from './report';
import { runScenario, type ScenarioReport } from './runner';
import { type Mode, SCENARIOS } from './scenarios';

const mode: Mode = process.env['FAULTS'] === 'full' ? 'full' : 'short';
const root = path.resolve(__dirname, '..', '..');
const outDir = path.join(root, '.faults');
const reportFile = path.join(outDir, mode === 'full' ? 'report.json' : 'report-short.json');
const logDir = path.join(outDir, 'logs', mode);

const only = (process.env['FAULTS_SCENARIOS'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
const unknownNames = only.filter((name) => !SCENARIOS.some((s) => s.name === name));
if (unknownNames.length > 0) {
  throw new Error(`FAULTS_SCENARIOS: no scenario named ${unknownNames.join(', ')}; there are ${SCENARIOS.map((s) => s.name).join(', ')}`);
}
const selected = SCENARIOS.filter((s) => (only.length === 0 ? (s.modes ?? ['short', 'full']).includes(mode) : only.includes(s.name)));
const seed = process.env['FAULTS_SEED'] !== undefined ? Number(process.env['FAULTS_SEED']) : Math.floor(Math.random() * 2 ** 31);
if (!Number.isSafeInteger(seed)) throw new Error(`FAULTS_SEED must be an integer (got ${String(process.env['FAULTS_SEED'])})`);
const replicas = Number(process.env['FAULTS_REPLICAS'] ?? '3');
if (!Number.isInteger(replicas) || replicas < 2) throw new Error('FAULTS_REPLICAS must be an integer of at least 2');

const SCENARIO_TIMEOUT_MS = mode === 'full' ? 6 * 60_000 : 90_000;
const runId = `f${Date.now().toString(36)}`;

describe(`fault suite (${mode}: ${selected.map((s) => s.name).join(', ')})`, () => {
  let cluster: FaultCluster | undefined;
  const reports: ScenarioReport[] = [];
  const suiteStart = Date.now();

  const save = (): void => {
    const report: SuiteReport = {
      mode,
      command: mode === 'full' ? 'npm run test:faults' : 'npm test (short form: jest test/faults)',
      machine: machine(),
      startedAt: new Date(suiteStart).toISOString(),
      durationMs: Date.now() - suiteStart,
      passed: reports.length === selected.length && reports.every((r) => r.passed),
      scenarios: reports,
    };
    writeReport(reportFile, report);
  };

  beforeAll(async () => {
    fs.rmSync(logDir, { recursive: true, force: true });
    cluster = await FaultCluster.start({ replicas, logDir });
  }, 60_000);

  afterAll(async () => {
    save();
    process.stdout.write(`\nfault suite, ${mode} run (seed ${seed}, ${replicas} replicas): ${path.relative(root, reportFile)}\n${formatTable(reports)}`);
    await cluster?.stop();
  }, 60_000);

  selected.forEach((scenario, i) => {
    test(
      scenario.name,
      async () => {
        if (cluster === undefined) throw new Error('the cluster did not start');
        const report = await runScenario(cluster, scenario, mode, seed + i, runId);
        reports.push(report);
        save();
        if (!report.passed) throw new Error(describeFailure(report));
      },
      SCENARIO_TIMEOUT_MS,
    );
  });
});
