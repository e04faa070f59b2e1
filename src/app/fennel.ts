// The Fennel app: configuration, the task registry and the producer. A web server imports an app to send
// tasks; a worker imports the same module to run them. Engines open lazily, on first use, so importing a
// tasks module costs nothing.

import { randomUUID } from 'node:crypto';
import { createBackend } from '../backends/index.ts';
import type { ResultBackend } from '../backends/backend.ts';
import { signedBackend } from '../backends/signed.ts';
import { ChannelHub, type Channel, type ChannelOptions } from '../channels/channel.ts';
import type { ChannelEngine } from '../channels/engine.ts';
import { createChannelEngine } from '../channels/index.ts';
import { Control } from '../control/control.ts';
import { ActorType, defineActor, type ActorDefinition, type ActorOptions } from '../actors/actor.ts';
import { Names } from '../actors/names.ts';
import { park, putObject, storeOutcome, takeRefs, type WithRefs } from './refs.ts';
import { createMailboxEngine } from '../control/index.ts';
import type { MailboxEngine } from '../control/mailbox.ts';
import { ClosedError, ConfigError, PayloadTooLargeError } from '../errors.ts';
import { bodyBytes, buildTaskMessage, type TaskCall, type WireMessage } from '../protocol/message.ts';
import { signerFor, type Signer } from '../protocol/signing.ts';
import type { EventBus } from '../events/events.ts';
import { createEventBus } from '../events/index.ts';
import { ReplyRoutes } from '../clients/amqp/replies.ts';
import { directQueue } from '../protocol/queues.ts';
import { BroadcastResult } from './broadcast.ts';
import { createTransport, schemeOf } from '../transports/index.ts';
import { noConsumerHint } from '../transports/presence.ts';
import type { Route as TransportRoute, Transport } from '../transports/transport.ts';
import { compileRoutes, resolveConfig, type FennelOptions, type ResolvedConfig, type Route } from './config.ts';
import { nowIso, revokedMeta, type TaskMeta } from '../protocol/result.ts';
import { isReady, States } from '../protocol/states.ts';
import { STARMAP_TASK, type CanvasNode } from './canvas.ts';
import { defineSchedule, type Schedule, type ScheduleOptions, type ScheduleSpec } from '../beat/schedule.ts';
import { checkCallOptions, checkTaskOptions, timeLimits, toDate } from './options.ts';
import { AsyncResult, answerLocally, type GetOptions, type ResultOwner } from './result.ts';
import { Cache, type CacheOptions } from '../cache/cache.ts';
import { answerableFromCache, cachedOutcome, callKey, fillLocalTiers, memoOf, type Memo } from './memo.ts';
import { makeTask, type CallOptions, type RegisteredTask, type Task, type TaskFunction, type TaskOptions } from './task.ts';

const APP_BRAND = Symbol.for('fennel.app');

/** The workflow fields of a task message, set by the canvas. */
export type WorkflowFields = Pick<TaskCall, 'embed' | 'group' | 'groupIndex' | 'parentId' | 'rootId'>;

/** True for a Fennel app, even one from another copy of this module (the CLI's `--app` loader uses it). */
export function isFennelApp(value: unknown): value is Fennel {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[APP_BRAND] === true;
}

export class Fennel {
  readonly [APP_BRAND] = true;
  readonly config: ResolvedConfig;
  private readonly tasks = new Map<string, RegisteredTask>();
  private readonly scheduleTable = new Map<string, Schedule>();
  private readonly route: ReturnType<typeof compileRoutes>;
  private transportInstance: Transport | undefined;
  private eventsInstance: EventBus | undefined;
  private channelHub: ChannelHub | undefined;
  private mailboxInstance: MailboxEngine | undefined;
  private controlInstance: Control | undefined;
  private cacheInstance: Cache | undefined;
  /** Memoized tasks' own caches, by URL. */
  private readonly taskCaches = new Map<string, Cache>();
  private readonly cacheOptions: CacheOptions = {};
  private backendInstance: ResultBackend | undefined;
  private closed = false;
  /** This process's reply address, sent as `reply_to` on every message, as Celery's app.thread_oid. */
  readonly oid = randomUUID();
  /** Signs every task message sent, and verifies them in this app's workers: set when `signingKey` is. */
  readonly signer: Signer | undefined;

