// A pool of slots that run jobs outside the worker's event loop: the shared logic of the process and
// thread pools. Each slot runs one job at a time. The pool enforces time limits from here, in the worker,
// so a task stuck in a CPU loop is still stopped: soft limit → abort message, hard limit → kill the slot.
// A slot that dies is replaced; the job it held reports `lost`. `resize` changes the number of slots: growing
// starts new ones, shrinking retires idle ones at once and busy ones once their job has reported.

import { ClosedError, ConfigError, FennelError } from '../../errors.ts';
import type { FromSlot, ToSlot } from './ipc.ts';
import type { Job, JobHooks, Outcome, Pool } from './pool.ts';

/** One running slot, as the process or thread pool spawns it. */
export interface SlotHandle {
  send(message: ToSlot): void;
  /** Stops the slot at once. */
  kill(): void;
  onMessage(listener: (message: FromSlot) => void): void;
  onExit(listener: (detail: string) => void): void;
  /** The slot's process id: the child's (process pool), the worker's own (thread pool). */
  pid: number | undefined;
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
  /** Leaving for good (a shrink): killed once it has started or its job has reported, and not replaced. */
  retiring: boolean;
  current: { job: Job; hooks: JobHooks; resolve: (o: Outcome) => void; timers: NodeJS.Timeout[] } | undefined;
}

const RESPAWN_DELAY_MS = 500;

export class SlotPool implements Pool {
  /** Every slot from its spawn to its exit: starting, ready, retiring and dying ones. */
  private readonly slots: Slot[] = [];
  private readonly waiting: Array<() => void> = [];
  private closing = false;
  private target: number;

  constructor(
    readonly kind: 'process' | 'thread',
    size: number,
    private readonly spawn: () => SlotHandle,
    private readonly recycle: RecycleOptions = {},
  ) {
    this.target = size;
  }

  get size(): number {
    return this.target;
  }

  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.target }, () => this.startSlot()));
  }

  /** The slots that count toward the target: starting and ready ones, not those dying or retiring. */
  private kept(): number {
    return this.slots.filter((s) => !s.dead && !s.retiring).length;
  }

  async resize(size: number): Promise<void> {
    if (!Number.isInteger(size) || size < 1) throw new ConfigError(`a pool's size must be a positive integer, got ${size}`);
    // A slot started now would outlive the pool.
    if (this.closing) throw new ClosedError(`the ${this.kind} pool`);
    this.target = size;
    // Growing: slots still finishing their job after an earlier shrink are kept again, rather than started anew.
    for (const slot of this.slots) if (slot.retiring && !slot.dead && this.kept() < size) slot.retiring = false;
    // Shrinking: the slots kept are busy ones first, then starting ones, so the idle ones, which can go at
    // once, are retired first; a busy one goes only after its job has reported, so none is cut short.
    const rank = (s: Slot): number => (s.current ? 0 : !s.ready ? 1 : 2);
    const excess = this.slots.filter((s) => !s.dead && !s.retiring).sort((a, b) => rank(a) - rank(b)).slice(size);
    for (const slot of excess) {
      slot.retiring = true;
      if (slot.ready && !slot.current) this.retire(slot);
    }
    await Promise.all(Array.from({ length: Math.max(0, size - this.kept()) }, () => this.startSlot()));
  }

  /** Kills a retiring slot that holds no job; its exit starts no replacement. */
  private retire(slot: Slot): void {
    slot.dead = true;
    slot.handle.kill();
  }

  pids(): number[] {
    // Threads share the worker's process.
    if (this.kind === 'thread') return [process.pid];
    return this.slots.flatMap((s) => (s.dead || s.handle.pid === undefined ? [] : [s.handle.pid]));
  }

  pidOf(id: string): number | undefined {
    return this.slots.find((s) => s.current?.job.id === id)?.handle.pid;
  }

  /** Starts one slot and resolves when it has loaded the app; rejects if it cannot. */
  private startSlot(): Promise<void> {
    return new Promise((resolve, reject) => {
      const slot: Slot = { handle: this.spawn(), ready: false, dead: false, tasks: 0, recycled: false, retiring: false, current: undefined };
      // Listed while it starts, so a resize counts it and close() kills it.
      this.slots.push(slot);
      slot.handle.onMessage((message) => {
        switch (message.type) {
          case 'ready':
            slot.ready = true;
            resolve();
            // A shrink retired it while it started.
            if (slot.retiring) this.retire(slot);
            else this.release();
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
              if (slot.retiring) this.retire(slot);
              else this.maybeRecycle(slot, message.rssBytes);
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
        if (!this.closing && slot.ready && !slot.retiring) {
          // Replace it, a little later so a slot that dies at once cannot spin the CPU. Only if still short
          // by then: a resize in between has started the slots it wants, or lowered the number.
          setTimeout(() => {
            if (!this.closing && this.kept() < this.target) this.startSlot().catch(() => {});
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
    while (this.waiting.length > 0 && this.idleSlot()) this.waiting.shift()!();
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
    return this.slots.find((s) => s.ready && !s.dead && !s.retiring && !s.current);
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
