// The task context: what `currentTask()` returns inside a running task. It travels with the task's async
// work through AsyncLocalStorage. The store is kept on globalThis so that two copies of this module (a
// worker loaded from dist/ running an app that imported src/, say) still share one context.

import { AsyncLocalStorage } from 'node:async_hooks';
import { FennelError, Retry } from '../errors.ts';

export interface TaskContext {
  readonly id: string;
  readonly name: string;
  readonly retries: number;
  readonly queue: string | null;
  /** Aborted when the task passes its soft time limit or the worker shuts down hard. */
  readonly signal: AbortSignal;
  /** Sets state PROGRESS with `meta`, visible to `AsyncResult.state` and `AsyncResult.info()`. */
  progress(meta: unknown): Promise<void>;
  /**
   * Ends this run and schedules another with `retries + 1`: `countdownMs` (or `countdownSec`) from now, else as
   * the task's `retryBackoff` says, else at once. `error` is what went wrong: if no retries are left, the task
   * FAILS with it (without one, with MaxRetriesExceededError).
   */
  retry(options?: { countdownMs?: number; countdownSec?: number; error?: unknown; reason?: unknown }): never;
}

const KEY = Symbol.for('fennel.task-context');
const globals = globalThis as unknown as Record<symbol, AsyncLocalStorage<TaskContext> | undefined>;
const storage: AsyncLocalStorage<TaskContext> = (globals[KEY] ??= new AsyncLocalStorage<TaskContext>());

/** Calls `fn(...args)` with `context` as the current task (arguments passed through: no closure per call). */
export function runInContext<A extends unknown[], T>(context: TaskContext, fn: (...args: A) => T, ...args: A): T {
  return storage.run(context, fn, ...args);
}

/** The context of the task this code runs in. Throws outside a task. */
export function currentTask(): TaskContext {
  const context = storage.getStore();
  if (!context) throw new FennelError('currentTask() was called outside a running task');
  return context;
}

export function makeContext(fields: {
  id: string;
  name: string;
  retries: number;
  queue: string | null;
  /** Read when the task first reads `signal` (the worker makes its AbortController only then). */
  signal: () => AbortSignal;
  progress: (meta: unknown) => Promise<void>;
}): TaskContext {
  const { id, name, retries, queue, signal, progress } = fields;
  return {
    id,
    name,
    retries,
    queue,
    get signal() {
      return signal();
    },
    progress,
    retry(options = {}) {
      const countdownSec = options.countdownMs !== undefined ? options.countdownMs / 1000 : (options.countdownSec ?? null);
      throw new Retry(countdownSec, options.reason ?? (options.error instanceof Error ? options.error.message : options.error), options.error);
    },
  };
}
