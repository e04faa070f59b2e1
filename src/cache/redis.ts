// redis://host:port/db — a cache in Redis (ioredis, through the clients layer's FennelRedis: the URL checked part by
// part, TLS with rediss://). Shared by every process that names the same database. Keys are written as given (the
// Cache has made them safe); values are strings with their own expiry (SET … EX).
// Every command is bounded by the cache's timeoutMs (ioredis's commandTimeout, which also bounds a command queued
// while the connection is down), so a Redis that is slow or away is a miss within the bound.

import { connectRedis, type FennelRedis } from '../clients/redis/client.ts';
import { parseRedisUrl } from '../clients/redis/url.ts';
import type { CacheEngine, CacheEngineOptions } from './engine.ts';

/** Keys deleted per round trip by deleteMany (SCAN's COUNT and UNLINK's batch). */
const SCAN_BATCH = 500;

export class RedisEngine implements CacheEngine {
  readonly kind = 'redis';
  readonly maxValueBytes = 512 * 1024 * 1024; // a Redis string's limit
  readonly local = false;
  readonly url: string;
  private readonly client: FennelRedis;

  /** `url` without the Cache's own parameters (timeoutMs), which the Redis parser would refuse. */
  constructor(url: string, options: CacheEngineOptions) {
    const parsed = parseRedisUrl(url);
    this.url = parsed.safeUrl;
    // A connection attempt gets at least a second (a TLS handshake across a network takes more than a cache
    // lookup should); a command waits no longer than timeoutMs either way.
    this.client = connectRedis(parsed, { connectTimeoutMs: Math.max(1000, options.timeoutMs), connectionName: 'fennel-cache' });
    this.client.options.commandTimeout = options.timeoutMs;
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.client.get(key)) ?? undefined;
  }

  async getMany(keys: readonly string[]): Promise<Array<string | undefined>> {
    if (keys.length === 0) return [];
    return (await this.client.mget(...keys)).map((value) => value ?? undefined);
  }

  async set(key: string, value: string, ttlSec: number): Promise<void> {
    if (ttlSec > 0) await this.client.set(key, value, 'PX', Math.round(ttlSec * 1000));
    else await this.client.set(key, value);
  }

  async add(key: string, value: string, ttlSec: number): Promise<boolean> {
    const reply = ttlSec > 0 ? await this.client.set(key, value, 'PX', Math.round(ttlSec * 1000), 'NX') : await this.client.set(key, value, 'NX');
    return reply === 'OK';
  }

  async delete(key: string): Promise<void> {
    await this.client.del(key);
  }

  /** SCAN for the prefix and UNLINK in batches: not atomic (a key written meanwhile may stay), never blocking the server. */
  async deleteMany(prefix: string): Promise<number> {
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    let cursor = '0';
    let deleted = 0;
    do {
      const [next, keys] = await this.client.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_BATCH);
      cursor = next;
      if (keys.length) deleted += await this.client.unlink(...keys);
    } while (cursor !== '0');
    return deleted;
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
