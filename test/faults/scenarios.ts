/**
 * The fault suite's scenarios: each fault on its own, then all of them mixed. A scenario says
 * which keys behave how at the upstream (shares), what it injects and when (as fractions of the
 * workload's window, so the short and the full run share one timeline), which periods the checker
 * must look at (windows), and what the run must have exercised to mean anything.
 */
import type { CheckResult, Window } from './checker';
import type { FaultCluster, FaultEvent, Replica } from './cluster';
import { type PlanOptions, sleep } from './workload';

export type Mode = 'short' | 'full';

/** The sidecar's configuration in every scenario (CONTRACT.md section 1). */
export const LOCK_TTL_MS = 1_000;
export const UPSTREAM_TIMEOUT_MS = 3_000;
export const STORE_TIMEOUT_MS = 1_000;
/** Frozen this long: well past the lock TTL, so the lease runs out and another replica meets it. */
export const PAUSE_MS = 2_500;
/** Longer than the longest freeze plus the slowest upstream call, so a frozen replica still answers. */
export const CLIENT_TIMEOUT_MS = 10_000;
/** In wait mode: shorter than the client timeout, even behind a frozen replica. */
export const WAIT_TIMEOUT_MS = 4_000;

export const SIDECAR_ENV: Readonly<Record<string, string>> = {
  IDEMPOTENCY_LOCK_TTL: `${LOCK_TTL_MS}ms`,
  IDEMPOTENCY_UPSTREAM_TIMEOUT: `${UPSTREAM_TIMEOUT_MS}ms`,
  IDEMPOTENCY_STORE_TIMEOUT: `${STORE_TIMEOUT_MS}ms`,
  IDEMPOTENCY_ON_UNKNOWN: 'hold',
  IDEMPOTENCY_CONCURRENT: 'reject',
  IDEMPOTENCY_LOG_LEVEL: 'info',
  IDEMPOTENCY_SHUTDOWN_GRACE: '5s',
};

export interface FaultContext {
  readonly cluster: FaultCluster;
  readonly windowMs: number;
  /** Sleeps until this many ms after the workload started. */
  at(ms: number): Promise<void>;
  /** Opens a window now; the returned function closes it. */
  openWindow(window: Omit<Window, 'from' | 'to'>): () => void;
}

export interface Sizes {
  readonly keys: number;
  readonly windowMs: number;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly sizes: Readonly<Record<Mode, Sizes>>;
  readonly shares: PlanOptions['shares'];
  readonly env?: Readonly<Record<string, string>>;
  /** The runs that include it; default both. */
  readonly modes?: readonly Mode[];
  /** Runs the scenario's faults, timed against the workload; undoes what it does. */
  readonly inject: (ctx: FaultContext) => Promise<void>;
  /** What the run must show for it to have tested anything; each false one fails the run. */
  readonly exercised: readonly Exercised[];
}

/** Every run: some keys declined (402, stored), some answered a release-set status first. */
const BASE_SHARES: PlanOptions['shares'] = { decline: 0.05, release: 0.05, slow: 0, hang: 0, reset: 0 };

export const SLOW_MS: readonly [number, number] = [Math.round(LOCK_TTL_MS * 1.3), Math.round(LOCK_TTL_MS * 2.5)];
export const HANG_MS = UPSTREAM_TIMEOUT_MS + 1_000;

/** Something a scenario's run must have shown, or the fault did not bite and the run proves nothing. */
interface Exercised {
  readonly name: string;
  readonly check: (result: CheckResult, events: readonly FaultEvent[]) => boolean;
}

const releaseExercised = {
  name: 'some released keys ran again (release-set status, then a retry)',
  check: (result: CheckResult) => result.keysWithRepeatedAllowedExecutions > 0,
};

const hit = (kind: string) => (events: readonly FaultEvent[]): boolean =>
  events.some((e) => e.kind === kind && (e.clientRequests ?? 0) > 0);

/** What a run of every fault at once must have shown (mixed and mixed-wait). */
const MIXED_EXERCISED: readonly Exercised[] = [
  { name: 'a replica was killed with client requests on it', check: (_, events) => hit('SIGKILL')(events) },
  { name: 'a replica was frozen with client requests on it', check: (_, events) => hit('SIGSTOP')(events) },
  { name: 'clients got 503 store-unavailable', check: (result) => (result.answersByType['503 store-unavailable'] ?? 0) > 0 },
  { name: 'clients got 502 upstream-reset', check: (result) => (result.answersByType['502 upstream-reset'] ?? 0) > 0 },
  { name: 'executions outlasted the lock TTL', check: (result) => result.slowExecutions > 0 },
];

