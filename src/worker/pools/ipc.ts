// Messages between a pool and its slots (child processes or threads), as a tagged union. Both ways they carry
// batches: the jobs a slot is handed in one event-loop turn go in one `run`, and a slot reports the outcomes of the
// jobs it ran back to back in one `done` (slots.ts says when it may hold them), so a short task costs the worker a
// fraction of a message each way instead of one.

import type { Job, Outcome } from './pool.ts';

export type ToSlot = { type: 'run'; jobs: Job[] } | { type: 'abort'; id: string; reason: string };

/** One job's outcome, with how long its function ran in the slot (what the pool learns a task's length from). */
export interface Result {
  id: string;
  outcome: Outcome;
  ms: number;
}

export type FromSlot =
  | { type: 'ready' }
  | { type: 'fatal'; message: string }
  | { type: 'progress'; id: string; metaJson: string }
  /** In the order the jobs ran. `rssBytes`: the slot's resident memory after them (process slots), for --max-memory-per-child. */
  | { type: 'done'; results: Result[]; rssBytes?: number };

/** What a slot is started with. */
export interface SlotData {
  appPath: string;
}

/**
 * A task whose average run in a slot is this long or longer (ms), or not yet known, runs alone: it is handed only to a
 * slot that holds no other job, and no job is handed to its slot until it has reported. Shorter ones are pipelined.
 */
export const SHORT_TASK_MS = 2;

/**
 * Whether a job may be pipelined: a short task without time limits. A time limit runs from when the job begins, which
 * the pool knows only of a job that runs alone (it begins when it is sent).
 */
export function pipelinable(job: Job, averageMs: number | undefined): boolean {
  return averageMs !== undefined && averageMs < SHORT_TASK_MS && !job.timeLimitSec && !job.softTimeLimitSec;
}
