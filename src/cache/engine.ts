// The contract of one cache store (lru://, redis://, memcached://): text values under keys, each with a time to
// live. Everything the user sees is the Cache's (cache.ts), written once above the engines: the codec, keys made
// safe, the time limit of each operation, single flight, the stampede lock, metrics and warnings. An engine only
// stores and reads, and says so by resolving or rejecting; it never swallows its own errors (the Cache turns each
// into a miss, counted and logged).

import type { CacheError } from '../errors.ts';

/** What every engine is given at construction. */
export interface CacheEngineOptions {
  /**
   * The longest any one operation may take: an engine whose store is across the network rejects an operation
   * still unanswered after this long (CacheError, 'timed out after N ms'), so that the Cache's caller waits no
   * longer than this for a miss.
   */
  timeoutMs: number;
  /** Says what the engine did on its own (a server taken out of or put back into the ring). */
  warn: (message: string) => void;
}

export interface CacheEngine {
  /** The engine's name in metrics and messages: 'lru', 'redis', 'memcached'. */
  readonly kind: string;
  /** The engine's URL with any password masked. */
  readonly url: string;
  /**
   * True if what it holds is seen by this process only (lru://). A producer fills such a tier itself from the
   * results it reads, since the worker that computed them filled its own.
   */
  readonly local: boolean;
  /** The largest value (UTF-8 bytes) it stores; larger ones are refused by the Cache before a round trip. */
  readonly maxValueBytes: number | undefined;
  /** The value under `key`, or undefined if there is none (never stored, expired or evicted). */
  get(key: string): Promise<string | undefined>;
  /**
   * The values under `keys`, in order, undefined where there is none; one round trip per server where it can. An
   * engine with several servers answers for those that did: a key whose server failed holds that failure (a
   * CacheError) in its place, which the Cache counts and reads as a miss.
   */
  getMany(keys: readonly string[]): Promise<Array<string | undefined | CacheError>>;
  /** Stores `value` under `key` for `ttlSec` seconds (0: until evicted), replacing any value there. */
  set(key: string, value: string, ttlSec: number): Promise<void>;
  /** Stores `value` only if `key` holds nothing; true if it was stored (memcached's add, Redis's SET NX). */
  add(key: string, value: string, ttlSec: number): Promise<boolean>;
  delete(key: string): Promise<void>;
  /** Deletes every key that starts with `prefix`; the number deleted. Absent where the store cannot list its keys (memcached). */
  deleteMany?(prefix: string): Promise<number>;
  close(): Promise<void>;
}
