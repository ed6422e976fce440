/**
 * The load generator: its own process (forked by the harness), so it never shares an event loop
 * with the servers it measures. It stays up for the whole benchmark (warm JIT, no start-up per
 * scenario) and runs one autocannon job at a time, received and answered over IPC.
 *
 * Latencies are taken from autocannon's per-response event at full precision: its own histogram
 * keeps whole milliseconds, too coarse for a target stated in single milliseconds.
 */
import { inspect } from 'node:util';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { paymentRequestBody } from './payload';
import type { LatencySummary, LoadJob, LoadResult, WorkerMessage } from './protocol';

/** Of an open-loop job (runOpenLoop): sent at the rate, not measured. */
const OPEN_LOOP_WARMUP_MS = 1_000;

/** Latencies kept per job at most (beyond: the first ones are kept; ~60 s at 30k/s). */
const MAX_SAMPLES = 2_000_000;

function send(message: WorkerMessage): void {
  process.send?.(message);
}

function summarise(samples: Float64Array, count: number): LatencySummary {
  if (count === 0) return { p50: 0, p99: 0, max: 0, mean: 0 };
  const sorted = samples.slice(0, count).sort();
  const at = (q: number): number => sorted[Math.min(count - 1, Math.ceil(q * count) - 1)] ?? 0;
  let sum = 0;
  for (let i = 0; i < count; i += 1) sum += sorted[i] ?? 0;
  return { p50: at(0.5), p99: at(0.99), max: sorted[count - 1] ?? 0, mean: sum / count };
}

function run(job: LoadJob): Promise<LoadResult> {
  const body = paymentRequestBody(job.bodyBytes);
  let counter = 0;
  const keys = job.keys;
  const headers: Record<string, string> = { ...CLIENT_HEADERS, ...(body.length > 0 ? { 'content-type': 'application/json' } : {}) };
  const request: autocannon.Request = { method: job.method, path: job.path, body, headers };
  if (keys.kind === 'unique') {
    // autocannon hands setupRequest a fresh copy of the request and its headers each time.
    request.setupRequest = (req) => {
      counter += 1;
      req.headers = { ...req.headers, 'idempotency-key': `${keys.prefix}${counter}` };
      return req;
    };
  } else if (keys.kind === 'set') {
    request.setupRequest = (req) => {
      const key = keys.keys[counter % keys.keys.length] ?? '';
      counter += 1;
      req.headers = { ...req.headers, 'idempotency-key': key };
      return req;
    };
  }

  const samples = new Float64Array(MAX_SAMPLES);
  let count = 0;
  let responses = 0;
  const statuses: Record<string, number> = {};
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${job.origin}${job.path}`,
        connections: job.connections,
        duration: job.durationS,
        timeout: 10,
        requests: [request],
      },
      (error: unknown, result: autocannon.Result) => {
        if (error) {
          reject(error instanceof Error ? error : new Error(inspect(error)));
          return;
        }
        resolve({
          responses,
          durationS: result.duration,
          rps: result.duration > 0 ? responses / result.duration : 0,
          latencyMs: summarise(samples, count),
          statuses,
          errors: result.errors,
          timeouts: result.timeouts,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      responses += 1;
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      if (count < MAX_SAMPLES) {
        samples[count] = responseTime;
        count += 1;
      }
    });
  });
}

/** Every request identifies its client, as a payment API's clients do: the sidecar scopes keys by it. */
const CLIENT_HEADERS: Readonly<Record<string, string>> = { authorization: 'Bearer bench-client' };

/** The Idempotency-Key of the n-th request of a job (undefined: no key header). */
function keyOf(job: LoadJob, n: number): string | undefined {
  const keys = job.keys;
  if (keys.kind === 'unique') return `${keys.prefix}${n + 1}`;
  if (keys.kind === 'set') return keys.keys[n % keys.keys.length] ?? '';
  return undefined;
}

/**
 * Open loop at a fixed rate: requests leave on a schedule (checked every millisecond), never
 * waiting for earlier answers, over a pool of `connections`; each latency runs from the moment its
 * request was sent to the end of its response. autocannon's own rate limit sends each
 * connection's requests in bursts on a timer tick, which queues them behind one another and
 * measures the burst, not the proxy.
 */
async function runOpenLoop(job: LoadJob, rate: number): Promise<LoadResult> {
  const pool = new Pool(job.origin, { connections: job.connections, keepAliveTimeout: 10_000 });
  const body = paymentRequestBody(job.bodyBytes);
  const baseHeaders: Record<string, string> = { ...CLIENT_HEADERS, ...(body.length > 0 ? { 'content-type': 'application/json' } : {}) };
  const samples = new Float64Array(Math.min(MAX_SAMPLES, Math.ceil(rate * job.durationS) + 16));
  let count = 0;
  let responses = 0;
  let errors = 0;
  const statuses: Record<string, number> = {};
  const pending = new Set<Promise<void>>();
  const fire = (n: number, measured: boolean): void => {
    const key = keyOf(job, n);
    const sentAt = performance.now();
    const request = pool
      .request({ method: job.method, path: job.path, headers: key === undefined ? baseHeaders : { ...baseHeaders, 'idempotency-key': key }, body: body.length > 0 ? body : null })
      .then(async (response) => {
        await response.body.arrayBuffer();
        if (!measured) return;
        responses += 1;
        statuses[response.statusCode] = (statuses[response.statusCode] ?? 0) + 1;
        if (count < samples.length) samples[count++] = performance.now() - sentAt;
      })
      .catch(() => {
        if (measured) errors += 1;
      });
    pending.add(request);
    void request.finally(() => pending.delete(request));
  };
  // The first second is not measured: the pool opens its connections and the target its own
  // (to the upstream, to Redis) then; what follows is the steady state a long-lived client sees.
  const warmupMs = OPEN_LOOP_WARMUP_MS;
  const totalMs = warmupMs + job.durationS * 1000;
  const total = Math.ceil((rate * totalMs) / 1000);
  const started = performance.now();
  let sent = 0;
  let measuredFrom = Number.POSITIVE_INFINITY;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - started;
      const due = Math.min(Math.floor((Math.min(elapsed, totalMs) / 1000) * rate), total);
      while (sent < due) {
        const measured = (sent * 1000) / rate >= warmupMs;
        if (measured && measuredFrom === Number.POSITIVE_INFINITY) measuredFrom = performance.now();
        fire(sent++, measured);
      }
      if (elapsed >= totalMs) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  await Promise.all([...pending]);
  const durationS = (performance.now() - Math.min(measuredFrom, performance.now())) / 1000;
  await pool.close();
  return { responses, durationS, rps: durationS > 0 ? responses / durationS : 0, latencyMs: summarise(samples, count), statuses, errors, timeouts: 0 };
}

process.on('message', (job: LoadJob) => {
  (job.overallRate === undefined ? run(job) : runOpenLoop(job, job.overallRate)).then(
    (result) => send({ type: 'result', id: job.id, result }),
    (error: unknown) => send({ type: 'failed', id: job.id, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
