// What each cache tier counts, for `cache.stats()`, /metrics and the dashboard: hits, misses, errors (failures and
// timeouts, each also a miss), values refused (too large, or not encodable), sets, and the time of its operations.
// Counters are plain numbers on the hot path; the latency also goes to one histogram per process (registered by
// whoever serves /metrics), labelled by engine and operation.

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
  /** This tier's latency series, by operation (made on first use). */
  private readonly series: Record<string, LatencySeries> = {};

  constructor(
    /** 'lru', 'redis', 'memcached'. */
    readonly engine: string,
    /** The engine's URL, password masked. */
    readonly url: string,
  ) {}

  latency(op: string): LatencySeries {
    return (this.series[op] ??= cacheLatency.seriesFor(this.engine, op));
  }

  toJSON(): Record<string, number | string> {
    return { engine: this.engine, url: this.url, hits: this.hits, misses: this.misses, errors: this.errors, refused: this.refused, sets: this.sets, operations: this.operations, meanMs: this.operations ? this.totalMs / this.operations : 0 };
  }
}

/** The upper bounds (seconds) of the latency histogram's buckets. */
const LATENCY_BOUNDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

/** One engine and operation's latency: counts per bucket (not cumulative), their sum and count. */
class LatencySeries {
  readonly counts = new Array<number>(LATENCY_BOUNDS.length + 1).fill(0);
  sum = 0;
  count = 0;

  constructor(readonly labels: { engine: string; op: string }) {}

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BOUNDS.length && seconds > LATENCY_BOUNDS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/**
 * The latency of cache operations in this process, by engine and operation, as a Prometheus histogram: an object
 * prom-client's registries take (`registry.registerMetric(cacheLatency)`; it is in none until then). Written here
 * rather than with prom-client's Histogram, whose observe() hashes its labels on every call: a tenth of a cache
 * hit's time. Each tier keeps its series (seriesFor) and observes into it with a loop over ten bounds.
 */
class LatencyHistogram {
  readonly name = 'fennel_cache_operation_seconds';
  readonly help = 'Time of cache operations in this process (get, getMany, set, add, delete, deleteMany), by engine, failures included';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, LatencySeries>();

  seriesFor(engine: string, op: string): LatencySeries {
    const key = `${engine}\0${op}`;
    let series = this.series.get(key);
    if (!series) this.series.set(key, (series = new LatencySeries({ engine, op })));
    return series;
  }

  /** What a prom-client registry serialises: cumulative buckets, the sum and the count of every series. */
  get(): { name: string; help: string; type: string; aggregator: string; values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> } {
    const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
    for (const series of this.series.values()) {
      let cumulative = 0;
      LATENCY_BOUNDS.forEach((bound, i) => {
        cumulative += series.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...series.labels, le: bound }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { ...series.labels, le: '+Inf' }, value: series.count });
      values.push({ metricName: `${this.name}_sum`, labels: series.labels, value: series.sum });
      values.push({ metricName: `${this.name}_count`, labels: series.labels, value: series.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** A registry's resetMetrics(): the process's counts are not the registry's to clear. */
  reset(): void {}
}

export const cacheLatency = new LatencyHistogram();

export function recordLatency(stats: CacheStats, op: string, ms: number): void {
  stats.operations++;
  stats.totalMs += ms;
  stats.latency(op).observe(ms / 1000);
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
