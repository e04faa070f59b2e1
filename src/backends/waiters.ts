// The waiters of a result backend: promises for task ids, settled by a store (wake), a timeout (undefined),
// an abort signal, the failure of the publish that sent the call, or the engine (rejected). Shared by every
// engine; engines only decide when to wake.
// A producer waits on every result it sends, so a wait is one small object and its promise: one waiter per
// id is the rule, so an id maps to its waiter (an array only when there are several), and no closures.

import type { TaskMeta } from '../protocol/result.ts';
import type { WaitOptions } from './backend.ts';

/** One pending wait; its timer's argument. */
class Waiter {
  timer: NodeJS.Timeout | undefined;
  aborts: Aborts | undefined;
  publish: PublishWatch | undefined;

  constructor(
    readonly owner: Waiters,
    readonly taskId: string,
    readonly resolve: (meta: TaskMeta | undefined) => void,
    readonly reject: (reason: unknown) => void,
  ) {}

  /** Stops the timer and leaves its signal's group; the waiter is out of its owner's map already. */
  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.aborts?.leave(this);
    this.publish?.leave(this);
  }
}

function expire(waiter: Waiter): void {
  if (waiter.owner.remove(waiter)) waiter.resolve(undefined);
}

/**
 * The waiters that share one abort signal, and the signal's one listener for all of them. An EventTarget
 * looks for a listener by walking its list on every add and remove, so one listener per waiter made the
 * results of one publish (which share the signal its failure aborts) cost each other time quadratic in their number.
 */
class Aborts {
  private readonly members = new Set<Waiter>();

  constructor(
    private readonly groups: Map<AbortSignal, Aborts>,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener('abort', this, { once: true });
  }

  join(waiter: Waiter): void {
    this.members.add(waiter);
    waiter.aborts = this;
  }

  leave(waiter: Waiter): void {
    this.members.delete(waiter);
    if (this.members.size === 0) {
      this.signal.removeEventListener('abort', this);
      this.groups.delete(this.signal);
    }
  }

  /** The signal aborted: every member is rejected with its reason. */
  handleEvent(): void {
    for (const waiter of [...this.members]) if (waiter.owner.remove(waiter)) waiter.reject(this.signal.reason);
  }
}

/**
 * The waiters whose calls went out in one publish (`failsWith`: the results of a delayMany share it), and the
 * publish's one reaction for all of them: its failure rejects every member with its error. A promise rather than
 * an AbortSignal, which survives V8's young-generation collections once it has a listener.
 */
class PublishWatch {
  private readonly members = new Set<Waiter>();

  constructor(groups: Map<Promise<unknown>, PublishWatch>, publish: Promise<unknown>) {
    publish.then(
      () => groups.delete(publish),
      (reason: unknown) => {
        groups.delete(publish);
        for (const waiter of [...this.members]) if (waiter.owner.remove(waiter)) waiter.reject(reason);
      },
    );
  }

  join(waiter: Waiter): void {
    this.members.add(waiter);
    waiter.publish = this;
  }

  leave(waiter: Waiter): void {
    this.members.delete(waiter);
  }
}

export class Waiters {
  private readonly byId = new Map<string, Waiter | Waiter[]>();
  private readonly bySignal = new Map<AbortSignal, Aborts>();
  private readonly byPublish = new Map<Promise<unknown>, PublishWatch>();
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

  /**
   * Waits for `wake(taskId, meta)`; resolves undefined after `timeoutMs`; rejects if `signal` aborts or
   * `failsWith` rejects.
   */
  add(taskId: string, options: WaitOptions): Promise<TaskMeta | undefined> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let waiter!: Waiter;
    const waiting = new Promise<TaskMeta | undefined>((resolve, reject) => {
      waiter = new Waiter(this, taskId, resolve, reject);
    });
    if (options.timeoutMs !== undefined) waiter.timer = setTimeout(expire, options.timeoutMs, waiter);
    if (signal) {
      let aborts = this.bySignal.get(signal);
      if (!aborts) this.bySignal.set(signal, (aborts = new Aborts(this.bySignal, signal)));
      aborts.join(waiter);
    }
    if (options.failsWith) {
      let watch = this.byPublish.get(options.failsWith);
      if (!watch) this.byPublish.set(options.failsWith, (watch = new PublishWatch(this.byPublish, options.failsWith)));
      watch.join(waiter);
    }
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
