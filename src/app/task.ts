// Task<Args, R>: a registered function that can be called in-process (`add(2, 3)`) or sent to a worker
// (`add.delay(2, 3)`, `add.applyAsync([2, 3], options)`). The argument and result types flow from the
// function's own signature, so `add.delay('x', 3)` does not compile and `await add.delay(2, 3)` is a number.

import { randomUUID } from 'node:crypto';
import type { ZodType } from 'zod';
import { ConfigError } from '../errors.ts';
import { Group, Signature, STARMAP_TASK } from './canvas.ts';
import type { Fennel } from './fennel.ts';
import type { BroadcastResult } from './broadcast.ts';
import type { AsyncResult } from './result.ts';
import { makeContext, runInContext } from './context.ts';
import type { Memo, TaskCacheOptions } from './memo.ts';

/** Per-call options, Celery's names; times in seconds as in Celery. */
export interface CallOptions {
  /** Queue to send to; wins over the route table and the task's own queue. */
  queue?: string;
  /** Run no sooner than this many seconds from now. */
  countdown?: number;
  /** Run no sooner than this time (a Date, or an ISO 8601 string with a time zone). */
  eta?: Date | string;
  /** Do not run after this time (a Date or ISO 8601 string) or this many seconds from now; the result becomes REVOKED. */
  expires?: Date | string | number;
  /** 0–255; on sqlite:// higher runs first. */
  priority?: number;
  /** Use this id instead of a new UUID. */
  taskId?: string;
  /**
   * With `taskId`: enqueue at most once per id while the first such call is still waiting or running
   * (BullMQ's jobId semantics); a duplicate is dropped by the broker and its AsyncResult is the first call's
   * (same id). Needs an engine that checks atomically: sqlite://, redis://, memory://.
   * `{ ttlSec }`: at most once per id within `ttlSec` of the first such call, whether or not it has run since
   * (BullMQ's throttle mode; beat's fires).
   */
  deduplicate?: boolean | { ttlSec: number };
  /** Store no result (get() would wait for ever). */
  ignoreResult?: boolean;
  /** Kill the task after this many milliseconds (hard limit): its pool slot is replaced, the task FAILS with TimeLimitExceeded. */
  timeLimitMs?: number;
  /** Abort the task's signal after this many milliseconds (soft limit), so it can clean up. */
  softTimeLimitMs?: number;
  /** The hard limit in seconds (Celery's unit); `timeLimitMs` wins if both are given. */
  timeLimitSec?: number;
  /** The soft limit in seconds (Celery's unit); `softTimeLimitMs` wins if both are given. */
  softTimeLimitSec?: number;
  /** Keyword arguments, for tasks a Python worker runs. A Fennel task receives them as a trailing object. */
  kwargs?: Record<string, unknown>;
  /**
   * Send to the worker with this node name only (`fennel@host1`), through its own queue `<name>.dq2` (Celery's
   * worker_direct). The message waits there if that worker is not running. Not with `queue` or `broadcast`.
   */
  worker?: string;
  /**
   * Every worker online runs this call once (Celery's Broadcast queues): sent to `queue` (default: the app's
   * `broadcastQueue`) as a broadcast; the handle is a BroadcastResult with one result per worker. A worker that
   * starts later does not run it.
   */
  broadcast?: boolean;
}

/** Defaults a task carries for every call, set at `app.task(name, fn, options)`. */
export interface TaskOptions {
  queue?: string;
  priority?: number;
  /** How many times the task may be retried (Celery's max_retries; `currentTask().retries` counts the attempts so far). */
  maxRetries?: number;
  /** Exponential backoff between retries: `true` (1 s doubling, capped at 10 min, full jitter) or the parts of it. */
  retryBackoff?: boolean | { baseMs?: number; maxMs?: number; jitter?: boolean };
  /** Errors that retry the task automatically: classes (instanceof) or names (`error.name`). */
  autoRetryFor?: ReadonlyArray<string | (abstract new (...args: never[]) => Error)>;
  /** At most this many starts per worker: '100/s', '10/m', '1/h' (Celery's rate_limit); beyond it tasks wait their turn. */
  rateLimit?: string;
  timeLimitMs?: number;
  softTimeLimitMs?: number;
  timeLimitSec?: number;
  softTimeLimitSec?: number;
  ignoreResult?: boolean;
  /** Every call is a broadcast (CallOptions.broadcast): every worker online runs it once; `delay()` returns a BroadcastResult. */
  broadcast?: boolean;
  /** Callable over HTTP through the gateway (`fennel gateway`); tasks are not exposed unless they say so. */
  expose?: boolean;
  /** A zod schema for the positional arguments (e.g. `z.tuple([z.number()])`); the gateway answers 400 with its reasons. */
  schema?: ZodType;
  /**
   * Memoize: a call whose arguments' result is in the cache is answered from it, without sending a message; a
   * worker stores each success there. `true` or `{ ttlSec, url, key }` (src/app/memo.ts, docs/cache.md).
   */
  cache?: boolean | TaskCacheOptions;
}

export type TaskFunction<A extends unknown[] = never[], R = unknown> = (...args: A) => R;

/** What sending returns: an AsyncResult, or for a broadcast (every worker runs it) a BroadcastResult. */
export type Sent<R, Broadcast extends boolean> = Broadcast extends true ? BroadcastResult<R> : AsyncResult<R>;

