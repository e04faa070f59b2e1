// What each cache tier counts, for `cache.stats()`, /metrics and the dashboard: hits, misses, errors (failures and
// timeouts, each also a miss), values refused (too large, or not encodable), sets, and the time of its operations.
// Counters are plain numbers on the hot path; the latency also goes to one prom-client histogram per process
// (registered by whoever serves /metrics), labelled by engine and operation.

import { Histogram } from 'prom-client';
import type { Cache } from './cache.ts';

export class CacheStats {
  hits = 0;
  misses = 0;
  errors = 0;
  refused = 0;
  sets = 0;
  /** Operations timed, and their total time in milliseconds (the mean is totalMs / operations). */
  operations = 0;
  totalMs = 0;

  constructor(
    /** 'lru', 'redis', 'memcached'. */
    readonly engine: string,
    /** The engine's URL, password masked. */
    readonly url: string,
  ) {}

  toJSON(): Record<string, number | string> {
    return { engine: this.engine, url: this.url, hits: this.hits, misses: this.misses, errors: this.errors, refused: this.refused, sets: this.sets, operations: this.operations, meanMs: this.operations ? this.totalMs / this.operations : 0 };
  }
}

/** Latency of cache operations in this process, by engine and operation; in no registry until one adds it. */
export const cacheLatency = new Histogram({
  name: 'fennel_cache_operation_seconds',
  help: 'Time of cache operations in this process (get, getMany, set, add, delete), by engine, failures included',
  labelNames: ['engine', 'op'],
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
  registers: [],
});

export function recordLatency(stats: CacheStats, op: string, ms: number): void {
  stats.operations++;
  stats.totalMs += ms;
  cacheLatency.observe({ engine: stats.engine, op }, ms / 1000);
}

/** The caches open in this process, for /metrics (a closed cache leaves). */
const open = new Set<Cache>();

export function trackCache(cache: Cache): void {
  open.add(cache);
}

export function untrackCache(cache: Cache): void {
  open.delete(cache);
}

/** Every open cache's tiers' counts in this process, summed by engine. */
export function processCacheStats(): Array<ReturnType<CacheStats['toJSON']>> {
  const byEngine = new Map<string, CacheStats>();
  for (const cache of open) {
    for (const s of cache.stats()) {
      let sum = byEngine.get(s.engine);
      if (!sum) byEngine.set(s.engine, (sum = new CacheStats(s.engine, s.url)));
      sum.hits += s.hits;
      sum.misses += s.misses;
      sum.errors += s.errors;
      sum.refused += s.refused;
      sum.sets += s.sets;
      sum.operations += s.operations;
      sum.totalMs += s.totalMs;
    }
  }
  return [...byEngine.values()].map((s) => s.toJSON());
}