// --------------------------------------------------------------------------- fault actions

/** `count` moments spread evenly over [from, to] of the window (fractions). */
function spread(count: number, from: number, to: number): number[] {
  if (count <= 1) return [from];
  return Array.from({ length: count }, (_, i) => from + ((to - from) * i) / (count - 1));
}

/** More faults in a longer window: one per `everyMs`, at least `min`. */
function scaled(ctx: FaultContext, min: number, everyMs: number): number {
  return Math.max(min, Math.floor(ctx.windowMs / everyMs));
}

/**
 * A running replica with client requests on it, so that the fault lands mid-request: the busiest
 * one once it has at least `min` requests (looked at every 5 ms for at most `waitMs`), else the
 * busiest then.
 */
async function pickBusy(ctx: FaultContext, min = 3, waitMs = 2_000): Promise<Replica | undefined> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const running = ctx.cluster.replicas.filter((r) => r.state === 'up');
    const busiest = running.reduce<Replica | undefined>((best, r) => (best === undefined || r.inFlight > best.inFlight ? r : best), undefined);
    if (busiest === undefined || busiest.inFlight >= min || Date.now() > deadline) return busiest;
    await sleep(5);
  }
}

async function killAndRestart(ctx: FaultContext, atMs: number, downMs: number): Promise<void> {
  await ctx.at(atMs);
  const replica = await pickBusy(ctx);
  if (replica === undefined) return;
  await ctx.cluster.killReplica(replica, ctx.cluster.upstream.inFlight());
  await sleep(downMs);
  await ctx.cluster.restartReplica(replica);
}

async function pauseAndResume(ctx: FaultContext, atMs: number, pauseMs: number): Promise<void> {
  await ctx.at(atMs);
  const replica = await pickBusy(ctx);
  if (replica === undefined) return;
  ctx.cluster.pauseReplica(replica);
  try {
    await sleep(pauseMs);
  } finally {
    ctx.cluster.resumeReplica(replica);
  }
}

async function storeOutage(ctx: FaultContext, atMs: number, downMs: number, how: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  await ctx.at(atMs);
  await ctx.cluster.stopStore(how);
  try {
    await sleep(downMs);
  } finally {
    await ctx.cluster.startStore();
  }
}

/**
 * One lock master down (the quorum holds: requests must succeed), then a second (the quorum is
 * lost: guarded requests must get 503 and nothing may execute), then both back.
 */
async function lockQuorumLoss(
  ctx: FaultContext,
  times: { oneDown: number; twoDown: number; twoDownMs: number; allBack: number },
  strict: boolean,
): Promise<void> {
  const { cluster } = ctx;
  await ctx.at(times.oneDown);
  await cluster.stopLock(0);
  try {
    // In-flight lock commands on the stopped master fail as it goes; judge from a moment after.
    await sleep(300);
    const closeOne = ctx.openWindow({ name: '1 of 3 lock masters down', ...(strict ? { no503: true, someExecutions: true } : {}) });
    await ctx.at(times.twoDown);
    closeOne();
    await cluster.stopLock(1);
    const closeTwo = ctx.openWindow({
      name: '2 of 3 lock masters down',
      some503: true,
      // A request that won its lock just before the quorum went reaches the upstream within a
      // store round trip or two; after that nothing may.
      ...(strict ? { noExecutions: { graceMs: STORE_TIMEOUT_MS } } : {}),
    });
    try {
      await sleep(times.twoDownMs);
    } finally {
      closeTwo();
      await cluster.startLock(1);
    }
    await ctx.at(times.allBack);
  } finally {
    await cluster.startLock(1);
    await cluster.startLock(0);
  }
}

/** Every fault at once, over one timeline (mixed and mixed-wait). */
async function injectEverything(ctx: FaultContext): Promise<void> {
  const w = ctx.windowMs;
  ctx.cluster.record('slow upstream + resets', 'upstream', `per key: ${SLOW_MS[0]}-${SLOW_MS[1]} ms for 10%, ${HANG_MS} ms for 1%, reset after executing for 3%`);
  await Promise.all([
    ...spread(scaled(ctx, 3, 7_500), 0.1, 0.75).map((f) => killAndRestart(ctx, f * w, 500)),
    ...spread(scaled(ctx, 2, 10_000), 0.2, 0.6).map((f) => pauseAndResume(ctx, f * w, PAUSE_MS)),
    (async () => {
      for (const [i, f] of spread(scaled(ctx, 2, 15_000), 0.3, 0.8).entries()) {
        await storeOutage(ctx, f * w, i % 2 === 0 ? 1_500 : 1_000, i % 2 === 0 ? 'SIGTERM' : 'SIGKILL');
      }
    })(),
    // Not strict: a replica frozen after it won a lock may legitimately forward in the window
    // (its record, not its lock, keeps the key safe).
    lockQuorumLoss(ctx, { oneDown: 0.15 * w, twoDown: 0.5 * w, twoDownMs: Math.max(2_000, 0.1 * w), allBack: 0.7 * w }, false),
  ]);
}

