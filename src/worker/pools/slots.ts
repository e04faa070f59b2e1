// A pool of slots that run jobs outside the worker's event loop: the shared logic of the process and
// thread pools. Each slot runs one job at a time. The pool enforces time limits from here, in the worker,
// so a task stuck in a CPU loop is still stopped: soft limit → abort message, hard limit → kill the slot.
// A slot that dies is replaced; the job it held reports `lost`.

import { FennelError } from '../../errors.ts';
import type { FromSlot, ToSlot } from './ipc.ts';
import type { Job, JobHooks, Outcome, Pool } from './pool.ts';

/** One running slot, as the process or thread pool spawns it. */
export interface SlotHandle {
  send(message: ToSlot): void;
  /** Stops the slot at once. */
  kill(): void;
  onMessage(listener: (message: FromSlot) => void): void;
  onExit(listener: (detail: string) => void): void;
}

/** When a slot is replaced after its job, without losing it (Celery's max_tasks_per_child, max_memory_per_child). */
export interface RecycleOptions {
  maxTasksPerChild?: number | undefined;
  maxMemoryPerChildMb?: number | undefined;
}

interface Slot {
  handle: SlotHandle;
  ready: boolean;
  dead: boolean;
  tasks: number;
  /** Retired on purpose (recycling): replaced at once, not after the crash back-off. */
  recycled: boolean;
  current: { job: Job; hooks: JobHooks; resolve: (o: Outcome) => void; timers: NodeJS.Timeout[] } | undefined;
}

const RESPAWN_DELAY_MS = 500;

export class SlotPool implements Pool {
  private readonly slots: Slot[] = [];
  private readonly waiting: Array<() => void> = [];
  private closing = false;

  constructor(
    readonly kind: 'process' | 'thread',
    readonly size: number,
    private readonly spawn: () => SlotHandle,
    private readonly recycle: RecycleOptions = {},
  ) {}

  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.size }, () => this.startSlot()));
  }

  /** Starts one slot and resolves when it has loaded the app; rejects if it cannot. */
  private startSlot(): Promise<void> {
    return new Promise((resolve, reject) => {
      const slot: Slot = { handle: this.spawn(), ready: false, dead: false, tasks: 0, recycled: false, current: undefined };
      slot.handle.onMessage((message) => {
        switch (message.type) {
          case 'ready':
            slot.ready = true;
            this.slots.push(slot);
            this.release();
            resolve();
            break;
          case 'fatal':
            reject(new FennelError(`a ${this.kind} pool slot could not start: ${message.message}`));
            break;
          case 'progress':
            if (slot.current?.job.id === message.id) slot.current.hooks.onProgress(message.metaJson);
            break;
          case 'done':
            if (slot.current?.job.id === message.id) {
              this.finish(slot, message.outcome);
              this.maybeRecycle(slot, message.rssBytes);
            }
            break;
        }
      });
      slot.handle.onExit((detail) => {
        slot.dead = true;
        const index = this.slots.indexOf(slot);
        if (index >= 0) this.slots.splice(index, 1);
        if (!slot.ready) reject(new FennelError(`a ${this.kind} pool slot exited before it was ready (${detail})`));
        if (slot.current) this.finish(slot, { kind: 'lost', detail: `the pool slot running the task exited unexpectedly (${detail})` });
        if (!this.closing && slot.ready) {
          // Replace it, a little later so a slot that dies at once cannot spin the CPU.
          setTimeout(() => {
            if (!this.closing) this.startSlot().catch(() => {});
          }, slot.recycled ? 0 : RESPAWN_DELAY_MS).unref();
        }
      });
    });
  }

  private finish(slot: Slot, outcome: Outcome): void {
    const current = slot.current;
    if (!current) return;
    slot.current = undefined;
    for (const timer of current.timers) clearTimeout(timer);
    current.resolve(outcome);
    this.release();
  }

  /**
   * Replaces a slot that has run its quota of tasks or grown past its memory limit. Its job's outcome is
   * already reported, so nothing is lost; it is marked dead first so no job is handed to it while it exits.
   */
  private maybeRecycle(slot: Slot, rssBytes: number | undefined): void {
    slot.tasks++;
    const { maxTasksPerChild, maxMemoryPerChildMb } = this.recycle;
    const tooMany = maxTasksPerChild !== undefined && slot.tasks >= maxTasksPerChild;
    const tooBig = maxMemoryPerChildMb !== undefined && rssBytes !== undefined && rssBytes > maxMemoryPerChildMb * 1024 * 1024;
    if (!tooMany && !tooBig || slot.dead) return;
    slot.dead = true;
    slot.recycled = true;
    slot.handle.kill(); // its exit starts the replacement
  }

  private release(): void {
    while (this.waiting.length > 0 && this.slots.some((s) => s.ready && !s.dead && !s.current)) this.waiting.shift()!();
  }

  async run(job: Job, hooks: JobHooks): Promise<Outcome> {
    let slot = this.idleSlot();
    while (!slot) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      slot = this.idleSlot();
    }
    const taken = slot;
    return new Promise<Outcome>((resolve) => {
      const timers: NodeJS.Timeout[] = [];
      taken.current = { job, hooks, resolve, timers };
      if (job.softTimeLimitSec) {
        timers.push(setTimeout(() => taken.handle.send({ type: 'abort', id: job.id, reason: `soft time limit of ${job.softTimeLimitSec} s` }), job.softTimeLimitSec * 1000));
      }
      if (job.timeLimitSec) {
        const seconds = job.timeLimitSec;
        timers.push(
          setTimeout(() => {
            // Dead before the outcome is reported: finishing frees the worker's slot at once, and the next
            // job must not be handed to this one while it is still dying.
            taken.dead = true;
            taken.handle.kill();
            this.finish(taken, { kind: 'timeout', seconds });
          }, seconds * 1000),
        );
      }
      taken.handle.send({ type: 'run', job });
    });
  }

  private idleSlot(): Slot | undefined {
    return this.slots.find((s) => s.ready && !s.dead && !s.current);
  }

  terminate(id: string): boolean {
    const slot = this.slots.find((s) => s.current?.job.id === id);
    if (!slot) return false;
    // As for the hard time limit: dead first, so no job is handed to it while it dies; replaced on exit.
    slot.dead = true;
    slot.handle.kill();
    this.finish(slot, { kind: 'terminated' });
    return true;
  }

  abortAll(reason: string): void {
    for (const slot of this.slots) if (slot.current) slot.handle.send({ type: 'abort', id: slot.current.job.id, reason });
  }

  async close(): Promise<void> {
    this.closing = true;
    const slots = [...this.slots];
    await Promise.all(
      slots.map(
        (slot) =>
          new Promise<void>((resolve) => {
            if (slot.dead) return resolve();
            slot.handle.onExit(() => resolve());
            slot.handle.kill();
          }),
      ),
    );
  }
}
