// Cache keys: the key of a memoized call, and any key made safe for every engine.
//
// A memoized call's key is `fennel:memo:<task name>:<hash>`, where <hash> is the first 32 hex digits (128 bits) of
// the SHA-256 of the call's arguments as canonical JSON: the JSON codec of task arguments (Dates and Buffers tagged
// as kombu tags them), with every object's keys in sorted order, so that `{a: 1, b: 2}` and `{b: 2, a: 1}` are one
// call. Keyword arguments, if any, follow the positional ones: the JSON of `[args, kwargs]`. A producer and a
// worker compute the same key: the worker's arguments are the producer's, decoded.
//
// memcached takes keys of at most 250 bytes: a longer key (any engine, so that one key names one entry
// everywhere) becomes its first 150 bytes, '#', and the SHA-256 of the whole key, which keeps its prefix for
// deleteMany.

import { createHash } from 'node:crypto';
import { toJsonData } from '../protocol/json.ts';

export const MEMO_PREFIX = 'fennel:memo:';
/** memcached's limit on a key's length, in bytes. */
export const MAX_KEY_BYTES = 250;
const KEPT_PREFIX_BYTES = 150;

/** The JSON text of `value` with every object's keys sorted (arrays keep their order). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

/** The prefix of every key of task `taskName`'s memoized calls (invalidating them all: `cache.deleteMany(prefix)`). */
export function memoPrefix(taskName: string): string {
  return `${MEMO_PREFIX}${taskName}:`;
}

/** The key of a memoized call of `taskName` with these arguments. */
export function memoKey(taskName: string, args: readonly unknown[], kwargs?: Record<string, unknown>): string {
  const data = toJsonData(kwargs && Object.keys(kwargs).length ? [args, kwargs] : args, 'args');
  return `${memoPrefix(taskName)}${createHash('sha256').update(canonicalJson(data)).digest('hex').slice(0, 32)}`;
}

/** `key` if it fits in MAX_KEY_BYTES, else its first bytes, '#' and its SHA-256 (see above). */
export function safeKey(key: string): string {
  if (key.length * 3 <= MAX_KEY_BYTES || Buffer.byteLength(key) <= MAX_KEY_BYTES) return key;
  return `${utf8Head(key, KEPT_PREFIX_BYTES)}#${createHash('sha256').update(key).digest('hex')}`;
}

/** The longest prefix of `text` (whole code points) of at most `bytes` UTF-8 bytes. */
function utf8Head(text: string, bytes: number): string {
  let used = 0;
  let end = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char);
    if (used + size > bytes) break;
    used += size;
    end += char.length;
  }
  return text.slice(0, end);
}
