/**
 * Prometheus metrics (prom-client) on the admin listener. Counters follow the engine's and the
 * proxy's diagnostics channels; the store and the upstream are timed by thin wrappers around
 * their ports, so neither the engine nor the stores know metrics exist.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import client from 'prom-client';
import { replicaAckShortChannel, type ReplicaAckShortEvent } from '../diagnostics/replica-ack-events';
import { guardedChannel, requestChannel, type GuardedPhaseEvent, type RequestEvent, type RequestOutcome } from '../diagnostics/request-events';
import { channels, type LeaseLostEvent, type StoreErrorEvent, type UnknownOutcomeEvent } from '../engine/events';
import type { Lease, LockProvider, RecordStore, Upstream, UpstreamResult } from '../engine/ports';

/** Every outcome the contract names, so each series exists (at 0) from the first scrape. */
export const OUTCOMES: readonly RequestOutcome[] = [
  'passthrough',
  'executed',
  'replayed',
  'conflict',
  'mismatch',
  'invalid',
  'unavailable',
  'upstream_error',
  'unknown',
  'lease_lost',
  'unreadable',
  'client_gone',
];

/** Latency buckets in seconds: from a sub-millisecond replay to a 30 s upstream timeout. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class SidecarMetrics {
  readonly registry = new client.Registry();
  readonly requests = new client.Counter({
    name: 'idempotency_requests_total',
    help: 'Requests handled by the proxy, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly upstreamDuration = new client.Histogram({
    name: 'idempotency_upstream_duration_seconds',
    help: 'Duration of guarded calls to the upstream, by result (response, refused, timeout, reset).',
    labelNames: ['result'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly storeDuration = new client.Histogram({
    name: 'idempotency_store_duration_seconds',
    help: 'Duration of record store operations, by operation and result (ok, error).',
    labelNames: ['operation', 'result'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly leaseRenewalsLost = new client.Counter({
    name: 'idempotency_lock_renewals_lost_total',
    help: 'Lease renewals that failed while an upstream call was running (what: lock or record).',
    labelNames: ['what'] as const,
    registers: [this.registry],
  });
  readonly storeErrors = new client.Counter({
    name: 'idempotency_store_errors_total',
    help: 'Record store failures seen by the engine, by operation.',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly unknownOutcomes = new client.Counter({
    name: 'idempotency_unknown_outcomes_total',
    help: 'Requests sent upstream whose outcome is unknown (timeout or reset), by reason and action (hold, release).',
    labelNames: ['reason', 'action'] as const,
    registers: [this.registry],
  });
  readonly lockWait = new client.Histogram({
    name: 'idempotency_lock_wait_seconds',
    help: 'Time to take (or be refused) a per-key lock, by result (acquired, held, error).',
    labelNames: ['result'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly guardedInFlight = new client.Gauge({
    name: 'idempotency_guarded_in_flight',
    help: 'Guarded requests inside the engine right now (reading, waiting, forwarding or settling).',
    registers: [this.registry],
  });
  readonly fencedCompletions = new client.Counter({
    name: 'idempotency_fenced_completions_total',
    help: 'Responses not stored because another request owned the key by then.',
    registers: [this.registry],
  });

  readonly shed = new client.Counter({
    name: 'idempotency_shed_total',
    help: 'Guarded requests turned away to bound memory, by reason: body_memory (503, IDEMPOTENCY_MAX_BODY_MEMORY) or waiters (409 without waiting, IDEMPOTENCY_MAX_WAITERS).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly replicaAckShort = new client.Counter({
    name: 'idempotency_replica_ack_short_total',
    help: 'Claims, completions and releases that fewer replicas acknowledged than IDEMPOTENCY_REDIS_WAIT_REPLICAS asks, within the wait timeout (by operation); each one was answered 503 or retried.',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry });
    for (const outcome of OUTCOMES) this.requests.inc({ outcome }, 0);
    for (const reason of ['body_memory', 'waiters']) this.shed.inc({ reason }, 0);
  }

  /** Reports the bytes of guarded bodies held now (the proxy's body budget) at each scrape. */
  observeBodyMemory(inUse: () => number): void {
    new client.Gauge({
      name: 'idempotency_body_memory_bytes',
      help: 'Bytes of guarded request bodies held in memory now; IDEMPOTENCY_MAX_BODY_MEMORY bounds it.',
      registers: [this.registry],
      collect() {
        this.set(inUse());
      },
    });
  }

  /** Subscribes to the diagnostics channels; returns the unsubscribe. */
  listen(): () => void {
    const subscriptions: [diagnosticsChannel.Channel, (message: unknown) => void][] = [
      [
        requestChannel,
        (m) => {
          const event = m as RequestEvent;
          this.requests.inc({ outcome: event.outcome });
          if (event.problem === 'overloaded') this.shed.inc({ reason: 'body_memory' });
        },
      ],
      [channels.waitersFull, () => this.shed.inc({ reason: 'waiters' })],
      [channels.leaseLost, (m) => this.leaseRenewalsLost.inc({ what: (m as LeaseLostEvent).what })],
      [channels.storeError, (m) => this.storeErrors.inc({ operation: (m as StoreErrorEvent).operation })],
      [
        channels.unknownOutcome,
        (m) => this.unknownOutcomes.inc({ reason: (m as UnknownOutcomeEvent).reason, action: (m as UnknownOutcomeEvent).action }),
      ],
      [channels.fencedCompletion, () => this.fencedCompletions.inc()],
      [replicaAckShortChannel, (m) => this.replicaAckShort.inc({ operation: (m as ReplicaAckShortEvent).operation })],
      [guardedChannel, (m) => ((m as GuardedPhaseEvent).phase === 'start' ? this.guardedInFlight.inc() : this.guardedInFlight.dec())],
    ];
    for (const [channel, handler] of subscriptions) channel.subscribe(handler);
    return () => {
      for (const [channel, handler] of subscriptions) channel.unsubscribe(handler);
    };
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** The upstream port, timed. */
  timeUpstream(upstream: Upstream): Upstream {
    const histogram = this.upstreamDuration;
    return {
      async send(request, signal): Promise<UpstreamResult> {
        const stop = histogram.startTimer();
        const result = await upstream.send(request, signal);
        stop({ result: result.kind });
        return result;
      },
    };
  }

  /** The lock port, each acquisition timed. */
  timeLocks(locks: LockProvider): LockProvider {
    const histogram = this.lockWait;
    return {
      async acquire(resource, ttlMs): Promise<Lease | null> {
        const stop = histogram.startTimer();
        try {
          const lease = await locks.acquire(resource, ttlMs);
          stop({ result: lease ? 'acquired' : 'held' });
          return lease;
        } catch (error) {
          stop({ result: 'error' });
          throw error;
        }
      },
      close: () => locks.close(),
    };
  }

  /** The record store port, every operation timed. */
  timeStore(store: RecordStore): RecordStore {
    const histogram = this.storeDuration;
    const timed = <A extends unknown[], R>(operation: string, call: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        const stop = histogram.startTimer({ operation });
        try {
          const value = await call(...args);
          stop({ result: 'ok' });
          return value;
        } catch (error) {
          stop({ result: 'error' });
          throw error;
        }
      };
    return {
      read: timed('read', (scope, options) => store.read(scope, options)),
      claim: timed('claim', (scope, request) => store.claim(scope, request)),
      renew: timed('renew', (scope, token, leaseMs) => store.renew(scope, token, leaseMs)),
      complete: timed('complete', (scope, token, response, ttlMs) => store.complete(scope, token, response, ttlMs)),
      markUnknown: timed('mark_unknown', (scope, token) => store.markUnknown(scope, token)),
      release: timed('release', (scope, token) => store.release(scope, token)),
      listByKey: timed('list', (key) => store.listByKey(key)),
      remove: timed('remove', (scope) => store.remove(scope)),
      ping: timed('ping', () => store.ping()),
      // Forwarded, or waiting duplicates lose their wake-ups; not timed: it never fails (it degrades).
      watch: (scope) => store.watch(scope),
      close: () => store.close(),
    };
  }
}
