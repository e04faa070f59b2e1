// Which engine a cache URL names, and the parameters every engine's URL takes (the Cache's own, read here and
// taken out before the engine's parser sees the URL): `timeoutMs`.

import { ConfigError } from '../errors.ts';
import { maskUrl, schemeOf } from '../util/url.ts';
import type { CacheEngine, CacheEngineOptions } from './engine.ts';
import { parseRedisUrl } from '../clients/redis/url.ts';
import { LruEngine, parseLruUrl } from './lru.ts';
import { MemcachedEngine, parseMemcachedUrl } from './memcached.ts';
import { RedisEngine } from './redis.ts';

/** The URL without the Cache's own parameters, and their values. */
export function splitCacheUrl(url: string): { url: string; timeoutMs: number | undefined } {
  const q = url.indexOf('?');
  if (q < 0) return { url, timeoutMs: undefined };
  const query = new URLSearchParams(url.slice(q + 1));
  const raw = query.get('timeoutMs');
  if (raw === null) return { url, timeoutMs: undefined };
  const timeoutMs = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || !(timeoutMs > 0)) throw new ConfigError(`timeoutMs of ${maskUrl(url)} is '${raw}': use a positive number of milliseconds`);
  query.delete('timeoutMs');
  const rest = query.toString();
  return { url: `${url.slice(0, q)}${rest ? `?${rest}` : ''}`, timeoutMs };
}

export function createEngine(url: string, options: CacheEngineOptions): CacheEngine {
  switch (schemeOf(url)) {
    case 'lru':
      return new LruEngine(url);
    case 'redis':
    case 'rediss':
      return new RedisEngine(url, options);
    case 'memcached':
      return new MemcachedEngine(url, options);
    default:
      throw notACacheUrl(url);
  }
}

/** Checks a cache URL part by part, as its engine will read it, without connecting (the app's construction). */
export function checkCacheUrl(url: string): void {
  const { url: rest } = splitCacheUrl(url);
  switch (schemeOf(rest)) {
    case 'lru':
      parseLruUrl(rest);
      return;
    case 'redis':
    case 'rediss':
      parseRedisUrl(rest);
      return;
    case 'memcached':
      parseMemcachedUrl(rest);
      return;
    default:
      throw notACacheUrl(url);
  }
}

function notACacheUrl(url: string): ConfigError {
  return new ConfigError(`${JSON.stringify(maskUrl(url))} is not a cache URL: use lru://?max=10000, redis://host:6379/0 or memcached://host1:11211,host2:11211`);
}
