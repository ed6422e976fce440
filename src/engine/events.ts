/**
 * What the engine reports, published on diagnostics channels so that the engine never imports a
 * logger or a metrics library: observability/ subscribes, and tests may too.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { RecordScope } from './record';

export interface LeaseLostEvent {
  readonly scope: RecordScope;
  /** Which renewal failed: the lock, or the record's lease in the store. */
  readonly what: 'lock' | 'record';
  readonly error?: unknown;
}

export interface StoreErrorEvent {
  readonly scope: RecordScope;
  readonly operation: string;
  readonly error: unknown;
}

export interface UnknownOutcomeEvent {
  readonly requestId: string;
  readonly scope: RecordScope;
  readonly fingerprint: string;
  readonly method: string;
  readonly path: string;
  /** `abandoned`: cut short at the end of a shutdown's grace period. */
  readonly reason: 'timeout' | 'reset' | 'abandoned';
  readonly action: 'hold' | 'release';
  readonly error: unknown;
}

export interface FencedCompletionEvent {
  readonly scope: RecordScope;
  readonly status: number;
}

export interface RecordUnreadableEvent {
  readonly scope: RecordScope;
  /** RecordUnreadableError: its message names the key id and the setting to fix. */
  readonly error: unknown;
}

export interface WaitersFullEvent {
  readonly scope: RecordScope;
  /** The waiters of this process at that moment: the configured bound. */
  readonly waiters: number;
}

export const channels = {
  leaseLost: diagnosticsChannel.channel('idempotency-sidecar:lease-lost'),
  storeError: diagnosticsChannel.channel('idempotency-sidecar:store-error'),
  unknownOutcome: diagnosticsChannel.channel('idempotency-sidecar:unknown-outcome'),
  /** A completion refused because another owner holds the record now. */
  fencedCompletion: diagnosticsChannel.channel('idempotency-sidecar:fenced-completion'),
  /** A stored response the configured keys cannot decrypt: refused, never run again. */
  recordUnreadable: diagnosticsChannel.channel('idempotency-sidecar:record-unreadable'),
  /** A duplicate answered 409 at once because the process already holds its most waiters. */
  waitersFull: diagnosticsChannel.channel('idempotency-sidecar:waiters-full'),
} as const;

export function publish<T extends object>(channel: diagnosticsChannel.Channel, event: T): void {
  if (channel.hasSubscribers) channel.publish(event);
}
