// Where each task's result goes back to, for the rpc:// result backend: the `reply_to` of the deliveries
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
