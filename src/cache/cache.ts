// The Cache: cache-aside over one engine or a stack of tiers (lru:// in front of memcached:// or redis://), written
// once above the engines (engine.ts), which only store and read text.
//
//   values     the JSON codec of task arguments (Dates and Buffers tagged as kombu tags them): what is read is a
//              fresh copy, never the object that was stored. `undefined` is not a value (get's "none").
//   keys       any string; one longer than memcached's 250 bytes is shortened with its hash (keys.ts).
//   never the work's failure
//              an engine's error or timeout (timeoutMs, default 50 ms) is a miss for get, a false for set: counted
//              (stats(), /metrics) and logged at warn, at most one line per engine per LOG_EVERY_MS. Only what
//              the caller must fix rejects: a value the codec cannot carry (SerializationError), one larger than
//              an engine stores (CacheError, memcached: 1 MiB), or deleteMany on an engine that cannot list keys.
//   tiers      get reads each tier in turn and copies a hit into the tiers before it, for at most hotTtlSec; set
//              and delete go to every tier. The first tier is the hot one: in process, short-lived.
//   stampedes  wrap() computes once per key in this process while a computation is running (single flight);
//              with `lock`, one process computes while the others poll for its value, for at most the lock's
//              waitMs, then compute anyway (a lock is an `add` with a TTL: a holder that dies frees it).

import { randomUUID } from 'node:crypto';
import { CacheError, ConfigError } from '../errors.ts';
import { decodeJson, encodeJson } from '../protocol/json.ts';
import type { CacheEngine } from './engine.ts';
import { createEngine, splitCacheUrl } from './engines.ts';
import { safeKey } from './keys.ts';
import { CacheStats, recordLatency, trackCache, untrackCache } from './stats.ts';

/** The default time limit of one cache operation. */
export const DEFAULT_CACHE_TIMEOUT_MS = 50;
/** How long a hit copied into a hotter tier lives there, unless the Cache is told otherwise. */
export const DEFAULT_HOT_TTL_SEC = 5;
/** At most one warning per engine this often; the errors between are counted and summed up in the next one. */
const LOG_EVERY_MS = 10_000;
const LOCK_DEFAULTS = { ttlSec: 10, waitMs: 1000 };
/** How often a process waiting on another's lock looks for the value. */
const LOCK_POLL_MS = 20;

export interface CacheOptions {
  /** The longest one operation may take before it counts as a miss (default 50 ms; a URL's `?timeoutMs=` wins). */
  timeoutMs?: number;
  /** With tiers: how long a value copied into a hotter tier lives there (default 5 s). */
  hotTtlSec?: number;
  /** Where warnings go (a pino logger will do); default: process.emitWarning. */
  log?: { warn(message: string): void };
}

/** One URL, or tiers from the hottest to the coldest (`['lru://?max=1000', 'memcached://a:11211,b:11211']`). */
export type CacheSpec = string | readonly string[] | { tiers: readonly string[] };

export interface SetOptions {
  /** Seconds to keep it; 0 or absent: until it is evicted. */
  ttlSec?: number;
}

export interface WrapOptions extends SetOptions {
  /** Across processes: one computes while the others wait for its value (see the top of this file). */
  lock?: boolean | { ttlSec?: number; waitMs?: number };
}

/** What an engine's operation yields when it failed: the failure has been counted and logged already. */
const FAILED = Symbol('failed');
type Failed = typeof FAILED;

interface Tier {
  engine: CacheEngine;
  stats: CacheStats;
  /** Errors since the last warning, and when it was written. */
  quiet: { errors: number; since: number };
}

/** The tiers of a spec: a string may hold several URLs separated by whitespace (FENNEL_CACHE_URL's form). */
export function tierUrls(spec: CacheSpec): string[] {
  const urls = typeof spec === 'string' ? spec.trim().split(/\s+/) : Array.isArray(spec) ? [...(spec as readonly string[])] : [...(spec as { tiers: readonly string[] }).tiers];
  if (urls.length === 0 || urls.some((url) => url === '')) throw new ConfigError('a cache needs at least one URL: lru://, redis://host:6379/0 or memcached://host:11211');
  return urls;
}

