// The waiters of a result backend: promises for task ids, settled by a store (wake), a timeout (undefined),
// an abort signal or the engine (rejected). Shared by every engine; engines only decide when to wake.
// A producer waits on every result it sends, so a wait is one small object and its promise: one waiter per
// id is the rule, so an id maps to its waiter (an array only when there are several), and no closures.

import type { TaskMeta } from '../protocol/result.ts';

/** One pending wait. It is its own abort listener (`handleEvent`), and its timer's argument. */
class Waiter {
  timer: NodeJS.Timeout | undefined;

  constructor(
    readonly owner: Waiters,
    readonly taskId: string,
    readonly resolve: (meta: TaskMeta | undefined) => void,
    readonly reject: (reason: unknown) => void,
    readonly signal: AbortSignal | undefined,
  ) {}

  /** The signal aborted. */
  handleEvent(): void {
    if (this.owner.remove(this)) this.reject(this.signal?.reason);
  }

  /** Stops the timer and the abort listener; the waiter is out of its owner's map already. */
  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this);
  }
}

function expire(waiter: Waiter): void {
  if (waiter.owner.remove(waiter)) waiter.resolve(undefined);
}

export class Waiters {
  private readonly byId = new Map<string, Waiter | Waiter[]>();
  // A pending get() keeps its process alive, as any awaited I/O does; engines unref their own timers. One
  // timer, referenced only while anyone waits (a get() at a time would otherwise make and clear one each).
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(
    /** Called when the last waiter of all is gone. */
    private readonly onEmpty: () => void = () => {},
    /** Called when the last waiter of a task id is gone (woken, timed out, aborted or rejected). */
    private readonly onReleased: (taskId: string) => void = () => {},
  ) {}

  /** Number of task ids waited for. */
  get size(): number {
    return this.byId.size;
  }

  /** The task ids waited for. */
  ids(): IterableIterator<string> {
    return this.byId.keys();
  }

  has(taskId: string): boolean {
    return this.byId.has(taskId);
  }

  /** Waits for `wake(taskId, meta)`; resolves undefined after `timeoutMs`; rejects if `signal` aborts. */
  add(taskId: string, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<TaskMeta | undefined> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let waiter!: Waiter;
    const waiting = new Promise<TaskMeta | undefined>((resolve, reject) => {
      waiter = new Waiter(this, taskId, resolve, reject, signal);
    });
    if (options.timeoutMs !== undefined) waiter.timer = setTimeout(expire, options.timeoutMs, waiter);
    signal?.addEventListener('abort', waiter, { once: true });
    const entry = this.byId.get(taskId);
    if (entry === undefined) this.byId.set(taskId, waiter);
    else if (Array.isArray(entry)) entry.push(waiter);
    else this.byId.set(taskId, [entry, waiter]);
    if (this.byId.size === 1 && entry === undefined) (this.keepAlive ??= setInterval(() => {}, 1 << 30)).ref();
    return waiting;
  }

  wake(taskId: string, meta: TaskMeta | undefined): void {
    const entry = this.take(taskId);
    if (entry === undefined) return;
    if (Array.isArray(entry)) for (const waiter of entry) settle(waiter).resolve(meta);
    else settle(entry).resolve(meta);
    this.released(taskId);
  }

  /** Rejects every waiter of an id: the engine cannot wait for it (its subscription failed, say). */
  reject(taskId: string, reason: unknown): void {
    const entry = this.take(taskId);
    if (entry === undefined) return;
    if (Array.isArray(entry)) for (const waiter of entry) settle(waiter).reject(reason);
    else settle(entry).reject(reason);
    this.released(taskId);
  }

  /** Resolves every waiter with undefined (the backend is closing). */
  wakeAll(): void {
    for (const taskId of [...this.byId.keys()]) this.wake(taskId, undefined);
  }

  /** Takes one waiter out (its timeout or abort); false if it was settled already. */
  remove(waiter: Waiter): boolean {
    const entry = this.byId.get(waiter.taskId);
    if (entry === waiter) this.byId.delete(waiter.taskId);
    else {
      const index = Array.isArray(entry) ? entry.indexOf(waiter) : -1;
      if (index < 0) return false;
      (entry as Waiter[]).splice(index, 1);
      if ((entry as Waiter[]).length === 0) this.byId.delete(waiter.taskId);
    }
    waiter.dispose();
    if (!this.byId.has(waiter.taskId)) this.released(waiter.taskId);
    return true;
  }

  private take(taskId: string): Waiter | Waiter[] | undefined {
    const entry = this.byId.get(taskId);
    if (entry !== undefined) this.byId.delete(taskId);
    return entry;
  }

  private released(taskId: string): void {
    this.onReleased(taskId);
    if (this.byId.size === 0) {
      this.keepAlive?.unref();
      this.onEmpty();
    }
  }
}

function settle(waiter: Waiter): Waiter {
  waiter.dispose();
  return waiter;
}
