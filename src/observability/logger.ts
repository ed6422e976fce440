/**
 * Structured JSON logs (pino). The engine and proxy publish on diagnostics channels; this module
 * subscribes and writes one line per event. Keys are logged hashed and bodies never, so a log
 * line can be shipped anywhere without leaking a customer's data.
 */
import { hash } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import { inspect } from 'node:util';
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/settings';
import { replicaAckShortChannel, type ReplicaAckShortEvent } from '../diagnostics/replica-ack-events';
import { requestChannel, type RequestEvent } from '../diagnostics/request-events';
import {
  channels,
  type FencedCompletionEvent,
  type LeaseLostEvent,
  type RecordUnreadableEvent,
  type StoreErrorEvent,
  type UnknownOutcomeEvent,
} from '../engine/events';
import { RecordUnreadableError } from '../errors';

export type { Logger };

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'idempotency-sidecar' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** What an operator can search logs by without the log revealing the key itself. */
export function keyHash(key: string): string {
  return hash('sha256', key, 'hex').slice(0, 16);
}

function roundMs(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function errorText(error: unknown): string | undefined {
  if (error === undefined) return undefined;
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return `${error.message}${cause}`;
  }
  // Something thrown that is no Error (an object, a number): its contents, not '[object Object]'.
  return typeof error === 'string' ? error : inspect(error, { breakLength: Infinity });
}

/** Subscribes the logger to the engine's and the proxy's channels; returns the unsubscribe. */
export function logEvents(logger: Logger): () => void {
  const onRequest = (message: unknown): void => {
    const event = message as RequestEvent;
    // Pass-through lines are debug: at the usual levels, do not build a line nobody writes.
    if (event.outcome === 'passthrough' && !logger.isLevelEnabled('debug')) return;
    const line = {
      requestId: event.requestId,
      method: event.method,
      path: event.path,
      outcome: event.outcome,
      status: event.status,
      tenant: event.tenant,
      keyHash: event.key === undefined ? undefined : keyHash(event.key),
      durationMs: roundMs(event.durationMs),
      upstreamMs: event.upstreamMs === undefined ? undefined : roundMs(event.upstreamMs),
      problem: event.problem,
      error: errorText(event.error),
    };
    if (event.outcome === 'passthrough') logger.debug(line, 'request');
    else logger.info(line, 'request');
  };
  const onUnknown = (message: unknown): void => {
    const event = message as UnknownOutcomeEvent;
    logger.error(
      {
        alert: 'unknown_outcome',
        requestId: event.requestId,
        tenant: event.scope.tenant,
        keyHash: keyHash(event.scope.key),
        fingerprint: event.fingerprint,
        method: event.method,
        path: event.path,
        reason: event.reason,
        action: event.action,
        error: errorText(event.error),
      },
      event.action === 'hold'
        ? 'outcome unknown: the upstream may have executed; key held until an operator reconciles and releases it (DELETE /keys/{key}?tenant=ID)'
        : 'outcome unknown: the upstream may have executed; key released as IDEMPOTENCY_ON_UNKNOWN=release says',
    );
  };
  const onLeaseLost = (message: unknown): void => {
    const event = message as LeaseLostEvent;
    logger.warn({ tenant: event.scope.tenant, keyHash: keyHash(event.scope.key), what: event.what, error: errorText(event.error) }, 'lease renewal lost');
  };
  const onStoreError = (message: unknown): void => {
    const event = message as StoreErrorEvent;
    logger.error({ tenant: event.scope.tenant, keyHash: keyHash(event.scope.key), operation: event.operation, error: errorText(event.error) }, 'record store error');
  };
  const onFenced = (message: unknown): void => {
    const event = message as FencedCompletionEvent;
    logger.error({ tenant: event.scope.tenant, keyHash: keyHash(event.scope.key), status: event.status }, 'response not stored: another owner holds the key (lease expired during the upstream call)');
  };
  const onUnreadable = (message: unknown): void => {
    const event = message as RecordUnreadableEvent;
    const error = event.error instanceof RecordUnreadableError ? event.error : undefined;
    logger.error(
      {
        alert: 'record_unreadable',
        tenant: event.scope.tenant,
        keyHash: keyHash(event.scope.key),
        keyId: error?.keyId,
        reason: error?.reason,
      },
      `record refused, not run again: ${errorText(event.error) ?? 'unreadable'}`,
    );
  };
  const onReplicaAckShort = (message: unknown): void => {
    const event = message as ReplicaAckShortEvent;
    logger.warn(
      {
        tenant: event.scope.tenant,
        keyHash: keyHash(event.scope.key),
        operation: event.operation,
        wanted: event.wanted,
        acknowledged: event.acknowledged,
        timeoutMs: event.timeoutMs,
      },
      'replicas did not acknowledge the write in time (IDEMPOTENCY_REDIS_WAIT_REPLICAS): a failover could lose it, so it is not acted on; check the replicas and their link to the master',
    );
  };
  const subscriptions: [diagnosticsChannel.Channel, (message: unknown) => void][] = [
    [requestChannel, onRequest],
    [replicaAckShortChannel, onReplicaAckShort],
    [channels.unknownOutcome, onUnknown],
    [channels.leaseLost, onLeaseLost],
    [channels.storeError, onStoreError],
    [channels.fencedCompletion, onFenced],
    [channels.recordUnreadable, onUnreadable],
  ];
  for (const [channel, handler] of subscriptions) channel.subscribe(handler);
  return () => {
    for (const [channel, handler] of subscriptions) channel.unsubscribe(handler);
  };
}
