/** The fault suite's report: a table on stdout, and JSON with everything (evidence included). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ScenarioReport } from './runner';

export interface SuiteReport {
  readonly mode: string;
  readonly command: string;
  readonly machine: { readonly cpus: number; readonly cpuModel: string; readonly memoryGiB: number; readonly node: string; readonly platform: string };
  readonly startedAt: string;
  readonly durationMs: number;
  readonly passed: boolean;
  readonly scenarios: readonly ScenarioReport[];
}

export function machine(): SuiteReport['machine'] {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

export function writeReport(file: string, report: SuiteReport): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
}

const COLUMNS: readonly [string, (r: ScenarioReport) => string][] = [
  ['scenario', (r) => r.scenario],
  ['requests', (r) => String(r.requestsSent)],
  ['keys', (r) => String(r.keys)],
  ['executions', (r) => String(r.executions)],
  ['max exec/key', (r) => `${r.maxNonReleasedExecutionsPerKey} (${r.maxExecutionsPerKey})`],
  ['keys >1 allowed', (r) => String(r.keysWithRepeatedAllowedExecutions)],
  ['differing replays', (r) => String(r.differingReplays + r.differingFirstAnswers)],
  ['unanswered', (r) => String(r.unanswered)],
  ['conn errors', (r) => String(r.connectionErrors)],
  ['unknown at end', (r) => String(r.unknownAtEnd.total)],
  ['lost responses', (r) => String(r.responsesLost)],
  ['unsettled', (r) => String(r.unsettled)],
  ['faults', (r) => String(r.faults.length)],
  ['duration', (r) => `${(r.durationMs / 1000).toFixed(1)} s`],
  ['result', (r) => (r.passed ? 'ok' : 'FAIL')],
];

export function formatTable(reports: readonly ScenarioReport[]): string {
  const rows = [COLUMNS.map(([name]) => name), ...reports.map((r) => COLUMNS.map(([, cell]) => cell(r)))];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((row) => (row[i] as string).length)));
  const line = (row: readonly string[]): string => row.map((cell, i) => cell.padEnd(widths[i] as number)).join(' | ');
  const out = [line(rows[0] as string[]), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.slice(1).map(line)];
  out.push(
    '',
    'max exec/key: executions not released by a release-set status (all executions in parentheses); at most 1 with onUnknown=hold',
    'keys >1 allowed: keys run more than once as the contract allows (a release-set status; with onUnknown=release, an unknown outcome)',
    'differing replays: answers (replayed or first) whose execution, status or body is not the recorded one',
  );
  for (const r of reports) {
    out.push('', `${r.scenario}: ${r.description}`);
    out.push(`  sent ${r.requestsSentMain} + ${r.requestsSentSettle} settle; phases: main ${ms(r.phases.mainMs)}, heal ${ms(r.phases.healMs)}, settle ${ms(r.phases.settleMs)}; seed ${r.seed}`);
    out.push(`  answers: ${Object.entries(r.answersByType).map(([k, v]) => `${k}: ${v}`).join(', ')}`);
    out.push(`  final answers: ${Object.entries(r.finalAnswers).map(([k, v]) => `${k}: ${v}`).join(', ')}`);
    const unknown = r.unknownAtEnd;
    out.push(
      `  unknown at end: ${unknown.total} (${Object.entries(unknown.byReason).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'}; executed upstream ${unknown.executed}, never sent ${unknown.notExecuted})`,
    );
    out.push(
      `  onUnknown=${String(r.settings['IDEMPOTENCY_ON_UNKNOWN'])}: keys run again after an unknown outcome ${r.keysReexecutedAfterUnknown}` +
        `${r.settings['IDEMPOTENCY_ON_UNKNOWN'] === 'release' ? ' (allowed: released)' : ''}; answered outcome-unknown, then completed by the owner's late answer ${r.unknownThenCompleted}; executions longer than the lock TTL ${r.slowExecutions}`,
    );
    for (const w of r.windows) {
      out.push(`  window "${w.name}": ${ms(w.to - w.from)}, ${w.answers} answers, ${w.storeUnavailable} were 503, ${w.executions} executions started`);
    }
    out.push(`  faults: ${r.faults.map((f) => `+${ms(f.at)} ${f.kind} ${f.target}${f.clientRequests !== undefined ? ` (${f.clientRequests} client requests on it)` : ''}`).join('; ')}`);
    for (const failure of r.exerciseFailures) out.push(`  NOT EXERCISED: ${failure}`);
    for (const v of r.violations.slice(0, 20)) out.push(`  VIOLATION ${v.kind}${v.key ? ` [${v.key}]` : ''}: ${v.message}`);
    if (r.violations.length > 20) out.push(`  ... ${r.violations.length - 20} more violations in the JSON report`);
  }
  return out.join('\n') + '\n';
}

function ms(value: number): string {
  return value >= 1000 ? `${(value / 1000).toFixed(1)} s` : `${value} ms`;
}

/** The failure message of one scenario: its violations with their evidence. */
export function describeFailure(report: ScenarioReport): string {
  const lines = [`scenario ${report.scenario} (seed ${report.seed}):`];
  for (const failure of report.exerciseFailures) lines.push(`  not exercised: ${failure}`);
  const byKind = new Map<string, number>();
  for (const v of report.violations) byKind.set(v.kind, (byKind.get(v.kind) ?? 0) + 1);
  for (const [kind, count] of byKind) lines.push(`  ${count} x ${kind}`);
  for (const v of report.violations.slice(0, 10)) lines.push(`  - ${v.kind}${v.key ? ` [${v.key}]` : ''}: ${v.message}`);
  for (const e of report.evidence) {
    lines.push(`  evidence for ${e.key} (keyHash ${e.keyHash} in the logs), behaviour ${e.behaviour}:`);
    for (const x of e.ledger) lines.push(`    ledger: ${JSON.stringify(x)}`);
    for (const a of e.answers) lines.push(`    answer: ${a}`);
    for (const l of e.logLines) lines.push(`    log: ${l}`);
  }
  return lines.join('\n');
}
