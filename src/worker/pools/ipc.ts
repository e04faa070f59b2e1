// Messages between a pool and its slots (child processes or threads), as a tagged union.

import type { Job, Outcome } from './pool.ts';

export type ToSlot = { type: 'run'; job: Job } | { type: 'abort'; id: string; reason: string };

export type FromSlot =
  | { type: 'ready' }
  | { type: 'fatal'; message: string }
  | { type: 'progress'; id: string; metaJson: string }
  /** `rssBytes`: the slot's resident memory after the job (process slots), for --max-memory-per-child. */
  | { type: 'done'; id: string; outcome: Outcome; rssBytes?: number };

/** What a slot is started with. */
export interface SlotData {
  appPath: string;
}
