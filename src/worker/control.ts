// The worker's side of remote control: it listens on the broker's mailbox as its node name, runs each request
// addressed to it (protocol.ts's isAddressedTo: a destination list, a glob or a pcre pattern, or everyone) and
// sends the reply Celery's client expects, so `celery inspect` and `fennel inspect` see one mixed cluster. The
// commands are Celery's (celery/worker/control.py), with its argument names and reply shapes (docs/pidbox-wire.md
// §8); what each does on a Fennel worker is in docs/control.md.
//
// Nothing a request holds can crash the worker: a message that does not decode, is not a request, or is stale
// (its `expires` passed: Fennel's own rule, as Celery's workers do not check it) is logged and dropped; an unknown
// command, bad arguments or a failing handler are answered `{error}` and logged. Control is at most once: a
// request lost with a connection is answered by no one, and the client names who did not answer.

import type { Logger } from 'pino';
import type { Fennel } from '../app/fennel.ts';
import { parseRateLimit } from '../app/options.ts';
import type { TaskInfo } from '../control/control.ts';
import type { MailboxEngine } from '../control/mailbox.ts';
import { controlError, controlReply, controlSignedText, isAddressedTo, isStale, parseControlRequest, replyHeaders, type ControlRequest } from '../control/protocol.ts';
import type { Signer } from '../protocol/signing.ts';
import { FennelError } from '../errors.ts';
import type { TaskRequest } from '../protocol/message.ts';
import type { Delivery } from '../transports/transport.ts';
import { maskUrl } from '../util/url.ts';
import { FENNEL_VERSION } from '../version.ts';

/** How far a sender's clock may run ahead of this machine's before its requests count as stale. */
const CLOCK_SKEW_MS = 1000;
/** How long a task revoked by remote control stays in this worker's revoked set (Celery keeps 50,000 ids). */
const REVOKE_KEEP_MS = 3 * 3600_000;

/** What a worker shows and lets remote control change (Worker.controlSurface builds it). */
export interface ControlledWorker {
  readonly name: string;
  readonly app: Fennel;
  readonly poolKind: 'process' | 'thread' | 'async';
  readonly maxTasksPerChild: number | undefined;
  /** The pool's size now. */
  concurrency(): number;
  /** The size last asked for (a resize in progress included): what pool_grow and pool_shrink count from. */
  poolTarget(): number;
  prefetchCount(): number;
  pids(): number[];
  pidOf(taskId: string): number | undefined;
  /** The deliveries held now, with what the executor knows of each (no request: still being decoded). */
  held(): Array<{ delivery: Delivery; request?: TaskRequest; startedAt?: number }>;
  totals(): Record<string, number>;
  deadLetters(): number;
  uptimeSec(): number;
  clock(): number;
  queues(): Array<{ name: string; kind: 'queue' | 'direct' | 'broadcast' }>;
  readonly revoked: { has(id: string): boolean; ids(): string[]; addLocal(id: string, untilMs: number): void };
  terminate(taskId: string): boolean;
  /** Resizes the pool after the resizes asked for before (never rejects: a failure is logged). */
  resizePool(size: number): Promise<void>;
  readonly autoscale: { range(): { max: number; min: number }; update(max: number, min: number): Promise<void> } | undefined;
  setRateLimit(task: string, rate: string | null): void;
  setTimeLimits(task: string, limits: { soft: number | null; hard: number | null }): void;
  /** What remote control set for a task (a rate of null: removed); undefined where it set nothing. */
  overrides(task: string): { rateLimit?: string | null; timeLimits?: { soft: number | null; hard: number | null } };
  /** Resolves true once consuming `queue`, false if it already was. */
  addConsumer(queue: string): Promise<boolean>;
  cancelConsumer(queue: string): Promise<boolean>;
  taskEvents(): boolean;
  setTaskEvents(on: boolean): void;
  /** Starts a warm shutdown (after the reply has gone). */
  shutdown(): void;
}

/** A command refused, with the reason sent back as `{error}`. */
class Refused extends Error {}

type Handler = (worker: ControlledWorker, args: Record<string, unknown>) => unknown;

const ok = (text: string): { ok: string } => ({ ok: text });

