/**
 * The checker: reads the upstream's ledger and every answer the clients got, and says whether the
 * contract held (CONTRACT.md sections 4 and 5), with the evidence for every violation.
 *
 * What must hold, with IDEMPOTENCY_ON_UNKNOWN=hold:
 * - per key, at most one execution whose outcome is not a release-set status (a released key runs
 *   again on a retry, which is the only exception these runs can meet: records outlive them);
 *   a reset or an execution the sidecar gave up on counts as an execution (with `release`, an
 *   unknown outcome is released too, so a key may run again: see CheckInput.onUnknown);
 * - every upstream answer a client got (first or replayed) is the one the ledger has for it: a
 *   release-set answer one of the released executions, any other the key's single non-released
 *   execution (same execution id, status and body bytes); a replay of a release-set status is a
 *   violation (it must never be stored);
 * - every attempt got an answer before the client's timeout (a connection error is an answer);
 * - every key reaches a final answer in the settle phase: the stored response, or 409
 *   outcome-unknown; and a key whose response a client was given never ends unknown (section 5:
 *   "a response that was given to a client is never lost ... a retry gets it");
 * - no answer says the client's request was invalid (it never is).
 */
import type { Execution } from './ledger-upstream';
import { type Answer, answerType, disposition, type PaymentPlan, RELEASE_STATUSES } from './workload';

/** A period in which the scenario expects something of the answers or the ledger (epoch ms). */
export interface Window {
  readonly name: string;
  readonly from: number;
  readonly to: number;
  /** Answers sent and received within the window: none may be 503 store-unavailable. */
  readonly no503?: boolean;
  /** Answers sent and received within the window: at least one must be 503 store-unavailable. */
  readonly some503?: boolean;
  /** No execution may start upstream in the window (from + graceMs .. to). */
  readonly noExecutions?: { readonly graceMs: number };
  /** At least one execution must start upstream in the window. */
  readonly someExecutions?: boolean;
}

export interface CheckInput {
  readonly scenario: string;
  readonly plans: readonly PaymentPlan[];
  readonly answers: readonly Answer[];
  readonly ledger: readonly Execution[];
  readonly finals: ReadonlyMap<string, Answer | undefined>;
  readonly windows: readonly Window[];
  readonly lockTtlMs: number;
  /**
   * The sidecars' IDEMPOTENCY_ON_UNKNOWN. With `release`, a key whose outcome became unknown
   * (timeout, reset, or an owner whose lease ran out) is released and a retry runs it again: more
   * than one execution is allowed, but every answer clients get must still be one and the same
   * execution, the recorded one (a fenced-off owner answers 409 lease-lost, never its own).
   */
  readonly onUnknown: 'hold' | 'release';
}

export interface Violation {
  readonly kind: string;
  readonly key?: string;
  readonly message: string;
}

export interface UnknownKeys {
  readonly total: number;
  /** Why each key is held: the upstream reset or timed out after the request was sent, or the
   *  owning replica's lease ran out (it was killed, frozen, or could not write the outcome). */
  readonly byReason: Readonly<Record<string, number>>;
  /** Held keys the upstream did execute / never saw (a claim whose owner died before sending). */
  readonly executed: number;
  readonly notExecuted: number;
  /** The first few, to follow up in the logs. */
  readonly sample: readonly { readonly key: string; readonly reason: string; readonly executions: readonly string[] }[];
}

