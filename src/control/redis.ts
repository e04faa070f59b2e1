// The redis:// mailbox engine, in kombu's layout for Celery's pidbox (docs/pidbox-wire.md §1–§5), so that
// `celery inspect` reaches Fennel's workers and Fennel's client reaches Celery's:
//   - a request is a kombu envelope (body base64 JSON) PUBLISHed on `/<db>.celery.pidbox` (the fanout exchange's
//     pub/sub channel; routing key '', so no suffix); a worker SUBSCRIBEs to it and announces its mailbox queue
//     in `_kombu.binding.celery.pidbox` (member `\x06\x16\x06\x16<node>.celery.pidbox`), as Celery's do;
//   - a reply is an envelope LPUSHed to each queue that `_kombu.binding.reply.celery.pidbox` binds to the client's
//     oid (a client adds `<oid>\x06\x16\x06\x16<oid>.reply.celery.pidbox` before it broadcasts, and removes it and
//     its list when done): pushing to a queue nobody bound would leave a list behind for ever;
//   - a reply carries a delivery_tag and a base64 body: Celery's client crashes on one without.
// Connections, each opened on first use: one for commands, one in subscriber mode for the listeners, and one per
// open reply queue (BRPOP blocks its connection).

import { randomUUID } from 'node:crypto';
import { connectRedis, type FennelRedis } from '../clients/redis/client.ts';
import { parseRedisUrl, type RedisUrl } from '../clients/redis/url.ts';
import { asBrokerUnavailable } from '../errors.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import type { IncomingRequest, MailboxEngine, ReplyInbox } from './mailbox.ts';
import { CONTROL_EXCHANGE, mailboxQueue, REPLY_EXCHANGE, replyQueue, type ControlHeaders, type ControlRequest, type ReplyTo } from './protocol.ts';

/** kombu's separator in binding members: `<routing key>SEP<pattern>SEP<queue>`. */
const SEP = '\x06\x16';
const bindingKey = (exchange: string): string => `_kombu.binding.${exchange}`;

/** A kombu envelope of a JSON body, base64-encoded as kombu's Redis transport writes it. */
function envelope(body: unknown, headers: Record<string, unknown>, deliveryMode: 1 | 2, exchange: string, routingKey: string): string {
  return JSON.stringify({
    body: Buffer.from(JSON.stringify(body)).toString('base64'),
    'content-encoding': 'utf-8',
    'content-type': 'application/json',
    headers,
    properties: { delivery_mode: deliveryMode, delivery_info: { exchange, routing_key: routingKey }, priority: 0, body_encoding: 'base64', delivery_tag: randomUUID() },
  });
}

/** The body and headers of an envelope; an envelope that does not decode says why. */
function openEnvelope(raw: string): { body: unknown; headers: Record<string, unknown> } | { undecodable: string } {
  try {
    const parsed = JSON.parse(raw) as { body?: unknown; headers?: unknown; properties?: { body_encoding?: unknown } };
    if (typeof parsed.body !== 'string') return { undecodable: 'the envelope has no body' };
    const text = parsed.properties?.body_encoding === 'base64' ? Buffer.from(parsed.body, 'base64').toString('utf8') : parsed.body;
    const headers = parsed.headers !== null && typeof parsed.headers === 'object' ? (parsed.headers as Record<string, unknown>) : {};
    return { body: JSON.parse(text) as unknown, headers };
  } catch (error) {
    return { undecodable: `not a kombu envelope of JSON: ${(error as Error).message}` };
  }
}

export class RedisMailboxEngine implements MailboxEngine {
  readonly url: string;
  private readonly target: RedisUrl;
  private readonly connectTimeoutMs: number;
  private commands: FennelRedis | undefined;
  private subscriber: FennelRedis | undefined;
  private readonly listeners = new Set<(request: IncomingRequest) => void>();
  private readonly inboxes = new Set<ReplyInbox>();
  /** `/<db>.celery.pidbox`: pub/sub is server-wide, so the channel names the database. */
  private readonly channel: string;

  constructor(url: string, options: { connectTimeoutMs?: number | undefined } = {}) {
    this.target = parseRedisUrl(url);
    this.url = this.target.safeUrl;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.channel = `/${this.target.db}.${CONTROL_EXCHANGE}`;
  }

