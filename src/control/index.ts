// URL scheme → remote-control mailbox engine. Control travels through the broker's own engine, in kombu's pidbox
// layout where Celery has one (redis://, amqp://: Celery's workers and clients take part), on core NATS subjects
// `<prefix>.pidbox.…` on nats:// (nats.ts: Celery has no NATS transport), over the broker file's
// channel table on sqlite://, and within the process on memory:// (both over the channel engines: Celery has no
// layout to follow there, and a channel's promises are the mailbox's, channel.ts).

import { createChannelEngine, type ChannelEngineOptions } from '../channels/index.ts';
import { ConfigError } from '../errors.ts';
import { maskUrl } from '../util/url.ts';
import { AmqpMailboxEngine } from './amqp.ts';
import { ChannelMailboxEngine } from './channel.ts';
import type { MailboxEngine } from './mailbox.ts';
import { NatsMailboxEngine } from './nats.ts';
import { RedisMailboxEngine } from './redis.ts';

/** The channels' options: sqlite://'s mailbox is a channel (pollIntervalMs), and every engine has a connect timeout. */
export type MailboxEngineOptions = ChannelEngineOptions;

export function createMailboxEngine(url: string, options: MailboxEngineOptions = {}): MailboxEngine {
  const { connectTimeoutMs } = options;
  switch (url.slice(0, Math.max(0, url.indexOf(':'))).toLowerCase()) {
    case 'sqlite':
    // memory://'s channel engine is shared by URL within the process, so a client and a worker on two apps meet.
    case 'memory':
      return new ChannelMailboxEngine(createChannelEngine(url, options));
    case 'redis':
    case 'rediss':
      return new RedisMailboxEngine(url, { connectTimeoutMs });
    case 'amqp':
    case 'amqps':
      return new AmqpMailboxEngine(url, { connectTimeoutMs });
    case 'nats':
      return new NatsMailboxEngine(url, { connectTimeoutMs });
    default:
      throw new ConfigError(`no remote-control engine for ${maskUrl(url)}; control uses the broker's engine: sqlite://, redis://, rediss://, amqp://, amqps://, nats:// or memory://`);
  }
}