/**
 * A call's arguments, each of which may also be another call's result still to come: an AsyncResult of the
 * parameter's type (an object reference, as Ray's ObjectRef). The call then waits, parked in the result backend,
 * until every such result is stored, and the worker reads them (src/app/refs.ts).
 */
export type RefArgs<A extends unknown[]> = { [K in keyof A]: A[K] | AsyncResult<A[K]> };

export interface Task<A extends unknown[], R, Broadcast extends boolean = false> {
  /** Runs the function here and now, in this process (no broker involved). */
  (...args: A): R;
  readonly taskName: string;
  readonly options: Readonly<TaskOptions>;
  /** Sends the call to a worker (to every worker online for a broadcast task); the handle is returned at once. */
  delay(...args: RefArgs<A>): Sent<Awaited<R>, Broadcast>;
  applyAsync(args: A, options: CallOptions & { broadcast: true }): BroadcastResult<Awaited<R>>;
  applyAsync(args: RefArgs<A>, options?: CallOptions): Sent<Awaited<R>, Broadcast>;
  /** Sends many calls in one broker round trip; one AsyncResult per call, in order. */
  delayMany(argsList: ReadonlyArray<A>, options?: Omit<CallOptions, 'taskId'>): Array<AsyncResult<Awaited<R>>>;
  /** A signature: this call written down, for chain/group/chord. In a chain the previous result is prepended to `args`. */
  s(...args: unknown[]): Signature<Awaited<R>>;
  /** An immutable signature: the previous result in a chain is not passed to it. */
  si(...args: A): Signature<Awaited<R>>;
  /** A group calling this task once per item, each item as its only argument. */
  map(items: ReadonlyArray<A[0]>): Group<Awaited<R>>;
  /** A group calling this task once per argument list. */
  starmap(argsList: ReadonlyArray<A>): Group<Awaited<R>>;
  /** A group of `size`-long chunks of argument lists, each chunk one task that runs them in turn: few messages for many small calls. */
  chunks(argsList: ReadonlyArray<A>, size: number): Group<Array<Awaited<R>>>;
  /** A memoized task: forgets the cached result of the call with these arguments (its cache's delete). */
  invalidate(...args: A): Promise<void>;
}

export interface RegisteredTask {
  name: string;
  fn: (...args: unknown[]) => unknown;
  options: TaskOptions;
  /** A memoized task's cache settings (its `cache` option, checked). */
  memo?: Memo | undefined;
}

interface Producer {
  readonly app: () => Fennel;
  send(name: string, args: readonly unknown[], call: CallOptions, task: TaskOptions): AsyncResult<unknown> | BroadcastResult<unknown>;
  sendMany(name: string, argsList: ReadonlyArray<readonly unknown[]>, call: Omit<CallOptions, 'taskId'>): Array<AsyncResult<unknown>>;
  invalidate(name: string, args: readonly unknown[]): Promise<void>;
}

/** The signal of an in-process call: nothing aborts it (its controller is not kept). */
const NEVER_ABORTED = new AbortController().signal;

export function makeTask<A extends unknown[], R, B extends boolean>(name: string, fn: TaskFunction<A, R>, options: TaskOptions, producer: Producer): Task<A, R, B> {
  const local = ((...args: A): R => {
    // An in-process call still gets a context, so task code can call currentTask() either way.
    const context = makeContext({ id: randomUUID(), name, retries: 0, queue: null, signal: () => NEVER_ABORTED, progress: async () => {} });
    return runInContext(context, fn, ...args);
  }) as Task<A, R, B>;
  Object.defineProperties(local, {
    name: { value: name },
    taskName: { value: name, enumerable: true },
    options: { value: Object.freeze({ ...options }), enumerable: true },
    delay: { value: (...args: RefArgs<A>) => producer.send(name, args, {}, options) },
    applyAsync: { value: (args: A, call: CallOptions = {}) => producer.send(name, args, call, options) },
    delayMany: { value: (argsList: ReadonlyArray<A>, call: Omit<CallOptions, 'taskId'> = {}) => producer.sendMany(name, argsList, call) },
    s: { value: (...args: unknown[]) => new Signature(producer.app, name, args) },
    si: { value: (...args: A) => new Signature(producer.app, name, args, {}, {}, true) },
    map: { value: (items: ReadonlyArray<unknown>) => new Group(producer.app, items.map((item) => new Signature(producer.app, name, [item], {}, {}, true))) },
    starmap: { value: (argsList: ReadonlyArray<A>) => new Group(producer.app, argsList.map((args) => new Signature(producer.app, name, args, {}, {}, true))) },
    invalidate: { value: (...args: A) => producer.invalidate(name, args) },
    chunks: {
      value: (argsList: ReadonlyArray<A>, size: number) => {
        if (!Number.isInteger(size) || size < 1) throw new ConfigError(`chunks(): size must be a positive integer (got ${size})`);
        const parts: Array<Signature<unknown>> = [];
        for (let i = 0; i < argsList.length; i += size) parts.push(new Signature(producer.app, STARMAP_TASK, [name, argsList.slice(i, i + size)], {}, {}, true));
        return new Group(producer.app, parts);
      },
    },
  });
  return local;
}
