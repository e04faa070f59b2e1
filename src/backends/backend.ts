// The result backend contract: where outcomes are stored and how waiters learn of them.
// Engines wake waiters by push where they can (Redis pub/sub) and by polling where they cannot (SQLite).
// A backend is done when test/conformance/backend.suite.ts passes against it.

import type { TaskMeta } from '../protocol/result.ts';

export interface ResultBackend {
  readonly url: string;
  /**
   * Stores a task's meta. A SUCCESS already stored is never overwritten (Celery's rule: a redelivered
   * duplicate must not replace the result of the run that completed).
   */
  store(meta: TaskMeta): Promise<void>;
  get(taskId: string): Promise<TaskMeta | undefined>;
  /** Resolves with the meta once it is in a ready state, or with undefined when `timeoutMs` passes. */
  wait(taskId: string, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<TaskMeta | undefined>;
  forget(taskId: string): Promise<void>;
  /** Number of stored results per state, for `fennel status`. */
  countByState(): Promise<Record<string, number>>;
  close(): Promise<void>;
}