// --------------------------------------------------------------------------------- scenarios

// Ordered so that the replicas restart for another configuration as seldom as possible (defaults first).
export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'replica-sigkill',
    description: 'SIGKILL the busiest replica mid-request (3+ times), restart it on the same ports',
    sizes: { short: { keys: 200, windowMs: 4_000 }, full: { keys: 2_000, windowMs: 30_000 } },
    shares: BASE_SHARES,
    inject: async (ctx) => {
      await Promise.all(spread(scaled(ctx, 3, 7_500), 0.2, 0.75).map((f) => killAndRestart(ctx, f * ctx.windowMs, 500)));
    },
    exercised: [
      releaseExercised,
      { name: 'a replica was killed with client requests on it', check: (_, events) => hit('SIGKILL')(events) },
      { name: 'clients saw connection errors', check: (result) => result.connectionErrors > 0 },
    ],
  },
  {
    name: 'replica-sigstop',
    description: `SIGSTOP a replica for ${PAUSE_MS} ms (lock TTL ${LOCK_TTL_MS} ms), then SIGCONT (2+ times): the fencing case`,
    sizes: { short: { keys: 200, windowMs: 4_000 }, full: { keys: 2_000, windowMs: 30_000 } },
    shares: BASE_SHARES,
    inject: async (ctx) => {
      await Promise.all(spread(scaled(ctx, 2, 10_000), 0.15, 0.6).map((f) => pauseAndResume(ctx, f * ctx.windowMs, PAUSE_MS)));
    },
    exercised: [releaseExercised, { name: 'a replica was frozen with client requests on it', check: (_, events) => hit('SIGSTOP')(events) }],
  },
  {
    name: 'store-restart',
    description: 'stop the store Redis (SIGTERM) for 1.5 s, then crash it (SIGKILL) for 1 s, alternately; it comes back with its AOF',
    sizes: { short: { keys: 200, windowMs: 4_000 }, full: { keys: 2_000, windowMs: 30_000 } },
    shares: BASE_SHARES,
    inject: async (ctx) => {
      const outages = spread(scaled(ctx, 2, 10_000), 0.25, 0.7);
      for (const [i, f] of outages.entries()) {
        await storeOutage(ctx, f * ctx.windowMs, i % 2 === 0 ? 1_500 : 1_000, i % 2 === 0 ? 'SIGTERM' : 'SIGKILL');
      }
    },
    exercised: [releaseExercised, { name: 'clients got 503 store-unavailable', check: (result) => (result.answersByType['503 store-unavailable'] ?? 0) > 0 }],
  },
  {
    name: 'lock-quorum',
    description: 'stop 1 of 3 lock masters (requests must succeed), then a 2nd (503, nothing executes), then restart both',
    sizes: { short: { keys: 200, windowMs: 4_000 }, full: { keys: 2_000, windowMs: 30_000 } },
    shares: BASE_SHARES,
    inject: (ctx) =>
      lockQuorumLoss(
        ctx,
        { oneDown: 0.1 * ctx.windowMs, twoDown: 0.4 * ctx.windowMs, twoDownMs: Math.max(2_000, 0.2 * ctx.windowMs), allBack: 0.85 * ctx.windowMs },
        true,
      ),
    exercised: [releaseExercised],
  },
  {
    name: 'slow-upstream',
    description: `15% of keys take ${SLOW_MS[0]}-${SLOW_MS[1]} ms upstream (lock TTL ${LOCK_TTL_MS} ms: renewal keeps them), 2% take ${HANG_MS} ms (past the ${UPSTREAM_TIMEOUT_MS} ms upstream timeout)`,
    sizes: { short: { keys: 200, windowMs: 4_000 }, full: { keys: 2_000, windowMs: 30_000 } },
    shares: { ...BASE_SHARES, slow: 0.15, hang: 0.02 },
    inject: async (ctx) => {
      ctx.cluster.record('slow upstream', 'upstream', `per key, from the request body: ${SLOW_MS[0]}-${SLOW_MS[1]} ms for 15%, ${HANG_MS} ms for 2%`);
    },
    exercised: [
      releaseExercised,
      { name: 'executions outlasted the lock TTL', check: (result) => result.slowExecutions > 0 },
      { name: 'clients got 504 upstream-timeout', check: (result) => (result.answersByType['504 upstream-timeout'] ?? 0) > 0 },
    ],
  },
  {
    name: 'upstream-reset',
    description: '5% of keys: the upstream executes, then resets the connection without answering',
    sizes: { short: { keys: 200, windowMs: 4_000 }, full: { keys: 2_000, windowMs: 30_000 } },
    shares: { ...BASE_SHARES, reset: 0.05 },
    inject: async (ctx) => {
      ctx.cluster.record('upstream reset', 'upstream', 'per key, from the request body: 5% of keys execute, then the connection is destroyed');
    },
    exercised: [releaseExercised, { name: 'clients got 502 upstream-reset', check: (result) => (result.answersByType['502 upstream-reset'] ?? 0) > 0 }],
  },
  {
    name: 'mixed',
    description: 'all of the above at once: SIGKILLs, SIGSTOPs, store stops and crashes, lock quorum loss, slow upstream, resets',
    sizes: { short: { keys: 400, windowMs: 6_500 }, full: { keys: 5_000, windowMs: 60_000 } },
    shares: { ...BASE_SHARES, slow: 0.1, hang: 0.01, reset: 0.03 },
    inject: injectEverything,
    exercised: [
      releaseExercised,
      ...MIXED_EXERCISED,
    ],
  },
  {
    name: 'mixed-wait',
    description: 'as mixed, with IDEMPOTENCY_CONCURRENT=wait: duplicates wait for the first (Redis pub/sub) instead of 409',
    sizes: { short: { keys: 200, windowMs: 4_500 }, full: { keys: 3_000, windowMs: 45_000 } },
    shares: { ...BASE_SHARES, slow: 0.1, hang: 0.01, reset: 0.03 },
    env: { IDEMPOTENCY_CONCURRENT: 'wait', IDEMPOTENCY_WAIT_TIMEOUT: `${WAIT_TIMEOUT_MS}ms` },
    inject: injectEverything,
    exercised: [
      {
        name: 'duplicates waited for the first and got its replay more often than a 409 request-in-flight',
        check: (result) => (result.answersByType['201 replayed'] ?? 0) > (result.answersByType['409 request-in-flight'] ?? 0),
      },
      releaseExercised,
      ...MIXED_EXERCISED,
    ],
  },
  {
    name: 'replica-sigstop-release',
    description: `as replica-sigstop, with IDEMPOTENCY_ON_UNKNOWN=release and 15% slow keys: a lapsed owner is fenced off (409 lease-lost), the key runs again`,
    sizes: { short: { keys: 200, windowMs: 4_000 }, full: { keys: 2_000, windowMs: 30_000 } },
    shares: { ...BASE_SHARES, slow: 0.15 },
    env: { IDEMPOTENCY_ON_UNKNOWN: 'release' },
    inject: async (ctx) => {
      await Promise.all(spread(scaled(ctx, 2, 10_000), 0.15, 0.6).map((f) => pauseAndResume(ctx, f * ctx.windowMs, PAUSE_MS)));
    },
    exercised: [
      releaseExercised,
      { name: 'a replica was frozen with client requests on it', check: (_, events) => hit('SIGSTOP')(events) },
      { name: 'a key ran again after its owner lapsed', check: (result) => result.keysReexecutedAfterUnknown > 0 },
    ],
  },
  {
    name: 'store-restart-release',
    description: 'as store-restart, with IDEMPOTENCY_ON_UNKNOWN=release: a key may run again, but all its answers must agree',
    sizes: { short: { keys: 200, windowMs: 4_000 }, full: { keys: 2_000, windowMs: 30_000 } },
    shares: BASE_SHARES,
    env: { IDEMPOTENCY_ON_UNKNOWN: 'release' },
    // Same cause as store-restart's findings; the short run keeps store-restart.
    modes: ['full'],
    inject: async (ctx) => {
      const outages = spread(scaled(ctx, 2, 10_000), 0.25, 0.7);
      for (const [i, f] of outages.entries()) {
        await storeOutage(ctx, f * ctx.windowMs, i % 2 === 0 ? 1_500 : 1_000, i % 2 === 0 ? 'SIGTERM' : 'SIGKILL');
      }
    },
    exercised: [releaseExercised, { name: 'clients got 503 store-unavailable', check: (result) => (result.answersByType['503 store-unavailable'] ?? 0) > 0 }],
  },
];
