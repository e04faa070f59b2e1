// URL scheme → channel engine. Channels travel through the broker's own engine, so publishers and subscribers
// need nothing more than the broker URL: sqlite:// a table in the broker's file (sqlite.ts), redis:// pub/sub
// (redis.ts), amqp:// a fanout exchange per channel (amqp.ts), nats:// a core NATS subject per channel (nats.ts),
// memory:// the process itself (memory.ts).

import { ConfigError } from '../errors.ts';
import { maskUrl } from '../util/url.ts';
import { AmqpChannelEngine } from './amqp.ts';
import type { ChannelEngine } from './engine.ts';
import { MemoryChannelEngine } from './memory.ts';
import { NatsChannelEngine } from './nats.ts';
import { RedisChannelEngine } from './redis.ts';
import { SqliteChannelEngine } from './sqlite.ts';

export interface ChannelEngineOptions {
  /** sqlite://: how often subscribers look for new rows without a file-change wake-up (the app's pollIntervalMs). */
  pollIntervalMs?: number | undefined;
  /** How long a publish or subscribe waits for a broker that does not answer (the app's connectTimeoutMs). */
  connectTimeoutMs?: number | undefined;
}

// memory:// engines are shared within a process by URL, so a publisher and a subscriber on two apps meet.
const memory = new Map<string, MemoryChannelEngine>();

export function createChannelEngine(url: string, options: ChannelEngineOptions = {}): ChannelEngine {
  const { connectTimeoutMs } = options;
  switch (url.slice(0, Math.max(0, url.indexOf(':'))).toLowerCase()) {
    case 'sqlite':
      return new SqliteChannelEngine(url, options);
    case 'redis':
    case 'rediss':
      return new RedisChannelEngine(url, { connectTimeoutMs });
    case 'amqp':
    case 'amqps':
      return new AmqpChannelEngine(url, { connectTimeoutMs });
    case 'nats':
      return new NatsChannelEngine(url, { connectTimeoutMs });
    case 'memory': {
      let engine = memory.get(url);
      if (!engine) memory.set(url, (engine = new MemoryChannelEngine(url)));
      return engine;
    }
    default:
      throw new ConfigError(`no channel engine for ${maskUrl(url)}; channels use the broker's engine: sqlite://, redis://, rediss://, amqp://, amqps://, nats:// or memory://`);
  }
}