  constructor(options: FennelOptions = {}) {
    this.config = resolveConfig(options);
    this.signer = signerFor(this.config.signingKey);
    this.route = compileRoutes(this.config.routes);
    // `task.chunks()` sends chunks of calls as this task, which runs them one after another in the worker.
    this.tasks.set(STARMAP_TASK, {
      name: STARMAP_TASK,
      fn: (async (taskName: string, argsList: unknown[][]) => {
        const task = this.tasks.get(taskName);
        if (!task) throw new ConfigError(`${STARMAP_TASK}: no task named '${taskName}' in this app`);
        const results: unknown[] = [];
        for (const args of argsList) results.push(await task.fn(...args));
        return results;
      }) as (...args: unknown[]) => unknown,
      options: {},
    });
  }

  /** The actor classes this app declares, by name (app.actor): what its workers can host with --actors. */
  readonly actorDefinitions = new Map<string, ActorDefinition>();
  /** The name server: actors by name, with their metadata and where each lives (docs/actors.md). */
  readonly names = new Names(() => this.backend);

  /**
   * Declares an actor class (Pyro's remote object, Ray's actor): workers started with --actors can host instances,
   * and `create()` places one and returns a typed proxy. See docs/actors.md.
   */
  actor<T extends object, A extends unknown[]>(name: string, cls: new (...args: A) => T, options: ActorOptions = {}): ActorType<T, A> {
    if (this.actorDefinitions.has(name)) throw new ConfigError(`an actor class named '${name}' is already declared`);
    const definition = defineActor(name, cls, options);
    this.actorDefinitions.set(name, definition);
    return new ActorType<T, A>(this, definition);
  }

  /** Registers a task. The name is what travels on the wire; it must be unique in this app. */
  task<A extends unknown[], R>(name: string, fn: TaskFunction<A, R>, options: TaskOptions & { broadcast: true }): Task<A, R, true>;
  task<A extends unknown[], R>(name: string, fn: TaskFunction<A, R>, options?: TaskOptions): Task<A, R>;
  task<A extends unknown[], R>(name: string, fn: TaskFunction<A, R>, options: TaskOptions = {}): Task<A, R, boolean> {
    if (this.tasks.has(name)) throw new ConfigError(`a task named '${name}' is already registered`);
    if (typeof fn !== 'function') throw new ConfigError(`task '${name}' needs a function`);
    checkTaskOptions(name, options);
    const memo = memoOf(name, options.cache);
    this.tasks.set(name, { name, fn: fn as (...args: unknown[]) => unknown, options, memo });
    return makeTask(name, fn, options, {
      app: () => this,
      send: (n, args, call, taskOptions) => this.send(n, args, call, taskOptions),
      invalidate: (n, args) => this.invalidate(n, args),
      sendMany: (n, argsList, call) => this.sendMany(n, argsList, call),
    });
  }

  /**
   * Registers a periodic schedule, which `fennel beat` (or `fennel worker --beat`) fires: a task with arguments,
   * a task by name (one a Python worker runs), or a workflow. `spec`: `{ cron, tz? }` or `{ every }` (seconds, or
   * '5s', '10m', '1h'). Each fire is an ordinary task message. A bad spec, option or duplicate name is a
   * ConfigError naming the schedule. See docs/beat.md.
   */
  schedule<A extends unknown[]>(name: string, spec: ScheduleSpec, task: Task<A, unknown, boolean>, ...rest: [] extends A ? [args?: A, options?: ScheduleOptions] : [args: A, options?: ScheduleOptions]): this;
  schedule(name: string, spec: ScheduleSpec, task: string, args?: readonly unknown[], options?: ScheduleOptions): this;
  schedule(name: string, spec: ScheduleSpec, workflow: CanvasNode<unknown>, args?: readonly [], options?: ScheduleOptions): this;
  schedule(name: string, spec: ScheduleSpec, target: Task<unknown[], unknown, boolean> | string | CanvasNode<unknown>, args: readonly unknown[] = [], options: ScheduleOptions = {}): this {
    if (this.scheduleTable.has(name)) throw new ConfigError(`a schedule named '${name}' is already registered`);
    let entry: Schedule;
    if (typeof target === 'string' && target !== '') entry = defineSchedule(name, spec, { task: target, args }, options);
    else if (typeof target === 'function' && typeof (target as { taskName?: unknown }).taskName === 'string') entry = defineSchedule(name, spec, { task: target.taskName, args }, options);
    else if (target !== null && typeof target === 'object' && typeof (target).toJSON === 'function') {
      if (args.length) throw new ConfigError(`schedule '${name}': a workflow takes no args (they are in its signatures)`);
      const taskName = ((): string => {
        const dict = (target).toJSON();
        // The first task of the workflow, by walking to it (its id is unset, so firstTaskId cannot find it by id).
        for (let node: typeof dict | undefined = dict; node; node = ((node.kwargs['tasks'] ?? node.kwargs['header']) as Array<typeof dict> | undefined)?.[0]) {
          if (node.subtask_type === null) return node.task;
        }
        throw new ConfigError(`schedule '${name}': the workflow sends no task`);
      })();
      entry = defineSchedule(name, spec, { workflow: target, taskName }, options);
    } else throw new ConfigError(`schedule '${name}': give a task (from app.task), a task name or a workflow (chain, group, chord, signature)`);
    this.scheduleTable.set(name, entry);
    return this;
  }

