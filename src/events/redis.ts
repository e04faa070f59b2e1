// The redis:// event bus, in the layout Celery's own event transport uses on Redis, so Celery's monitors (Flower,
// `celery events`) see Fennel workers and the Fennel dashboard sees Python Celery workers on the same database:
//   - events go to kombu's fanout exchange `celeryev` (Celery's event exchange), which kombu's Redis transport
//     maps to pub/sub channel `/<db>.celeryev/<routing key>` (kombu transport/redis.py: keyprefix_fanout
//     `/{db}.` and fanout_patterns), the routing key being the event type with `-` → `.` (`task.succeeded`);
//   - each message is kombu's JSON envelope with a base64 body holding the event as JSON (protocol/envelope.ts).
// Why match it rather than a plain `fennel.events` channel: the cost is one envelope per event, and the gain is
// interoperability both ways, which is what Fennel's wire format is for. The db prefix also keeps apps on
// different databases of one server apart (pub/sub channels are server-wide, not per database).
// Pub/sub delivers to whoever is subscribed now and keeps nothing, which is what telemetry wants.

import { randomUUID } from 'node:crypto';
import { decodeEnvelope, encodeEnvelope } from '../protocol/envelope.ts';
import { connectRedis, type FennelRedis } from '../clients/redis/client.ts';
import { parseRedisUrl, type RedisUrl } from '../clients/redis/url.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import { deliverEvent, eventRoutingKey, parseEvents, payloadOf, senderOf, type EventBus, type FennelEvent } from './events.ts';

export const EVENT_EXCHANGE = 'celeryev';

/** `/<db>.celeryev/`: the channel prefix kombu's Redis transport gives the exchange on database `db`. */
export function eventChannelPrefix(db: number): string {
  return `/${db}.${EVENT_EXCHANGE}/`;
}

export class RedisEventBus implements EventBus {
  private readonly target: RedisUrl;
  private readonly connectTimeoutMs: number;
  private readonly publisher: FennelRedis;
  private subscriber: FennelRedis | undefined;
  private subscribing: Promise<void> | undefined;
  private readonly handlers = new Set<(event: FennelEvent) => void>();
  private readonly prefix: string;
  private closed = false;

  /** The URL with any password masked. */
  readonly url: string;

  constructor(url: string, options: { connectTimeoutMs?: number | undefined } = {}) {
    this.target = parseRedisUrl(url);
    this.url = this.target.safeUrl;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    // Reconnection is automatic and a lost event is only telemetry; the connection reports nothing (the
    // broker's own connection does), but a database the server lacks fails here too, never database 0.
    this.publisher = connectRedis(this.target, { connectTimeoutMs: this.connectTimeoutMs, connectionName: `fennel-events:${process.pid}` });
    this.prefix = eventChannelPrefix(this.target.db);
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
    const routingKey = eventRoutingKey(payload);
    let body: string;
    try {
      body = JSON.stringify(payload);
    } catch {
      return;
    }
    const hostname = senderOf(payload);
    const envelope = encodeEnvelope(
      {
        headers: { hostname },
        properties: { delivery_mode: 1, priority: 0, delivery_info: { exchange: EVENT_EXCHANGE, routing_key: routingKey }, delivery_tag: randomUUID() },
        body,
        contentType: 'application/json',
        contentEncoding: 'utf-8',
      },
      'base64',
    );
    this.publisher.publish(this.prefix + routingKey, envelope).catch(() => {});
  }

  async subscribe(handler: (event: FennelEvent) => void): Promise<() => Promise<void>> {
    this.handlers.add(handler);
    try {
      await (this.subscribing ??= this.openSubscriber());
    } catch (error) {
      this.handlers.delete(handler);
      throw error;
    }
    return async () => {
      this.handlers.delete(handler);
    };
  }

  /**
   * A connection in subscriber mode can do nothing else, so subscribers get their own; ioredis re-subscribes by
   * itself after a reconnect, but only to what was subscribed once: if the first PSUBSCRIBE fails (the server is
   * away for connectTimeoutMs), the connection is dropped, so the caller's next subscribe() starts again.
   */
  private async openSubscriber(): Promise<void> {
    const subscriber = connectRedis(this.target, { connectTimeoutMs: this.connectTimeoutMs, connectionName: `fennel-events-sub:${process.pid}` });
    subscriber.on('pmessage', (_pattern: string, _channel: string, raw: string) => this.dispatch(raw));
    this.subscriber = subscriber;
    try {
      await subscriber.psubscribe(`${this.prefix}*`);
    } catch (error) {
      subscriber.disconnect();
      if (this.subscriber === subscriber) this.subscriber = undefined;
      this.subscribing = undefined;
      throw error;
    }
  }

  /** Bad input from the channel (anyone can PUBLISH) is dropped, never thrown. */
  private dispatch(raw: string): void {
    const message = decodeEnvelope(raw);
    if (message.malformed) return;
    for (const event of parseEvents(message.body)) deliverEvent(this.handlers, event);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handlers.clear();
    this.subscriber?.disconnect();
    // QUIT waits for publishes already written (a worker's worker-offline) to be sent.
    await this.publisher.quit().catch(() => this.publisher.disconnect());
  }
}