function positiveInt(value: unknown, what: string): number {
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new Refused(`${what} must be a positive integer (got ${JSON.stringify(value)})`);
  return n;
}

function seconds(value: unknown, what: string): number | null {
  if (value === null || value === undefined) return null;
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !(n >= 0) || !Number.isFinite(n)) throw new Refused(`${what} must be a number of seconds (got ${JSON.stringify(value)})`);
  return n === 0 ? null : n;
}

function taskName(worker: ControlledWorker, value: unknown): string {
  if (typeof value !== 'string' || !worker.app.registry.has(value)) throw new Refused('unknown task');
  return value;
}

function queueName(value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new Refused(`queue must be a queue name (got ${JSON.stringify(value)})`);
  return value;
}

/** Celery's Request.info(): what active, reserved and query_task say of a task. */
function taskInfo(worker: ControlledWorker, task: { delivery: Delivery; request: TaskRequest; startedAt?: number }, safe: boolean): TaskInfo & Record<string, unknown> {
  const { delivery, request, startedAt } = task;
  const started = startedAt !== undefined;
  const info = delivery.message.properties.delivery_info;
  return {
    id: request.id,
    name: request.name,
    ...(safe ? { args: JSON.stringify(request.args) as never, kwargs: JSON.stringify(request.kwargs) as never } : { args: request.args, kwargs: request.kwargs }),
    type: request.name,
    hostname: worker.name,
    time_start: started ? startedAt / 1000 : null,
    // Fennel acknowledges a message after its outcome is stored (Celery's acks_late), so never while it runs.
    acknowledged: false,
    delivery_info: { exchange: info?.exchange ?? '', routing_key: info?.routing_key ?? delivery.queue, priority: request.priority, redelivered: delivery.redelivered },
    worker_pid: started ? (worker.pidOf(request.id) ?? null) : null,
  };
}

function heldTasks(worker: ControlledWorker): Array<{ delivery: Delivery; request: TaskRequest; startedAt?: number }> {
  return worker.held().filter((t): t is { delivery: Delivery; request: TaskRequest; startedAt?: number } => t.request !== undefined && !worker.revoked.has(t.request.id));
}

