// The async pool: jobs run in the worker's own event loop, up to `size` at once. For I/O-bound tasks
// (HTTP calls, database queries). A CPU-bound task here blocks the worker, its lease renewals included;
// use the process pool for those. A hard time limit can only abandon the job here, not stop it.
// `resize` moves the limit: growing starts waiting jobs at once, shrinking lets running ones finish.

import type { RegisteredTask } from '../../app/task.ts';
import { ConfigError } from '../../errors.ts';
import { LazyAbort } from '../lazy-abort.ts';
import { runJob } from '../run-job.ts';
import type { Job, JobHooks, Outcome, Pool } from './pool.ts';

interface Running {
  controller: LazyAbort;
  /** Settles the job; the first call wins (its outcome, a termination or the hard time limit). */
  finish: (outcome: Outcome) => void;
}

export class AsyncPool implements Pool {
  readonly kind = 'async';
  private readonly running = new Map<string, Running>();
  private readonly waiting: Array<() => void> = [];
  private limit: number;

  constructor(
    size: number,
    private readonly registry: ReadonlyMap<string, RegisteredTask>,
  ) {
    this.limit = size;
  }

  get size(): number {
    return this.limit;
  }

  async start(): Promise<void> {}

  async resize(size: number): Promise<void> {
    if (!Number.isInteger(size) || size < 1) throw new ConfigError(`a pool's size must be a positive integer, got ${size}`);
    this.limit = size;
    // One waiting job per new place; each checks the limit again as it wakes.
    for (let free = size - this.running.size; free > 0 && this.waiting.length > 0; free--) this.waiting.shift()!();
  }

  pids(): number[] {
    return [process.pid];
  }

  pidOf(id: string): number | undefined {
    return this.running.has(id) ? process.pid : undefined;
  }

  run(job: Job, hooks: JobHooks): Promise<Outcome> {
    return this.running.size < this.limit ? this.runNow(job, hooks) : this.runLater(job, hooks);
  }

  private async runLater(job: Job, hooks: JobHooks): Promise<Outcome> {
    while (this.running.size >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    return this.runNow(job, hooks);
  }

  /**
   * One promise per job, settled by whichever comes first. No race of promises and no timers for a job
   * without time limits: a worker running 20,000 no-op tasks a second made five promises per job for them.
   */
  private runNow(job: Job, hooks: JobHooks): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const controller = new LazyAbort();
      let soft: NodeJS.Timeout | undefined;
      let hard: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (outcome: Outcome): void => {
        if (done) return;
        done = true;
        clearTimeout(soft);
        clearTimeout(hard);
        this.running.delete(job.id);
        // After a shrink, a place frees only once the running jobs are below the new limit.
        if (this.running.size < this.limit) this.waiting.shift()?.();
        resolve(outcome);
      };
      this.running.set(job.id, { controller, finish });
      if (job.softTimeLimitSec) soft = setTimeout(() => controller.abort(new Error(`soft time limit of ${job.softTimeLimitSec} s`)), job.softTimeLimitSec * 1000);
      if (job.timeLimitSec) {
        const seconds = job.timeLimitSec;
        hard = setTimeout(() => {
          controller.abort(new Error(`hard time limit of ${seconds} s`));
          finish({ kind: 'timeout', seconds });
        }, seconds * 1000);
      }
      const outcome = runJob(this.registry, job, () => controller.signal, (metaJson) => hooks.onProgress(metaJson));
      // runJob's promise never rejects: every end of a task is an outcome.
      if (outcome instanceof Promise) void outcome.then(finish);
      else finish(outcome);
    });
  }

  terminate(id: string): boolean {
    const running = this.running.get(id);
    if (!running) return false;
    // A terminated job cannot be killed in this event loop: its signal is aborted and its outcome discarded.
    running.controller.abort(new Error('revoked with terminate'));
    running.finish({ kind: 'terminated' });
    return true;
  }

  abortAll(reason: string): void {
    for (const { controller } of this.running.values()) controller.abort(new Error(reason));
  }

  async close(): Promise<void> {
    this.abortAll('worker closed');
  }
}
