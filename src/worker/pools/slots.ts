// A pool of slots that run jobs outside the worker's event loop: the shared logic of the process and thread pools.
// A slot runs one job at a time. The pool enforces time limits from here, in the worker, so a task stuck in a CPU
// loop is still stopped: soft limit → abort message, hard limit → kill the slot. A slot that dies is replaced.
// `resize` changes the number of slots: growing starts new ones, shrinking retires idle ones at once and busy ones
// once their jobs have reported.
//
// Pipelining. A task the pool has seen run shorter than SHORT_TASK_MS, with no time limit, is "short": up to
// PIPELINE_DEPTH short jobs are handed to one slot at once, the jobs sent to a slot in one turn go in one message,
// and the slot reports what it ran back to back in one message (slot-main.ts). A slot's round trip, and the
// worker's store and acknowledgement that follow each outcome, are then shared by several jobs. Any other job (a
// long or new task, one with a time limit) runs alone, as without pipelining: it goes only to a slot holding no
// job, and nothing joins it. Jobs start in the order `run` was called: a lone job waiting for an empty slot is not
// overtaken by short ones.
//
// A slot that dies holding one job reports it `lost`. One that dies holding several short jobs cannot say which
// one killed it, nor which ran already: each of them is run again, alone, and one that kills its slot then is
// the one reported `lost`. A job can thus run twice when its slot dies, as when a worker dies (at-least-once);
// none is lost, and a task that kills its slot is found out and counted as before.

import { ClosedError, ConfigError, FennelError } from '../../errors.ts';
import { pipelinable, SHORT_TASK_MS, type FromSlot, type Result, type ToSlot } from './ipc.ts';
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

/**
 * The most short jobs one slot holds at once. 4 was measured slower on SQLite with 2 slots than 8 (3,900 against
 * 4,900 tasks/s); 16, with the worker's window twice as wide (worker.ts, PIPELINED_WINDOW), faster than 8 (#21, no-op
 * tasks end to end, `-P process -c 2`, interleaved runs: Redis 5,100-7,600 against 4,200-6,200, SQLite 4,700-6,400
 * against 4,400-4,700); 32 with a window of 16 was not clearly faster again. The cost: a short task that turns long
 * holds up to 15 jobs queued behind it in its slot, and a slot that dies runs up to 16 jobs again, one at a time.
 */
export const PIPELINE_DEPTH = 16;
/**
 * A task's average run (ms) moves by this share of each new run, and a run counts as at most MAX_SAMPLE_MS: one run
 * slowed by a garbage collection or a busy machine leaves a short task short (it takes three runs of 8 ms or more in a
 * row to make a 0.5 ms task long), and a task that has become long runs alone from its third or fourth run on.
 */
const AVERAGE_WEIGHT = 0.1;
const MAX_SAMPLE_MS = 4 * SHORT_TASK_MS;
/** Short tasks reported in a row before the pool says it pipelines (`pipelining`). */
const PIPELINING_AFTER = 32;
/** After the pool stops pipelining, the least time before it says so again, so a mixed load cannot flap. */
const PIPELINING_PAUSE_MS = 1000;

/** A job handed to `run` and not yet ended. `alone`: it may not share a slot (see the header). */
interface Entry {
  job: Job;
  hooks: JobHooks;
  resolve: (o: Outcome) => void;
  alone: boolean;
  timers: NodeJS.Timeout[];
}

interface Slot {
  handle: SlotHandle;
  ready: boolean;
  dead: boolean;
  tasks: number;
  /** Retired on purpose (recycling): replaced at once, not after the crash back-off. */
  recycled: boolean;
  /** Leaving for good (a shrink): killed once it has started or its jobs have reported, and not replaced. */
  retiring: boolean;
  /** Due to be recycled: takes no more jobs, and is killed (and replaced) once those it holds have reported. */
  recycling: boolean;
  /** The jobs sent to it (or about to be) and not yet reported, in the order it runs them. */
  jobs: Entry[];
  /** Jobs given to it this turn, sent together at the end of the turn. */
  outbox: Job[];
}

