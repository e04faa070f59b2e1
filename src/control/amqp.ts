// The amqp:// mailbox engine, in kombu's pidbox layout on RabbitMQ (docs/pidbox-wire.md §1–§5), so that
// `celery inspect` reaches Fennel's workers and Fennel's client reaches Celery's:
//   - requests: the fanout exchange `celery.pidbox`; each worker consumes its own queue `<node>.celery.pidbox`
//     bound to it (noAck; auto-deleted, `x-message-ttl` 300 s and `x-expires` 10 s as Celery's, and exclusive, as
//     Celery 5.7 declares it for RabbitMQ 4.3), so a restarted worker starts empty;
//   - replies: the direct exchange `reply.celery.pidbox`, routed by the client's oid to its queue
//     `<oid>.reply.celery.pidbox`, declared like a worker's; a reply nobody's queue is bound for is dropped by
//     RabbitMQ;
//   - both exchanges transient and not auto-deleted, exactly as kombu declares them: any other flags are refused
//     by RabbitMQ (406) and close the channel. The body is the JSON as it is (no kombu envelope on AMQP).
// One channel per engine, with publisher confirms: broadcast() and reply() resolve once RabbitMQ has routed the
// message. Control is at most once: a channel lost meanwhile is opened again on the next call, nothing is resent.

import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { AmqpConnection } from '../clients/amqp/connection.ts';
import { amqpTable } from '../clients/amqp/table.ts';
import { parseAmqpUrl } from '../clients/amqp/url.ts';
import { asBrokerUnavailable } from '../errors.ts';
import { ReplyBuffer, type IncomingRequest, type MailboxEngine, type ReplyInbox } from './mailbox.ts';
import { CONTROL_EXCHANGE, mailboxQueue, REPLY_EXCHANGE, replyQueue, type ControlHeaders, type ControlRequest, type ReplyTo } from './protocol.ts';

const EXCHANGE_OPTIONS = { durable: false, autoDelete: false } as const;
/** Celery's control_queue_ttl and control_queue_expires (ms). */
const QUEUE_OPTIONS = { durable: false, autoDelete: true, exclusive: true, arguments: { 'x-message-ttl': 300_000, 'x-expires': 10_000 } } as const;
const PROPERTIES = { contentType: 'application/json', contentEncoding: 'utf-8', priority: 0 } as const;

function decode(message: ConsumeMessage): { body: unknown; headers: Record<string, unknown> } | { undecodable: string } {
  try {
    return { body: JSON.parse(message.content.toString('utf8')) as unknown, headers: (message.properties.headers ?? {}) };
  } catch (error) {
    return { undecodable: `not JSON: ${(error as Error).message}` };
  }
}

export class AmqpMailboxEngine implements MailboxEngine {
  readonly url: string;
  private readonly connection: AmqpConnection;
  private channelPromise: Promise<ConfirmChannel> | undefined;
  private readonly ends = new Set<() => Promise<void>>();

  constructor(url: string, options: { connectTimeoutMs?: number | undefined } = {}) {
    const config = parseAmqpUrl(url);
    this.url = config.safeUrl;
    this.connection = new AmqpConnection(config.connectUrl, config.safeUrl, { connectTimeoutMs: options.connectTimeoutMs });
  }

  /** The engine's channel, with both exchanges declared on it; opened again after it closes. */
  private channel(): Promise<ConfirmChannel> {
    if (this.channelPromise) return this.channelPromise;
    const forget = (): void => {
      if (this.channelPromise === opened) this.channelPromise = undefined;
    };
    const opened = (async () => {
      const session = await this.connection.session();
      const channel = await session.model.createConfirmChannel();
      channel.on('error', () => {});
      channel.on('close', forget);
      await channel.assertExchange(CONTROL_EXCHANGE, 'fanout', EXCHANGE_OPTIONS);
      await channel.assertExchange(REPLY_EXCHANGE, 'direct', EXCHANGE_OPTIONS);
      return channel;
    })();
    opened.catch(forget);
    this.channelPromise = opened;
    return opened;
  }

  /** Declares `queue` bound to `exchange` with `routingKey`, consumes it with noAck; resolves with how to stop. */
  private async consume(queue: string, exchange: string, routingKey: string, onMessage: (message: ConsumeMessage) => void): Promise<() => Promise<void>> {
    const channel = await this.channel();
    await channel.assertQueue(queue, QUEUE_OPTIONS);
    await channel.bindQueue(queue, exchange, routingKey);
    const { consumerTag } = await channel.consume(queue, (message) => message && onMessage(message), { noAck: true });
    let ended = false;
    const end = async (): Promise<void> => {
      if (ended) return;
      ended = true;
      this.ends.delete(end);
      await channel.cancel(consumerTag).catch(() => {});
      await channel.deleteQueue(queue).catch(() => {});
    };
    this.ends.add(end);
    return end;
  }

  async listen(node: string, onRequest: (request: IncomingRequest) => void): Promise<() => Promise<void>> {
    try {
      return await this.consume(mailboxQueue(node), CONTROL_EXCHANGE, '', (message) => {
        const decoded = decode(message);
        onRequest('undecodable' in decoded ? { body: undefined, headers: {}, undecodable: decoded.undecodable } : decoded);
      });
    } catch (error) {
      throw asBrokerUnavailable(this.url, error);
    }
  }

  private async publish(exchange: string, routingKey: string, body: unknown, headers: Record<string, unknown>, deliveryMode: 1 | 2): Promise<void> {
    try {
      const channel = await this.channel();
      await new Promise<void>((resolve, reject) => {
        // The clock passes 127 soon: typed so that py-amqp reads an integer (clients/amqp/table.ts).
        channel.publish(exchange, routingKey, Buffer.from(JSON.stringify(body), 'utf8'), { ...PROPERTIES, deliveryMode, headers: amqpTable(headers) }, (error) => (error ? reject(error as Error) : resolve()));
      });
    } catch (error) {
      throw asBrokerUnavailable(this.url, error);
    }
  }

  broadcast(request: ControlRequest, headers: ControlHeaders): Promise<void> {
    return this.publish(CONTROL_EXCHANGE, '', request, { ...headers }, 2);
  }

  reply(replyTo: ReplyTo, body: Record<string, unknown>, headers: Record<string, unknown>): Promise<void> {
    return this.publish(replyTo.exchange, replyTo.routing_key, body, headers, 1);
  }

  async openReplies(oid: string): Promise<ReplyInbox> {
    const inbox = new ReplyBuffer();
    let stop: () => Promise<void>;
    try {
      stop = await this.consume(replyQueue(oid), REPLY_EXCHANGE, oid, (message) => {
        const decoded = decode(message);
        inbox.push('undecodable' in decoded ? { body: undefined, headers: {} } : decoded);
      });
    } catch (error) {
      throw asBrokerUnavailable(this.url, error);
    }
    return {
      next: (idleMs) => inbox.next(idleMs),
      close: async () => {
        await stop();
        inbox.release();
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.ends].map((end) => end()));
    await this.connection.close();
  }
}

