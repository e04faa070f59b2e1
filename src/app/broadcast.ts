// BroadcastResult: the handle of a broadcast call (`{ broadcast: true }`), which every worker online runs once.
// Each Fennel worker stores its outcome under its own result id (protocol/queues.ts `broadcastResultId`), so the
// handle reports one result per worker, keyed by worker name, like a GroupResult whose members are the workers.
// Which workers it went to is what the broker knew when it was sent: the live consumers of the broadcast queue
// (Transport.consumers). Engines that count their consumers without names (amqp://) cannot say; there `workers`
// is undefined and `collect()` needs the names (`collect({ workers })`), while `result(worker)` always works.

import { ConfigError, RemoteTaskError, TimeoutError } from '../errors.ts';
import { broadcastResultId } from '../protocol/queues.ts';
import type { AsyncResult } from './result.ts';

export interface BroadcastOutcome<R> {
  /** The result of each worker whose copy succeeded, by worker name. */
  results: Map<string, R>;
  /** The error of each worker whose copy failed (RemoteTaskError), by worker name. */
  errors: Map<string, Error>;
  /** The workers it was sent to that stored no outcome within the timeout (stopped, killed, or still running). */
  missing: string[];
}

export class BroadcastResult<R = unknown> {
  constructor(
    /** The task id every copy carries; each worker's result is stored under `broadcastResultId(id, worker)`. */
    readonly id: string,
    /** Resolves once the broker has the message; rejects if it could not be published. */
    readonly sent: Promise<void>,
    /** The workers it went to, as the broker knew them when it was sent; undefined where the engine knows no names. */
    private readonly recipients: Promise<string[] | undefined>,
    /** A handle on one result id (made by the app, reading its backend). */
    private readonly handle: (resultId: string) => AsyncResult<R>,
  ) {}

  /** The workers the broadcast was sent to (the broadcast queue's live consumers when it was sent), or undefined on engines that know no names (amqp://). */
  async workers(): Promise<string[] | undefined> {
    await this.sent;
    return this.recipients;
  }

  /** The handle on one worker's copy. */
  result(worker: string): AsyncResult<R> {
    return this.handle(broadcastResultId(this.id, worker));
  }

  /**
   * Waits until every worker it was sent to has stored its outcome, or `timeoutMs` passes, and says which did
   * what. `workers` overrides the recipients (required on engines that know no names).
   */
  async collect(options: { timeoutMs: number; workers?: readonly string[] }): Promise<BroadcastOutcome<R>> {
    const workers = options.workers ?? (await this.workers());
    if (!workers) {
      throw new ConfigError(`broadcast ${this.id}: this broker counts its consumers without names (amqp://), so the workers it reached are not known; pass collect({ workers: [...] }) or read result(worker)`);
    }
    const outcome: BroadcastOutcome<R> = { results: new Map(), errors: new Map(), missing: [] };
    await Promise.all(
      workers.map(async (worker) => {
        try {
          outcome.results.set(worker, await this.result(worker).get({ timeoutMs: options.timeoutMs }));
        } catch (error) {
          if (error instanceof TimeoutError) outcome.missing.push(worker);
          else if (error instanceof RemoteTaskError) outcome.errors.set(worker, error);
          else throw error;
        }
      }),
    );
    outcome.missing.sort();
    return outcome;
  }
}
