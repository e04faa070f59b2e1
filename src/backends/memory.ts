// memory:// — an in-process result backend for unit tests; waiters are woken directly on store.

import type { TaskMeta } from '../protocol/result.ts';
import { isReady, States } from '../protocol/states.ts';
import type { ResultBackend } from './backend.ts';

export class MemoryBackend implements ResultBackend {
  private readonly metas = new Map<string, TaskMeta>();
  private readonly waiters = new Map<string, Set<(meta: TaskMeta | undefined) => void>>();

  constructor(readonly url = 'memory://') {}

  async store(meta: TaskMeta): Promise<void> {
    if (this.metas.get(meta.task_id)?.status === States.SUCCESS) return;
    this.metas.set(meta.task_id, meta);
    if (isReady(meta.status)) for (const wake of [...(this.waiters.get(meta.task_id) ?? [])]) wake(meta);
  }

  async get(taskId: string): Promise<TaskMeta | undefined> {
    return this.metas.get(taskId);
  }

  wait(taskId: string, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<TaskMeta | undefined> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const current = this.metas.get(taskId);
    if (current && isReady(current.status)) return Promise.resolve(current);
    return new Promise((resolve, reject) => {
      let set = this.waiters.get(taskId);
      if (!set) this.waiters.set(taskId, (set = new Set()));
      const waiters = set;
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        waiters.delete(done);
        if (waiters.size === 0) this.waiters.delete(taskId);
      };
      const done = (meta: TaskMeta | undefined): void => {
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
    });
  }

  async forget(taskId: string): Promise<void> {
    this.metas.delete(taskId);
  }

  async countByState(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const meta of this.metas.values()) counts[meta.status] = (counts[meta.status] ?? 0) + 1;
    return counts;
  }

  async close(): Promise<void> {
    for (const set of [...this.waiters.values()]) for (const wake of [...set]) wake(undefined);
    this.waiters.clear();
  }
}
