// lru://?max=10000&maxBytes=67108864 — a cache in this process's memory (lru-cache): bounded by entries and by
// bytes, least recently used evicted first, each entry with its own time to live. Nothing is shared: another
// process (a worker, another web server) has its own. It answers synchronously; the Cache awaits it all the same.

import { LRUCache } from 'lru-cache';
import { ConfigError } from '../errors.ts';
import { checkQuery, splitUrl } from '../util/url.ts';
import type { CacheEngine } from './engine.ts';

/** Entries kept at most, unless the URL says otherwise. */
export const LRU_DEFAULT_MAX = 10_000;
/** Bytes kept at most (keys and values, as UTF-16 code units × 2), unless the URL says otherwise: 64 MiB. */
export const LRU_DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

export interface LruUrl {
  max: number;
  maxBytes: number;
}

/** Reads `lru://[name]?max=N&maxBytes=N`; the name is only a label (every Cache has a store of its own). */
export function parseLruUrl(url: string): LruUrl {
  const parts = splitUrl(url);
  if (parts.scheme !== 'lru') throw new ConfigError(`${parts.masked} is not an lru:// URL`);
  checkQuery(parts, ['max', 'maxBytes'], 'docs/cache.md');
  const count = (name: string, fallback: number): number => {
    const text = parts.query.get(name);
    if (text === null) return fallback;
    if (!/^\d+$/.test(text) || Number(text) < 1) throw new ConfigError(`${name} of ${parts.masked} is '${text}': use a whole number ≥ 1`);
    return Number(text);
  };
  return { max: count('max', LRU_DEFAULT_MAX), maxBytes: count('maxBytes', LRU_DEFAULT_MAX_BYTES) };
}

export class LruEngine implements CacheEngine {
  readonly kind = 'lru';
  readonly maxValueBytes = undefined;
  /** Process-local: what it holds is seen by this process only. */
  readonly local = true;
  private readonly store: LRUCache<string, string>;

  constructor(readonly url: string) {
    const { max, maxBytes } = parseLruUrl(url);
    this.store = new LRUCache<string, string>({ max, maxSize: maxBytes, sizeCalculation: (value, key) => 2 * (value.length + key.length) || 1 });
  }

  async get(key: string): Promise<string | undefined> {
    return this.store.get(key);
  }

  async getMany(keys: readonly string[]): Promise<Array<string | undefined>> {
    return keys.map((key) => this.store.get(key));
  }

  async set(key: string, value: string, ttlSec: number): Promise<void> {
    // A value larger than the whole store is not kept (lru-cache refuses it); that is a miss later, not an error.
    this.store.set(key, value, { ttl: ttlSec * 1000 });
  }

  async add(key: string, value: string, ttlSec: number): Promise<boolean> {
    if (this.store.has(key)) return false;
    this.store.set(key, value, { ttl: ttlSec * 1000 });
    return true;
  }

  async delete(key: string): Promise<void> {
    this.store.delete(key);
  }

  async deleteMany(prefix: string): Promise<number> {
    let deleted = 0;
    for (const key of [...this.store.keys()]) if (key.startsWith(prefix) && this.store.delete(key)) deleted++;
    return deleted;
  }

  async close(): Promise<void> {
    this.store.clear();
  }
}
