// AsyncResult: a handle on one task's outcome. Awaitable (`await add.delay(2, 3)` is the result), with
// Celery's state accessors. A failed task re-throws on get() as RemoteTaskError.

import { FennelError } from '../errors.ts';
import type { ResultBackend } from '../backends/backend.ts';
import { TimeoutError } from '../errors.ts';
import { pendingMeta, remoteError, type TaskMeta } from '../protocol/result.ts';
import { isReady, States, type TaskState } from '../protocol/states.ts';

export interface GetOptions {
  /** Reject with TimeoutError after this long. Without it, get() waits as long as it takes. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Whether the broker confirmed each publish an AsyncResult was made for. Kept per publish, not per result,
 * because the results of a delayMany() share one publish: hundreds of them then cost one entry and one callback.
 */
const confirmed = new WeakMap<Promise<void>, boolean>();

function watchPublish(sent: Promise<void>): void {
  if (confirmed.has(sent)) return;
  confirmed.set(sent, false);
  // Rejections are the caller's to see (get(), awaiting `sent`); this only notes the success.
  sent.then(
    () => confirmed.set(sent, true),
    () => {},
  );
}

const ALREADY_SENT = Promise.resolve();

/**
 * Outcomes an AsyncResult knows without its result backend: a memoized call answered from the cache
 * (src/app/memo.ts). `meta` resolves with the outcome, or undefined if the call was sent after all (a miss);
 * `onSuccess` sees a sent call's result once get() has read it.
 */
interface LocalOutcome {
  meta: Promise<TaskMeta | undefined>;
  onSuccess: ((result: unknown) => void) | undefined;
}

const localOutcomes = new WeakMap<AsyncResult<unknown>, LocalOutcome>();

/** Lets `result` answer from `meta` once it resolves with an outcome (see LocalOutcome). */
export function answerLocally<T>(result: AsyncResult<T>, meta: Promise<TaskMeta | undefined>, onSuccess?: (value: unknown) => void): AsyncResult<T> {
  localOutcomes.set(result, { meta, onSuccess });
  return result;
}

/** What the AsyncResults an app makes ask of it: one object per app, shared by all of them. */
export interface ResultOwner {
  revoke(id: string, options: { terminate?: boolean }): Promise<void>;
  /**
   * Why a task sent to `queue` may not be running: "no worker is consuming queue 'celery'; workers consume: math",
   * or undefined. Asked when get() times out; bounded in time (about 1 s), and never rejects.
   */
  queueHint?(queue: string): Promise<string | undefined>;
}

type Revoker = ResultOwner['revoke'];

export class AsyncResult<T = unknown> implements PromiseLike<T> {
  /** The last meta read; undefined means PENDING (most results are only ever waited for). */
  private meta: TaskMeta | undefined;

  constructor(
    readonly id: string,
    private readonly backend: () => ResultBackend,
    /** Resolves once the broker has the message; rejects if it could not be published. */
    readonly sent: Promise<void> = ALREADY_SENT,
    readonly taskName?: string,
    /** The app that made it (or just the function that revokes, as before ResultOwner). */
    private readonly owner?: ResultOwner | Revoker,
    /** The queue the task was sent to, when this process sent it. */
    readonly queue?: string,
  ) {
    watchPublish(sent);
  }

  /**
   * Revokes the task: a worker that receives it later does not run it; with `terminate`, a run in progress is
   * stopped (its pool slot killed). The state becomes REVOKED unless the task had already finished.
   */
  async revoke(options: { terminate?: boolean } = {}): Promise<void> {
    if (!this.owner) throw new FennelError('this AsyncResult was not made by a Fennel app; use app.revoke(id)');
    await (typeof this.owner === 'function' ? this.owner(this.id, options) : this.owner.revoke(this.id, options));
  }

  /** Reads the current state from the result store (PENDING if nothing is stored yet). */
  async refresh(): Promise<TaskMeta> {
    if (this.meta && isReady(this.meta.status)) return this.meta;
    const known = await localOutcomes.get(this)?.meta;
    if (known) return (this.meta = known);
    this.meta = (await this.backend().get(this.id)) ?? this.meta ?? pendingMeta(this.id);
    return this.meta;
  }

  /** The last state read; call `refresh()` (or any async accessor) to read it again. */
  get state(): TaskState | string {
    return this.meta?.status ?? States.PENDING;
  }

  async status(): Promise<TaskState | string> {
    return (await this.refresh()).status;
  }

  /** The meta a PROGRESS or STARTED state carries, or the result once ready. */
  async info(): Promise<unknown> {
    return (await this.refresh()).result;
  }

  async ready(): Promise<boolean> {
    return isReady(await this.status());
  }

  async successful(): Promise<boolean> {
    return (await this.status()) === States.SUCCESS;
  }

  async failed(): Promise<boolean> {
    return (await this.status()) === States.FAILURE;
  }

  /**
   * Waits for the outcome: the task's return value, or a RemoteTaskError, or a TimeoutError. A TimeoutError says
   * so (its `hint`) when no live worker consumes the queue the task was sent to, if the broker can tell.
   */
  async get(options: GetOptions = {}): Promise<T> {
    const local = localOutcomes.get(this);
    if (local) {
      const known = await local.meta;
      if (known) {
        this.meta = known;
        return known.result as T;
      }
    }
    const meta = await this.waitWhileSending(options);
    if (!meta) {
      const hint = this.queue !== undefined && typeof this.owner === 'object' ? await this.owner.queueHint?.(this.queue) : undefined;
      throw new TimeoutError(this.id, options.timeoutMs ?? 0, this.taskName, hint);
    }
    this.meta = meta;
    if (meta.status === States.SUCCESS) {
      local?.onSuccess?.(meta.result);
      return meta.result as T;
    }
    throw remoteError(meta);
  }

  /**
   * Waits for the outcome without first waiting for the publish to be confirmed: RabbitMQ confirms a
   * persistent message once it is on disk or acked, which for a quick task is after its result has arrived.
   * A result proves the broker had the message; a publish that fails ends the wait with its error.
   */
  private waitWhileSending(options: GetOptions): Promise<TaskMeta | undefined> {
    if (confirmed.get(this.sent)) return this.backend().wait(this.id, options);
    return this.backend().wait(this.id, { ...options, failsWith: this.sent });
  }

  then<R1 = T, R2 = never>(onFulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null, onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null): PromiseLike<R1 | R2> {
    return this.get().then(onFulfilled, onRejected);
  }

  async forget(): Promise<void> {
    await this.backend().forget(this.id);
  }

  toJSON(): { id: string; state: string } {
    return { id: this.id, state: this.state };
  }
}
