// The URL check every engine's URL gets at an app's construction, written once for brokers and result backends:
// the parser its engine uses reads every part (host, port, path, query) and throws the ConfigError that engine
// would, before any connection is tried.

import { parseAmqpUrl } from './amqp/url.ts';
import { parseNatsUrl } from './nats/url.ts';
import { parseRedisUrl } from './redis/url.ts';
import { sqlitePath } from './sqlite-file.ts';

/** Checks `url` if its scheme is one of the engines' (sqlite, redis, amqp, nats, memory); false for any other scheme. */
export function checkEngineUrl(url: string, scheme: string): boolean {
  switch (scheme) {
    case 'sqlite':
      sqlitePath(url);
      return true;
    case 'redis':
    case 'rediss':
      parseRedisUrl(url);
      return true;
    case 'amqp':
    case 'amqps':
      parseAmqpUrl(url);
      return true;
    case 'nats':
      parseNatsUrl(url);
      return true;
    case 'memory':
      return true; // any suffix names an instance
    default:
      return false;
  }
}
