/**
 * One event per request the proxy finishes, and one as a guarded request enters and leaves the
 * engine. The proxy publishes them; observability/ subscribes for logs and metrics. They live
 * here, not in proxy/, so that the observers need not import the proxy, nor the proxy them.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { GuardOutcome } from '../engine/idempotency-engine';

export type RequestOutcome = GuardOutcome | 'passthrough' | 'invalid';

export interface RequestEvent {
  /** The caller's X-Request-Id, or one made up for this request. */
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  readonly outcome: RequestOutcome;
  /** The status the client got, when the sidecar or a stored response answered. */
  readonly status?: number;
  readonly tenant?: string;
  readonly key?: string;
  readonly durationMs: number;
  /** Time spent waiting for the upstream, when it was called on the guarded path. */
  readonly upstreamMs?: number;
  readonly problem?: string;
  readonly error?: unknown;
}

export const requestChannel = diagnosticsChannel.channel('idempotency-sidecar:request');

/** A guarded request entering (`start`) and leaving (`end`) the engine: the in-flight gauge. */
export interface GuardedPhaseEvent {
  readonly phase: 'start' | 'end';
}

export const guardedChannel = diagnosticsChannel.channel('idempotency-sidecar:guarded');
