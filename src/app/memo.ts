// Memoized tasks: `app.task(name, fn, { cache: { ttlSec } })`. A call's result is kept in the app's cache (or the
// task's own, `cache.url`) under the call's key (src/cache/keys.ts: the task's name and a hash of its arguments,
// or the task's `key` function), and a call whose key is there is answered from it.
//
//   producer   delay()/applyAsync() look the key up before sending. A hit sends no message: the AsyncResult is
//              SUCCESS as soon as the cache answers, and the outcome is also stored in the result backend under the
//              call's id (unless ignoreResult), so that the id means the same thing everywhere (another process,
//              the gateway, a call taking it as an argument); `sent` resolves once it is stored. A miss sends the
//              call. A call with eta or countdown, a broadcast, or one taking results as arguments is always sent.
//   worker     looks the key up again before running (a call sent by a canvas, by another producer, or while
//              another worker was computing the same key), and stores a success's result JSON in the cache
//              alongside the outcome. A failure is never cached.
//   lru://     holds what this process put there only: a producer fills its own in-process tiers from the results
//              it reads, so the default cache answers a repeated call in the producer too.
// A cache that fails or is slow is a miss (src/cache/cache.ts): the call is sent, or the task runs.

import type { Cache } from '../cache/cache.ts';
import { memoKey, safeKey } from '../cache/keys.ts';
import { ConfigError } from '../errors.ts';
import { decodeJson, encodeJson } from '../protocol/json.ts';
import { nowIso, type TaskMeta } from '../protocol/result.ts';
import { States } from '../protocol/states.ts';
import type { CallOptions, TaskOptions } from './task.ts';

/** A task's `cache` option: `true` (the app's cache, no expiry) or the parts of it. */
export interface TaskCacheOptions {
  /** Seconds a result is kept (0 or absent: until evicted). */
  ttlSec?: number;
  /** This task's own cache instead of the app's: any cache URL (or tiers separated by spaces). */
  url?: string;
  /** The key of a call, instead of the task's name and a hash of its arguments. */
  key?: (...args: never[]) => string;
}

export interface Memo {
  ttlSec: number;
  url: string | undefined;
  key: ((...args: unknown[]) => string) | undefined;
}

const KNOWN = ['ttlSec', 'url', 'key'];

/** Checks a task's `cache` option where it is given; undefined for a task that is not memoized. */
export function memoOf(taskName: string, option: TaskOptions['cache']): Memo | undefined {
  if (option === undefined || option === false) return undefined;
  if (option === true) return { ttlSec: 0, url: undefined, key: undefined };
  if (option === null || typeof option !== 'object') throw new ConfigError(`task '${taskName}': option 'cache' must be true or { ttlSec, url, key }`);
  for (const name of Object.keys(option)) if (!KNOWN.includes(name)) throw new ConfigError(`task '${taskName}': unknown cache option '${name}'; known: ${KNOWN.join(', ')}`);
  const { ttlSec = 0, url, key } = option;
  if (typeof ttlSec !== 'number' || !(ttlSec >= 0) || !Number.isFinite(ttlSec)) throw new ConfigError(`task '${taskName}': cache ttlSec must be a number of seconds ≥ 0 (got ${String(ttlSec)})`);
  if (url !== undefined && (typeof url !== 'string' || url === '')) throw new ConfigError(`task '${taskName}': cache url must be a cache URL (lru://, redis://, memcached://)`);
  if (key !== undefined && typeof key !== 'function') throw new ConfigError(`task '${taskName}': cache key must be a function of the call's arguments returning a string`);
  return { ttlSec, url, key: key as ((...args: unknown[]) => string) | undefined };
}

/** The cache key of a call: the task's key function's, or its name and a hash of its arguments; safe for every engine. */
export function callKey(taskName: string, memo: Memo, args: readonly unknown[], kwargs?: Record<string, unknown>): string {
  if (!memo.key) return memoKey(taskName, args, kwargs);
  const key = memo.key(...args);
  if (typeof key !== 'string' || key === '') throw new ConfigError(`task '${taskName}': its cache key function returned ${JSON.stringify(key)}, not a non-empty string`);
  return safeKey(key);
}

/** Whether a call may be answered from the cache by its producer (see the top of this file). */
export function answerableFromCache(call: CallOptions, task: TaskOptions): boolean {
  return call.eta === undefined && call.countdown === undefined && !(call.broadcast ?? task.broadcast);
}

/**
 * The producer's lookup: the outcome the cache holds for this call (SUCCESS, with its result), or undefined on a
 * miss, a failure of the cache, or a value that does not decode (counted as a miss, never an error).
 */
export async function cachedOutcome(cache: Cache, key: string, id: string, taskName: string): Promise<TaskMeta | undefined> {
  const text = await cache.getText(key);
  if (text === undefined) return undefined;
  let result: unknown;
  try {
    result = decodeJson(text);
  } catch {
    // Not a result (another program's value under the key): a miss, and the call is sent; the worker says why.
    return undefined;
  }
  return { status: States.SUCCESS, result, traceback: null, children: [], date_done: nowIso(), task_id: id, name: taskName };
}

/** After a sent call succeeded: copies its result into the cache's in-process tiers, which no worker can fill. */
export function fillLocalTiers(cache: Cache, key: string, ttlSec: number): ((result: unknown) => void) | undefined {
  if (!cache.hasLocalTier) return undefined;
  return (result) => {
    let text: string;
    try {
      text = encodeJson(result, 'result');
    } catch {
      return;
    }
    void cache.setText(key, text, ttlSec, true);
  };
}