export class Cache {
  /** The engines' URLs, passwords masked, hottest first. */
  readonly url: string;
  private readonly tiers: Tier[];
  private readonly hotTtlSec: number;
  /** The smallest value limit of the tiers (Infinity if none has one). */
  private readonly smallestMax: number;
  private readonly log: (message: string) => void;
  /** wrap()'s computations running in this process, by key. */
  private readonly inflight = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(spec: CacheSpec, options: CacheOptions = {}) {
    const given = options.timeoutMs ?? DEFAULT_CACHE_TIMEOUT_MS;
    if (!(given > 0)) throw new ConfigError(`cache timeoutMs must be a positive number of milliseconds (got ${given})`);
    this.hotTtlSec = options.hotTtlSec ?? DEFAULT_HOT_TTL_SEC;
    const sink = options.log;
    this.log = sink ? (message) => sink.warn(message) : (message) => process.emitWarning(message, 'FennelCacheWarning');
    this.tiers = tierUrls(spec).map((full) => {
      const { url, timeoutMs } = splitCacheUrl(full);
      const engine = createEngine(url, { timeoutMs: timeoutMs ?? given, warn: this.log });
      return { engine, stats: new CacheStats(engine.kind, engine.url), quiet: { errors: 0, since: 0 } };
    });
    this.url = this.tiers.map((t) => t.engine.url).join(' ');
    this.smallestMax = Math.min(...this.tiers.map((t) => t.engine.maxValueBytes ?? Infinity));
    trackCache(this);
  }

  /** Every tier's counts (hits, misses, errors, refused values, latency), hottest first. */
  stats(): CacheStats[] {
    return this.tiers.map((t) => t.stats);
  }

  /** True if some tier is seen by this process only (lru://): a producer then fills it from the results it reads. */
  get hasLocalTier(): boolean {
    return this.tiers.some((t) => t.engine.local);
  }

  /** The value under `key`, or undefined (never stored, expired, evicted, or the cache did not answer in time). */
  get<T = unknown>(key: string): Promise<T | undefined> {
    if (this.tiers.length > 1) return this.getTextFromTiers(safeKey(key)).then((text) => (text === undefined ? undefined : (decodeJson(text) as T)));
    // One tier: getText's steps and the decoding in one callback (see run).
    const tier = this.tiers[0]!;
    const safe = safeKey(key);
    return this.run(tier, 'get', () => tier.engine.get(safe)).then((text) => {
      if (text === FAILED) return undefined;
      if (text === undefined) {
        tier.stats.misses++;
        return undefined;
      }
      tier.stats.hits++;
      return decodeJson(text) as T;
    });
  }

  /** The values under `keys`, in order; each tier is asked once for the keys the tiers before it lacked. */
  async getMany<T = unknown>(keys: readonly string[]): Promise<Array<T | undefined>> {
    const safe = keys.map(safeKey);
    const texts = new Array<string | undefined>(safe.length).fill(undefined);
    let missing = safe.map((_, i) => i);
    for (let level = 0; level < this.tiers.length && missing.length > 0; level++) {
      const tier = this.tiers[level]!;
      const found = await this.run(tier, 'getMany', () => tier.engine.getMany(missing.map((i) => safe[i]!)));
      if (found === FAILED) continue;
      const still: number[] = [];
      let failed: Error | undefined;
      let failures = 0;
      found.forEach((text, j) => {
        const i = missing[j]!;
        if (text instanceof Error) {
          failed = text;
          failures++;
          still.push(i);
        } else if (text === undefined) {
          tier.stats.misses++;
          still.push(i);
        } else {
          tier.stats.hits++;
          texts[i] = text;
          this.fill(level, safe[i]!, text);
        }
      });
      if (failed) {
        tier.stats.errors += failures;
        this.warn(tier, `getMany failed for ${failures} of ${found.length} keys (counted as misses): ${failed.message}`);
      }
      missing = still;
    }
    return texts.map((text) => (text === undefined ? undefined : (decodeJson(text) as T)));
  }

