// JetStream key-value buckets for Fennel's NATS engines (the result backend first): opening a bucket with the
// settings Fennel needs, telling a failed compare-and-set from any other error, and turning arbitrary text into
// key tokens. The only place outside connection.ts that uses the @nats-io packages' values (lint's rule).
//
// A bucket is a stream `KV_<name>` holding one message per key (history 1): a key's revision is its message's
// sequence, and a write that names the revision it read (`previousSeq`) is refused by the server if the key moved
// on since, which is the compare-and-set every read-modify-write here is built on.

import { JetStreamApiError } from '@nats-io/jetstream';
import { KvWatchInclude, type KV, type KvEntry, type KvWatchEntry } from '@nats-io/kv';
import type { NatsHandles } from './connection.ts';
import { ConfigError } from '../../errors.ts';
import { overlay } from '../../util/overlay.ts';
import { getStored, headers, publishStored, streamMismatch, type StoredMessage } from './jetstream.ts';

export { KvWatchInclude };
export type { KV, KvEntry, KvWatchEntry };

export interface BucketSettings {
  /** How long a key is kept after its last write, in seconds (the stream's max_age); 0 keeps it until deleted. */
  ttlSec: number;
  /** Copies of the bucket in a cluster (the URL's `replicas`). */
  replicas: number;
}

/** JetStream's error codes for a write whose expected last sequence was not the subject's (10071, 10164). */
const WRONG_LAST_SEQUENCE = new Set([10071, 10164]);

/**
 * Opens bucket `name`, creating it if it does not exist. Reads go to the stream's leader (allow_direct off): a
 * direct get may be answered by a replica that has not applied the latest write yet, and the result backend's
 * park and settle rely on a read after a write seeing it. The TTL of an existing bucket is set to `ttlSec` when it
 * differs: the process that opened the bucket last decides it (a changed resultExpiresSec takes effect on restart).
 */
export async function openBucket(handles: NatsHandles, name: string, settings: BucketSettings): Promise<KV> {
  const ttlMs = settings.ttlSec * 1000;
  const kv = await handles.kvm.create(name, { history: 1, ttl: ttlMs, replicas: settings.replicas, allow_direct: false });
  const stream = `KV_${name}`;
  const info = await handles.jsm.streams.info(stream);
  // kvm.create uses a stream that exists as it is, whatever it is: one that is not a bucket Fennel can use is refused.
  const mismatch = streamMismatch(info.config, { retention: 'limits', subjects: [`$KV.${name}.>`] });
  if (mismatch) throw new ConfigError(`NATS key-value bucket ${name} (stream ${stream}) exists and Fennel cannot use it: ${mismatch}. Something else made it under Fennel's name: delete it, or give Fennel a prefix of its own (nats://…?prefix=…)`);
  const wanted = ttlMs * 1_000_000; // nanoseconds
  if (info.config.max_age !== wanted) await handles.jsm.streams.update(stream, { max_age: wanted });
  return withFastPath(kv, handles, name);
}

/**
 * The bucket with `get(key)` and `put(key, value, { previousSeq })`, its hot steps, sent on the connection's Replies
 * (requests.ts) instead of the client's request(): the same requests on the wire (STREAM.MSG.GET by last subject
 * from the leader; a publish to `$KV.<bucket>.<key>` with Nats-Expected-Last-Subject-Sequence), answered the same
 * way (a KV entry; the revision; JetStreamApiError on a lost compare-and-set). Everything else is the client's.
 */
function withFastPath(kv: KV, handles: NatsHandles, bucket: string): KV {
  const stream = `KV_${bucket}`;
  const fast: Partial<KV> = {
    get: async (key, opts) => {
      if (opts?.revision) return kv.get(key, opts);
      const stored = await getStored(handles.replies, stream, { last_by_subj: `$KV.${bucket}.${key}` }, handles.timeoutMs);
      return stored && storedEntry(bucket, key, stored);
    },
    put: async (key, value, opts) => {
      if (opts && Object.keys(opts).some((option) => option !== 'previousSeq')) return kv.put(key, value, opts);
      const h = opts?.previousSeq === undefined ? undefined : headers();
      h?.set('Nats-Expected-Last-Subject-Sequence', String(opts!.previousSeq));
      return (await publishStored(handles.replies, `$KV.${bucket}.${key}`, value, handles.timeoutMs, h)).seq;
    },
  };
  return overlay(kv, fast);
}

