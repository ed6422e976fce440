/**
 * The clients of the fault suite: a payment client as real ones are written. Each payment (one
 * idempotency key, one body) is sent by several senders at once (a double click, a retrying job,
 * a second worker), each through a random live replica, with a client timeout, and retried after
 * every answer that is not final: honouring Retry-After, backing off with jitter, and moving to
 * another replica after a connection error. Every attempt's answer is kept for the checker.
 *
 * The settle phase then asks once more for every key, until the answer is final: the stored
 * response (a replay), or 409 outcome-unknown (held for reconciliation).
 */
import { Agent, request } from 'undici';
import type { FaultCluster, Replica } from './cluster';
import { type Behaviour, type PaymentBody, sha256 } from './ledger-upstream';

export const PROBLEM_PREFIX = 'urn:idempotency-sidecar:problem:';
export const RELEASE_STATUSES: ReadonlySet<number> = new Set([408, 409, 425, 429, 503]);

export interface PaymentPlan {
  readonly key: string;
  readonly body: string;
  readonly bodyHash: string;
  readonly behaviour: Behaviour;
  /** Senders that send it at once. */
  readonly senders: number;
  /** ms after the workload's start when its senders start. */
  readonly startAt: number;
}

export type AnswerKind = 'response' | 'connection-error' | 'no-answer';

export interface Answer {
  readonly key: string;
  readonly phase: 'main' | 'settle';
  readonly sender: number;
  readonly attempt: number;
  readonly replica: number;
  /** Epoch ms. */
  readonly startedAt: number;
  readonly endedAt: number;
  readonly kind: AnswerKind;
  readonly status?: number;
  /** The problem code (the type without its prefix) of an answer the sidecar made itself. */
  readonly problem?: string;
  readonly replayed: boolean;
  /** The upstream's execution id, from the body of an upstream response or a replay. */
  readonly execution?: string;
  readonly bodyHash?: string;
  readonly retryAfter?: string;
  readonly error?: string;
}

export interface ClientSettings {
  /** Longest wait for an answer; longer than the longest freeze of a replica. */
  readonly timeoutMs: number;
  /** Tries per sender in the main phase. */
  readonly maxAttempts: number;
  /** Longest a sender keeps trying in the main phase. */
  readonly senderDeadlineMs: number;
  /** Payments whose senders run at once, at most. */
  readonly maxActivePayments: number;
  /** Settle phase bounds, per key. */
  readonly settleAttempts: number;
  readonly settleDeadlineMs: number;
  readonly settleConcurrency: number;
}

export type Disposition = 'final' | 'unknown' | 'invalid' | 'retry';

/** What a payment client does with an answer. */
export function disposition(answer: Answer): Disposition {
  if (answer.kind !== 'response') return 'retry';
  const status = answer.status ?? 0;
  if (answer.problem === undefined) {
    // The upstream's own answer, first or replayed. A release-set status means "not acted on".
    return RELEASE_STATUSES.has(status) ? 'retry' : 'final';
  }
  switch (answer.problem) {
    case 'outcome-unknown':
      return 'unknown';
    case 'key-reused':
    case 'key-required':
    case 'key-malformed':
    case 'body-too-large':
      return 'invalid';
    default:
      // request-in-flight, lease-lost (any 409), store-unavailable, upstream-unreachable,
      // upstream-timeout, upstream-reset, internal-error: a payment client tries again.
      return 'retry';
  }
}

/** The short name an answer is counted under in the report. */
export function answerType(answer: Answer): string {
  if (answer.kind === 'no-answer') return 'no answer (client timeout)';
  if (answer.kind === 'connection-error') return 'connection error';
  if (answer.problem !== undefined) return `${answer.status} ${answer.problem}`;
  return `${answer.status} ${answer.replayed ? 'replayed' : 'from upstream'}`;
}

export class PaymentClient {
  readonly answers: Answer[] = [];
  private readonly agent: Agent;

