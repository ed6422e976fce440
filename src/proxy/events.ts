/** One event per request the proxy finishes, for logs and metrics (observability/ subscribes). */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { GuardOutcome } from '../engine/idempotency-engine';

export type RequestOutcome = GuardOutcome | 'passthrough' | 'invalid';

export interface RequestEvent {
  readonly method: string;
  readonly path: string;
  readonly outcome: RequestOutcome;
  /** The status the client got, when the sidecar or a stored response answered. */
  readonly status?: number;
  readonly tenant?: string;
  readonly key?: string;
  readonly durationMs: number;
  readonly problem?: string;
  readonly error?: unknown;
}

export const requestChannel = diagnosticsChannel.channel('idempotency-sidecar:request');
