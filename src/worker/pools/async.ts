// The async pool: jobs run in the worker's own event loop, up to `size` at once. For I/O-bound tasks
// (HTTP calls, database queries). A CPU-bound task here blocks the worker, its lease renewals included;
// use the process pool for those. A hard time limit can only abandon the job here, not stop it.

import type { RegisteredTask } from '../../app/task.ts';
import { runJob } from '../run-job.ts';
import type { Job, JobHooks, Outcome, Pool } from './pool.ts';

export class AsyncPool implements Pool {
  readonly kind = 'async';
  private readonly running = new Map<string, AbortController>();
  private readonly waiting: Array<() => void> = [];

  constructor(
    readonly size: number,
    private readonly registry: ReadonlyMap<string, RegisteredTask>,
  ) {}

  async start(): Promise<void> {}

  async run(job: Job, hooks: JobHooks): Promise<Outcome> {
    while (this.running.size >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    const controller = new AbortController();
    this.running.set(job.id, controller);
    const timers: NodeJS.Timeout[] = [];
    try {
      const work = runJob(this.registry, job, controller.signal, (metaJson) => hooks.onProgress(metaJson));
      if (job.softTimeLimitSec) timers.push(setTimeout(() => controller.abort(new Error(`soft time limit of ${job.softTimeLimitSec} s`)), job.softTimeLimitSec * 1000));
      if (!job.timeLimitSec) return await work;
      const seconds = job.timeLimitSec;
      const limit = new Promise<Outcome>((resolve) => {
        timers.push(
          setTimeout(() => {
            controller.abort(new Error(`hard time limit of ${seconds} s`));
            resolve({ kind: 'timeout', seconds });
          }, seconds * 1000),
        );
      });
      return await Promise.race([work, limit]);
    } finally {
      for (const timer of timers) clearTimeout(timer);
      this.running.delete(job.id);
      this.waiting.shift()?.();
    }
  }

  abortAll(reason: string): void {
    for (const controller of this.running.values()) controller.abort(new Error(reason));
  }

  async close(): Promise<void> {
    this.abortAll('worker closed');
  }
}
