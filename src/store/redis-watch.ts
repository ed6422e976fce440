/**
 * RecordStore.watch over Redis pub/sub. The scripts that settle a record PUBLISH on the record's
 * channel (keys.ts); this module holds the subscriptions and wakes the watches of a channel when
 * a message comes.
 *
 * One subscriber connection per store, made on the first watch, because a connection in
 * subscriber mode can run no other command:
 *  - one Redis: `client.duplicate()`, with the client's options (timeouts, no offline queue,
 *    reconnect forever);
 *  - a Cluster: the Cluster client itself. ioredis already sends a Cluster's SUBSCRIBE over a
 *    dedicated subscriber connection (its ClusterSubscriber), apart from the command
 *    connections; `duplicate()` would open a second cluster client (slot map, node pool) for the
 *    same. Classic PUBLISH is broadcast to every node of a Cluster, so that one connection, to
 *    whichever node, receives the messages of every slot.
 *
 * Channels are reference-counted: SUBSCRIBE when a record gets its first watch, UNSUBSCRIBE when
 * its last watch closes. Both go over the one connection, in order, so a last close racing a new
 * first watch ends subscribed.
 *
 * Failures degrade rather than fail: when a subscription cannot be confirmed within the store
 * timeout (subscriber down or slow), the watch still resolves, deaf unless the subscription comes
 * up later; the caller's bounded wait covers it (the engine then looks again every second). The
 * error goes to the client's 'error' listeners, where the composition root sends connection
 * errors. Throwing instead would turn a pub/sub hiccup into a 503 for a request whose record the
 * command connection can still read.
 *
 * Reconnection: messages published while the subscriber is down are lost. When the connection
 * drops, every channel is marked inactive, so the next watch of it SUBSCRIBEs again and waits for
 * Redis's confirmation before its caller reads; when it is back, every open watch is woken, so
 * waiters read the record again at once. ioredis's autoResubscribe is turned off for the one-Redis
 * subscriber: it would resubscribe whatever ioredis remembers, including channels whose
 * UNSUBSCRIBE failed while the connection was down (a leak), and it does not say when the
 * subscription is confirmed. A Cluster's ClusterSubscriber resubscribes by itself (it cannot be
 * turned off), which is harmless: a second SUBSCRIBE of a channel is a no-op.
 */
import { Cluster } from 'ioredis';
import type { RecordWatch } from '../engine/ports';
import { StoreUnavailableError } from '../errors';
import { closeClient, type RedisClient, whenReady, withDeadline } from './redis-connection';
import { WatchRegistry } from './watch-registry';

export class RedisWatchHub {
  private readonly registry = new WatchRegistry();
  /** Channel -> its SUBSCRIBE, pending or confirmed; absent: the next watch subscribes. */
  private readonly active = new Map<string, Promise<void>>();
  private subscriber: RedisClient | undefined;
  /** One wait for the subscriber to be ready, shared by every SUBSCRIBE that needs it. */
  private ready: Promise<void> | undefined;
  /** The subscriber lost its connection since it was last ready. */
  private down = false;
  private closed = false;

  constructor(
    private readonly client: RedisClient,
    private readonly timeoutMs: number,
  ) {}

  /** A watch of `channel`; resolves within the store timeout, with its subscription active or not. */
  async watch(channel: string): Promise<RecordWatch> {
    if (this.closed) throw new StoreUnavailableError('watch: the record store is closed');
    const { watch } = this.registry.open(channel, () => this.unsubscribe(channel));
    try {
      await withDeadline('watch', this.timeoutMs, () => this.activate(channel));
    } catch (error) {
      this.report(error);
    }
    return watch;
  }

  /** Wakes every open watch (their waiters look again) and drops the subscriber connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.registry.clear();
    this.active.clear();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (subscriber === undefined) return;
    subscriber.removeListener('message', this.onMessage);
    subscriber.removeListener('close', this.onClose);
    subscriber.removeListener('ready', this.onReady);
    // The Cluster client is the store's own: the store closes it.
    if (subscriber !== this.client) await closeClient(subscriber, this.timeoutMs);
  }

  /** The channel's SUBSCRIBE, sent if no confirmed or pending one stands. */
  private activate(channel: string): Promise<void> {
    const standing = this.active.get(channel);
    if (standing !== undefined) return standing;
    const subscribing = this.subscribe(channel);
    this.active.set(channel, subscribing);
    subscribing.catch(() => {
      // Not subscribed: the next watch of this channel tries again.
      if (this.active.get(channel) === subscribing) this.active.delete(channel);
    });
    return subscribing;
  }

  private async subscribe(channel: string): Promise<void> {
    const subscriber = this.connection();
    if (subscriber.status !== 'ready') {
      // Shared, so that a burst of watches while the connection comes up adds one listener, not one each.
      this.ready ??= whenReady(subscriber, this.timeoutMs).finally(() => {
        this.ready = undefined;
      });
      await this.ready;
    }
    // Every watch of it may have closed while the connection came up.
    if (!this.registry.has(channel)) return;
    await subscriber.subscribe(channel);
  }

  /** The last watch of `channel` closed. */
  private unsubscribe(channel: string): void {
    this.active.delete(channel);
    const subscriber = this.subscriber;
    // While the connection is down there is nothing to undo: no resubscription happens (see top).
    if (subscriber?.status !== 'ready') return;
    subscriber.unsubscribe(channel).catch((error: unknown) => this.report(error));
  }

  private connection(): RedisClient {
    if (this.subscriber !== undefined) return this.subscriber;
    const subscriber =
      this.client instanceof Cluster
        ? this.client
        : this.client.duplicate({
            connectionName: `${this.client.options.connectionName ?? 'store'}-watch`,
            autoResubscribe: false,
          });
    if (subscriber !== this.client) {
      // Without a listener ioredis prints connection errors to stderr.
      subscriber.on('error', (error: unknown) => this.report(error));
    }
    subscriber.on('message', this.onMessage);
    subscriber.on('close', this.onClose);
    subscriber.on('ready', this.onReady);
    this.subscriber = subscriber;
    return subscriber;
  }

  private readonly onMessage = (channel: string): void => {
    this.registry.notify(channel);
  };

  private readonly onClose = (): void => {
    this.down = true;
    this.active.clear();
  };

  private readonly onReady = (): void => {
    if (!this.down) return;
    this.down = false;
    this.registry.notifyAll();
  };

  /** To the client's 'error' listeners, where the composition root sends connection errors. */
  private report(error: unknown): void {
    if (this.client.listenerCount('error') === 0) return;
    this.client.emit('error', error instanceof Error ? error : new Error(String(error)));
  }
}