  /**
   * Stores `value` in every tier. True if every tier stored it; false if one failed (counted and logged). Rejects
   * for what the caller must fix: a value the codec cannot carry, or one larger than a tier stores.
   */
  set(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    try {
      return this.setText(safeKey(key), this.encode(key, value, true)!, ttlOf(options));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Stores `value` only where `key` holds nothing (memcached's add): true if it was stored (in the coldest tier). */
  async add(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    const text = this.encode(key, value, true)!;
    const last = this.tiers[this.tiers.length - 1]!;
    const added = await this.run(last, 'add', () => last.engine.add(safeKey(key), text, ttlOf(options)));
    return added === true;
  }

  async delete(key: string): Promise<void> {
    const safe = safeKey(key);
    await Promise.all(this.tiers.map((tier) => this.run(tier, 'delete', () => tier.engine.delete(safe))));
  }

  /** Deletes every key that starts with `prefix` from every tier; the number the coldest tier deleted. */
  async deleteMany(prefix: string): Promise<number> {
    const cannot = this.tiers.find((t) => !t.engine.deleteMany);
    if (cannot) throw new ConfigError(`deleteMany: ${cannot.engine.kind}:// cannot list its keys (${cannot.engine.url}); delete keys one by one, or give them a TTL`);
    const counts = await Promise.all(this.tiers.map((tier) => this.run(tier, 'deleteMany', () => tier.engine.deleteMany!(prefix))));
    const last = counts[counts.length - 1];
    return last === FAILED || last === undefined ? 0 : last;
  }

  /**
   * Cache-aside: the value under `key`, or else `compute()`'s, stored for `ttlSec`. One computation per key runs in
   * this process at a time (the others await it); with `lock`, across processes too (see the top of this file).
   * A cache that fails is a miss: `compute()` runs and its value is returned, stored or not.
   */
  wrap<T>(key: string, compute: () => T | Promise<T>, options: WrapOptions = {}): Promise<T> {
    const safe = safeKey(key);
    const running = this.inflight.get(safe);
    if (running) return running as Promise<T>;
    const computing = this.computeOnce(safe, compute, options).finally(() => this.inflight.delete(safe));
    this.inflight.set(safe, computing);
    return computing;
  }

  private async computeOnce<T>(key: string, compute: () => T | Promise<T>, options: WrapOptions): Promise<T> {
    const cached = await this.getText(key);
    if (cached !== undefined) return decodeJson(cached) as T;
    const lock = options.lock ? { ...LOCK_DEFAULTS, ...(options.lock === true ? {} : options.lock) } : undefined;
    const lockKey = `${key}:lock`;
    let holder: string | undefined;
    if (lock) {
      const token = randomUUID();
      const last = this.tiers[this.tiers.length - 1]!;
      const taken = await this.run(last, 'add', () => last.engine.add(safeKey(lockKey), JSON.stringify(token), lock.ttlSec));
      if (taken === true) holder = token;
      else {
        // Another process computes: wait for its value, then compute anyway.
        const deadline = Date.now() + lock.waitMs;
        while (Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
          const text = await this.getText(key);
          if (text !== undefined) return decodeJson(text) as T;
        }
      }
    }
    try {
      const value = await compute();
      const text = this.encode(key, value, false);
      if (text !== undefined) await this.setText(key, text, ttlOf(options));
      return value;
    } finally {
      if (holder) await this.delete(lockKey);
    }
  }

  /** The text under an already safe key, tier by tier (Fennel's memoized tasks store result JSON as it is). */
  getText(key: string): Promise<string | undefined> {
    if (this.tiers.length > 1) return this.getTextFromTiers(key);
    const tier = this.tiers[0]!;
    return this.run(tier, 'get', () => tier.engine.get(key)).then((text) => {
      if (text === FAILED) return undefined;
      if (text === undefined) tier.stats.misses++;
      else tier.stats.hits++;
      return text;
    });
  }

  private async getTextFromTiers(key: string): Promise<string | undefined> {
    for (let level = 0; level < this.tiers.length; level++) {
      const tier = this.tiers[level]!;
      const text = await this.run(tier, 'get', () => tier.engine.get(key));
      if (text === FAILED) continue;
      if (text === undefined) {
        tier.stats.misses++;
        continue;
      }
      tier.stats.hits++;
      this.fill(level, key, text);
      return text;
    }
    return undefined;
  }

  /** Stores text under an already safe key in every tier; false if a tier failed or refused it (counted, logged). */
  setText(key: string, text: string, ttlSec: number, onlyLocal = false): Promise<boolean> {
    if (this.tiers.length === 1 && !onlyLocal) {
      const tier = this.tiers[0]!;
      const max = tier.engine.maxValueBytes;
      // UTF-8 takes at most 3 bytes a UTF-16 unit: a text that short cannot be over the limit, and is not measured.
      if (max === undefined || text.length * 3 <= max || Buffer.byteLength(text) <= max) {
        tier.stats.sets++;
        return this.run(tier, 'set', () => tier.engine.set(key, text, ttlSec)).then((r) => r !== FAILED);
      }
    }
    return this.setTextInTiers(key, text, ttlSec, onlyLocal);
  }

  private async setTextInTiers(key: string, text: string, ttlSec: number, onlyLocal: boolean): Promise<boolean> {
    const bytes = Buffer.byteLength(text);
    const stored = await Promise.all(
      this.tiers.map((tier, level) => {
        if (onlyLocal && !tier.engine.local) return Promise.resolve(true);
        if (tier.engine.maxValueBytes !== undefined && bytes > tier.engine.maxValueBytes) {
          tier.stats.refused++;
          this.warn(tier, `not stored: the value of ${key} is ${bytes} bytes, over ${tier.engine.kind}'s ${tier.engine.maxValueBytes}`);
          return Promise.resolve(false);
        }
        const ttl = level < this.tiers.length - 1 ? hotTtl(ttlSec, this.hotTtlSec) : ttlSec;
        return this.run(tier, 'set', () => tier.engine.set(key, text, ttl)).then((r) => r !== FAILED);
      }),
    );
    for (const tier of this.tiers) if (!onlyLocal || tier.engine.local) tier.stats.sets++;
    return stored.every(Boolean);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    untrackCache(this);
    await Promise.all(this.tiers.map((t) => t.engine.close().catch(() => {})));
  }

  /** Copies a hit found in tier `level` into the hotter tiers, in the background (a failure there is only counted). */
  private fill(level: number, key: string, text: string): void {
    for (let hotter = 0; hotter < level; hotter++) {
      const tier = this.tiers[hotter]!;
      void this.run(tier, 'set', () => tier.engine.set(key, text, this.hotTtlSec));
    }
  }

  /**
   * The value's text, or: for set() (`strict`), a rejection the caller must fix; for wrap() and tasks, undefined
   * after a warning (the value is returned to its caller all the same, only not stored).
   */
  private encode(key: string, value: unknown, strict: boolean): string | undefined {
    if (value === undefined) {
      if (strict) throw new ConfigError(`cache: cannot store undefined under ${key} (get answers undefined for "none"); store null instead`);
      return undefined;
    }
    let text: string;
    try {
      text = encodeJson(value, 'value');
    } catch (first) {
      // Encoded again to say which key's value it was (not built for every set: most values encode).
      let error = first;
      try {
        encodeJson(value, `the cached value of ${key}`);
      } catch (named) {
        error = named;
      }
      if (strict) throw error;
      this.tiers[0]!.stats.refused++;
      this.warn(this.tiers[0]!, `not stored: ${(error as Error).message}`);
      return undefined;
    }
    if (strict && text.length * 3 > this.smallestMax) {
      const bytes = Buffer.byteLength(text);
      const small = this.tiers.find((t) => t.engine.maxValueBytes !== undefined && bytes > t.engine.maxValueBytes);
      if (small) {
        small.stats.refused++;
        throw new CacheError(`cache: the value of ${key} is ${bytes} bytes encoded; ${small.engine.kind} stores at most ${small.engine.maxValueBytes} (${small.engine.url})`);
      }
    }
    return text;
  }

  /**
   * Runs one engine operation: its time is recorded; a failure is counted, logged, and returned as FAILED. One
   * `then` on the engine's promise (no async layer of its own): a cache hit is a few microseconds of CPU, and each
   * layer of promises is a measurable part of it.
   */
  private run<T>(tier: Tier, op: string, operation: () => Promise<T>): Promise<T | Failed> {
    const started = performance.now();
    let pending: Promise<T>;
    try {
      pending = operation();
    } catch (error) {
      return Promise.resolve(this.failed(tier, op, started, error));
    }
    return pending.then(
      (value) => {
        recordLatency(tier.stats, op, performance.now() - started);
        return value;
      },
      (error: unknown) => this.failed(tier, op, started, error),
    );
  }

  private failed(tier: Tier, op: string, started: number, error: unknown): Failed {
    tier.stats.errors++;
    recordLatency(tier.stats, op, performance.now() - started);
    this.warn(tier, `${op} failed (counted as a miss): ${(error as Error)?.message ?? String(error)}`);
    return FAILED;
  }

  /** A warning about a tier: at once, then at most once per LOG_EVERY_MS with the number left unsaid. */
  private warn(tier: Tier, message: string): void {
    const now = Date.now();
    if (now - tier.quiet.since < LOG_EVERY_MS) {
      tier.quiet.errors++;
      return;
    }
    const more = tier.quiet.errors ? ` (and ${tier.quiet.errors} more problems in the last ${Math.round((now - tier.quiet.since) / 1000)} s)` : '';
    tier.quiet = { errors: 0, since: now };
    this.log(`cache ${tier.engine.kind} ${tier.engine.url}: ${message}${more}`);
  }
}

function ttlOf(options: SetOptions): number {
  const ttl = options.ttlSec ?? 0;
  if (!(ttl >= 0) || !Number.isFinite(ttl)) throw new ConfigError(`cache: ttlSec must be a number of seconds ≥ 0 (got ${ttl})`);
  return ttl;
}

/** A hotter tier keeps a value at most hotTtlSec, and never longer than the value itself lives. */
function hotTtl(ttlSec: number, hotTtlSec: number): number {
  return ttlSec > 0 ? Math.min(ttlSec, hotTtlSec) : hotTtlSec;
}
