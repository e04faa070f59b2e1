// The autoscaler (Celery's --autoscale MAX,MIN, celery/worker/autoscale.py): once a second it compares the tasks
// the worker holds (running or waiting for a slot, Celery's reserved requests) with the pool's size:
//   - more held than slots: the pool grows at once toward that number, at most MAX;
//   - fewer: it shrinks toward that number, at least MIN, but only once `keepaliveSec` (Celery's
//     AUTOSCALE_KEEPALIVE, 30 s) have passed since it last grew, so a pool does not shrink between two bursts.
// The pool starts with MIN slots; the prefetch window is MAX × the multiplier from the start, so messages wait in
// the worker where the autoscaler sees them. A shrink retires busy slots after their task (Pool.resize).

import { ConfigError } from '../errors.ts';

export const DEFAULT_AUTOSCALE_KEEPALIVE_SEC = 30;
const TICK_MS = 1000;

export interface AutoscaleOptions {
  /** The most slots the pool grows to. */
  max: number;
  /** The fewest slots it shrinks to, and starts with. */
  min: number;
  /** How long after its last growth the pool may shrink. Default 30 (Celery's AUTOSCALE_KEEPALIVE). */
  keepaliveSec?: number;
}

/** Checks a range: MIN and MAX positive integers, MIN ≤ MAX. Throws ConfigError with the reason. */
export function checkAutoscale(max: number, min: number): void {
  if (!Number.isInteger(max) || max < 1) throw new ConfigError(`autoscale max must be a positive integer (got ${max})`);
  if (!Number.isInteger(min) || min < 1) throw new ConfigError(`autoscale min must be a positive integer (got ${min})`);
  if (min > max) throw new ConfigError(`autoscale min (${min}) is greater than max (${max})`);
}

export class Autoscaler {
  max: number;
  min: number;
  readonly keepaliveMs: number;
  private lastGrowth = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private held: () => number = () => 0;
  private size: () => number = () => this.min;

  constructor(
    options: AutoscaleOptions,
    private readonly resize: (size: number) => Promise<void>,
  ) {
    checkAutoscale(options.max, options.min);
    const keepaliveSec = options.keepaliveSec ?? DEFAULT_AUTOSCALE_KEEPALIVE_SEC;
    if (!(keepaliveSec >= 0)) throw new ConfigError(`autoscale keepaliveSec must be a number of seconds ≥ 0 (got ${keepaliveSec})`);
    this.max = options.max;
    this.min = options.min;
    this.keepaliveMs = keepaliveSec * 1000;
  }

  /** Starts the ticks; `held` counts the tasks the worker holds, `size` is the pool's size now. */
  start(held: () => number, size: () => number): void {
    this.held = held;
    this.size = size;
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Remote control's autoscale: a new range, the pool brought inside it at once. Throws ConfigError on a bad range. */
  async update(max: number, min: number): Promise<void> {
    checkAutoscale(max, min);
    this.max = max;
    this.min = min;
    // The pool is brought inside the new range now (before the next tick, whatever the keepalive says).
    const size = this.size();
    if (size > max) await this.resize(max);
    else if (size < min) await this.grow(min);
  }

  /** One step of Celery's _maybe_scale. A step still resizing when the next is due makes that one a no-op. */
  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const held = this.held();
      const size = this.size();
      const up = Math.min(held, this.max);
      if (up > size) return await this.grow(up);
      const down = Math.max(held, this.min);
      if (down < size && this.lastGrowth > 0 && Date.now() - this.lastGrowth > this.keepaliveMs) await this.resize(down);
    } catch {
      // a slot that cannot start: the next tick tries again
    } finally {
      this.busy = false;
    }
  }

  private async grow(size: number): Promise<void> {
    this.lastGrowth = Date.now();
    await this.resize(size);
  }
}