  /** The registered schedules, by name. */
  get schedules(): ReadonlyMap<string, Schedule> {
    return this.scheduleTable;
  }

  /** The registered tasks, by name. */
  get registry(): ReadonlyMap<string, RegisteredTask> {
    return this.tasks;
  }

  /** Sends a task by name, from a process that need not have its code (a web server, say). */
  sendTask<R = unknown>(name: string, args: readonly unknown[], options: CallOptions & { broadcast: true }): BroadcastResult<R>;
  sendTask<R = unknown>(name: string, args?: readonly unknown[], options?: CallOptions): AsyncResult<R>;
  sendTask<R = unknown>(name: string, args: readonly unknown[] = [], options: CallOptions = {}): AsyncResult<R> | BroadcastResult<R> {
    return this.send(name, args, options, this.tasks.get(name)?.options ?? {}) as AsyncResult<R> | BroadcastResult<R>;
  }

  /** A handle on a task sent earlier (by id). */
  asyncResult<R = unknown>(id: string, taskName?: string): AsyncResult<R> {
    return new AsyncResult<R>(id, this.backendFn, undefined, taskName, this.resultOwner);
  }

  /**
   * Stores `value` once in the result backend and returns a reference to it at once (Ray's `put`): pass it to any
   * number of calls, and each worker reads the stored value instead of receiving a copy in its message. Its `sent`
   * resolves once it is stored (calls that take it wait for that). Do not `await` the reference itself: an
   * AsyncResult is awaitable, and awaiting it reads the value back. It expires with the results (`resultExpiresSec`)
   * unless pinned: `ttlSec` keeps it that many seconds instead, 0 until `ref.forget()`.
   */
  put<T>(value: T, options: { ttlSec?: number } = {}): AsyncResult<T> {
    const { ttlSec } = options;
    if (ttlSec !== undefined && !(Number.isFinite(ttlSec) && ttlSec >= 0)) throw new ConfigError(`put: ttlSec must be a number of seconds ≥ 0 (0 keeps the object until it is forgotten); got ${ttlSec}`);
    const id = randomUUID();
    const meta: TaskMeta = { status: States.SUCCESS, result: value, traceback: null, children: [], date_done: nowIso(), task_id: id };
    const backend = this.backend;
    // A backend without storeFor keeps results as long as the process lives (memory://): nothing to pin.
    const stored = ttlSec !== undefined && backend.storeFor ? backend.storeFor(meta, ttlSec) : backend.store(meta);
    stored.catch(() => {});
    return putObject(new AsyncResult<T>(id, this.backendFn, stored, undefined, this.resultOwner));
  }

  /** The results of many references, in their order (Ray's `get` of a list); rejects as the first that fails. */
  get<T extends readonly AsyncResult<unknown>[]>(refs: T, options: GetOptions = {}): Promise<{ -readonly [K in keyof T]: T[K] extends AsyncResult<infer R> ? R : never }> {
    return Promise.all(refs.map((ref) => ref.get(options))) as Promise<{ -readonly [K in keyof T]: T[K] extends AsyncResult<infer R> ? R : never }>;
  }