const RESPAWN_DELAY_MS = 500;

export class SlotPool implements Pool {
  /** Every slot from its spawn to its exit: starting, ready, retiring and dying ones. */
  private readonly slots: Slot[] = [];
  /** Jobs handed to `run` that no slot holds yet, in order. */
  private readonly waiting: Entry[] = [];
  /** Each task's average run in a slot (ms, a moving average of what slots report): what makes a task short. */
  private readonly averageMs = new Map<string, number>();
  private closing = false;
  private target: number;
  private sending: NodeJS.Immediate | undefined;
  /** Short tasks reported since the last lone job was run. */
  private shortStreak = 0;
  private stoppedPipeliningAt = -Infinity;
  private pipeliningNow = false;
  private readonly pipeliningListeners: Array<(on: boolean) => void> = [];

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

  /** True when a job of this task would be pipelined now: the worker may hand it over without a slot of its own. */
  takesAhead(name: string): boolean {
    const average = this.averageMs.get(name);
    return average !== undefined && average < SHORT_TASK_MS;
  }

  /**
   * True while the pool pipelines: the last PIPELINING_AFTER tasks reported were short, and no lone job has been run
   * since. The worker widens its prefetch window meanwhile (worker.ts).
   */
  get pipelining(): boolean {
    return this.pipeliningNow;
  }

  onPipelining(listener: (on: boolean) => void): void {
    this.pipeliningListeners.push(listener);
  }

  private setPipelining(on: boolean): void {
    if (on === this.pipeliningNow) return;
    if (on && performance.now() - this.stoppedPipeliningAt < PIPELINING_PAUSE_MS) return;
    if (!on) this.stoppedPipeliningAt = performance.now();
    this.pipeliningNow = on;
    for (const listener of this.pipeliningListeners) listener(on);
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
    // Growing: slots still finishing their jobs after an earlier shrink are kept again, rather than started anew.
    for (const slot of this.slots) if (slot.retiring && !slot.dead && this.kept() < size) slot.retiring = false;
    // Shrinking: the slots kept are busy ones first, then starting ones, so the idle ones, which can go at
    // once, are retired first; a busy one goes only after its jobs have reported, so none is cut short.
    const rank = (s: Slot): number => (s.jobs.length > 0 ? 0 : !s.ready ? 1 : 2);
    const excess = this.slots.filter((s) => !s.dead && !s.retiring).sort((a, b) => rank(a) - rank(b)).slice(size);
    for (const slot of excess) {
      slot.retiring = true;
      if (slot.ready && slot.jobs.length === 0) this.retire(slot);
    }
    await Promise.all(Array.from({ length: Math.max(0, size - this.kept()) }, () => this.startSlot()));
    this.dispatch();
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
    return this.holderOf(id)?.handle.pid;
  }

  private holderOf(id: string): Slot | undefined {
    return this.slots.find((s) => s.jobs.some((e) => e.job.id === id));
  }

