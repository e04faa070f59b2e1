// Reads a redis:// or rediss:// URL once, for every Redis connection Fennel opens (transport, its blocking
// connection, result backend, event bus, subscribers):
//   redis://[[user]:password@]host[:port][/db]        rediss:// is the same over TLS
// Each part is checked here, so a typo is a ConfigError at construction rather than a default taken in
// silence: ioredis reads an unparsable port as 6379 and any query parameter as a client option, and a
// database number the server does not have (its `databases`, 16 by default) fails only at connect time,
// which clients/redis/client.ts turns into a ConfigError too.

import { ConfigError } from '../../errors.ts';
import { checkQuery, splitUrl } from '../../util/url.ts';

export interface RedisUrl {
  tls: boolean;
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  /** The URL with its password masked, for messages and logs. */
  safeUrl: string;
}

const REDIS_DEFAULT_PORT = 6379;

export function parseRedisUrl(url: string): RedisUrl {
  const parts = splitUrl(url);
  if (parts.scheme !== 'redis' && parts.scheme !== 'rediss') throw new ConfigError(`${parts.masked} is not a Redis URL: it starts with redis:// or rediss://`);
  const path = parts.path.replace(/^\//, '');
  // The database is the whole path, as in redis-py and kombu: one number.
  if (path !== '' && !/^\d{1,9}$/.test(path)) {
    throw new ConfigError(`the database '${path}' of ${parts.masked} is not a database number: end the URL with /0, /1, … (a default server has 16, 0 to 15)`);
  }
  checkQuery(parts, []);
  return {
    tls: parts.scheme === 'rediss',
    host: parts.host || 'localhost',
    port: parts.port ?? REDIS_DEFAULT_PORT,
    db: path === '' ? 0 : Number(path),
    username: parts.username || undefined,
    password: parts.password || undefined,
    safeUrl: parts.masked,
  };
}
