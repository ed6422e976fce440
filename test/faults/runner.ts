/**
 * Runs one scenario against the cluster: plan the payments, start the faults and the workload
 * together, undo every fault, settle every key, wait for the upstream to go quiet, check, and
 * gather the evidence for each violation (ledger entries, answers, the replicas' log lines).
 */
import fs from 'node:fs';
import { keyHash } from '../../src/observability/logger';
import { check, type CheckResult, type Violation, type Window } from './checker';
import type { FaultCluster, FaultEvent } from './cluster';
import type { Execution } from './ledger-upstream';
import {
  CLIENT_TIMEOUT_MS,
  HANG_MS,
  LOCK_TTL_MS,
  type Mode,
  type Scenario,
  SIDECAR_ENV,
  SLOW_MS,
  STORE_TIMEOUT_MS,
  UPSTREAM_TIMEOUT_MS,
} from './scenarios';
import { seededRandom } from '../helpers/seeded-random';
import { type Answer, answerType, PaymentClient, planPayments, sleep } from './workload';

export interface Evidence {
  readonly key: string;
  readonly keyHash: string;
  readonly behaviour: string;
  readonly ledger: readonly Omit<Execution, 'bodyHash' | 'responseHash'>[];
  readonly answers: readonly string[];
  readonly logLines: readonly string[];
}

export interface ScenarioReport extends CheckResult {
  readonly scenario: string;
  readonly description: string;
  readonly mode: Mode;
  readonly seed: number;
  readonly replicas: number;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly phases: { readonly mainMs: number; readonly healMs: number; readonly settleMs: number };
  readonly settings: Readonly<Record<string, string | number>>;
  readonly faults: readonly FaultEvent[];
  readonly exerciseFailures: readonly string[];
  readonly evidence: readonly Evidence[];
  readonly passed: boolean;
}

const EVIDENCE_KEYS = 5;
const LOG_LINES_PER_KEY = 40;

export async function runScenario(cluster: FaultCluster, scenario: Scenario, mode: Mode, seed: number, runId: string): Promise<ScenarioReport> {
  const sizes = scenario.sizes[mode];
  const env = { ...SIDECAR_ENV, ...scenario.env };
  await cluster.beginScenario(env);
  await cluster.waitReady(30_000);
  const startedAt = Date.now();

  const random = seededRandom(seed);
  const plans = planPayments(
    {
      prefix: `${runId}-${scenario.name}`,
      keys: sizes.keys,
      windowMs: sizes.windowMs,
      minSenders: 3,
      maxSenders: 5,
      shares: scenario.shares,
      slowMs: SLOW_MS,
      hangMs: HANG_MS,
    },
    random,
  );
  const client = new PaymentClient(
    cluster,
    {
      timeoutMs: CLIENT_TIMEOUT_MS,
      maxAttempts: 15,
      senderDeadlineMs: 45_000,
      maxActivePayments: 120,
      settleAttempts: 40,
      settleDeadlineMs: 60_000,
      settleConcurrency: 48,
    },
    seededRandom(seed ^ 0x5eed),
  );

  const windows: Window[] = [];
  let faultError: unknown;
  const faults = scenario
    .inject({
      cluster,
      windowMs: sizes.windowMs,
      at: (ms) => sleep(startedAt + ms - Date.now()),
      openWindow: (partial) => {
        const from = Date.now();
        return () => {
          windows.push({ ...partial, from, to: Date.now() });
        };
      },
    })
    .catch((error: unknown) => {
      faultError = error;
    });

  let mainMs: number;
  let healMs: number;
  let settleMs: number;
  let finals: Map<string, Answer | undefined>;
  try {
    await client.run(plans);
    await faults;
    mainMs = Date.now() - startedAt;
    const healStart = Date.now();
    await cluster.heal();
    await cluster.waitReady(30_000);
    healMs = Date.now() - healStart;
    const settleStart = Date.now();
    finals = await client.settle(plans);
    settleMs = Date.now() - settleStart;
  } finally {
    await faults;
    await cluster.heal();
    await client.close();
  }
  if (faultError !== undefined) throw new Error(`scenario ${scenario.name}: a fault could not be injected or undone`, { cause: faultError });

  // Executions still running upstream (a frozen replica's late call) must be in the ledger.
  const quietBy = Date.now() + 15_000;
  while (cluster.upstream.inFlight() > 0 && Date.now() < quietBy) await sleep(50);

  const prefix = `${runId}-${scenario.name}-`;
  const ledger = cluster.upstream.ledger.filter((e) => e.key?.startsWith(prefix) === true);
  const onUnknown = env['IDEMPOTENCY_ON_UNKNOWN'] === 'release' ? 'release' : 'hold';
  const result = check({ scenario: scenario.name, plans, answers: client.answers, ledger, finals, windows, lockTtlMs: LOCK_TTL_MS, onUnknown });
  const events = [...cluster.events];
  const exerciseFailures = scenario.exercised.filter((e) => !e.check(result, events)).map((e) => e.name);
  const evidence = gatherEvidence(result.violations, plans, client.answers, ledger, cluster.logFiles());
  return {
    scenario: scenario.name,
    description: scenario.description,
    mode,
    seed,
    replicas: cluster.replicas.length,
    startedAt: new Date(startedAt).toISOString(),
    durationMs: Date.now() - startedAt,
    phases: { mainMs, healMs, settleMs },
    settings: {
      ...env,
      clientTimeoutMs: CLIENT_TIMEOUT_MS,
      lockMasters: cluster.locks.length,
      storePersistence: 'appendonly yes, appendfsync always',
      storeTimeoutMs: STORE_TIMEOUT_MS,
      upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS,
    },
    ...result,
    faults: events,
    exerciseFailures,
    evidence,
    passed: result.violations.length === 0 && exerciseFailures.length === 0,
  };
}