  /** Starts one slot and resolves when it has loaded the app; rejects if it cannot. */
  private startSlot(): Promise<void> {
    return new Promise((resolve, reject) => {
      const slot: Slot = { handle: this.spawn(), ready: false, dead: false, tasks: 0, recycled: false, retiring: false, recycling: false, jobs: [], outbox: [] };
      // Listed while it starts, so a resize counts it and close() kills it.
      this.slots.push(slot);
      slot.handle.onMessage((message) => {
        switch (message.type) {
          case 'ready':
            slot.ready = true;
            resolve();
            // A shrink retired it while it started.
            if (slot.retiring) this.retire(slot);
            else this.dispatch();
            break;
          case 'fatal':
            reject(new FennelError(`a ${this.kind} pool slot could not start: ${message.message}`));
            break;
          case 'progress':
            slot.jobs.find((e) => e.job.id === message.id)?.hooks.onProgress(message.metaJson);
            break;
          case 'done':
            this.reported(slot, message.results, message.rssBytes);
            break;
        }
      });
      slot.handle.onExit((detail) => {
        slot.dead = true;
        const index = this.slots.indexOf(slot);
        if (index >= 0) this.slots.splice(index, 1);
        if (!slot.ready) reject(new FennelError(`a ${this.kind} pool slot exited before it was ready (${detail})`));
        this.orphaned(slot, detail);
        this.dispatch();
        if (!this.closing && slot.ready && !slot.retiring) {
          // Replace it, a little later so a slot that dies at once cannot spin the CPU. Only if still short
          // by then: a resize in between has started the slots it wants, or lowered the number.
          const respawn = setTimeout(() => {
            if (!this.closing && this.kept() < this.target) this.startSlot().catch(() => {});
          }, slot.recycled ? 0 : RESPAWN_DELAY_MS);
          // Jobs waiting for it (what a dead slot held, run again) keep the process alive until they have run.
          if (this.waiting.length === 0) respawn.unref();
        }
      });
    });
  }

  /** A slot's batch of outcomes: each job ends, then the slot is retired, recycled or given more jobs. */
  private reported(slot: Slot, results: Result[], rssBytes: number | undefined): void {
    for (const { id, outcome, ms } of results) {
      const at = slot.jobs.findIndex((e) => e.job.id === id);
      if (at < 0) continue; // ended here already (a time limit, a terminate)
      const [entry] = slot.jobs.splice(at, 1);
      const before = this.averageMs.get(entry!.job.name);
      const sample = Math.min(ms, MAX_SAMPLE_MS);
      const average = before === undefined ? sample : before * (1 - AVERAGE_WEIGHT) + sample * AVERAGE_WEIGHT;
      this.averageMs.set(entry!.job.name, average);
      if (average < SHORT_TASK_MS) this.shortStreak++;
      else this.shortStreak = 0;
      slot.tasks++;
      this.end(entry!, outcome);
    }
    if (this.shortStreak >= PIPELINING_AFTER) this.setPipelining(true);
    if (slot.dead) return;
    if (slot.retiring) {
      if (slot.jobs.length === 0) this.retire(slot);
      return;
    }
    this.maybeRecycle(slot, rssBytes);
    this.dispatch();
  }

  /**
   * What a slot that died held: jobs it was never sent go to the next slot; of those sent, one alone is `lost`, and
   * several are each run again alone (see the header).
   */
  private orphaned(slot: Slot, detail: string): void {
    const unsent = new Set(slot.outbox);
    slot.outbox = [];
    const held = slot.jobs.splice(0);
    const sent = held.filter((e) => !unsent.has(e.job));
    if (sent.length === 1) this.end(sent[0]!, { kind: 'lost', detail: `the pool slot running the task exited unexpectedly (${detail})` });
    else {
      for (const entry of sent) {
        for (const timer of entry.timers) clearTimeout(timer);
        entry.timers = [];
        entry.alone = true;
      }
    }
    this.waiting.unshift(...held.filter((e) => sent.length > 1 || unsent.has(e.job)));
  }

  private end(entry: Entry, outcome: Outcome): void {
    for (const timer of entry.timers) clearTimeout(timer);
    entry.resolve(outcome);
  }

  /**
   * Replaces a slot that has run its quota of tasks or grown past its memory limit, once the jobs it holds have
   * reported: it takes no more meanwhile, and is marked dead before it is killed so none is handed to it.
   */
  private maybeRecycle(slot: Slot, rssBytes: number | undefined): void {
    const { maxTasksPerChild, maxMemoryPerChildMb } = this.recycle;
    const tooMany = maxTasksPerChild !== undefined && slot.tasks >= maxTasksPerChild;
    const tooBig = maxMemoryPerChildMb !== undefined && rssBytes !== undefined && rssBytes > maxMemoryPerChildMb * 1024 * 1024;
    if (tooMany || tooBig) slot.recycling = true;
    if (!slot.recycling || slot.jobs.length > 0 || slot.dead) return;
    slot.dead = true;
    slot.recycled = true;
    slot.handle.kill(); // its exit starts the replacement
  }

