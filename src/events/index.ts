// URL scheme → event bus. Events travel through the broker's own engine, so a monitor needs nothing more
// than the broker URL: sqlite:// a table in the broker's file (sqlite.ts), redis:// Celery's event channels
// (redis.ts), amqp:// Celery's `celeryev` exchange (amqp.ts), nats:// core NATS subjects `<prefix>.events.<type>`
// (nats.ts), memory:// the process itself (local.ts).

import { AmqpEventBus } from './amqp.ts';
import type { EventBus } from './events.ts';
import { LocalEventBus } from './local.ts';
import { NatsEventBus } from './nats.ts';
import { RedisEventBus } from './redis.ts';
import { SqliteEventBus } from './sqlite.ts';

const local = new Map<string, LocalEventBus>();

export function createEventBus(url: string, options: { pollIntervalMs?: number; connectTimeoutMs?: number } = {}): EventBus {
  const { connectTimeoutMs } = options;
  switch (url.slice(0, url.indexOf(':')).toLowerCase()) {
    case 'sqlite':
      return new SqliteEventBus(url, options.pollIntervalMs !== undefined ? { pollIntervalMs: options.pollIntervalMs } : {});
    case 'redis':
    case 'rediss':
      return new RedisEventBus(url, { connectTimeoutMs });
    case 'amqp':
    case 'amqps':
      return new AmqpEventBus(url, { connectTimeoutMs });
    case 'nats':
      return new NatsEventBus(url, { connectTimeoutMs });
    default: {
      // memory:// (and any engine without a cross-process bus yet): events stay in the process that sent them.
      let bus = local.get(url);
      if (!bus) local.set(url, (bus = new LocalEventBus()));
      return bus;
    }
  }
}
