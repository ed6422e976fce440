/**
 * A write that fewer replicas acknowledged than IDEMPOTENCY_REDIS_WAIT_REPLICAS asks for. The
 * Redis store publishes it (store/replica-ack.ts); observability/ subscribes for logs and
 * metrics. It lives here, not in store/, so that the observers need not import the store.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { RecordScope } from '../engine/record';

/** A write that fewer replicas acknowledged than required, within the wait timeout. */
export interface ReplicaAckShortEvent {
  readonly scope: RecordScope;
  /** The store operation: `claim`, `complete` or `release`. */
  readonly operation: string;
  readonly wanted: number;
  readonly acknowledged: number;
  readonly timeoutMs: number;
}

export const replicaAckShortChannel = diagnosticsChannel.channel('idempotency-sidecar:replica-ack-short');
