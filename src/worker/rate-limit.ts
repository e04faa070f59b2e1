// Per-task rate limits in one worker (Celery's rate_limit: '100/s', '10/m', '1/h'). Each task name has a
// schedule of start times spaced 1/rate apart; a task over the limit waits for its turn on a timer, holding
// its message but no pool slot, so tasks of other names run meanwhile. Burst 1, as Celery's token bucket.

import { parseRateLimit } from '../app/options.ts';
import type { RegisteredTask } from '../app/task.ts';

export class RateLimiter {
  private readonly intervalMs = new Map<string, number>();
  private readonly nextAt = new Map<string, number>();

  constructor(registry: ReadonlyMap<string, RegisteredTask>) {
    for (const [name, task] of registry) {
      const rate = task.options.rateLimit ? parseRateLimit(task.options.rateLimit) : undefined;
      if (rate) this.intervalMs.set(name, 1 / rate.perMs);
    }
  }

  /** Sets `taskName`'s limit ('10/s', '100/m', '1/h'), or removes it (null): remote control's rate_limit. */
  set(taskName: string, rateLimit: string | null): void {
    const rate = rateLimit ? parseRateLimit(rateLimit) : undefined;
    if (rate) this.intervalMs.set(taskName, 1 / rate.perMs);
    else this.intervalMs.delete(taskName);
    this.nextAt.delete(taskName);
  }

  /** Undefined if the task may start now (the common case: no promise); otherwise resolves at its turn. */
  take(taskName: string): Promise<void> | undefined {
    const interval = this.intervalMs.get(taskName);
    if (interval === undefined) return undefined;
    const now = Date.now();
    const at = Math.max(now, this.nextAt.get(taskName) ?? 0);
    this.nextAt.set(taskName, at + interval);
    if (at <= now) return undefined;
    return new Promise((resolve) => setTimeout(resolve, at - now));
  }
}
