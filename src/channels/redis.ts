// The redis:// channel engine: Redis pub/sub. A channel is the pub/sub channel `/<db>.fennel.channel/<name>`,
// kombu's fanout layout (exchange `fennel.channel`, the channel name as routing key, keyprefix_fanout `/{db}.`,
// as events/redis.ts does for Celery's events): pub/sub is server-wide, databases are not, so the database number
// in the name keeps apps on different databases of one server apart. The message is the value's JSON text as it
// is (no kombu envelope: there is no Celery counterpart to read it).
//
// Connections, each opened on first use: one for PUBLISH, and one in subscriber mode (it can do nothing else)
// shared by this engine's subscriptions. Redis delivers a channel once per connection, so each channel is
// SUBSCRIBEd once, when its first subscription begins, and UNSUBSCRIBEd when its last has ended; the engine hands
// each message to every subscription of the channel here. Both are commands on one connection, sent in call order,
// so an end and a new start of one channel always leave it subscribed. A subscription that joins a channel already
// subscribed starts after a PING on that connection: Redis answers it after every message it had already sent
// there, so the newcomer never receives one published before it began.
// At most once: the publishing connection never resends a PUBLISH that was in flight when a connection dropped
// (ioredis would, and the first may have been delivered); ioredis subscribes again by itself after a reconnect,
// and what was published meanwhile is lost to those subscribers.

import { connectRedis, FennelRedis } from '../clients/redis/client.ts';
import { parseRedisUrl, type RedisUrl } from '../clients/redis/url.ts';
import { asBrokerUnavailable } from '../errors.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import type { ChannelEngine } from './engine.ts';

export const CHANNEL_EXCHANGE = 'fennel.channel';

/** `/<db>.fennel.channel/<channel>`: the pub/sub channel of `channel` for apps on database `db`. */
export function redisChannelName(db: number, channel: string): string {
  return `/${db}.${CHANNEL_EXCHANGE}/${channel}`;
}

interface Subscribed {
  readonly listeners: Set<(payload: string) => void>;
  /** The SUBSCRIBE, answered once Redis delivers the channel to this connection. */
  readonly live: Promise<unknown>;
  /** Subscriptions holding the channel: its listeners, and those still joining (the UNSUBSCRIBE waits for none). */
  users: number;
}

export class RedisChannelEngine implements ChannelEngine {
  /** The URL with any password masked. */
  readonly url: string;
  private readonly target: RedisUrl;
  private readonly connectTimeoutMs: number;
  private publisher: FennelRedis | undefined;
  private subscriber: FennelRedis | undefined;
  /** By pub/sub channel name. */
  private readonly channels = new Map<string, Subscribed>();

  constructor(url: string, options: { connectTimeoutMs?: number | undefined } = {}) {
    this.target = parseRedisUrl(url);
    this.url = this.target.safeUrl;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }

  async publish(channel: string, payload: string): Promise<void> {
    this.publisher ??= new FennelRedis(
      { url: this.target, role: undefined, connectTimeoutMs: this.connectTimeoutMs, connectionName: `fennel-channels:${process.pid}` },
      { autoResendUnfulfilledCommands: false },
    );
    try {
      await this.publisher.publish(redisChannelName(this.target.db, channel), payload);
    } catch (error) {
      throw asBrokerUnavailable(this.url, error);
    }
  }

  async subscribe(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    const name = redisChannelName(this.target.db, channel);
    const connection = this.subscriberConnection();
    let subscribed = this.channels.get(name);
    const first = !subscribed;
    if (!subscribed) {
      subscribed = { listeners: new Set(), live: connection.subscribe(name), users: 0 };
      this.channels.set(name, subscribed);
    }
    const entry = subscribed;
    entry.users++;
    // A wrapper of its own: the same function subscribed twice is two subscriptions.
    const listener = (payload: string): void => onMessage(payload);
    try {
      if (first) entry.listeners.add(listener); // every message after the SUBSCRIBE is this subscription's
      await entry.live;
      if (!first) {
        await connection.ping(); // past what the connection had received before this subscription began
        entry.listeners.add(listener);
      }
    } catch (error) {
      entry.listeners.delete(listener);
      void this.release(name, entry);
      throw asBrokerUnavailable(this.url, error);
    }
    let ended = false;
    return async () => {
      if (ended) return;
      ended = true;
      entry.listeners.delete(listener);
      await this.release(name, entry);
    };
  }

  /** One subscription lets go of the channel; the last one unsubscribes it. */
  private async release(name: string, entry: Subscribed): Promise<void> {
    if (--entry.users > 0 || this.channels.get(name) !== entry) return;
    this.channels.delete(name);
    await this.subscriber?.unsubscribe(name).catch(() => {}); // a connection that is gone has no subscription
  }

  private subscriberConnection(): FennelRedis {
    if (!this.subscriber) {
      const subscriber = connectRedis(this.target, { connectTimeoutMs: this.connectTimeoutMs, connectionName: `fennel-channels-sub:${process.pid}` });
      subscriber.on('message', (name: string, payload: string) => {
        const subscribed = this.channels.get(name);
        if (subscribed) for (const listener of [...subscribed.listeners]) listener(payload);
      });
      this.subscriber = subscriber;
    }
    return this.subscriber;
  }

  /** How many subscriptions to `channel` this engine holds (Redis counts one per connection: PUBSUB NUMSUB). */
  subscriberCount(channel: string): number {
    return this.channels.get(redisChannelName(this.target.db, channel))?.listeners.size ?? 0;
  }

  async close(): Promise<void> {
    this.channels.clear();
    this.subscriber?.disconnect();
    // QUIT is sent after the PUBLISHes already written, so they go out before the connection closes.
    await this.publisher?.quit().catch(() => this.publisher?.disconnect());
  }
}

