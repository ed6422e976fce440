/**
 * The load generator: its own process (forked by the harness), so it never shares an event loop
 * with the servers it measures. It stays up for the whole benchmark (warm JIT, no start-up per
 * scenario) and runs one autocannon job at a time, received and answered over IPC.
 *
 * Latencies are taken from autocannon's per-response event at full precision: its own histogram
 * keeps whole milliseconds, too coarse for a target stated in single milliseconds.
 */
import autocannon from 'autocannon';
import { paymentRequestBody } from './payload';
import type { LatencySummary, LoadJob, LoadResult, WorkerMessage } from './protocol';

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
  const headers: Record<string, string> = body.length > 0 ? { 'content-type': 'application/json' } : {};
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
          reject(error instanceof Error ? error : new Error(String(error)));
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

process.on('message', (job: LoadJob) => {
  run(job).then(
    (result) => send({ type: 'result', id: job.id, result }),
    (error: unknown) => send({ type: 'failed', id: job.id, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