/** The broker as Celery's stats describe it (kombu's Connection.info()), without the password. */
function brokerInfo(url: string): Record<string, unknown> {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  const transport = url.slice(0, Math.max(0, url.indexOf(':'))).toLowerCase();
  const vhost = parsed?.pathname.replace(/^\//, '') ?? '';
  const defaultPort: Record<string, number> = { redis: 6379, rediss: 6379, amqp: 5672, amqps: 5671 };
  return {
    hostname: transport === 'sqlite' ? maskUrl(url).slice('sqlite://'.length) : (parsed?.hostname ?? null),
    userid: parsed?.username ? decodeURIComponent(parsed.username) : null,
    virtual_host: transport.startsWith('amqp') ? decodeURIComponent(vhost) || '/' : vhost || null,
    port: parsed?.port ? Number(parsed.port) : (defaultPort[transport] ?? null),
    insist: false,
    ssl: transport === 'rediss' || transport === 'amqps',
    transport,
    uri: maskUrl(url),
  };
}

/** process.resourceUsage() in the names and units of Python's resource.getrusage (Celery's stats). */
function rusage(): Record<string, number> {
  const r = process.resourceUsage();
  return {
    utime: r.userCPUTime / 1e6,
    stime: r.systemCPUTime / 1e6,
    maxrss: r.maxRSS,
    ixrss: r.sharedMemorySize,
    idrss: r.unsharedDataSize,
    isrss: r.unsharedStackSize,
    minflt: r.minorPageFault,
    majflt: r.majorPageFault,
    nswap: r.swappedOut,
    inblock: r.fsRead,
    oublock: r.fsWrite,
    msgsnd: r.ipcSent,
    msgrcv: r.ipcReceived,
    nsignals: r.signalsCount,
    nvcsw: r.voluntaryContextSwitches,
    nivcsw: r.involuntaryContextSwitches,
  };
}

/** A queue as kombu's Queue.as_dict(recurse=True) describes it (inspect active_queues). */
function queueInfo(queue: { name: string; kind: 'queue' | 'direct' | 'broadcast' }): Record<string, unknown> {
  const exchange = queue.kind === 'broadcast' ? queue.name : queue.kind === 'direct' ? 'C.dq2' : queue.name;
  return {
    name: queue.name,
    exchange: { name: exchange, type: queue.kind === 'broadcast' ? 'fanout' : 'direct', arguments: null, durable: true, passive: false, auto_delete: false, delivery_mode: null, no_declare: false },
    routing_key: queue.name,
    queue_arguments: null,
    binding_arguments: null,
    consumer_arguments: null,
    durable: queue.kind !== 'broadcast',
    exclusive: false,
    auto_delete: queue.kind === 'broadcast',
    no_ack: false,
    alias: null,
    bindings: [],
    no_declare: null,
    expires: null,
    message_ttl: null,
    max_length: null,
    max_length_bytes: null,
    max_priority: null,
  };
}

/** The commands, by Celery's method names. */
const COMMANDS: Record<string, Handler> = {
  ping: () => ok('pong'),

  active: (w, args) => heldTasks(w).filter((t) => t.startedAt !== undefined).map((t) => taskInfo(w, t, args['safe'] === true)),

  reserved: (w) => heldTasks(w).filter((t) => t.startedAt === undefined).map((t) => taskInfo(w, t, false)),

  // A Fennel worker holds no task until its eta: an early message goes back to the broker's delayed delivery.
  scheduled: () => [],

  registered: (w, args) => {
    // Celery's default items when none are asked for; a task's queue is its routing key.
    const items = Array.isArray(args['taskinfoitems']) && args['taskinfoitems'].length ? (args['taskinfoitems'] as unknown[]).map(String) : ['exchange', 'routing_key', 'rate_limit'];
    return [...w.app.registry.values()]
      .filter((t) => !t.name.startsWith('fennel.') && !t.name.startsWith('celery.'))
      .map((t) => {
        const o = t.options as Record<string, unknown>;
        // What remote control set wins over the task's own options, as Celery's control changes the task itself.
        const set = w.overrides(t.name);
        const attrs: Record<string, unknown> = {
          rate_limit: set.rateLimit !== undefined ? set.rateLimit : o['rateLimit'],
          queue: o['queue'],
          routing_key: o['queue'],
          time_limit: set.timeLimits ? set.timeLimits.hard : (o['timeLimitSec'] ?? (typeof o['timeLimitMs'] === 'number' ? o['timeLimitMs'] / 1000 : undefined)),
          soft_time_limit: set.timeLimits ? set.timeLimits.soft : (o['softTimeLimitSec'] ?? (typeof o['softTimeLimitMs'] === 'number' ? o['softTimeLimitMs'] / 1000 : undefined)),
        };
        const shown = items.filter((item) => attrs[item] !== undefined && attrs[item] !== null).map((item) => `${item}=${String(attrs[item])}`);
        return shown.length ? `${t.name} [${shown.join(' ')}]` : t.name;
      })
      .sort();
  },

  stats: (w) => {
    const autoscale = w.autoscale?.range();
    return {
      total: w.totals(),
      pid: process.pid,
      clock: String(w.clock()),
      uptime: w.uptimeSec(),
      pool: {
        'max-concurrency': w.concurrency(),
        processes: w.pids(),
        'max-tasks-per-child': w.maxTasksPerChild ?? 'N/A',
        'put-guarded-by-semaphore': false,
        timeouts: [0, 0],
        implementation: `fennel:${w.poolKind}`,
        ...(autoscale ? { autoscaler: { max: autoscale.max, min: autoscale.min, qty: w.held().length } } : {}),
      },
      broker: brokerInfo(w.app.config.broker),
      prefetch_count: w.prefetchCount(),
      rusage: rusage(),
      // Fennel's own: the deliveries held now (each leased on sqlite:// and redis://, unacked on amqp://), the
      // messages this worker moved to the dead letters since it started, and the software.
      fennel: { held: w.held().length, dead_letters: w.deadLetters(), version: FENNEL_VERSION, backend: maskUrl(w.app.config.backend), node: process.version },
    };
  },

  revoked: (w) => w.revoked.ids(),

  active_queues: (w) => w.queues().map(queueInfo),

  query_task: (w, args) => {
    const raw = args['ids'] ?? args['task_id'];
    const ids = new Set((Array.isArray(raw) ? raw : [raw]).filter((id): id is string => typeof id === 'string'));
    const found: Record<string, [string, TaskInfo]> = {};
    for (const task of heldTasks(w)) if (ids.has(task.request.id)) found[task.request.id] = [task.startedAt !== undefined ? 'active' : 'reserved', taskInfo(w, task, false)];
    return found;
  },

  shutdown: () => ok('shutting down'),

  pool_grow: (w, args) => {
    if (w.autoscale) throw new Refused('pool_grow is not supported with autoscale. Adjust autoscale range instead.');
    const n = positiveInt(args['n'] ?? 1, 'n');
    // Answered at once, as Celery's: new process slots take a second or two to load the tasks module, longer than
    // a client's default timeout. `stats` shows the new size once they are ready.
    void w.resizePool(w.poolTarget() + n);
    return ok('pool will grow');
  },

  pool_shrink: (w, args) => {
    if (w.autoscale) throw new Refused('pool_shrink is not supported with autoscale. Adjust autoscale range instead.');
    const n = positiveInt(args['n'] ?? 1, 'n');
    const size = w.poolTarget();
    if (size - n < 1) throw new Refused(`cannot shrink the pool by ${n}: it has ${size} slot(s), and keeps at least 1`);
    void w.resizePool(size - n);
    return ok('pool will shrink');
  },

  autoscale: (w, args) => {
    if (!w.autoscale) throw new Refused("ValueError('Autoscale not enabled')");
    const max = positiveInt(args['max'], 'max');
    const min = positiveInt(args['min'], 'min');
    if (min > max) throw new Refused(`min (${min}) is greater than max (${max})`);
    // The range at once, the pool brought inside it after the reply (new slots take a moment to start).
    void w.autoscale.update(max, min).catch(() => {});
    return ok(`autoscale now max=${max} min=${min}`);
  },

  rate_limit: (w, args) => {
    const name = taskName(w, args['task_name']);
    const rate = args['rate_limit'];
    if (rate === null || rate === undefined || rate === '' || rate === 0 || rate === '0') {
      w.setRateLimit(name, null);
      return ok('rate limit disabled successfully');
    }
    const text = typeof rate === 'string' || typeof rate === 'number' ? String(rate) : JSON.stringify(rate);
    if (!parseRateLimit(text)) throw new Refused(`Invalid rate limit string: ${text}`);
    w.setRateLimit(name, text);
    return ok('new rate limit set successfully');
  },

  time_limit: (w, args) => {
    const name = taskName(w, args['task_name']);
    const soft = seconds(args['soft'], 'soft');
    const hard = seconds(args['hard'], 'hard');
    if (soft !== null && hard !== null && soft > hard) throw new Refused(`the soft limit (${soft} s) is longer than the hard one (${hard} s)`);
    w.setTimeLimits(name, { soft, hard });
    return ok('time limits set successfully');
  },

  add_consumer: async (w, args) => {
    const queue = queueName(args['queue']);
    return ok((await w.addConsumer(queue)) ? `add consumer ${queue}` : `already consuming from ${queue}`);
  },

  cancel_consumer: async (w, args) => {
    const queue = queueName(args['queue']);
    if (!(await w.cancelConsumer(queue))) throw new Refused(`not consuming from ${queue}`);
    return ok(`no longer consuming from ${queue}`);
  },

  enable_events: (w) => {
    if (w.taskEvents()) return ok('task events already enabled');
    w.setTaskEvents(true);
    return ok('task events enabled');
  },

  disable_events: (w) => {
    if (!w.taskEvents()) return ok('task events already disabled');
    w.setTaskEvents(false);
    return ok('task events disabled');
  },

  revoke: (w, args) => {
    const raw = args['task_id'];
    const ids = (Array.isArray(raw) ? raw : [raw]).filter((id): id is string => typeof id === 'string' && id !== '');
    if (ids.length === 0) throw new Refused('task_id must be a task id or a list of them');
    const until = Date.now() + REVOKE_KEEP_MS;
    for (const id of ids) w.revoked.addLocal(id, until);
    if (args['terminate'] !== true) return ok(`tasks ${ids.join(', ')} flagged as revoked`);
    const terminated = ids.filter((id) => w.terminate(id));
    return ok(`terminate: ${terminated.length ? terminated.join(', ') : 'tasks unknown'}`);
  },

  // Celery's mingle: a Celery worker starting asks every node for its revoked ids and clock. Answered as an
  // empty sync: Fennel's revocations live in the result backend, which Celery's workers do not read.
  hello: (w, args) => (args['from_node'] === w.name ? null : { revoked: {}, clock: w.clock() }),

  clock: (w) => ({ clock: w.clock() }),
};

/** The command names a worker answers (Celery's method names). */
export const CONTROL_COMMANDS: readonly string[] = Object.keys(COMMANDS);

export class ControlPanel {
  private stopListening: (() => Promise<void>) | undefined;
  private clock = 0;

  constructor(
    private readonly worker: ControlledWorker,
    private readonly mailbox: MailboxEngine,
    private readonly log: Logger,
    /** With a signing key: requests not signed with one of its keys are dropped (docs/security.md). */
    private readonly signer?: Signer,
  ) {}

  /** Listens on the mailbox; resolves once listening (rejects if the broker cannot be reached). */
  async start(): Promise<void> {
    this.stopListening = await this.mailbox.listen(this.worker.name, (incoming) => {
      if (incoming.undecodable !== undefined) {
        this.log.warn({ reason: incoming.undecodable }, `dropped a control message that does not decode: ${incoming.undecodable}`);
        return;
      }
      let request: ControlRequest;
      try {
        request = parseControlRequest(incoming.body);
      } catch (error) {
        this.log.warn({ reason: (error as Error).message }, `dropped a malformed control message: ${(error as Error).message}`);
        return;
      }
      if (!isAddressedTo(request, this.worker.name)) return;
      if (this.signer) {
        const verdict = this.signer.verifyText(controlSignedText(incoming.body, incoming.headers['expires']), incoming.headers['fennel_signature'], 'the request');
        if (!verdict.ok) {
          this.log.warn({ method: request.method, reason: verdict.reason }, `refused a control request '${request.method}': ${verdict.reason}`);
          return;
        }
      }
      if (isStale(incoming.headers, Date.now(), CLOCK_SKEW_MS)) {
        this.log.warn({ method: request.method }, `dropped a stale control request '${request.method}' (its expires time has passed)`);
        return;
      }
      const clock = incoming.headers['clock'];
      if (typeof clock === 'number') this.clock = Math.max(this.clock, clock);
      void this.handle(request);
    });
  }

  async stop(): Promise<void> {
    const stop = this.stopListening;
    this.stopListening = undefined;
    await stop?.().catch(() => {});
  }

  private async handle(request: ControlRequest): Promise<void> {
    const { method } = request;
    const handler = Object.hasOwn(COMMANDS, method) ? COMMANDS[method] : undefined;
    let result: unknown;
    if (!handler) {
      this.log.warn({ method }, `unknown control command '${method}'`);
      result = controlError(`unknown command '${method}'; a Fennel worker answers ${CONTROL_COMMANDS.join(', ')}`);
    } else {
      try {
        result = await handler(this.worker, request.arguments);
        if (method !== 'ping' && method !== 'hello') this.log.info({ method, arguments: request.arguments }, `remote control: ${method}`);
      } catch (error) {
        const reason = error instanceof Refused || error instanceof FennelError ? error.message : `${(error as Error).name}: ${(error as Error).message}`;
        this.log.warn({ method, arguments: request.arguments, reason }, `remote control: ${method} refused: ${reason}`);
        result = controlError(reason);
      }
    }
    if (request.reply_to && result !== null) {
      try {
        await this.mailbox.reply(request.reply_to, controlReply(this.worker.name, result), replyHeaders(request.ticket, ++this.clock));
      } catch (error) {
        this.log.warn({ err: error, method }, `could not send the reply to '${method}': ${(error as Error).message}`);
      }
    }
    // After the reply: the client hears "shutting down" before the worker stops listening.
    if (method === 'shutdown' && handler) {
      this.log.warn('remote control: shutdown requested; warm shutdown');
      this.worker.shutdown();
    }
  }
}