function gatherEvidence(
  violations: readonly Violation[],
  plans: readonly { key: string; behaviour: unknown }[],
  answers: readonly Answer[],
  ledger: readonly Execution[],
  logFiles: readonly string[],
): Evidence[] {
  const keys = [...new Set(violations.map((v) => v.key).filter((k): k is string => k !== undefined && k !== ''))].slice(0, EVIDENCE_KEYS);
  if (keys.length === 0) return [];
  const hashes = new Map(keys.map((key) => [keyHash(key), key]));
  const lines = new Map<string, string[]>(keys.map((key) => [key, []]));
  for (const file of logFiles) {
    if (!fs.existsSync(file)) continue;
    const replica = /replica-\d+/.exec(file)?.[0] ?? file;
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      for (const [hash, key] of hashes) {
        const bucket = lines.get(key) as string[];
        if (bucket.length < LOG_LINES_PER_KEY && line.includes(hash)) bucket.push(`${replica}: ${line}`);
      }
    }
  }
  return keys.map((key) => ({
    key,
    keyHash: keyHash(key),
    behaviour: JSON.stringify(plans.find((p) => p.key === key)?.behaviour),
    ledger: ledger.filter((e) => e.key === key).map(({ bodyHash: _b, responseHash: _r, ...rest }) => rest),
    answers: answers
      .filter((a) => a.key === key)
      .sort((a, b) => a.startedAt - b.startedAt)
      .map(
        (a) =>
          `${new Date(a.startedAt).toISOString()} +${a.endedAt - a.startedAt}ms ${a.phase} s${a.sender}#${a.attempt} replica-${a.replica}: ` +
          `${answerType(a)}${a.execution ? ` ${a.execution}` : ''}${a.error ? ` (${a.error})` : ''}`,
      ),
    logLines: (lines.get(key) ?? []).sort((a, b) => timeOf(a) - timeOf(b)),
  }));
}

function timeOf(line: string): number {
  const match = /"time":"([^"]+)"/.exec(line);
  return match ? Date.parse(match[1] as string) : 0;
}
