// Reply addresses, for the rpc:// result backend, shared by one app's AMQP transport and its rpc backend. The
// app creates one `ReplyRoutes` and hands it to both (transports/index.ts, backends/index.ts); nothing here is
// process-wide, so two apps in one process (a test, a gateway with two brokers) never see each other's routes.
//
// First, where each task's result goes back to: the `reply_to` of the deliveries the transport's consumers
// hold, by task id. A ResultBackend's `store(meta)` carries no reply address (Redis and SQLite need none), so
// the AMQP transport notes it here when it hands a delivery out and drops it when the delivery is settled; the
// worker stores the outcome before it acks, so the address is known at every store. Counted, so a duplicate
// delivery of one task id settling first does not drop the other's.
//
// Second, the reply queues of the app's producers (the `reply_to` of the tasks they sent while results go by
// rpc://): declared by the transport before the first task naming one is published, as Celery's rpc backend
// declares its queue in on_task_call, so a fast worker's reply is never dropped as unroutable. The rpc
// backend consumes them.

export class ReplyRoutes {
  private readonly routes = new Map<string, { replyTo: string; holders: number }>();
  private readonly own = new Set<string>();
  private readonly ownListeners = new Set<(name: string) => void>();

  noteReplyTo(taskId: string, replyTo: string): void {
    const entry = this.routes.get(taskId);
    if (entry) {
      entry.replyTo = replyTo;
      entry.holders++;
    } else this.routes.set(taskId, { replyTo, holders: 1 });
  }

  releaseReplyTo(taskId: string): void {
    const entry = this.routes.get(taskId);
    if (entry && --entry.holders <= 0) this.routes.delete(taskId);
  }

  /** The reply queue of a task a consumer of this app holds, if its message named one. */
  replyToOf(taskId: string): string | undefined {
    return this.routes.get(taskId)?.replyTo;
  }

  noteOwnReplyQueue(name: string): void {
    if (this.own.has(name)) return;
    this.own.add(name);
    for (const listener of this.ownListeners) listener(name);
  }

  /**
   * Calls `listener` with each reply queue of this app declared from now on (a get() may start waiting while
   * its task, the first to name the queue, is still being published). Returns the unsubscribe.
   */
  onOwnReplyQueue(listener: (name: string) => void): () => void {
    this.ownListeners.add(listener);
    return () => this.ownListeners.delete(listener);
  }

  ownReplyQueues(): ReadonlySet<string> {
    return this.own;
  }
}

/**
 * How a reply queue is declared, by whichever side comes first: not durable (results are transient, as
 * Celery's default), not auto-deleted (a reconnect must not drop results sent meanwhile), and removed by
 * RabbitMQ once unused for `expiresSec` (x-expires), so the queue of a process that is gone goes away.
 */
export function replyQueueOptions(expiresSec: number): { durable: boolean; autoDelete: boolean; arguments: Record<string, unknown> } {
  return { durable: false, autoDelete: false, arguments: { 'x-expires': Math.max(1, expiresSec > 0 ? expiresSec : 86_400) * 1000 } };
}