  constructor(
    private readonly cluster: FaultCluster,
    private readonly settings: ClientSettings,
    private readonly random: () => number,
  ) {
    this.agent = new Agent({
      // The client's own timeout (an AbortSignal) decides; these only back it up.
      headersTimeout: settings.timeoutMs + 5_000,
      bodyTimeout: settings.timeoutMs + 5_000,
      keepAliveTimeout: 2_000,
      connect: { timeout: 2_000 },
    });
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  /** Runs every payment: starts each at its time (no more than maxActivePayments at once). */
  async run(plans: readonly PaymentPlan[]): Promise<void> {
    const started = Date.now();
    let active = 0;
    const wake: (() => void)[] = [];
    const running: Promise<void>[] = [];
    for (const plan of plans) {
      const wait = plan.startAt - (Date.now() - started);
      if (wait > 0) await sleep(wait);
      while (active >= this.settings.maxActivePayments) await new Promise<void>((resolve) => wake.push(resolve));
      active++;
      running.push(
        this.pay(plan).finally(() => {
          active--;
          wake.shift()?.();
        }),
      );
    }
    await Promise.all(running);
  }

  private async pay(plan: PaymentPlan): Promise<void> {
    const senders: Promise<void>[] = [];
    for (let sender = 0; sender < plan.senders; sender++) {
      senders.push(
        (async () => {
          // The duplicates leave within a few ms of each other, as a double submit does.
          await sleep(Math.floor(this.random() * 20));
          await this.sendUntilFinal(plan, 'main', sender, this.settings.maxAttempts, this.settings.senderDeadlineMs);
        })(),
      );
    }
    await Promise.all(senders);
  }

  /** The settle phase: one sender per key until a final answer; returns the final answers by key. */
  async settle(plans: readonly PaymentPlan[]): Promise<Map<string, Answer | undefined>> {
    const finals = new Map<string, Answer | undefined>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < plans.length) {
        const plan = plans[next++] as PaymentPlan;
        finals.set(plan.key, await this.sendUntilFinal(plan, 'settle', 0, this.settings.settleAttempts, this.settings.settleDeadlineMs));
      }
    };
    await Promise.all(Array.from({ length: this.settings.settleConcurrency }, worker));
    return finals;
  }

  /** Tries (bounded in count and time) until a final answer; returns it, or undefined. */
  private async sendUntilFinal(plan: PaymentPlan, phase: Answer['phase'], sender: number, maxAttempts: number, deadlineMs: number): Promise<Answer | undefined> {
    const deadline = Date.now() + deadlineMs;
    let previous: Replica | undefined;
    for (let attempt = 1; attempt <= maxAttempts && Date.now() < deadline; attempt++) {
      const replica = this.cluster.pick(this.random, previous);
      if (replica === undefined) {
        await sleep(200);
        continue;
      }
      const answer = await this.send(replica, plan, phase, sender, attempt);
      this.answers.push(answer);
      const what = disposition(answer);
      if (what !== 'retry') return answer;
      previous = answer.kind === 'response' ? undefined : replica;
      await sleep(Math.min(this.backoff(answer, attempt), Math.max(0, deadline - Date.now())));
    }
    return undefined;
  }

  private backoff(answer: Answer, attempt: number): number {
    const jitter = 0.5 + this.random() * 0.5;
    // A connection error or a silent replica: go to another replica at once.
    if (answer.kind !== 'response') return Math.floor(50 * jitter);
    const retryAfter = Number(answer.retryAfter);
    if (Number.isFinite(retryAfter) && retryAfter > 0) return Math.floor(retryAfter * 1_000 * jitter);
    return Math.floor(Math.min(1_000, 100 * 2 ** (attempt - 1)) * jitter);
  }

  private async send(replica: Replica, plan: PaymentPlan, phase: Answer['phase'], sender: number, attempt: number): Promise<Answer> {
    const base = { key: plan.key, phase, sender, attempt, replica: replica.index };
    const startedAt = Date.now();
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.settings.timeoutMs);
    replica.inFlight++;
    try {
      const response = await request(`${replica.url}/payments`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: 'Bearer fault-suite-merchant',
          'idempotency-key': plan.key,
        },
        body: plan.body,
        dispatcher: this.agent,
        signal: controller.signal,
      });
      const body = Buffer.from(await response.body.arrayBuffer());
      const header = (name: string): string | undefined => {
        const value = response.headers[name];
        return Array.isArray(value) ? value.join(', ') : value;
      };
      const problemJson = (header('content-type') ?? '').startsWith('application/problem+json');
      let problem: string | undefined;
      let execution: string | undefined;
      try {
        const parsed = JSON.parse(body.toString('utf8')) as { type?: unknown; execution?: unknown };
        if (problemJson && typeof parsed.type === 'string') problem = parsed.type.replace(PROBLEM_PREFIX, '');
        if (!problemJson && typeof parsed.execution === 'string') execution = parsed.execution;
      } catch {
        if (problemJson) problem = 'unparseable-problem';
      }
      const retryAfter = header('retry-after');
      return {
        ...base,
        startedAt,
        endedAt: Date.now(),
        kind: 'response',
        status: response.statusCode,
        ...(problem === undefined ? {} : { problem }),
        replayed: header('idempotent-replayed') === 'true',
        ...(execution === undefined ? {} : { execution }),
        bodyHash: sha256(body),
        ...(retryAfter === undefined ? {} : { retryAfter }),
      };
    } catch (error) {
      const detail = describe(error);
      if (timedOut) return { ...base, startedAt, endedAt: Date.now(), kind: 'no-answer', replayed: false, error: detail };
      return { ...base, startedAt, endedAt: Date.now(), kind: 'connection-error', replayed: false, error: detail };
    } finally {
      clearTimeout(timer);
      replica.inFlight--;
    }
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${typeof code === 'string' ? code + ': ' : ''}${error.message}${cause}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

