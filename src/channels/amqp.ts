// The amqp:// channel engine: a fanout exchange per channel, `fennel.channel.<name>`, and per subscription an
// exclusive, auto-deleted, server-named queue bound to it and consumed with noAck, as events/amqp.ts does for
// Celery's events. RabbitMQ copies each message into every bound queue: the broker does the fanout.
//
// The exchange is transient (durable: false) and stays when unused (autoDelete: false). Nothing a channel carries
// outlives a broker restart (its queues are exclusive to their connections), so a durable exchange would only
// keep names nobody uses; and an auto-deleted one would vanish under a publisher whenever its last subscriber
// left, turning the next publish into a channel error instead of a message to no one. Publishers and subscribers
// declare it (idempotent) on every connection, so it is there again after a restart.
// Publishes go through the connection's confirm channel, in call order, and resolve when RabbitMQ confirms: by
// then the message is in the queue of every subscription that was live when it was published. Never sent twice:
// a publish is retried only while nothing has been written (no connection yet). Messages are transient
// (delivery_mode 1). A subscription whose channel closes (the connection lost, the broker restarting) consumes
// again on a new queue, with backoff, until it ends; what was published in between is lost to it.

import type { Channel, ConfirmChannel } from 'amqplib';
import { AmqpConnection, isConnectionError, type Session } from '../clients/amqp/connection.ts';
import { parseAmqpUrl } from '../clients/amqp/url.ts';
import { BrokerUnavailableError, FennelError } from '../errors.ts';
import type { ChannelEngine } from './engine.ts';

export const EXCHANGE_PREFIX = 'fennel.channel.';

/** `fennel.channel.<channel>`: the fanout exchange of a channel. */
export function channelExchange(channel: string): string {
  return EXCHANGE_PREFIX + channel;
}

/**
 * A publish RabbitMQ has not confirmed after this long is on a connection that stopped answering (it confirms in
 * milliseconds): it fails, and the connection is dropped so the next publish opens a new one.
 */
const PUBLISH_BOUND_MS = 10_000;

const EXCHANGE_OPTIONS = { durable: false, autoDelete: false } as const;

export class AmqpChannelEngine implements ChannelEngine {
  /** The URL with any password masked. */
  readonly url: string;
  readonly connection: AmqpConnection;
  private readonly subscriptions = new Set<AmqpSubscription>();
  /** The tail of the publishes' write steps: each is written after the one called before it. */
  private writing: Promise<unknown> = Promise.resolve();
  private readonly pending = new Set<Promise<unknown>>();
  closed = false;

  constructor(url: string, options: { connectTimeoutMs?: number | undefined } = {}) {
    const config = parseAmqpUrl(url);
    this.url = config.safeUrl;
    this.connection = new AmqpConnection(config.connectUrl, config.safeUrl, { connectTimeoutMs: options.connectTimeoutMs });
  }

  async publish(channel: string, payload: string): Promise<void> {
    const exchange = channelExchange(channel);
    const body = Buffer.from(payload, 'utf8');
    const written = this.writing.then(() => this.write(exchange, body));
    this.writing = written.catch(() => {});
    // The confirms are awaited side by side: only the writes wait for each other.
    const confirmed = written.then((write) => write.confirmed);
    this.pending.add(confirmed);
    try {
      await confirmed;
    } finally {
      this.pending.delete(confirmed);
    }
  }

