// Queue names Fennel derives rather than takes from the user, in Celery's conventions so that mixed clusters agree.

/** Celery's worker-direct exchange (celery/utils/nodenames.py): a direct exchange, routing key = the node name. */
export const DIRECT_EXCHANGE = 'C.dq2';
const DIRECT_SUFFIX = '.dq2';

/**
 * The queue only the worker named `node` consumes (Celery's `worker_direct`: `<nodename>.dq2`, bound to the
 * `C.dq2` exchange with the node name as routing key). `applyAsync(args, { worker })` routes there.
 */
export function directQueue(node: string): string {
  if (node === '' || /[\s\x00-\x1f]/.test(node)) throw new RangeError(`not a worker node name: ${JSON.stringify(node)} (e.g. fennel@host1)`);
  return `${node}${DIRECT_SUFFIX}`;
}

/** The node name a direct queue belongs to, or undefined for any other queue. */
export function directQueueNode(queue: string): string | undefined {
  return queue.endsWith(DIRECT_SUFFIX) && queue.length > DIRECT_SUFFIX.length ? queue.slice(0, -DIRECT_SUFFIX.length) : undefined;
}

/**
 * The queue that holds one consumer's copies of a broadcast queue's messages, on the engines that copy a broadcast
 * per consumer into a queue of its own (sqlite://, redis://, memory://): `bcast.<queue>.<consumer>`, after kombu's
 * `bcast.<id>` queues. From there a copy is claimed, leased and acknowledged like any message.
 */
export function broadcastCopyQueue(queue: string, consumer: string): string {
  return `bcast.${queue}.${consumer}`;
}

/** The header that marks a broadcast sent by Fennel: each worker stores its outcome under `broadcastResultId`. */
export const BROADCAST_HEADER = 'fennel_broadcast';

/**
 * Where the worker named `worker` stores its outcome of broadcast `taskId`: one result per worker, read by
 * `BroadcastResult` (a broadcast from a Python producer carries no such header, and its results share the task id,
 * as with Celery).
 */
export function broadcastResultId(taskId: string, worker: string): string {
  return `${taskId}/${worker}`;
}

const ACTOR_PREFIX = 'fennel.actor.';

/** The queue of actor `id`'s calls (actors/): consumed by its host only. */
export function actorQueue(id: string): string {
  return `${ACTOR_PREFIX}${id}`;
}

/** True for an actor's queue. Engines that keep queues until deleted (AMQP) let these expire once unused. */
export function isActorQueue(queue: string): boolean {
  return queue.startsWith(ACTOR_PREFIX) && queue.length > ACTOR_PREFIX.length;
}
