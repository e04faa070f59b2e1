// The async pool: jobs run in the worker's own event loop, up to `size` at once. For I/O-bound tasks
// (HTTP calls, database queries). A CPU-bound task here blocks the worker, its lease renewals included;
// use the process pool for those. A hard time limit can only abandon the job here, not stop it.

import type { RegisteredTask } from '../../app/task.ts';
import { LazyAbort } from '../lazy-abort.ts';
import { runJob } from '../run-job.ts';
import type { Job, JobHooks, Outcome, Pool } from './pool.ts';

export class AsyncPool implements Pool {
  readonly kind = 'async';
  private readonly running = new Map<string, { controller: LazyAbort; terminated: () => void }>();
  private readonly waiting: Array<() => void> = [];

  constructor(
    readonly size: number,
    private readonly registry: ReadonlyMap<string, RegisteredTask>,
  ) {}

  async start(): Promise<void> {}

  async run(job: Job, hooks: JobHooks): Promise<Outcome> {
    while (this.running.size >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    const controller = new LazyAbort();
    // A terminated job cannot be killed in this event loop: its signal is aborted and its outcome discarded.
    let terminated!: () => void;
    const termination = new Promise<Outcome>((resolve) => (terminated = () => resolve({ kind: 'terminated' })));
    this.running.set(job.id, { controller, terminated });
    const timers: NodeJS.Timeout[] = [];
    try {
      const work = Promise.race([runJob(this.registry, job, () => controller.signal, (metaJson) => hooks.onProgress(metaJson)), termination]);
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

  terminate(id: string): boolean {
    const running = this.running.get(id);
    if (!running) return false;
    running.controller.abort(new Error('revoked with terminate'));
    running.terminated();
    return true;
  }

  abortAll(reason: string): void {
    for (const { controller } of this.running.values()) controller.abort(new Error(reason));
  }

  async close(): Promise<void> {
    this.abortAll('worker closed');
  }
}
