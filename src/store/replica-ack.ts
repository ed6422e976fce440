/**
 * Replica acknowledgement (IDEMPOTENCY_REDIS_WAIT_REPLICAS): a script and a `WAIT n timeout` sent
 * in one pipeline to the node that owns the script's keys, so that the sidecar acts on a claim, a
 * stored response or a release only once that many replicas have it.
 *
 * Redis replicates asynchronously: a master acknowledges a write before any replica has it, and a
 * failover promotes a replica that may lack the last writes. WAIT blocks the connection until the
 * replicas have acknowledged every write this connection made so far, or the timeout passes, and
 * answers how many did. It narrows that loss; it does not make Redis strongly consistent (see
 * docs/reliability.md, "Redis Cluster and Sentinel").
 *
 * Why one pipeline of EVALSHA and WAIT, not two calls: one round trip instead of two, and the WAIT
 * must run on the connection (and, in a Cluster, the node) that ran the script. ioredis sends a
 * keyless command in a Cluster pipeline to the node of the pipeline's keys. The script is sent as a
 * plain EVALSHA rather than through ioredis's defined command: on NOSCRIPT that one resends EVAL
 * on its own, after the WAIT, whose answer would then cover none of the script's writes. Here a
 * NOSCRIPT resends the pair with EVAL, so the WAIT always follows the write it vouches for.
 */
import { createHash } from 'node:crypto';
import { replicaAckShortChannel, type ReplicaAckShortEvent } from '../diagnostics/replica-ack-events';
import type { RecordScope } from '../engine/record';
import { ReplicasNotAcknowledgedError, StoreUnavailableError } from '../errors';
import type { RedisClient } from './redis-connection';

export interface ReplicaAckOptions {
  /** Replicas that must acknowledge (WAIT numreplicas); at least 1. */
  readonly replicas: number;
  /** WAIT's timeout in ms; at least 1 (WAIT 0 would block forever). */
  readonly timeoutMs: number;
}

export interface AcknowledgedScript {
  readonly lua: string;
  readonly numberOfKeys: number;
}

export function checkReplicaAckOptions(options: ReplicaAckOptions): ReplicaAckOptions {
  if (!Number.isInteger(options.replicas) || options.replicas < 1) {
    throw new TypeError(`waitReplicas must be a whole number of replicas, at least 1 here (got ${String(options.replicas)})`);
  }
  if (!Number.isInteger(options.timeoutMs) || options.timeoutMs < 1) {
    throw new TypeError(`waitTimeoutMs must be a positive whole number of ms (got ${String(options.timeoutMs)})`);
  }
  return options;
}

const shas = new WeakMap<AcknowledgedScript, string>();

function sha1(script: AcknowledgedScript): string {
  let sha = shas.get(script);
  if (sha === undefined) {
    sha = createHash('sha1').update(script.lua).digest('hex');
    shas.set(script, sha);
  }
  return sha;
}

/**
 * Runs `script` then WAIT in one round trip and returns the script's reply (Buffers, as the
 * `...Buffer` commands give). Throws the script's own error, or ReplicasNotAcknowledgedError when
 * fewer replicas than required acknowledged a reply that `mustHold` says a failover must not lose;
 * either way the write may have landed on the master.
 */
export async function evalAcknowledged(
  client: RedisClient,
  script: AcknowledgedScript,
  keys: readonly string[],
  args: readonly (string | Buffer)[],
  options: ReplicaAckOptions,
  report: { readonly operation: string; readonly scope: RecordScope },
  mustHold: (scriptReply: unknown) => boolean = () => true,
): Promise<unknown> {
  let [scriptReply, acknowledged] = await evalThenWait(client, 'evalsha', sha1(script), script, keys, args, options);
  if (scriptReply instanceof Error && scriptReply.message.startsWith('NOSCRIPT')) {
    // A restarted or promoted server has an empty script cache: send the body this once.
    [scriptReply, acknowledged] = await evalThenWait(client, 'eval', script.lua, script, keys, args, options);
  }
  if (scriptReply instanceof Error) throw scriptReply;
  if (acknowledged instanceof Error) throw acknowledged;
  if (acknowledged < options.replicas && mustHold(scriptReply)) {
    const event: ReplicaAckShortEvent = {
      scope: report.scope,
      operation: report.operation,
      wanted: options.replicas,
      acknowledged,
      timeoutMs: options.timeoutMs,
    };
    if (replicaAckShortChannel.hasSubscribers) replicaAckShortChannel.publish(event);
    throw new ReplicasNotAcknowledgedError(report.operation, options.replicas, acknowledged, options.timeoutMs);
  }
  return scriptReply;
}

async function evalThenWait(
  client: RedisClient,
  how: 'evalsha' | 'eval',
  body: string,
  script: AcknowledgedScript,
  keys: readonly string[],
  args: readonly (string | Buffer)[],
  options: ReplicaAckOptions,
): Promise<[unknown, number | Error]> {
  const pipeline = client.pipeline();
  // callBuffer: Buffer replies, so that a stored body comes back byte for byte.
  pipeline.callBuffer(how, body, script.numberOfKeys, ...keys, ...args);
  pipeline.wait(options.replicas, options.timeoutMs);
  const replies = await pipeline.exec();
  if (replies === null || replies.length !== 2) throw new StoreUnavailableError(`${how}+wait: no reply from Redis`);
  const [[scriptError, scriptReply], [waitError, waitReply]] = replies as [[Error | null, unknown], [Error | null, unknown]];
  const acknowledged = waitError ?? (typeof waitReply === 'number' ? waitReply : new StoreUnavailableError(`malformed WAIT reply from Redis`));
  return [scriptError ?? scriptReply, acknowledged];
}
