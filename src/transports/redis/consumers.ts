// Live-consumer presence on redis:// (the transport's announceConsumer / withdrawConsumer / consumers): one hash,
// `fennel.consumers`, field `<queue>\n<consumer>` → when the announcement expires (ms since the epoch, by the
// announcer's clock, as every time in this layout). Announcing is one HSET of a field per queue, withdrawing one
// HDEL, reading one HGETALL filtered by expiry. The entries of workers that died without withdrawing are deleted
// now and then (at most once a minute per connection, by an announcer or a reader that saw one) by
// consumers_prune.lua, which compares and deletes in one step, so an entry renewed meanwhile is never lost.
// Python Celery workers do not announce themselves here: a queue only they consume looks unconsumed.

import type { Redis } from 'ioredis';
import { defineScript } from '../../clients/redis/scripts.ts';
import { consumerMap } from '../presence.ts';
import type { QueueConsumers } from '../transport.ts';

export const CONSUMERS_KEY = 'fennel.consumers';
const PRUNE_EVERY_MS = 60_000;

/** Deletes the entries whose expiry has passed, comparing and deleting in one step (consumers_prune.lua). */
const pruneScript = defineScript('consumers_prune', new URL('./consumers_prune.lua', import.meta.url), { keys: ['consumers'], args: ['nowMs'] });
/** When each connection may prune next (the script is defined on it the first time). */
const nextPrune = new WeakMap<Redis, number>();

function field(queue: string, consumer: string): string {
  return `${queue}\n${consumer}`;
}

async function maybePrune(client: Redis, now: number): Promise<void> {
  const due = nextPrune.get(client);
  if (due !== undefined && now < due) return;
  if (due === undefined) pruneScript.install(client);
  nextPrune.set(client, now + PRUNE_EVERY_MS);
  await pruneScript.run(client, { consumers: CONSUMERS_KEY }, { nowMs: now });
}

export async function announceConsumer(client: Redis, consumer: string, queues: readonly string[], ttlSec: number): Promise<void> {
  if (queues.length === 0) return;
  const now = Date.now();
  const expiresAt = String(Math.round(now + ttlSec * 1000));
  await client.hset(CONSUMERS_KEY, ...queues.flatMap((queue) => [field(queue, consumer), expiresAt]));
  await maybePrune(client, now);
}

export async function withdrawConsumer(client: Redis, consumer: string, queues: readonly string[]): Promise<void> {
  if (queues.length === 0) return;
  await client.hdel(CONSUMERS_KEY, ...queues.map((queue) => field(queue, consumer)));
}

export async function listConsumers(client: Redis, queue?: string): Promise<Map<string, QueueConsumers>> {
  const now = Date.now();
  const live: Array<[string, string]> = [];
  let expired = false;
  for (const [key, value] of Object.entries(await client.hgetall(CONSUMERS_KEY))) {
    if (Number(value) > now) {
      const cut = key.lastIndexOf('\n');
      live.push([key.slice(0, cut), key.slice(cut + 1)]);
    } else expired = true;
  }
  // Housekeeping only: the answer above is already right without it.
  if (expired) maybePrune(client, now).catch(() => {});
  return consumerMap(live, queue);
}
