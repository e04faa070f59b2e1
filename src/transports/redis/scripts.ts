// The Redis transport's Lua scripts (headers in each .lua file), with their KEYS and ARGV named in the header's
// order. Every state change of a message is one of these: atomic on the server.

import { defineScript } from '../../clients/redis/scripts.ts';

const file = (name: string): URL => new URL(`./${name}.lua`, import.meta.url);

/** Pops up to `max` messages from the buckets and records them as unacked and leased, in one step (fetch.lua). */
export const fetchScript = defineScript('fetch', file('fetch'), {
  keys: ['unacked', 'unackedIndex', 'leases', 'deadLetters', 'deadLetterSeq'],
  restKeys: 'buckets',
  args: ['max', 'nowSec', 'wakePrefix'],
  restArgs: 'bucketQueues',
});

/** Acknowledges delivery tags and frees the deduplicated ids of those messages (ack.lua). */
export const ackScript = defineScript('ack', file('ack'), {
  keys: ['unacked', 'unackedIndex', 'leases'],
  restKeys: 'dedupeKeys',
  args: [],
  restArgs: 'tags',
});

/** Puts one held message back at the head of its queue, or sweeps the leases that lapsed (restore.lua). */
export const restoreScript = defineScript('restore', file('restore'), {
  keys: ['unacked', 'unackedIndex', 'unackedMutex', 'leases'],
  args: ['lapsedBeforeSec', 'max', 'tag', 'separator', 'wakePrefix'],
});

/** Moves a held message to the dead letters (dead_letter.lua); `dedupeKey` is empty or the one key to free. */
export const deadLetterScript = defineScript('dead_letter', file('dead_letter'), {
  keys: ['unacked', 'unackedIndex', 'leases', 'deadLetters', 'deadLetterSeq'],
  restKeys: 'dedupeKey',
  args: ['tag', 'reason', 'nowSec', 'taskId', 'taskName', 'queue', 'envelope'],
});

/** Publishes a dead letter's message again and removes the record (requeue_dead.lua). */
export const requeueDeadScript = defineScript('requeue_dead', file('requeue_dead'), {
  keys: ['deadLetters'],
  args: ['id', 'separator', 'wakePrefix'],
});

/** Moves scheduled messages that are due to their buckets; returns the next due time or -1 (promote.lua). */
export const promoteScript = defineScript('promote', file('promote'), {
  keys: ['scheduled'],
  args: ['nowMs', 'max', 'wakePrefix'],
});

/**
 * Writes a batch of messages in one step (publish.lua): `targets` are the buckets, then the wake keys, then the
 * binding keys; `countsThenPayload` is each bucket's envelope count, then the envelopes, the scheduled pairs and
 * the binding members.
 */
export const publishScript = defineScript('publish', file('publish'), {
  keys: ['scheduled'],
  restKeys: 'targets',
  args: ['buckets', 'wakes', 'scheduled'],
  restArgs: 'countsThenPayload',
});

/** Publishes a deduplicated message unless its id is taken (publish_once.lua). */
export const publishOnceScript = defineScript('publish_once', file('publish_once'), {
  keys: ['dedupe', 'target', 'wake', 'binding'],
  args: ['tag', 'payload', 'dueMs', 'bindingMember', 'safetySec'],
});

export const TRANSPORT_SCRIPTS = [fetchScript, ackScript, restoreScript, deadLetterScript, requeueDeadScript, promoteScript, publishScript, publishOnceScript] as const;
