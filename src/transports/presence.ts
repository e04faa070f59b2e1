// Live-consumer presence (the optional `announceConsumer` / `withdrawConsumer` / `consumers` of the transport
// contract): the shape shared by the engines that keep announcements (memory, sqlite, redis), and the hint the
// producer side prints when a task waits on a queue nobody consumes (AsyncResult.get()'s TimeoutError,
// `fennel call`). A hint is a diagnosis, never a verdict: it is looked up only after something already went
// wrong or right after a send, and a lookup that fails or is slow gives no hint rather than an error.

import { directQueueNode } from '../protocol/queues.ts';
import type { QueueConsumers, Transport } from './transport.ts';

/** How long a hint's lookup may take before it is given up (the caller then reports without a hint). */
const HINT_LOOKUP_MS = 1_000;

/** Groups live (queue, consumer) entries by queue, with an entry for `queue` (count 0 if none). */
export function consumerMap(entries: Iterable<readonly [queue: string, consumer: string]>, queue?: string): Map<string, QueueConsumers> {
  const map = new Map<string, QueueConsumers>();
  if (queue !== undefined) map.set(queue, { count: 0, names: [] });
  for (const [q, consumer] of entries) {
    let row = map.get(q);
    if (!row) map.set(q, (row = { count: 0, names: [] }));
    if (row.names.includes(consumer)) continue;
    row.names.push(consumer);
    row.count++;
  }
  for (const row of map.values()) row.names.sort();
  return map;
}

/**
 * "no worker is consuming queue 'celery'; workers consume: math" when the transport can tell and no live
 * consumer has `queue`; undefined when one has, when the engine keeps no presence, or when the lookup fails or
 * takes longer than `timeoutMs`. Direct queues and `broadcastQueues` are not listed. The other queues are those the engine can see a consumer on (AMQP: only the
 * queues this transport has used).
 */
export async function noConsumerHint(transport: Transport, queue: string, timeoutMs = HINT_LOOKUP_MS, broadcastQueues: readonly string[] = []): Promise<string | undefined> {
  if (!transport.consumers) return undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const lookup = transport.consumers(queue);
    lookup.catch(() => {}); // a lookup that fails after the time is up is nobody's error
    const found = await Promise.race([lookup, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)))]);
    if (!found || (found.get(queue)?.count ?? 0) > 0) return undefined;
    // Every worker also consumes its own direct queue and the broadcast queues: listing those would only hide the work queues.
    const listed = (q: string): boolean => q !== queue && directQueueNode(q) === undefined && !broadcastQueues.includes(q);
    const others = [...found].filter(([q, row]) => listed(q) && row.count > 0).map(([q]) => q).sort();
    return `no worker is consuming queue '${queue}'${others.length > 0 ? `; workers consume: ${others.join(', ')}` : ''}`;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
