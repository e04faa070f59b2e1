// URL scheme → transport engine. The only place above the engines that names them.

import type { ReplyRoutes } from '../clients/amqp/replies.ts';
import { checkEngineUrl } from '../clients/urls.ts';
import { ConfigError } from '../errors.ts';
import { maskUrl, notAUrl, schemeOf as urlScheme } from '../util/url.ts';
import { AmqpTransport } from './amqp.ts';
import { MemoryTransport } from './memory.ts';
import { NatsTransport } from './nats.ts';
import { RedisTransport } from './redis.ts';
import { SqliteTransport } from './sqlite.ts';
import type { Transport } from './transport.ts';

export interface TransportOptions {
  visibilityTimeoutSec: number;
  pollIntervalMs: number;
  /** The app's result backend URL: with rpc://, the AMQP transport declares each task's reply queue before publishing it. */
  backend?: string;
  resultExpiresSec?: number;
  /** How long a call waits for a broker that does not answer before it fails with BrokerUnavailableError. */
  connectTimeoutMs?: number;
  /** Shared with the app's rpc:// backend (clients/amqp/replies.ts). */
  replies?: ReplyRoutes;
}

export const TRANSPORT_SCHEMES = ['sqlite', 'redis', 'rediss', 'amqp', 'amqps', 'memory', 'nats'] as const;

// memory:// engines are shared within a process by URL, so an app's producer and an in-process worker meet.
const memory = new Map<string, MemoryTransport>();

export function schemeOf(url: string): string {
  return url.slice(0, url.indexOf(':')).toLowerCase();
}

function unknownScheme(url: string): ConfigError {
  const scheme = urlScheme(url);
  if (!scheme) return notAUrl(url);
  const known = TRANSPORT_SCHEMES.map((s) => `${s}://`).join(', ');
  // A scheme that is only a result backend's is named as such: the URL is in the wrong setting.
  const hint = scheme === 'rpc' ? ' (rpc:// is a result backend, not a broker)' : '';
  return new ConfigError(`no transport for ${maskUrl(url)}${hint}; a broker URL starts with one of ${known}`);
}

/**
 * Checks every part of a broker URL (scheme, host, port, path, query) with the parser its engine uses, and
 * throws the ConfigError that engine would: at an app's construction, before any connection is tried.
 */
export function checkBrokerUrl(url: string): void {
  if (!checkEngineUrl(url, urlScheme(url))) throw unknownScheme(url);
}

export function createTransport(url: string, options: TransportOptions): Transport {
  const { connectTimeoutMs } = options;
  switch (schemeOf(url)) {
    case 'sqlite':
      return new SqliteTransport(url, options);
    case 'redis':
    case 'rediss':
      return new RedisTransport(url, options);
    case 'amqp':
    case 'amqps':
      // RabbitMQ tracks deliveries per connection and hands back those of a dead one at once: no
      // visibility timeout or polling to configure.
      return new AmqpTransport(url, {
        // rpc://, or the broker's own URL (an app with no backend of its own): results go back by rpc.
        rpcResults: options.backend !== undefined && ['rpc', 'amqp', 'amqps'].includes(schemeOf(options.backend)),
        ...(options.resultExpiresSec !== undefined ? { resultExpiresSec: options.resultExpiresSec } : {}),
        ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
        ...(options.replies ? { replies: options.replies } : {}),
      });
    case 'nats':
      // JetStream: one stream for every queue, a durable consumer per queue; the ack wait is the visibility timeout.
      return new NatsTransport(url, options);
    case 'memory': {
      let t = memory.get(url);
      if (!t) memory.set(url, (t = new MemoryTransport(url)));
      return t;
    }
    default:
      throw unknownScheme(url);
  }
}