  /** Writes one publish on the confirm channel; resolves once it is written, with its confirm. */
  private async write(exchange: string, body: Buffer): Promise<{ confirmed: Promise<void> }> {
    const { session, channel } = await retrying(this, () => this.publishChannel(exchange));
    const confirmed = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.connection.discard(session);
        reject(new BrokerUnavailableError(this.url, `a publish to ${exchange} was not confirmed within ${PUBLISH_BOUND_MS} ms: the connection stopped answering; it is dropped`));
      }, PUBLISH_BOUND_MS);
      channel.publish(exchange, '', body, { contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 1 }, (error: unknown) => {
        clearTimeout(timer);
        if (error) reject(new BrokerUnavailableError(this.url, `RabbitMQ did not take a publish to ${exchange}: ${(error as Error).message ?? 'nack'}`, { cause: error }));
        else resolve();
      });
    });
    return { confirmed };
  }

  /** The confirm channel of the live session, with the exchange declared on it (once per session). */
  private async publishChannel(exchange: string): Promise<{ session: Session; channel: ConfirmChannel }> {
    const session = await this.connection.session();
    if (!session.declared.has(exchange)) {
      // On a channel of its own: a declare that fails closes its channel, which must not be the publishing one.
      await this.connection.withChannel((channel) => channel.assertExchange(exchange, 'fanout', EXCHANGE_OPTIONS));
      session.declared.add(exchange);
    }
    const { channel } = await this.connection.confirmChannel();
    return { session, channel };
  }

  async subscribe(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    const subscription = new AmqpSubscription(this, channel, onMessage);
    this.subscriptions.add(subscription);
    try {
      await retrying(this, () => subscription.open());
    } catch (error) {
      this.subscriptions.delete(subscription);
      await subscription.stop();
      throw error;
    }
    return async () => {
      if (!this.subscriptions.delete(subscription)) return;
      await subscription.stop();
    };
  }

  /** The queues of this engine's live subscriptions to `channel` (each deleted when its subscription ends). */
  queuesOf(channel: string): string[] {
    return [...this.subscriptions].flatMap((s) => (s.channel === channel && s.queue !== undefined ? [s.queue] : []));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Publishes under way are confirmed (or fail) before the connection goes.
    await Promise.allSettled([...this.pending]);
    this.closed = true;
    const subscriptions = [...this.subscriptions];
    this.subscriptions.clear();
    await Promise.all(subscriptions.map((s) => s.stop()));
    await this.connection.close();
  }
}

/** One subscription: its channel on the connection, its queue, and consuming again when the channel closes. */
class AmqpSubscription {
  private active = true;
  private amqpChannel: Channel | undefined;
  /** The server-named queue it consumes, while it does. */
  queue: string | undefined;
  private reopening: Promise<void> | undefined;
  private backoff: { timer: NodeJS.Timeout; wake: () => void } | undefined;

  constructor(
    private readonly engine: AmqpChannelEngine,
    readonly channel: string,
    private readonly onMessage: (payload: string) => void,
  ) {}

  /** Declares the exchange and a queue of its own bound to it, and consumes it. */
  async open(): Promise<void> {
    const exchange = channelExchange(this.channel);
    const session = await this.engine.connection.session();
    const channel = await session.model.createChannel();
    channel.on('error', () => {});
    try {
      await channel.assertExchange(exchange, 'fanout', EXCHANGE_OPTIONS);
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await channel.bindQueue(queue, exchange, '');
      await channel.consume(queue, (message) => {
        if (message && this.active) this.onMessage(message.content.toString('utf8'));
      }, { noAck: true });
      this.amqpChannel = channel;
      this.queue = queue;
    } catch (error) {
      await channel.close().catch(() => {});
      throw error;
    }
    channel.once('close', () => {
      if (this.amqpChannel !== channel) return; // closed by stop()
      this.amqpChannel = undefined;
      this.queue = undefined;
      if (this.active && !this.engine.closed) this.reopen();
    });
  }

  /** Consumes again, with backoff, until it succeeds or the subscription ends (the broker may be restarting). */
  private reopen(): void {
    this.reopening ??= (async () => {
      for (let attempt = 1; this.active && !this.engine.closed; attempt++) {
        // Not unref'd: a process iterating a subscription stays up while its connection comes back.
        await new Promise<void>((wake) => (this.backoff = { timer: setTimeout(wake, Math.min(100 * 2 ** attempt, 2000)), wake }));
        this.backoff = undefined;
        if (!this.active) return;
        try {
          await this.open();
          return;
        } catch {
          // not yet: try again
        }
      }
    })().finally(() => (this.reopening = undefined));
  }

  /** Ends it: no more messages; its queue is deleted (it would be anyway with its channel, being auto-deleted). */
  async stop(): Promise<void> {
    this.active = false;
    if (this.backoff) {
      clearTimeout(this.backoff.timer);
      this.backoff.wake();
    }
    await this.reopening;
    const channel = this.amqpChannel;
    const queue = this.queue;
    this.amqpChannel = undefined;
    this.queue = undefined;
    if (!channel) return;
    if (queue !== undefined) await channel.deleteQueue(queue).catch(() => {});
    await channel.close().catch(() => {});
  }
}

/**
 * Runs `attempt` again, with backoff, while it fails for a connection that may come back; fails once the broker
 * has been out of reach for connectTimeoutMs (the connection's errors stop being connection errors then), or
 * at once for anything else. For steps that have sent nothing yet (connecting, declaring, subscribing).
 */
async function retrying<T>(engine: AmqpChannelEngine, attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      if (engine.closed || !isConnectionError(error)) {
        throw error instanceof FennelError ? error : new BrokerUnavailableError(engine.url, (error as Error)?.message ?? String(error), { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** n, 2000)));
    }
  }
}
