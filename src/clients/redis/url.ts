// Reads a redis:// or rediss:// URL once, for every Redis connection Fennel opens (transport, its blocking
// connection, result backend, event bus, subscribers):
//   redis://[[user]:password@]host[:port][/db]        rediss:// is the same over TLS, and takes redis-py's (and
//   so Celery's) TLS parameters: ?ssl_ca_certs=<CA file>&ssl_certfile=<client cert>&ssl_keyfile=<client key>
//   &ssl_cert_reqs=required|optional|none (CERT_REQUIRED… too). The files are read here: a missing one is a
//   ConfigError at construction, not a failed handshake later.
// Each part is checked here, so a typo is a ConfigError at construction rather than a default taken in
// silence: ioredis reads an unparsable port as 6379 and any query parameter as a client option, and a
// database number the server does not have (its `databases`, 16 by default) fails only at connect time,
// which clients/redis/client.ts turns into a ConfigError too.

import { readFileSync } from 'node:fs';
import { ConfigError } from '../../errors.ts';
import { checkQuery, splitUrl } from '../../util/url.ts';

/** Node's TLS options for a rediss:// URL: the server's CA, a client certificate, whether to verify the server. */
export interface RedisTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
}

export interface RedisUrl {
  tls: boolean;
  /** rediss:// only: what the URL's ssl_* parameters ask for. */
  tlsOptions?: RedisTls;
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
  const tls = parts.scheme === 'rediss';
  checkQuery(parts, tls ? TLS_PARAMETERS : [], 'docs/transports.md#tls');
  return {
    tls,
    ...(tls ? { tlsOptions: tlsOptions(parts.query, parts.masked) } : {}),
    host: parts.host || 'localhost',
    port: parts.port ?? REDIS_DEFAULT_PORT,
    db: path === '' ? 0 : Number(path),
    username: parts.username || undefined,
    password: parts.password || undefined,
    safeUrl: parts.masked,
  };
}

const TLS_PARAMETERS = ['ssl_ca_certs', 'ssl_certfile', 'ssl_keyfile', 'ssl_cert_reqs'];

/** ssl_cert_reqs as redis-py spells it: whether the server's certificate must verify (a client's CERT_OPTIONAL verifies too, as Python's does). */
const CERT_REQS: Record<string, boolean> = { required: true, cert_required: true, optional: true, cert_optional: true, none: false, cert_none: false };

function tlsOptions(query: URLSearchParams, masked: string): RedisTls {
  const file = (name: string): Buffer | undefined => {
    const path = query.get(name);
    if (path === null) return undefined;
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ConfigError(`${name} of ${masked}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, { cause: error });
    }
  };
  const reqs = query.get('ssl_cert_reqs');
  if (reqs !== null && !(reqs.toLowerCase() in CERT_REQS)) throw new ConfigError(`ssl_cert_reqs of ${masked} is '${reqs}': use required, optional or none`);
  const cert = file('ssl_certfile');
  const key = file('ssl_keyfile');
  if ((cert === undefined) !== (key === undefined)) throw new ConfigError(`${masked}: a client certificate needs both ssl_certfile and ssl_keyfile`);
  const ca = file('ssl_ca_certs');
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), rejectUnauthorized: reqs === null ? true : CERT_REQS[reqs.toLowerCase()]! };
}
