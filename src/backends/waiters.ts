// The waiters of a result backend: promises for task ids, settled by a store (wake), a timeout (undefined)
// or an abort signal (rejected with its reason). Shared by every engine; engines only decide when to wake.

import type { TaskMeta } from '../protocol/result.ts';

type Waiter = (meta: TaskMeta | undefined) => void;

export class Waiters {
  private readonly byId = new Map<string, Set<Waiter>>();
  // A pending get() keeps its process alive, as any awaited I/O does; engines unref their own timers. One
  // timer, referenced only while anyone waits (a get() at a time would otherwise make and clear one each).
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(private readonly onEmpty: () => void = () => {}) {}

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
    return new Promise((resolve, reject) => {
      let set = this.byId.get(taskId);
      if (!set) this.byId.set(taskId, (set = new Set()));
      const waiters = set;
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        waiters.delete(done);
        if (waiters.size === 0) this.byId.delete(taskId);
        if (this.byId.size === 0) {
          this.keepAlive?.unref();
          this.onEmpty();
        }
      };
      const done: Waiter = (meta) => {
        cleanup();
        resolve(meta);
      };
      const onAbort = (): void => {
        cleanup();
        reject(signal?.reason);
      };
      const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => done(undefined), options.timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      waiters.add(done);
      (this.keepAlive ??= setInterval(() => {}, 1 << 30)).ref();
    });
  }

  wake(taskId: string, meta: TaskMeta | undefined): void {
    for (const waiter of [...(this.byId.get(taskId) ?? [])]) waiter(meta);
  }

  /** Resolves every waiter with undefined (the backend is closing). */
  wakeAll(): void {
    for (const taskId of [...this.byId.keys()]) this.wake(taskId, undefined);
  }
}
