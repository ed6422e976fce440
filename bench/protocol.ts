/** What the harness and its load-generator process say to each other over IPC. */

/** How the Idempotency-Key header is set on each request. */
export type KeyMode =
  /** No key header. */
  | { readonly kind: 'none' }
  /** A new key per request: `<prefix><counter>`, the prefix random per job. */
  | { readonly kind: 'unique'; readonly prefix: string }
  /** The keys of a fixed set, in turn. */
  | { readonly kind: 'set'; readonly keys: readonly string[] };

export interface LoadJob {
  readonly id: number;
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly bodyBytes: number;
  readonly keys: KeyMode;
  readonly connections: number;
  readonly durationS: number;
  /** Requests per second across all connections (open loop); unset: as fast as answers come. */
  readonly overallRate?: number;
}

export interface LatencySummary {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

export interface LoadResult {
  /** Responses received within the run (every status). */
  readonly responses: number;
  readonly durationS: number;
  readonly rps: number;
  /** Milliseconds, from every response (not only 2xx), at full precision. */
  readonly latencyMs: LatencySummary;
  /** Responses by status code. */
  readonly statuses: Readonly<Record<string, number>>;
  readonly errors: number;
  readonly timeouts: number;
}

export type WorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'result'; readonly id: number; readonly result: LoadResult }
  | { readonly type: 'failed'; readonly id: number; readonly error: string };
