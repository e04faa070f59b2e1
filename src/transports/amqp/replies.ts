// Reply addresses, for the rpc:// result backend. First, where each task's result goes back to: the `reply_to` of the deliveries
// this process's AMQP consumers hold, by task id. A ResultBackend's `store(meta)` carries no reply address
// (Redis and SQLite need none), so the AMQP transport notes it here when it hands a delivery out and drops
// it when the delivery is settled; the worker stores the outcome before it acks, so the address is known
// at every store. Counted, so a duplicate delivery of one task id settling first does not drop the other's.

const routes = new Map<string, { replyTo: string; holders: number }>();

export function noteReplyTo(taskId: string, replyTo: string): void {
  const entry = routes.get(taskId);
  if (entry) {
    entry.replyTo = replyTo;
    entry.holders++;
  } else routes.set(taskId, { replyTo, holders: 1 });
}

export function releaseReplyTo(taskId: string): void {
  const entry = routes.get(taskId);
  if (entry && --entry.holders <= 0) routes.delete(taskId);
}

/** The reply queue of a task a consumer in this process holds, if its message named one. */
export function replyToOf(taskId: string): string | undefined {
  return routes.get(taskId)?.replyTo;
}

// The reply queues of this process's producers (the `reply_to` of the tasks they sent while results go by
// rpc://): declared by the transport before the first task naming one is published, as Celery's rpc backend
// declares its queue in on_task_call, so a fast worker's reply is never dropped as unroutable. The rpc
// backend consumes them.
const own = new Set<string>();
const ownListeners = new Set<(name: string) => void>();

export function noteOwnReplyQueue(name: string): void {
  if (own.has(name)) return;
  own.add(name);
  for (const listener of ownListeners) listener(name);
}

/**
 * Calls `listener` with each reply queue of this process declared from now on (a get() may start waiting
 * while its task, the first to name the queue, is still being published). Returns the unsubscribe.
 */
export function onOwnReplyQueue(listener: (name: string) => void): () => void {
  ownListeners.add(listener);
  return () => ownListeners.delete(listener);
}

export function ownReplyQueues(): ReadonlySet<string> {
  return own;
}

/**
 * How a reply queue is declared, by whichever side comes first: not durable (results are transient, as
 * Celery's default), not auto-deleted (a reconnect must not drop results sent meanwhile), and removed by
 * RabbitMQ once unused for `expiresSec` (x-expires), so the queue of a process that is gone goes away.
 */
export function replyQueueOptions(expiresSec: number): { durable: boolean; autoDelete: boolean; arguments: Record<string, unknown> } {
  return { durable: false, autoDelete: false, arguments: { 'x-expires': Math.max(1, expiresSec > 0 ? expiresSec : 86_400) * 1000 } };
}