export interface PlanOptions {
  readonly prefix: string;
  readonly keys: number;
  /** Keys start evenly over this window. */
  readonly windowMs: number;
  readonly minSenders: number;
  readonly maxSenders: number;
  /** Shares of keys (0..1) per behaviour; the rest answer 201 after a short base latency. */
  readonly shares: {
    readonly decline: number;
    readonly release: number;
    /** A slow upstream: latency in [slowMs[0], slowMs[1]], above the lock TTL. */
    readonly slow: number;
    /** Slower than the sidecar's upstream timeout: the outcome becomes unknown. */
    readonly hang: number;
    /** The upstream executes, then resets the connection. */
    readonly reset: number;
  };
  readonly slowMs: readonly [number, number];
  readonly hangMs: number;
}

const RELEASE_LIST = [...RELEASE_STATUSES];

export function planPayments(options: PlanOptions, random: () => number): PaymentPlan[] {
  const plans: PaymentPlan[] = [];
  const { shares } = options;
  for (let i = 0; i < options.keys; i++) {
    const key = `${options.prefix}-${i}`;
    // A payment API's own latency, so that a fault often meets a call in progress.
    const base = 20 + Math.floor(random() * 100);
    const roll = random();
    let behaviour: Behaviour;
    let edge = shares.reset;
    if (roll < edge) behaviour = { kind: 'reset', delayMs: base };
    else if (roll < (edge += shares.hang)) behaviour = { kind: 'ok', delayMs: options.hangMs };
    else if (roll < (edge += shares.slow)) {
      const [low, high] = options.slowMs;
      behaviour = { kind: 'ok', delayMs: Math.floor(low + random() * (high - low)) };
    } else if (roll < (edge += shares.release)) {
      behaviour = { kind: 'release', status: RELEASE_LIST[i % RELEASE_LIST.length] as number, delayMs: base };
    } else if (roll < edge + shares.decline) behaviour = { kind: 'decline', delayMs: base };
    else behaviour = { kind: 'ok', delayMs: base };
    const payment: PaymentBody = { key, amount: 100 + Math.floor(random() * 99_900), currency: 'EUR', behaviour };
    const body = JSON.stringify(payment);
    plans.push({
      key,
      body,
      bodyHash: sha256(body),
      behaviour,
      senders: options.minSenders + Math.floor(random() * (options.maxSenders - options.minSenders + 1)),
      startAt: Math.floor((i * options.windowMs) / options.keys),
    });
  }
  return plans;
}
