// A Fennel WireMessage as an AMQP 0-9-1 message and back, the way kombu puts a Celery task on RabbitMQ
// (CELERY-WIRE.md 2.3, A.2): the body is the raw UTF-8 JSON (no envelope, no base64), the protocol headers
// are `application_headers`, and the kombu properties are AMQP basic properties. `delivery_info` is not sent:
// the receiver reads it from where the broker actually routed the message.

import type { ConsumeMessage, Options } from 'amqplib';
import { amqpTable } from '../../clients/amqp/table.ts';
import type { WireMessage, WireProperties } from '../../protocol/message.ts';

/** The headers RabbitMQ adds when it dead-letters a message (the delay levels do, once per hop). */
const DEATH_HEADERS = /^x-(death|first-death-.*|last-death-.*)$/;
/**
 * Set by quorum queues on a message handed out again. The delivery's `redelivered` flag says the same, and
 * the headers a worker sees stay the ones the producer wrote.
 */
const DELIVERY_COUNT = 'x-delivery-count';

/** kombu's snake_case property names ↔ amqplib's camelCase ones; anything else is not an AMQP property. */
const PROPERTY_NAMES = [
  ['correlation_id', 'correlationId'],
  ['reply_to', 'replyTo'],
  ['delivery_mode', 'deliveryMode'],
  ['priority', 'priority'],
  ['expiration', 'expiration'],
  ['message_id', 'messageId'],
  ['timestamp', 'timestamp'],
  ['type', 'type'],
  ['user_id', 'userId'],
  ['app_id', 'appId'],
] as const;

export interface Outgoing {
  content: Buffer;
  options: Options.Publish;
}

/**
 * The publish of a message. `delayed` drops the per-message `expiration`: in a delay queue it would let the
 * message leave its level early (RabbitMQ dead-letters an expired message onward), so a delayed task's
 * expiry is left to the `expires` header, which every worker (Celery's and Fennel's) checks anyway.
 */
export function toAmqp(message: WireMessage, opts: { priority?: number | undefined; delayed?: boolean } = {}): Outgoing {
  const props = message.properties;
  const options: Options.Publish = {
    contentType: message.contentType,
    contentEncoding: message.contentEncoding,
    // Integers as py-amqp reads them (clients/amqp/table.ts): a Celery worker reads these headers too.
    headers: amqpTable(message.headers),
    deliveryMode: typeof props.delivery_mode === 'number' ? props.delivery_mode : 2,
  };
  const target = options as Record<string, unknown>;
  for (const [snake, camel] of PROPERTY_NAMES) {
    const value = props[snake];
    if (snake === 'delivery_mode' || value === undefined || value === null) continue;
    if (snake === 'expiration' && opts.delayed) continue;
    target[camel] = snake === 'expiration' && typeof value === 'number' ? String(value) : value;
  }
  if (opts.priority !== undefined) options.priority = opts.priority;
  return { content: Buffer.from(message.body, 'utf8'), options };
}

/**
 * The WireMessage of a delivery. Never throws: what cannot be read is marked `malformed`, so the worker
 * dead-letters it with the reason instead of crashing. `queue` is the queue it was consumed from;
 * `viaDelay` says it came out of the delay levels, whose exchange and routing key are Fennel's own.
 */
export function fromAmqp(msg: ConsumeMessage, queue: string, viaDelay: boolean): WireMessage {
  const p = msg.properties;
  const properties: WireProperties = {};
  const source = p as unknown as Record<string, unknown>;
  for (const [snake, camel] of PROPERTY_NAMES) {
    const value = source[camel];
    if (value !== undefined && value !== null) (properties as Record<string, unknown>)[snake] = value;
  }
  properties.delivery_info = viaDelay ? { exchange: '', routing_key: queue } : { exchange: msg.fields.exchange, routing_key: msg.fields.routingKey };
  const rawHeaders: unknown = p.headers;
  let headers: Record<string, unknown> = {};
  let malformed: string | undefined;
  if (rawHeaders !== undefined && rawHeaders !== null) {
    if (typeof rawHeaders === 'object' && !Array.isArray(rawHeaders)) headers = { ...(rawHeaders as Record<string, unknown>) };
    else malformed = 'application_headers is not a table';
  }
  if (viaDelay) for (const key of Object.keys(headers)) if (DEATH_HEADERS.test(key)) delete headers[key];
  delete headers[DELIVERY_COUNT];
  const message: WireMessage = {
    headers,
    properties,
    body: msg.content.toString('utf8'),
    contentType: typeof p.contentType === 'string' ? p.contentType : 'application/octet-stream',
    contentEncoding: typeof p.contentEncoding === 'string' ? p.contentEncoding : 'binary',
  };
  if (malformed) message.malformed = malformed;
  return message;
}
