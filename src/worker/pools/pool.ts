// The pool contract: where a task's function actually runs. `process` (child processes, crash-isolated,
// the default), `thread` (worker_threads) and `async` (this event loop, for I/O-bound tasks).
// A slot runs one job at a time; `run` waits for one to take it (the process and thread pools may hand a slot several
// short jobs at once, run in turn: slots.ts). Everything it returns is an Outcome, never a
// throw: a crashed slot, a time limit and a task's own error are all outcomes the executor stores.

export interface Job {
  id: string;
  name: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  retries: number;
  queue: string | null;
  timeLimitSec: number | null;
  softTimeLimitSec: number | null;
}

export interface ErrorReport {
  name: string;
  message: string;
  stack: string | null;
}

export type Outcome =
  | { kind: 'success'; resultJson: string }
  | { kind: 'failure'; error: ErrorReport }
  /** `countdownSec` null: the task's retry policy decides. `error`: what failed (autoRetryFor, retry({ error })). */
  | { kind: 'retry'; countdownSec: number | null; reason: string | null; error: ErrorReport | null }
  | { kind: 'reject'; reason: string }
  /** The slot died before reporting (crash, SIGKILL, out of memory). */
  | { kind: 'lost'; detail: string }
  /** The hard time limit passed and the slot was killed. */
  | { kind: 'timeout'; seconds: number }
  /** The task was revoked with terminate while it ran: its slot was killed (or, in the async pool, its signal aborted and its outcome discarded). */
  | { kind: 'terminated' };

export interface JobHooks {
  /** The task called ctx.progress(meta); `metaJson` is already encoded. */
  onProgress(metaJson: string): void;
}

export interface Pool {
  readonly kind: 'process' | 'thread' | 'async';
  /** How many jobs run at once: the slots it keeps (after a resize, the new number, at once). */
  readonly size: number;
  /**
   * Changes the number of slots (remote control's pool_grow/pool_shrink, the autoscaler). Growing starts the new
   * slots now and resolves when they are ready; shrinking retires idle slots at once and busy ones as soon as
   * their job has reported, so no job is lost or cut short. `size` must be a positive integer.
   */
  resize(size: number): Promise<void>;
  /** The process ids of the slots (process pool); the worker's own pid for the thread and async pools. */
  pids(): number[];
  /** The pid of the slot running job `id` (the worker's own for the thread and async pools); undefined if not running. */
  pidOf(id: string): number | undefined;
  /** Starts the slots; rejects if the app cannot be loaded in them. */
  start(): Promise<void>;
  run(job: Job, hooks: JobHooks): Promise<Outcome>;
  /**
   * True if a job of this task would now be pipelined to a slot that runs others (slots.ts): the worker hands it over
   * without taking one of its `size` permits, so more jobs than slots are in the pool at once. Absent: never.
   */
  takesAhead?(name: string): boolean;
  /** True while the pool pipelines short tasks (slots.ts); absent: never. */
  readonly pipelining?: boolean;
  /** Called when `pipelining` changes. */
  onPipelining?(listener: (on: boolean) => void): void;
  /** Stops the job with this id if it is running here (revoke with terminate); false if it is not. */
  terminate(id: string): boolean;
  /** Aborts the signals of running jobs (hard shutdown). */
  abortAll(reason: string): void;
  /** Stops the slots. Jobs still running are killed and report `lost`. */
  close(): Promise<void>;
}