  /**
   * Ray's `wait`: resolves once `numReturns` of the references are ready (succeeded or failed; default 1), or
   * when `timeoutMs` passes, whichever comes first. `ready` and `pending` keep the order of `refs`.
   */
  async wait<T extends AsyncResult<unknown>>(refs: readonly T[], options: { numReturns?: number; timeoutMs?: number } = {}): Promise<{ ready: T[]; pending: T[] }> {
    const numReturns = options.numReturns ?? 1;
    if (!Number.isInteger(numReturns) || numReturns < 0 || numReturns > refs.length) throw new ConfigError(`wait: numReturns must be an integer from 0 to the number of references (${refs.length}); got ${numReturns}`);
    const done = new Set<T>();
    const stop = new AbortController();
    await new Promise<void>((resolve) => {
      if (done.size >= numReturns) return resolve();
      const timer = options.timeoutMs === undefined ? undefined : setTimeout(resolve, options.timeoutMs);
      for (const ref of refs) {
        void ref.get({ signal: stop.signal }).then(
          () => settle(ref),
          (error: unknown) => {
            // A failed task is ready; an abort (this wait is over) is not.
            if (!stop.signal.aborted || error !== stop.signal.reason) settle(ref);
          },
        );
      }
      function settle(ref: T): void {
        done.add(ref);
        if (done.size >= numReturns) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    stop.abort(new Error('wait is over'));
    return { ready: refs.filter((ref) => done.has(ref)), pending: refs.filter((ref) => !done.has(ref)) };
  }

  /**
   * Revokes a task by id: no worker runs it after this (each consults the backend's revoked set, kept for
   * `revokeExpiresSec`); with `terminate`, a worker running it now stops it (kills its pool slot; an async-pool
   * task's signal is aborted and its outcome discarded). Its state becomes REVOKED unless it had finished.
   */
  async revoke(taskId: string, options: { terminate?: boolean } = {}): Promise<void> {
    const backend = this.backend;
    if (!backend.revoke) throw new ConfigError(`revoke needs a result backend that the workers share (sqlite://, redis://); ${backend.url} is not`);
    await backend.revoke({ taskId, terminate: options.terminate ?? false, expiresAt: new Date(Date.now() + this.config.revokeExpiresSec * 1000) });
    const current = await backend.get(taskId);
    if (!current || !isReady(current.status)) {
      // Through storeOutcome: the calls waiting for this task's result are revoked in turn.
      await storeOutcome(this, { ...revokedMeta(taskId, options.terminate ? 'terminated' : 'revoked'), ...(current ? { name: current.name, args: current.args, kwargs: current.kwargs } : {}) }, false);
    }
  }

  /** What the AsyncResults made here ask of this app: revoke, and the hint a timed-out get() adds; one for all of them. */
  private readonly resultOwner: ResultOwner = {
    revoke: (id, options) => this.revoke(id, options),
    queueHint: (queue) => (this.closed ? Promise.resolve(undefined) : noConsumerHint(this.transport, queue, undefined, [this.config.broadcastQueue])),
  };
  /** The backend as the AsyncResults made here read it (lazily, so sending opens no backend); one for all of them. */
  private readonly backendFn = (): ResultBackend => this.backend;

  /** Shared by this app's AMQP transport and rpc:// backend: where each held task's result goes back to. */
  private readonly replies = new ReplyRoutes();

  get transport(): Transport {
    if (this.closed) throw new ClosedError('this Fennel app');
    return (this.transportInstance ??= createTransport(this.config.broker, { ...this.config, replies: this.replies }));
  }

  /** Worker and task events (Celery's event format), through the broker's engine: what monitors read. */
  get events(): EventBus {
    if (this.closed) throw new ClosedError('this Fennel app');
    return (this.eventsInstance ??= createEventBus(this.config.broker, { connectTimeoutMs: this.config.connectTimeoutMs }));
  }

  /**
   * A publish/subscribe channel through the broker's engine: `await ch.publish(value)` reaches every subscription
   * live at that moment, in any process on the broker; `for await (const v of ch.subscribe({ signal }))` reads
   * them. At most once, in publish order per publisher; values go through the task arguments' JSON codec and
   * checks. Opens nothing until used. See docs/patterns.md#channels.
   */
  channel<T = unknown>(name: string, options: ChannelOptions = {}): Channel<T> {
    if (this.closed) throw new ClosedError('this Fennel app');
    return this.channels.channel<T>(name, options);
  }

  /** The channels' engine (opened on first use): the broker's engine for publish/subscribe. */
  get channelEngine(): ChannelEngine {
    if (this.closed) throw new ClosedError('this Fennel app');
    return this.channels.engine;
  }

  private get channels(): ChannelHub {
    return (this.channelHub ??= new ChannelHub(
      () => createChannelEngine(this.config.broker, { pollIntervalMs: this.config.pollIntervalMs, connectTimeoutMs: this.config.connectTimeoutMs }),
      this.config.maxPayloadBytes,
    ));
  }

  /**
   * Remote control and inspection of the workers (Celery's `app.control`): `ping()`, `inspect().active()`,
   * `poolGrow(n)`, `shutdown()`, … through the broker's mailbox, which Celery's workers share on Redis and
   * RabbitMQ. Opens nothing until used. See docs/control.md.
   */
  get control(): Control {
    if (this.closed) throw new ClosedError('this Fennel app');
    return (this.controlInstance ??= new Control(() => this.mailbox, this.signer));
  }

  /** The remote-control mailbox (opened on first use): the broker's engine in Celery's pidbox layout. */
  get mailbox(): MailboxEngine {
    if (this.closed) throw new ClosedError('this Fennel app');
    return (this.mailboxInstance ??= createMailboxEngine(this.config.broker, { pollIntervalMs: this.config.pollIntervalMs, connectTimeoutMs: this.config.connectTimeoutMs }));
  }

  get backend(): ResultBackend {
    if (this.closed) throw new ClosedError('this Fennel app');
    if (this.backendInstance) return this.backendInstance;
    const backend = createBackend(this.config.backend, { ...this.config, replies: this.replies });
    // With a key, results and records are signed when stored and checked when read (docs/security.md).
    return (this.backendInstance = this.signer ? signedBackend(backend, this.signer) : backend);
  }

  /**
   * The app's cache (its `cache` option, default lru://): cache-aside for any code (`app.cache.wrap(key, fn)`), and
   * where memoized tasks keep their results unless they name their own. Opened on first use.
   */
  get cache(): Cache {
    if (this.closed) throw new ClosedError('this Fennel app');
    return (this.cacheInstance ??= new Cache(this.config.cache, this.cacheOptions));
  }

  /** The cache a memoized task uses: its own `url`'s (one Cache per URL in this app), or the app's. */
  cacheFor(memo: Memo): Cache {
    if (memo.url === undefined) return this.cache;
    let cache = this.taskCaches.get(memo.url);
    if (!cache) this.taskCaches.set(memo.url, (cache = new Cache(memo.url, this.cacheOptions)));
    return cache;
  }

  /** Where the app's caches write their warnings (a worker sets its logger before any cache opens). */
  setCacheLog(log: NonNullable<CacheOptions['log']>): void {
    this.cacheOptions.log = log;
  }

  private async invalidate(name: string, args: readonly unknown[]): Promise<void> {
    const memo = this.tasks.get(name)?.memo;
    if (!memo) throw new ConfigError(`invalidate: task '${name}' is not memoized (give it the option cache: { ttlSec })`);
    await this.cacheFor(memo).delete(callKey(name, memo, args));
  }

  /** Picks the queue: the call's, then the route table's, then the task's, then the default. */
  queueFor(name: string, call: { queue?: string }, task: TaskOptions = this.tasks.get(name)?.options ?? {}): string {
    return this.pickQueue(call, task, this.route(name));
  }

  private pickQueue(call: { queue?: string; worker?: string; broadcast?: boolean }, task: TaskOptions, route: Route | undefined): string {
    if (call.worker !== undefined) return directQueue(call.worker);
    // A broadcast goes to a broadcast queue: the call's, the task's, or the app's; never the route table's work queues.
    if (call.broadcast ?? task.broadcast) return call.queue ?? task.queue ?? this.config.broadcastQueue;
    return call.queue ?? route?.queue ?? task.queue ?? this.config.defaultQueue;
  }

  private send(name: string, args: readonly unknown[], call: CallOptions, task: TaskOptions): AsyncResult<unknown> | BroadcastResult<unknown> {
    this.checkCall(name, call);
    const refs = takeRefs(args, call.kwargs);
    if (refs) return this.sendParked(name, refs, call, task);
    const [message, route] = this.prepare(name, args, call, task);
    if (route.broadcast) return this.sendBroadcast(name, message, route);
    const memo = task.cache ? this.tasks.get(name)?.memo : undefined;
    if (memo && answerableFromCache(call, task)) return this.sendMemoized(name, args, call, task, memo, message, route);
    const sent = this.transport.publish(message, route);
    // The rejection is re-thrown by get() and by awaiting `result.sent`; this keeps it from being unhandled.
    sent.catch(() => {});
    return new AsyncResult(message.headers['id'] as string, this.backendFn, sent, name, this.resultOwner, route.queue);
  }

  /**
   * Sends a memoized call unless the cache holds its result (src/app/memo.ts): a hit is the AsyncResult's outcome at
   * once, stored in the result backend too (`sent` resolves when it is); a miss is published as any call is.
   */
  private sendMemoized(name: string, args: readonly unknown[], call: CallOptions, task: TaskOptions, memo: Memo, message: WireMessage, route: TransportRoute): AsyncResult<unknown> {
    const cache = this.cacheFor(memo);
    const key = callKey(name, memo, args, call.kwargs);
    const id = message.headers['id'] as string;
    const outcome = cachedOutcome(cache, key, id, name);
    const store = !(call.ignoreResult ?? task.ignoreResult);
    const sent = outcome.then((meta) => (meta === undefined ? this.transport.publish(message, route) : store ? storeOutcome(this, { ...meta, queue: route.queue }, false) : undefined));
    sent.catch(() => {});
    return answerLocally(new AsyncResult(id, this.backendFn, sent, name, this.resultOwner, route.queue), outcome, fillLocalTiers(cache, key, memo.ttlSec));
  }

  /**
   * Sends a call whose arguments hold results (AsyncResults, src/app/refs.ts): it is parked in the result backend
   * until they are ready. Sent with `deduplicate` where the broker has it, so that a worker that sends it again after
   * a crash (a release stored twice) sends no duplicate. `sent` resolves once it is parked (or sent).
   */
  private sendParked(name: string, refs: WithRefs, call: CallOptions, task: TaskOptions): AsyncResult<unknown> {
    if (call.broadcast ?? task.broadcast) throw new ConfigError(`call of '${name}': a broadcast cannot take results as arguments`);
    if (!this.backend.park) throw new ConfigError(`call of '${name}': results as arguments need a result backend its workers share (sqlite://, redis://); ${this.backend.url} is not`);
    const dedupe = call.deduplicate ?? (this.transport.capabilities.deduplication ? true : undefined);
    const [message, route] = this.prepare(name, refs.args, { ...call, ...(refs.kwargs ? { kwargs: refs.kwargs } : {}), ...(dedupe ? { deduplicate: dedupe } : {}) }, task);
    const sent = park(this, message, route, refs.inputs);
    sent.catch(() => {});
    return new AsyncResult(message.headers['id'] as string, this.backendFn, sent, name, this.resultOwner, route.queue);
  }

  /**
   * Sends a broadcast: first looks up who consumes its queue now (the workers it will reach, where the engine
   * knows their names), then publishes. Each worker's outcome is read under its own result id (BroadcastResult).
   */
  private sendBroadcast(name: string, message: WireMessage, route: TransportRoute): BroadcastResult<unknown> {
    const transport = this.transport;
    const recipients = (async (): Promise<string[] | undefined> => {
      // Engines whose workers announce themselves (sqlite, redis, memory) name them; amqp:// only counts its consumers.
      if (!transport.announceConsumer || !transport.consumers) return undefined;
      const entry = (await transport.consumers(route.queue).catch(() => undefined))?.get(route.queue);
      return entry ? entry.names : undefined;
    })();
    const sent = recipients.then(() => transport.publish(message, route));
    sent.catch(() => {});
    recipients.catch(() => {});
    const id = message.headers['id'] as string;
    return new BroadcastResult(id, sent, recipients, (resultId) => new AsyncResult(resultId, this.backendFn, sent, name, this.resultOwner, route.queue));
  }

  /** Sends many calls of one task in one broker round trip (one transaction on SQLite). */
  sendMany(name: string, argsList: ReadonlyArray<readonly unknown[]>, call: Omit<CallOptions, 'taskId'> = {}): Array<AsyncResult<unknown>> {
    const task = this.tasks.get(name)?.options ?? {};
    this.checkCall(name, call); // once for the batch: every call shares the options
    const prepared = argsList.map((args) => this.prepare(name, args, call, task));
    const sent = this.transport.publishMany(prepared);
    sent.catch(() => {});
    return prepared.map(([message, route]) => new AsyncResult(message.headers['id'] as string, this.backendFn, sent, name, this.resultOwner, route.queue));
  }

  /**
   * Sends one task with the workflow fields of the wire protocol (embed: chain, callbacks, errbacks, chord;
   * group id and index; parent and root ids). The canvas (src/app/canvas.ts) sends through this, in the
   * producer and in workers continuing a workflow.
   */
  sendWorkflowStep(name: string, args: readonly unknown[], call: CallOptions, wire: WorkflowFields): AsyncResult<unknown> {
    this.checkCall(name, call);
    const [message, route] = this.prepare(name, args, call, this.tasks.get(name)?.options ?? {}, wire);
    const sent = this.transport.publish(message, route);
    sent.catch(() => {});
    return new AsyncResult(message.headers['id'] as string, this.backendFn, sent, name, this.resultOwner, route.queue);
  }

  /** Checks a call's options where they are given; throws ConfigError naming the option and the accepted forms. */
  private checkCall(name: string, call: CallOptions): void {
    checkCallOptions(name, call);
    if ((call.broadcast || this.tasks.get(name)?.options.broadcast) && !this.transport.capabilities.broadcast) {
      throw new ConfigError(`call of '${name}': broadcast is not supported by ${schemeOf(this.config.broker)}://`);
    }
    if (call.deduplicate && !this.transport.capabilities.deduplication) {
      throw new ConfigError(`call of '${name}': deduplicate is not supported by ${schemeOf(this.config.broker)}:// (it has no atomic check-and-publish); engines with it: sqlite://, redis://, memory://`);
    }
  }

  /** Encodes one call whose options are checked: the message and where it goes. Throws for arguments that cannot be sent. */
  private prepare(name: string, args: readonly unknown[], call: CallOptions, task: TaskOptions, wire?: WorkflowFields): readonly [WireMessage, TransportRoute] {
    const now = Date.now();
    const eta = call.eta !== undefined ? toDate(call.eta)! : call.countdown !== undefined ? new Date(now + call.countdown * 1000) : null;
    const expires = call.expires === undefined ? null : typeof call.expires === 'number' ? new Date(now + call.expires * 1000) : toDate(call.expires)!;
    const limits = timeLimits(call, task);
    const route = this.route(name);
    const queue = this.pickQueue(call, task, route);
    const priority = call.priority ?? route?.priority ?? task.priority ?? 0;
    // Optional fields are set only when given (exactOptionalPropertyTypes), without spreading a temporary object each.
    const fields: TaskCall = {
      id: call.taskId ?? randomUUID(),
      name,
      args,
      queue,
      eta,
      expires,
      priority,
      timeLimitSec: limits.hard,
      softTimeLimitSec: limits.soft,
      ignoreResult: call.ignoreResult ?? task.ignoreResult ?? false,
      replyTo: this.oid,
    };
    if (call.kwargs) fields.kwargs = call.kwargs;
    // Only the pending-mode id is freed by its consumer (the header); a ttl id lapses on its own.
    if (call.deduplicate === true) fields.deduplicate = true;
    const broadcast = call.broadcast ?? task.broadcast ?? false;
    if (broadcast) fields.broadcast = true;
    if (wire) Object.assign(fields, wire);
    const message = buildTaskMessage(fields);
    // An id made here has no result yet: the backend may skip a read when it is waited for (nats://).
    if (call.taskId === undefined && !broadcast) this.backendInstance?.expectResult?.(fields.id);
    // UTF-8 takes at most 3 bytes per UTF-16 code unit: a body that short cannot be over the limit, and is not measured.
    if (message.body.length * 3 > this.config.maxPayloadBytes) {
      const size = bodyBytes(message);
      if (size > this.config.maxPayloadBytes) throw new PayloadTooLargeError(size, this.config.maxPayloadBytes);
    }
    this.signer?.sign(message);
    if (broadcast) return [message, { queue, priority, delayUntil: eta, broadcast: true }];
    if (!call.deduplicate) return [message, { queue, priority, delayUntil: eta }];
    return [message, { queue, priority, delayUntil: eta, deduplicate: call.deduplicate === true ? true : { ttlMs: call.deduplicate.ttlSec * 1000 } }];
  }

  /** Closes the engines this app opened. Sending or reading results afterwards throws ClosedError. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([
      this.transportInstance?.close(),
      this.backendInstance?.close(),
      this.eventsInstance?.close(),
      this.channelHub?.close(),
      this.mailboxInstance?.close(),
      this.cacheInstance?.close(),
      ...[...this.taskCaches.values()].map((cache) => cache.close()),
    ]);
  }
}
