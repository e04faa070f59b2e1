// URL scheme → transport engine. The only place above the engines that names them.

import { ConfigError } from '../errors.ts';
import { AmqpTransport } from './amqp.ts';
import { MemoryTransport } from './memory.ts';
import { RedisTransport } from './redis.ts';
import { SqliteTransport } from './sqlite.ts';
import type { Transport } from './transport.ts';

export interface TransportOptions {
  visibilityTimeoutSec: number;
  pollIntervalMs: number;
  /** The app's result backend URL: with rpc://, the AMQP transport declares each task's reply queue before publishing it. */
  backend?: string;
  resultExpiresSec?: number;
}

export const TRANSPORT_SCHEMES = ['sqlite', 'redis', 'rediss', 'amqp', 'amqps', 'memory'] as const;

// memory:// engines are shared within a process by URL, so an app's producer and an in-process worker meet.
const memory = new Map<string, MemoryTransport>();

export function schemeOf(url: string): string {
  return url.slice(0, url.indexOf(':')).toLowerCase();
}

export function createTransport(url: string, options: TransportOptions): Transport {
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
      });
    case 'memory': {
      let t = memory.get(url);
      if (!t) memory.set(url, (t = new MemoryTransport(url)));
      return t;
    }
    default:
      throw new ConfigError(`no transport for ${url}; known schemes: ${TRANSPORT_SCHEMES.map((s) => `${s}://`).join(', ')}`);
  }
}