  private connection(name: string): FennelRedis {
    return connectRedis(this.target, { connectTimeoutMs: this.connectTimeoutMs, connectionName: `fennel-control-${name}:${process.pid}` });
  }

  private get client(): FennelRedis {
    return (this.commands ??= this.connection('cmd'));
  }

  async listen(node: string, onRequest: (request: IncomingRequest) => void): Promise<() => Promise<void>> {
    const listener = (request: IncomingRequest): void => onRequest(request);
    const member = `${SEP}${SEP}${mailboxQueue(node)}`;
    try {
      if (!this.subscriber) {
        const subscriber = this.connection('sub');
        subscriber.on('message', (channel: string, raw: string) => {
          if (channel !== this.channel) return;
          const opened = openEnvelope(raw);
          const request: IncomingRequest = 'undecodable' in opened ? { body: undefined, headers: {}, undecodable: opened.undecodable } : opened;
          for (const l of [...this.listeners]) l(request);
        });
        this.subscriber = subscriber;
      }
      this.listeners.add(listener);
      await this.subscriber.subscribe(this.channel);
      await this.client.sadd(bindingKey(CONTROL_EXCHANGE), member);
    } catch (error) {
      this.listeners.delete(listener);
      throw asBrokerUnavailable(this.url, error);
    }
    return async () => {
      this.listeners.delete(listener);
      await this.client.srem(bindingKey(CONTROL_EXCHANGE), member).catch(() => {});
      if (this.listeners.size === 0) await this.subscriber?.unsubscribe(this.channel).catch(() => {});
    };
  }

  async broadcast(request: ControlRequest, headers: ControlHeaders): Promise<void> {
    try {
      await this.client.publish(this.channel, envelope(request, { ...headers }, 2, CONTROL_EXCHANGE, ''));
    } catch (error) {
      throw asBrokerUnavailable(this.url, error);
    }
  }

  async reply(replyTo: ReplyTo, body: Record<string, unknown>, headers: Record<string, unknown>): Promise<void> {
    try {
      // Only the queues bound to the client's oid now: a client that has gone has removed its binding.
      const members = await this.client.smembers(bindingKey(replyTo.exchange));
      const queues = members.map((m) => m.split(SEP)).filter(([key, , queue]) => key === replyTo.routing_key && queue).map(([, , queue]) => queue!);
      if (queues.length === 0) return;
      const multi = this.client.multi();
      for (const queue of queues) multi.lpush(queue, envelope(body, headers, 1, replyTo.exchange, replyTo.routing_key));
      await multi.exec();
    } catch (error) {
      throw asBrokerUnavailable(this.url, error);
    }
  }

  async openReplies(oid: string): Promise<ReplyInbox> {
    const queue = replyQueue(oid);
    const member = `${oid}${SEP}${SEP}${queue}`;
    const reader = this.connection('reply');
    try {
      await this.client.sadd(bindingKey(REPLY_EXCHANGE), member);
    } catch (error) {
      reader.disconnect();
      throw asBrokerUnavailable(this.url, error);
    }
    let closed = false;
    const inbox: ReplyInbox = {
      next: async (idleMs) => {
        if (closed) return undefined;
        // BRPOP takes seconds (decimals since Redis 6); 0 would block for ever.
        const popped = await reader.brpop(queue, Math.max(0.01, idleMs / 1000)).catch((error: unknown) => {
          if (closed) return null;
          throw asBrokerUnavailable(this.url, error);
        });
        if (!popped) return undefined;
        const opened = openEnvelope(popped[1]);
        return 'undecodable' in opened ? { body: undefined, headers: {} } : opened;
      },
      close: async () => {
        if (closed) return;
        closed = true;
        this.inboxes.delete(inbox);
        await this.client.multi().srem(bindingKey(REPLY_EXCHANGE), member).del(queue).exec().catch(() => {});
        reader.disconnect();
      },
    };
    this.inboxes.add(inbox);
    return inbox;
  }

  async close(): Promise<void> {
    await Promise.all([...this.inboxes].map((inbox) => inbox.close()));
    this.listeners.clear();
    this.subscriber?.disconnect();
    await this.commands?.quit().catch(() => this.commands?.disconnect());
  }
}

