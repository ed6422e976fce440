/**
 * What the request's log line and metrics cost, in process, on the real modules: microseconds per
 * guarded first-time request for (a) the metric updates SidecarMetrics makes (the in-flight gauge
 * up and down, the store's claim and complete timed, the upstream call timed, the outcome counted)
 * and (b) the `request` log line logEvents writes (pino to /dev/null, synchronous as in
 * production). Each is measured against the same loop with nobody subscribed, so what is left is
 * theirs. No sockets, no Redis: this isolates what the profile charges to prom-client and pino.
 *
 *   npm run bench:build && node .bench/build/bench/observability-cost.js
 */
import pino from 'pino';
import type { RecordStore, Upstream, UpstreamResult } from '../src/engine/ports';
import { createLogger, logEvents } from '../src/observability/logger';
import { SidecarMetrics } from '../src/observability/metrics';
import { guardedChannel, requestChannel, type RequestEvent } from '../src/diagnostics/request-events';

const ITERATIONS = 200_000;
const WARMUP = 20_000;
const ROUNDS = 5;

const scope = { tenant: '9f86d081884c7d65', key: 'order-2024-000042' };
const response = { status: 201, headers: [['content-type', 'application/json']] as [string, string][], body: Buffer.alloc(200, 0x61) };
const answered: UpstreamResult = { kind: 'response', response, durationMs: 1 };
const event: RequestEvent = {
  requestId: '6f1c1f0e-3b0e-4e0f-9d43-0c4a3f0f3b1a',
  method: 'POST',
  path: '/payments',
  outcome: 'executed',
  status: 201,
  tenant: scope.tenant,
  key: scope.key,
  durationMs: 2.345,
  upstreamMs: 1.234,
};

/** The two store calls and the upstream call of a first-time request, answered at once. */
const bareStore = {
  claim: () => Promise.resolve({ claimed: true as const }),
  complete: () => Promise.resolve(true),
} as const;
const bareUpstream: Upstream = { send: () => Promise.resolve(answered) };

type Parts = { readonly claim: RecordStore['claim']; readonly complete: RecordStore['complete']; readonly upstream: Upstream };

async function oneRequest(parts: Parts): Promise<void> {
  if (guardedChannel.hasSubscribers) guardedChannel.publish({ phase: 'start' });
  await parts.claim(scope, { fingerprint: 'f', token: 't', leaseMs: 10_000, ttlMs: 86_400_000, onExpiredLease: 'hold' });
  await parts.upstream.send({ method: 'POST', path: '/payments', headers: [], body: response.body }, new AbortController().signal);
  await parts.complete(scope, 't', response, 86_400_000);
  if (guardedChannel.hasSubscribers) guardedChannel.publish({ phase: 'end' });
  if (requestChannel.hasSubscribers) requestChannel.publish(event);
}

async function microsecondsPer(parts: Parts): Promise<number> {
  for (let i = 0; i < WARMUP; i++) await oneRequest(parts);
  const started = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) await oneRequest(parts);
  return Number(process.hrtime.bigint() - started) / 1_000 / ITERATIONS;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const bare: Parts = { claim: bareStore.claim, complete: bareStore.complete, upstream: bareUpstream };
  const metrics = new SidecarMetrics();
  // Only claim and complete are called: the rest of the port is never reached here.
  const timed = metrics.timeStore({ ...bareStore } as unknown as RecordStore);
  const withMetrics: Parts = {
    claim: (s, request) => timed.claim(s, request),
    complete: (s, token, stored, ttlMs) => timed.complete(s, token, stored, ttlMs),
    upstream: metrics.timeUpstream(bareUpstream),
  };
  const logger = createLogger('info', pino.destination({ dest: '/dev/null', sync: true }));

  const samples = { bare: [] as number[], metrics: [] as number[], log: [] as number[] };
  // Interleaved rounds, so that a slower moment of the machine falls on every variant alike.
  for (let round = 0; round < ROUNDS; round++) {
    samples.bare.push(await microsecondsPer(bare));
    const stopMetrics = metrics.listen();
    samples.metrics.push(await microsecondsPer(withMetrics));
    stopMetrics();
    const stopLog = logEvents(logger);
    samples.log.push(await microsecondsPer(bare));
    stopLog();
  }
  const bareUs = median(samples.bare);
  const metricsUs = median(samples.metrics) - bareUs;
  const logUs = median(samples.log) - bareUs;
  process.stdout.write(
    `per guarded first-time request, ${ROUNDS} rounds of ${ITERATIONS}, medians, node ${process.version}\n` +
      `  the loop alone (three awaits):           ${bareUs.toFixed(2)} us\n` +
      `  metrics (gauge, 3 histograms, counter):  +${metricsUs.toFixed(2)} us\n` +
      `  the request log line (pino, /dev/null):  +${logUs.toFixed(2)} us\n`,
  );
}

void main();