export interface CheckResult {
  readonly keys: number;
  readonly requestsSent: number;
  readonly requestsSentMain: number;
  readonly requestsSentSettle: number;
  readonly executions: number;
  readonly maxExecutionsPerKey: number;
  readonly maxNonReleasedExecutionsPerKey: number;
  readonly keysWithRepeatedAllowedExecutions: number;
  /** Keys run again after an unknown outcome (allowed only with onUnknown=release). */
  readonly keysReexecutedAfterUnknown: number;
  /** Keys that answered 409 outcome-unknown at some point and ended completed (the owner's late answer). */
  readonly unknownThenCompleted: number;
  readonly differingReplays: number;
  readonly differingFirstAnswers: number;
  readonly unanswered: number;
  readonly connectionErrors: number;
  readonly answersByType: Readonly<Record<string, number>>;
  readonly finalAnswers: Readonly<Record<string, number>>;
  readonly unknownAtEnd: UnknownKeys;
  readonly responsesLost: number;
  readonly unsettled: number;
  readonly slowExecutions: number;
  readonly windows: readonly {
    readonly name: string;
    readonly from: number;
    readonly to: number;
    readonly answers: number;
    readonly storeUnavailable: number;
    readonly executions: number;
    /** The first few executions that started in the window: id, key, ms after it opened. */
    readonly executionSample: readonly string[];
  }[];
  readonly violations: readonly Violation[];
}

