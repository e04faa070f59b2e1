// The amqp:// event bus, in Celery's own topology, so Celery's monitors (Flower, `celery events`) and the Fennel
// dashboard see each other's workers on one RabbitMQ: events are published to the topic exchange `celeryev`
// (Celery's event_exchange; durable, as kombu declares it) with the routing key `task.succeeded`,
// `worker.heartbeat`, … (the type with `-` → `.`), as JSON with content type application/json, transient
// (delivery_mode 1). Each subscribing process gets an exclusive, auto-deleted queue bound with `#`, with a short
// message TTL and an idle expiry, as Celery's event receiver declares it, so a monitor that stops leaves nothing.
// No publisher confirms: events are telemetry, and a lost one costs less than a round trip per event.

import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage } from 'amqplib';
import { AmqpConnection, type Session } from '../clients/amqp/connection.ts';
import { parseAmqpUrl } from '../clients/amqp/url.ts';
import { deliverEvent, eventRoutingKey, parseEvents, payloadOf, senderOf, type EventBus, type FennelEvent } from './events.ts';

export const EVENT_EXCHANGE = 'celeryev';
/** Celery's event_queue_ttl (5 s) and event_queue_expires (60 s). */
const QUEUE_TTL_MS = 5_000;
const QUEUE_EXPIRES_MS = 60_000;
const RESUBSCRIBE_MS = 1_000;

export class AmqpEventBus implements EventBus {
  private readonly connection: AmqpConnection;
  private publishChannel: Promise<Channel> | undefined;
  private readonly handlers = new Set<(event: FennelEvent) => void>();
  private consuming: Promise<void> | undefined;
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    readonly url: string,
    options: { connectTimeoutMs?: number | undefined } = {},
  ) {
    const config = parseAmqpUrl(url);
    this.connection = new AmqpConnection(config.connectUrl, config.safeUrl, { connectTimeoutMs: options.connectTimeoutMs });
    this.connection.onLost(() => {
      this.publishChannel = undefined;
      this.consuming = undefined;
      // Subscribers get a new queue on the next connection; events sent meanwhile are lost, as with Celery.
      if (this.handlers.size > 0 && !this.closed) setTimeout(() => void this.consume().catch(() => {}), RESUBSCRIBE_MS).unref();
    });
  }

  /** A plain channel of the live session with the exchange declared, shared by every publish (so they stay in order). */
  private channel(): Promise<Channel> {
    this.publishChannel ??= (async () => {
      const session = await this.connection.session();
      const channel = await session.model.createChannel();
      channel.on('error', () => {});
      channel.on('close', () => (this.publishChannel = undefined));
      await channel.assertExchange(EVENT_EXCHANGE, 'topic', { durable: true, autoDelete: false });
      return channel;
    })();
    const opening = this.publishChannel;
    opening.catch(() => {
      if (this.publishChannel === opening) this.publishChannel = undefined;
    });
    return opening;
  }

  publish(event: FennelEvent): void {
    this.send(event);
  }

  publishMany(events: readonly FennelEvent[]): void {
    const payload = payloadOf(events);
    if (payload) this.send(payload);
  }

  /** One message: an event, or a list of a group's events (routing key `task.multi`, as Celery's workers send them). */
  private send(payload: FennelEvent | readonly FennelEvent[]): void {
    if (this.closed) return;
    let body: Buffer;
    try {
      body = Buffer.from(JSON.stringify(payload));
    } catch {
      return;
    }
    const routingKey = eventRoutingKey(payload);
    const hostname = senderOf(payload);
    const sent = this.channel()
      .then((channel) => {
        channel.publish(EVENT_EXCHANGE, routingKey, body, {
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          deliveryMode: 1,
          headers: { hostname },
        });
      })
      .catch(() => {}); // broker down: the event is dropped (telemetry, never the task's outcome)
    this.pending.add(sent);
    void sent.finally(() => this.pending.delete(sent));
  }

  async subscribe(handler: (event: FennelEvent) => void): Promise<() => Promise<void>> {
    this.handlers.add(handler);
    await this.consume();
    return async () => {
      this.handlers.delete(handler);
    };
  }

  private consume(): Promise<void> {
    this.consuming ??= (async () => {
      const session: Session = await this.connection.session();
      const channel = await session.model.createChannel();
      channel.on('error', () => {});
      await channel.assertExchange(EVENT_EXCHANGE, 'topic', { durable: true, autoDelete: false });
      const { queue } = await channel.assertQueue(`celeryev.${randomUUID()}`, {
        exclusive: true,
        autoDelete: true,
        durable: false,
        arguments: { 'x-message-ttl': QUEUE_TTL_MS, 'x-expires': QUEUE_EXPIRES_MS },
      });
      await channel.bindQueue(queue, EVENT_EXCHANGE, '#');
      await channel.consume(queue, (message) => this.dispatch(message), { noAck: true });
    })();
    const consuming = this.consuming;
    consuming.catch(() => {
      if (this.consuming === consuming) this.consuming = undefined;
    });
    return consuming;
  }

  /** Anyone may publish to `celeryev`: anything that is not a JSON event object is dropped, never thrown. */
  private dispatch(message: ConsumeMessage | null): void {
    if (!message) return;
    for (const event of parseEvents(message.content.toString('utf8'))) deliverEvent(this.handlers, event);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Events published just before close (a worker's worker-offline) are written before the connection goes.
    await Promise.all([...this.pending]);
    this.closed = true;
    this.handlers.clear();
    // Close the publishing channel first: amqplib buffers each channel's frames separately, so a connection
    // close sent at once could reach RabbitMQ before the last publishes; a channel's close follows its own frames.
    const channel = await this.publishChannel?.catch(() => undefined);
    await channel?.close().catch(() => {});
    await this.connection.close();
  }
}
