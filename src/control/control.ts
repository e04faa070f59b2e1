// `app.control`: remote control and inspection of the workers, Celery's `app.control` in TypeScript. Each call
// broadcasts one request on the broker's mailbox (client.ts) and gathers the replies until every addressed worker
// has answered or `timeoutMs` has passed. Replies come back as Celery's do: a control command's as a list of
// `{<node>: <result>}`, an inspection's merged into one object by node name. `broadcast()` is the whole answer:
// every reply, and the destinations that did not answer. The commands and their replies: docs/control.md.

import type { Signer } from '../protocol/signing.ts';
import type { MailboxEngine } from './mailbox.ts';
import { sendControl, type ControlOutcome } from './client.ts';
import type { Addressing } from './protocol.ts';

export interface ControlOptions extends Addressing {
  /** How long replies are gathered (ms), and how long the request lives. Default 1000 (Celery's 1 s). */
  timeoutMs?: number;
  /** Stop after this many replies. Default: one per destination when there are destinations, else none. */
  limit?: number;
}

/** A command's result on one worker: `{ ok }`, or `{ error }` when the worker refused it. */
export type CommandResult = { ok: string } | { error: string };
/** Celery's reply list: one `{<node>: <result>}` per worker that answered. */
export type Replies<R> = Array<Record<string, R>>;

/** A task as `active`, `reserved` and `query_task` describe it (Celery's Request.info()). */
export interface TaskInfo {
  id: string;
  name: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  type: string;
  hostname: string;
  /** Epoch seconds it started; null while reserved. */
  time_start: number | null;
  acknowledged: boolean;
  delivery_info: { exchange: string; routing_key: string; priority: number; redelivered: boolean | null };
  /** The pid of the process running it; null while reserved. */
  worker_pid: number | null;
}

export type Inspection = Record<string, unknown>;

export class Control {
  private clock = 0;

  /** `engine` opens the mailbox on first use (the app's broker). */
  constructor(
    private readonly engine: () => MailboxEngine,
    private readonly signer?: Signer,
  ) {}

  /**
   * Sends `method` with `args` to the addressed workers and gathers their replies, naming those that did not
   * answer. `reply: false` sends a cast: the workers act and nobody answers.
   */
  broadcast(method: string, args: Record<string, unknown> = {}, options: ControlOptions & { reply?: boolean } = {}): Promise<ControlOutcome> {
    return sendControl(this.engine(), { method, arguments: args, ...options }, ++this.clock, this.signer);
  }

  private async command<R = CommandResult>(method: string, args: Record<string, unknown>, options: ControlOptions): Promise<Replies<R>> {
    const { replies } = await this.broadcast(method, args, options);
    return replies.map(({ node, result }) => ({ [node]: result as R }));
  }

  /** Every worker that answers: `[{ 'fennel@host1': { ok: 'pong' } }, …]`. */
  ping(options: ControlOptions = {}): Promise<Replies<{ ok: 'pong' }>> {
    return this.command('ping', {}, options);
  }

  /** The inspections (read-only): `inspect({ destination }).active()` and the rest. */
  inspect(options: ControlOptions = {}): Inspect {
    return new Inspect(this, options);
  }

  /** Warm shutdown of the addressed workers (Fennel's reply `{ ok }` before stopping; Celery's send none). */
  shutdown(options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('shutdown', {}, options);
  }

  /** Adds `n` slots to each addressed worker's pool now. */
  poolGrow(n = 1, options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('pool_grow', { n }, options);
  }

  /** Retires `n` slots of each addressed worker's pool (a busy slot finishes its task first). */
  poolShrink(n = 1, options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('pool_shrink', { n }, options);
  }

  /** Changes the range of workers started with autoscale. */
  autoscale(max: number, min: number, options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('autoscale', { max, min }, options);
  }

  /** Sets a task's rate limit ('10/s', '100/m', '1/h'; null or '' removes it) until the workers restart. */
  rateLimit(taskName: string, rateLimit: string | null, options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('rate_limit', { task_name: taskName, rate_limit: rateLimit }, options);
  }

  /** Sets a task's soft and hard time limits (seconds; null: none) until the workers restart. */
  timeLimit(taskName: string, soft: number | null, hard: number | null, options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('time_limit', { task_name: taskName, soft, hard }, options);
  }

  /** Starts consuming `queue` now. */
  addConsumer(queue: string, options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('add_consumer', { queue, exchange: null, exchange_type: 'direct', routing_key: null }, options);
  }

  /** Stops consuming `queue` now (what is held from it is finished). */
  cancelConsumer(queue: string, options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('cancel_consumer', { queue }, options);
  }

  enableEvents(options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('enable_events', {}, options);
  }

  disableEvents(options: ControlOptions = {}): Promise<Replies<CommandResult>> {
    return this.command('disable_events', {}, options);
  }

  /**
   * Celery's revoke: the workers that receive it now do not run these tasks (kept in their memory until they
   * restart); `terminate` also stops them where they run. `app.revoke(id)` is the durable form (stored in the
   * result backend, honoured by workers that start later); this one also reaches Celery's workers.
   */
  revoke(taskIds: string | string[], options: ControlOptions & { terminate?: boolean; signal?: string } = {}): Promise<Replies<CommandResult>> {
    const { terminate = false, signal = 'SIGTERM', ...rest } = options;
    return this.command('revoke', { task_id: taskIds, terminate, signal }, rest);
  }
}

/** The read-only commands, each merged by node: `{ 'fennel@host1': [...], 'celery@host2': [...] }`. */
export class Inspect {
  constructor(
    private readonly control: Control,
    private readonly options: ControlOptions,
  ) {}

  private async call<T>(method: string, args: Record<string, unknown> = {}): Promise<Record<string, T>> {
    const { replies } = await this.control.broadcast(method, args, this.options);
    return Object.fromEntries(replies.map(({ node, result }) => [node, result as T]));
  }

  ping(): Promise<Record<string, { ok: 'pong' }>> {
    return this.call('ping');
  }

  /** The tasks each worker is running. */
  active(): Promise<Record<string, TaskInfo[]>> {
    return this.call('active', { safe: null });
  }

  /** The tasks each worker holds and has not started (waiting for a slot or their rate limit). */
  reserved(): Promise<Record<string, TaskInfo[]>> {
    return this.call('reserved');
  }

  /** The tasks each worker holds until their eta (Fennel's wait in the broker instead: usually none). */
  scheduled(): Promise<Record<string, Array<{ eta: string; priority: number; request: TaskInfo }>>> {
    return this.call('scheduled');
  }

  /** The task names each worker knows; `items` adds attributes ('rate_limit', …): `'math.add [rate_limit=10/m]'`. */
  registered(...items: string[]): Promise<Record<string, string[]>> {
    return this.call('registered', { taskinfoitems: items });
  }

  stats(): Promise<Record<string, Inspection>> {
    return this.call('stats');
  }

  /** The ids each worker holds revoked. */
  revoked(): Promise<Record<string, string[]>> {
    return this.call('revoked');
  }

  /** The queues each worker consumes, as kombu describes a queue. */
  activeQueues(): Promise<Record<string, Inspection[]>> {
    return this.call('active_queues');
  }

  /** Where each worker holds these tasks: `{ <id>: ['active' | 'reserved', TaskInfo] }`. */
  queryTask(...ids: string[]): Promise<Record<string, Record<string, ['active' | 'reserved' | 'scheduled', TaskInfo]>>> {
    return this.call('query_task', { ids });
  }
}