export function check(input: CheckInput): CheckResult {
  const violations: Violation[] = [];
  const planByKey = new Map(input.plans.map((plan) => [plan.key, plan]));
  const ledgerByKey = groupBy(input.ledger, (e) => e.key ?? '');
  const answersByKey = groupBy(input.answers, (a) => a.key);

  const answersByType: Record<string, number> = {};
  for (const answer of input.answers) increment(answersByType, answerType(answer));

  let maxExecutions = 0;
  let maxNonReleased = 0;
  let repeatedAllowed = 0;
  let reexecuted = 0;
  let unknownThenCompleted = 0;
  let differingReplays = 0;
  let differingFirst = 0;
  let responsesLost = 0;
  let unsettled = 0;
  const finalAnswers: Record<string, number> = {};
  const unknownByReason: Record<string, number> = {};
  let unknownTotal = 0;
  let unknownExecuted = 0;
  let unknownNotExecuted = 0;
  const unknownSample: UnknownKeys['sample'][number][] = [];

  for (const execution of input.ledger) {
    const plan = planByKey.get(execution.key ?? '');
    if (plan === undefined) {
      violations.push({ kind: 'foreign-execution', message: `execution ${execution.id} carries key ${String(execution.key)}, which no client of this run sent` });
    } else if (execution.bodyHash !== plan.bodyHash) {
      violations.push({ kind: 'body-changed', key: plan.key, message: `execution ${execution.id} received a body other than the client's (hash ${execution.bodyHash})` });
    }
  }

  for (const plan of input.plans) {
    const executions = ledgerByKey.get(plan.key) ?? [];
    const released = executions.filter((e) => typeof e.status === 'number' && RELEASE_STATUSES.has(e.status));
    const kept = executions.filter((e) => !released.includes(e));
    maxExecutions = Math.max(maxExecutions, executions.length);
    maxNonReleased = Math.max(maxNonReleased, kept.length);
    if (executions.length > 1 && (kept.length <= 1 || input.onUnknown === 'release')) repeatedAllowed++;
    if (kept.length > 1 && input.onUnknown === 'release') reexecuted++;
    if (kept.length > 1 && input.onUnknown === 'hold') {
      violations.push({
        kind: 'executed-twice',
        key: plan.key,
        message: `${kept.length} executions not released by the upstream's status: ${kept.map((e) => `${e.id} (status ${String(e.status)})`).join(', ')}`,
      });
    }
    const answers = answersByKey.get(plan.key) ?? [];
    const final = input.finals.get(plan.key);
    // The execution whose response is the key's: the only one kept; with re-execution allowed,
    // the one the settle phase gets replayed (else the first one a client was given).
    let original = kept.length === 1 ? kept[0] : undefined;
    if (input.onUnknown === 'release' && kept.length > 1) {
      const given = final?.execution ?? answers.find((a) => a.kind === 'response' && a.problem === undefined && !RELEASE_STATUSES.has(a.status ?? 0))?.execution;
      original = kept.find((e) => e.id === given);
    }

    for (const answer of answers) {
      if (answer.kind !== 'response' || answer.problem !== undefined) continue;
      const status = answer.status ?? 0;
      let expected: Execution | undefined;
      if (RELEASE_STATUSES.has(status) && !answer.replayed) expected = released.find((e) => e.id === answer.execution);
      else if (!RELEASE_STATUSES.has(status)) expected = original;
      const same = expected !== undefined && expected.id === answer.execution && expected.status === status && expected.responseHash === answer.bodyHash;
      if (!same) {
        if (answer.replayed) differingReplays++;
        else differingFirst++;
        violations.push({
          kind: answer.replayed ? 'replay-differs' : 'answer-differs',
          key: plan.key,
          message:
            `${answer.phase} sender ${answer.sender} attempt ${answer.attempt} on replica-${answer.replica} got ${status}` +
            `${answer.replayed ? ' (replayed)' : ''} with execution ${String(answer.execution)}; the ledger has ` +
            (expected === undefined ? `no matching execution (non-released: ${original?.id ?? 'none'})` : `${expected.id} status ${String(expected.status)}`),
        });
      }
    }

    for (const answer of answers) {
      if (disposition(answer) === 'invalid' || answer.problem === 'internal-error' || answer.problem === 'upstream-error' || answer.problem === 'unparseable-problem') {
        violations.push({ kind: 'unexpected-answer', key: plan.key, message: `${answer.phase} attempt on replica-${answer.replica} got ${answerType(answer)}` });
      }
      if (answer.kind === 'no-answer') {
        violations.push({
          kind: 'unanswered',
          key: plan.key,
          message: `${answer.phase} sender ${answer.sender} attempt ${answer.attempt} on replica-${answer.replica} got no answer within the client timeout (sent ${new Date(answer.startedAt).toISOString()})`,
        });
      }
    }

    const finalWhat = final === undefined ? 'unsettled' : disposition(final);
    if (finalWhat === 'final' && answers.some((a) => a.problem === 'outcome-unknown')) unknownThenCompleted++;
    increment(finalAnswers, final === undefined ? 'unsettled' : answerType(final));
    if (final === undefined) {
      unsettled++;
      violations.push({ kind: 'unsettled', key: plan.key, message: 'the settle phase got no final answer within its bounds' });
    } else if (finalWhat === 'unknown') {
      unknownTotal++;
      if (executions.length > 0) unknownExecuted++;
      else unknownNotExecuted++;
      const reason = unknownReason(answers, executions);
      increment(unknownByReason, reason);
      if (unknownSample.length < 20) {
        unknownSample.push({ key: plan.key, reason, executions: executions.map((e) => `${e.id} status ${String(e.status)}`) });
      }
      const given = answers.filter((a) => a.kind === 'response' && a.problem === undefined && !RELEASE_STATUSES.has(a.status ?? 0));
      if (given.length > 0) {
        responsesLost++;
        const first = given[0] as Answer;
        violations.push({
          kind: 'response-lost',
          key: plan.key,
          message:
            `a client was given ${first.status} (execution ${String(first.execution)}, ${first.replayed ? 'replayed' : 'from upstream'}, ` +
            `${new Date(first.endedAt).toISOString()}) but the settle phase gets 409 outcome-unknown: the response was not stored`,
        });
      }
    }
  }

  const firstSent = new Map<string, number>();
  for (const answer of input.answers) {
    const seen = firstSent.get(answer.key);
    if (seen === undefined || answer.startedAt < seen) firstSent.set(answer.key, answer.startedAt);
  }
  const windows = input.windows.map((window) => {
    // Answered entirely within the window: a request sent just before the window closed may be
    // decided by the sidecar after it (a busy replica accepts it late), under other conditions.
    const inWindow = input.answers.filter((a) => a.startedAt >= window.from && a.endedAt <= window.to);
    const storeUnavailable = inWindow.filter((a) => a.problem === 'store-unavailable').length;
    const executionsFrom = window.noExecutions ? window.from + window.noExecutions.graceMs : window.from;
    const executions = input.ledger.filter((e) => e.startedAt >= executionsFrom && e.startedAt <= window.to);
    if (window.no503 && storeUnavailable > 0) {
      const sample = inWindow.find((a) => a.problem === 'store-unavailable') as Answer;
      violations.push({
        kind: 'unavailable-with-quorum',
        key: sample.key,
        message: `${window.name}: ${storeUnavailable} of ${inWindow.length} answers were 503 store-unavailable although a lock quorum was up (first: replica-${sample.replica} at ${new Date(sample.startedAt).toISOString()})`,
      });
    }
    // Only a key first sent inside the window surely needs a lock: others may be answered from
    // their record (a replay, an unknown outcome) with no lock at all, which is right. So fail
    // closed means: of the answers with a status to such new keys, some are 503.
    const needingLock = inWindow.filter((a) => a.status !== undefined && (firstSent.get(a.key) ?? 0) >= window.from);
    if (window.some503 && storeUnavailable === 0 && needingLock.length > 0) {
      violations.push({
        kind: 'not-fail-closed',
        message: `${window.name}: no 503 store-unavailable among ${needingLock.length} answers to keys first sent in the window (${inWindow.length} answers in all) although the lock quorum was lost`,
      });
    }
    if (window.noExecutions && executions.length > 0) {
      for (const e of executions.slice(0, 5)) {
        violations.push({
          kind: 'executed-without-lock',
          key: e.key ?? '',
          message: `${window.name}: execution ${e.id} started upstream at ${new Date(e.startedAt).toISOString()}, ${e.startedAt - window.from} ms after the lock quorum was lost`,
        });
      }
    }
    const executionSample = executions.slice(0, 5).map((e) => `${e.id} ${String(e.key)} +${e.startedAt - window.from}ms`);
    return { name: window.name, from: window.from, to: window.to, answers: inWindow.length, storeUnavailable, executions: executions.length, executionSample };
  });

  const unanswered = input.answers.filter((a) => a.kind === 'no-answer').length;
  return {
    keys: input.plans.length,
    requestsSent: input.answers.length,
    requestsSentMain: input.answers.filter((a) => a.phase === 'main').length,
    requestsSentSettle: input.answers.filter((a) => a.phase === 'settle').length,
    executions: input.ledger.length,
    maxExecutionsPerKey: maxExecutions,
    maxNonReleasedExecutionsPerKey: maxNonReleased,
    keysWithRepeatedAllowedExecutions: repeatedAllowed,
    keysReexecutedAfterUnknown: reexecuted,
    unknownThenCompleted,
    differingReplays,
    differingFirstAnswers: differingFirst,
    unanswered,
    connectionErrors: input.answers.filter((a) => a.kind === 'connection-error').length,
    answersByType: sortKeys(answersByType),
    finalAnswers: sortKeys(finalAnswers),
    unknownAtEnd: { total: unknownTotal, byReason: sortKeys(unknownByReason), executed: unknownExecuted, notExecuted: unknownNotExecuted, sample: unknownSample },
    responsesLost,
    unsettled,
    slowExecutions: input.ledger.filter((e) => e.endedAt !== undefined && e.endedAt - e.startedAt > input.lockTtlMs).length,
    windows,
    violations,
  };
}

/**
 * Why a key ends held as unknown, from what its clients saw and what the upstream did:
 * - upstream-reset / upstream-timeout: the sidecar sent the request and got no response;
 * - replica-crash: a client's connection to its replica broke (SIGKILL) and no replica ever
 *   reported an upstream failure: the owner died mid-request, its lease ran out;
 * - lease-expired: the owner lived, but its lease ran out before it recorded an outcome (frozen
 *   past its lock TTL, or its write of the outcome failed while the store was down).
 */
function unknownReason(answers: readonly Answer[], executions: readonly Execution[]): string {
  if (answers.some((a) => a.problem === 'upstream-reset') || executions.some((e) => e.status === 'reset')) return 'upstream-reset';
  if (answers.some((a) => a.problem === 'upstream-timeout')) return 'upstream-timeout';
  if (answers.some((a) => a.kind === 'connection-error')) return 'replica-crash';
  return 'lease-expired';
}

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

function increment(counts: Record<string, number>, name: string): void {
  counts[name] = (counts[name] ?? 0) + 1;
}

function sortKeys(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}