/** A stored message of a bucket as the client's KvEntry: a delete or purge marker says so in its KV-Operation header. */
function storedEntry(bucket: string, key: string, stored: StoredMessage): KvEntry {
  const marker = /^KV-Operation:\s*(DEL|PURGE)\s*$/im.exec(stored.headerText)?.[1] as 'DEL' | 'PURGE' | undefined;
  // A marker the server wrote when a key's max age passed is a purge (nats-server 2.11+).
  const operation = marker ?? (/^Nats-Marker-Reason:\s*MaxAge\s*$/im.test(stored.headerText) ? 'PURGE' : 'PUT');
  const value = stored.data;
  return { bucket, key, rawKey: key, value, created: stored.time, revision: stored.seq, delta: 0, operation, length: value.length, string: () => decoder.decode(value), json: <T>() => JSON.parse(decoder.decode(value)) as T };
}

const decoder = new TextDecoder();

/** Deletes bucket `name` if it exists (tests start each case from empty buckets). */
export async function destroyBucket(handles: NatsHandles, name: string): Promise<void> {
  try {
    await handles.jsm.streams.delete(`KV_${name}`);
  } catch (error) {
    if (!(error instanceof JetStreamApiError && error.code === 10059)) throw error; // 10059: stream not found
  }
}

/** Removes every message of `key` from the bucket's stream: no delete marker is left behind (a bucket without a TTL would keep it for ever). */
export async function purgeKey(handles: NatsHandles, bucket: string, key: string): Promise<void> {
  await handles.jsm.streams.purge(`KV_${bucket}`, { filter: `$KV.${bucket}.${key}` });
}

/** A watch of keys: async-iterable entries, and `stop`, which resolves once the server has let its consumer go. */
export interface KeyWatch extends AsyncIterable<KvWatchEntry> {
  stop(): Promise<void>;
}

/**
 * kv.watch (the value of every key matching `key` as it stands, then every write; with 'updates', only the writes
 * from now on), whose `stop` also deletes the
 * watch's consumer. The client's own stop only unsubscribes, and the server keeps the consumer for its inactive
 * threshold (5 minutes): a producer waiting on 1,000 results a second would leave 300,000 consumers behind. The
 * consumer is the watch's `_data` (client 3.x); a client without it leaves the consumer to lapse, as before.
 */
export async function watchKeys(kv: KV, key: string, include: 'last' | 'updates' = 'last'): Promise<KeyWatch> {
  const watch = await kv.watch({ key, include: include === 'last' ? KvWatchInclude.LastValue : KvWatchInclude.UpdatesOnly });
  const consumer = (watch as unknown as { _data?: { delete?: () => Promise<unknown> } })._data;
  return {
    [Symbol.asyncIterator]: () => watch[Symbol.asyncIterator](),
    stop: async () => {
      watch.stop();
      await consumer?.delete?.().catch(() => {});
    },
  };
}

/** True if `error` is the server refusing a write because the key's revision was not the one named (a lost compare-and-set). */
export function isWrongRevision(error: unknown): boolean {
  return error instanceof JetStreamApiError && WRONG_LAST_SEQUENCE.has(error.code);
}

/**
 * Every key under `filter` (a key with a trailing `>`) and its value, as they stand, deletions left out: a consumer
 * that reads the stream once (history 1 keeps one message per key). `limit`: stop after that many keys.
 */
export async function snapshot(kv: KV, filter: string, limit = Number.POSITIVE_INFINITY): Promise<Array<{ key: string; value: Uint8Array; revision: number }>> {
  const out: Array<{ key: string; value: Uint8Array; revision: number }> = [];
  const entries = await kv.history({ key: filter });
  for await (const entry of entries) {
    if (entry.operation === 'PUT') out.push({ key: entry.key, value: entry.value, revision: entry.revision });
    if (out.length >= limit) {
      entries.stop();
      break;
    }
  }
  return out;
}

// Key tokens. KV keys are NATS subjects: `[-/_=.a-zA-Z0-9]`, with '.' separating tokens. Text from users (task ids,
// record keys, table names) is made one token: letters, digits, '-' and '_' stay, every other UTF-8 byte becomes
// `=XX` (upper-case hex), and the empty text is `=` alone. Injective ('=' is always escaped), so decodable.

const PLAIN = /^[-_a-zA-Z0-9]+$/;

export function keyToken(text: string): string {
  if (text === '') return '=';
  if (PLAIN.test(text)) return text; // UUIDs: the common case, unchanged
  let out = '';
  for (const ch of text) {
    if (/[-_a-zA-Z0-9]/.test(ch)) out += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) out += `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function fromKeyToken(token: string): string {
  if (token === '=') return '';
  if (!token.includes('=')) return token;
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '=') {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}