  run(job: Job, hooks: JobHooks): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const alone = !pipelinable(job, this.averageMs.get(job.name));
      if (alone) {
        this.shortStreak = 0;
        this.setPipelining(false);
      }
      this.waiting.push({ job, hooks, resolve, alone, timers: [] });
      this.dispatch();
    });
  }

  /** Hands waiting jobs to slots, in order, until the first that no slot can take now. */
  private dispatch(): void {
    while (this.waiting.length > 0) {
      const entry = this.waiting[0]!;
      const slot = this.slotFor(entry);
      if (!slot) return;
      this.waiting.shift();
      this.assign(slot, entry);
    }
  }

  /** A lone job: an empty slot. A short job: the slot holding the fewest jobs, all short, below PIPELINE_DEPTH. */
  private slotFor(entry: Entry): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.slots) {
      if (!slot.ready || slot.dead || slot.retiring || slot.recycling) continue;
      if (slot.jobs.length === 0) return slot;
      if (entry.alone || slot.jobs.length >= PIPELINE_DEPTH || slot.jobs[0]!.alone || this.quotaReached(slot)) continue;
      if (!best || slot.jobs.length < best.jobs.length) best = slot;
    }
    return best;
  }

  /** A slot recycled after maxTasksPerChild tasks is given no more than that many. */
  private quotaReached(slot: Slot): boolean {
    const quota = this.recycle.maxTasksPerChild;
    return quota !== undefined && slot.tasks + slot.jobs.length >= quota;
  }

  private assign(slot: Slot, entry: Entry): void {
    slot.jobs.push(entry);
    const { job } = entry;
    if (entry.alone) this.startTimers(slot, entry);
    slot.outbox.push(job);
    // The jobs given to slots in this turn go in one message per slot, at its end.
    this.sending ??= setImmediate(() => this.send());
  }

  private send(): void {
    this.sending = undefined;
    for (const slot of this.slots) {
      if (slot.outbox.length === 0 || slot.dead) continue;
      slot.handle.send({ type: 'run', jobs: slot.outbox });
      slot.outbox = [];
    }
  }

  /** A lone job's time limits run from now: it begins as soon as its message arrives, its slot holding nothing else. */
  private startTimers(slot: Slot, entry: Entry): void {
    const { job } = entry;
    if (job.softTimeLimitSec) {
      entry.timers.push(setTimeout(() => slot.handle.send({ type: 'abort', id: job.id, reason: `soft time limit of ${job.softTimeLimitSec} s` }), job.softTimeLimitSec * 1000));
    }
    if (job.timeLimitSec) {
      const seconds = job.timeLimitSec;
      entry.timers.push(
        setTimeout(() => {
          // Dead before the outcome is reported: the job ends at once, and no job may be handed to this slot
          // while it is still dying.
          this.kill(slot, entry, { kind: 'timeout', seconds });
        }, seconds * 1000),
      );
    }
  }

  /** Kills a slot to end one of its jobs with `outcome`; what else it held is run again alone, as after a crash. */
  private kill(slot: Slot, entry: Entry, outcome: Outcome): void {
    slot.dead = true;
    slot.jobs.splice(slot.jobs.indexOf(entry), 1);
    slot.outbox = slot.outbox.filter((job) => job !== entry.job);
    slot.handle.kill();
    this.end(entry, outcome);
    this.dispatch();
  }

  terminate(id: string): boolean {
    const slot = this.holderOf(id);
    if (!slot) return false;
    // As for the hard time limit: dead first, so no job is handed to it while it dies; replaced on exit.
    this.kill(slot, slot.jobs.find((e) => e.job.id === id)!, { kind: 'terminated' });
    return true;
  }

  abortAll(reason: string): void {
    for (const slot of this.slots) for (const entry of slot.jobs) slot.handle.send({ type: 'abort', id: entry.job.id, reason });
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
