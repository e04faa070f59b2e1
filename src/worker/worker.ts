// The worker's lifecycle: start the pool → consume the queues → run each delivery through the executor →
// on stop, take no more work, let what is running finish within the grace period, hand back the rest.
// The prefetch window is concurrency × prefetchMultiplier deliveries, as in Celery.

import { ActorHost } from '../actors/host.ts';
import { cpus, loadavg } from 'node:os';
import type { Logger } from 'pino';
import type { Fennel } from '../app/fennel.ts';
import { ConfigError } from '../errors.ts';
import { FENNEL_VERSION } from '../version.ts';
import { processCacheStats } from '../cache/stats.ts';
import { HEARTBEAT_SEC, type EventType, type FennelEvent } from '../events/events.ts';
import type { Delivery, Subscription } from '../transports/transport.ts';
import { maskUrl } from '../util/url.ts';
import { BROADCAST_HEADER, broadcastResultId, directQueue } from '../protocol/queues.ts';
import { Beat, type BeatOptions } from '../beat/beat.ts';
import { renderBanner } from './banner.ts';
import { logConnections } from './connection-log.ts';
import { Autoscaler, type AutoscaleOptions } from './autoscale.ts';
import { ControlPanel } from './control.ts';
import { execute, type ExecutorContext, type HeldTask } from './executor.ts';
import { DEFAULT_NODENAME, nodeName } from './hostname.ts';
import { workerLog, type LogFormat } from './log.ts';
import { AsyncPool } from './pools/async.ts';
import { RateLimiter } from './rate-limit.ts';
import { RevokedSet } from './revoked.ts';
import type { Pool } from './pools/pool.ts';
import type { ControlledWorker } from './control.ts';
import { processPool } from './pools/process.ts';
import { threadPool } from './pools/thread.ts';

/** After the grace period, how long aborted tasks get to clean up before their slots are killed. */
const ABORT_CLEANUP_MS = 250;
/**
 * How much wider the prefetch window is while a process or thread pool pipelines short tasks (pools/slots.ts). A
 * slot then runs its jobs several at a time, and a window of a few per slot would leave it one or two: each claim,
 * store and acknowledgement would be its own SQLite transaction or Redis round trip again (with 2 slots on SQLite:
 * 2,400 tasks/s in a window of 8, 5,000 in one of 32). 8 rather than 4 since a slot may hold 16 short jobs
 * (PIPELINE_DEPTH): with 2 slots and the default multiplier, a window of 32 refilled at half could not keep their
 * 32 places full, and one of 64 can (#21: on Redis 3.7 commands per task instead of 4.3). Tasks that are long, new
 * or time-limited keep Celery's window, so a worker does not hoard work other workers could start.
 */
const PIPELINED_WINDOW = 8;
/** How long one announcement of this worker's queues lasts (renewed every heartbeat): a few missed heartbeats. */
const PRESENCE_TTL_SEC = 5 * HEARTBEAT_SEC;

export type PoolKind = 'process' | 'thread' | 'async';

export interface WorkerOptions {
  /** Queues to consume, in order of preference. Default: the app's default queue. */
  queues?: string[];
  /** Tasks run at once. Default: the number of CPUs. */
  concurrency?: number;
  pool?: PoolKind;
  /** Path of the tasks module; `process` and `thread` slots load it. Required for those pools. */
  appPath?: string;
  /** Deliveries held per slot (Celery's worker_prefetch_multiplier). */
  prefetchMultiplier?: number;
  /** On stop, how long running tasks may take to finish before they are handed back. */
  graceSec?: number;
  /** Node name, Celery's `-n`: `%h` hostname, `%n` its first label, `%d` its domain, `%p` pid, `%%` (see hostname.ts). */
  hostname?: string;
  logger?: Logger;
  logLevel?: string;
  /** json (default): pino's lines. pretty: a start banner, then one readable line per event (see log.ts). Ignored with `logger`. */
  logFormat?: LogFormat;
  /** Replace a process or thread slot after it has run this many tasks (Celery's --max-tasks-per-child). */
  maxTasksPerChild?: number;
  /** Replace a process slot after a task that left it above this resident memory, in MB (--max-memory-per-child). */
  maxMemoryPerChildMb?: number;
  /** Send task events (received, started, succeeded, …) for monitors, as Celery's `-E`. Worker events are always sent. */
  taskEvents?: boolean;
  /**
   * Broadcast queues this worker receives a copy of every message of (Celery's `Broadcast`), on engines with the
   * `broadcast` capability. Default: the app's `broadcastQueue` and the queues of its tasks registered with
   * `broadcast: true`. `[]`: none.
   */
  broadcastQueues?: string[];
  /** Consume this worker's own queue, `<node name>.dq2` (Celery's worker_direct), where `applyAsync(args, { worker })` sends. Default true. */
  directQueue?: boolean;
  /**
   * Run a beat in this worker too (Celery's `-B`): it fires the app's schedules while it leads (any number of
   * beats may run; one leads). `true`, or the beat's options. Its name is `<node name>/beat`.
   */
  beat?: boolean | Omit<BeatOptions, 'logger' | 'logLevel' | 'logFormat'>;
  /**
   * Grow the pool toward `max` slots while messages wait and shrink it toward `min` once it has been idle for
   * `keepaliveSec` (Celery's --autoscale MAX,MIN and its autoscaler: docs/control.md#autoscale). The pool starts
   * with `min`; `concurrency` is then ignored.
   */
  autoscale?: AutoscaleOptions;
  /** Answer remote control (`fennel inspect`, `celery inspect`, app.control) on the broker's mailbox. Default true. */
  control?: boolean;
  /**
   * What a remote `shutdown` does, after its reply is sent. Default: stop() (a warm shutdown). The CLI passes
   * its own, which exits the process as SIGTERM does.
   */
  onRemoteShutdown?: () => void;
  /** Host actors (app.actor classes): be placed on, run their calls, take over those of hosts that died. docs/actors.md. */
  actors?: boolean;
}

export class Worker {
  /** `name@host`, in events, stored results and on the dashboard; default `fennel.<pid>@<hostname>`. */
  readonly name: string;
  /** The queues consumed now (remote control's add_consumer and cancel_consumer change them). */
  get queues(): readonly string[] {
    return this.queueList;
  }
  private queueList: string[];
  /** This worker's own queue (`<name>.dq2`), consumed before the others; undefined with `directQueue: false`. */
  readonly directQueue: string | undefined;
  /** The broadcast queues this worker receives a copy of every message of. */
  readonly broadcastQueues: string[];
  /** Tasks run at once now (pool_grow, pool_shrink and the autoscaler change it). */
  get concurrency(): number {
    return this.slotLimit;
  }
  private slotLimit: number;
  readonly poolKind: PoolKind;
  readonly log: Logger;
  /** Writes the start banner; only a worker that made its own pretty logger has one. */
  private readonly print: ((text: string) => void) | undefined;
  private pool: Pool | undefined;
  private subscription: Subscription | undefined;
  /** Deliveries taken and not yet settled (execute() never throws, so each leaves exactly once). */
  private readonly held = new Map<Delivery, HeldTask>();
  /** Resolves a warm shutdown waiting for the last held delivery. */
  private onDrained: (() => void) | undefined;
  private busy = 0;
  private readonly slotWaiters: Array<(ok: boolean) => void> = [];
  private stopping = false;
  private abandoned = false;
  private keepAlive: NodeJS.Timeout | undefined;
  /** Stops logging broker and backend connection changes (connection-log.ts). */
  private unwatchConnections: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly revoked = new RevokedSet((taskId) => {
    if (this.pool?.terminate(taskId)) this.log.warn({ id: taskId }, `terminating task ${taskId} (revoked with terminate)`);
  });
  private processed = 0;
  /** Tasks received since start, by name (inspect stats' `total`). */
  private readonly totals = new Map<string, number>();
  private deadLetters = 0;
  private clock = 0;
  private readonly startedAt = Date.now();
  /** Whether task events are sent now (-E; enable_events and disable_events change it). */
  private taskEvents: boolean;
  private readonly limiter: RateLimiter;
  private readonly timeLimits = new Map<string, { soft: number | null; hard: number | null }>();
  /** Rate limits set by remote control (null: removed), for `inspect registered`. */
  private readonly rateLimits = new Map<string, string | null>();
  private readonly autoscaler: Autoscaler | undefined;
  private panel: ControlPanel | undefined;
  private readonly actorHost: ActorHost | undefined;
  /** The pool size asked for last (resizes run one at a time, `resizing` the last of them). */
  private poolTarget: number;
  private resizing: Promise<void> = Promise.resolve();
  /** Resubscriptions run one at a time (queues or prefetch changed). */
  private resubscribing: Promise<void> = Promise.resolve();

  constructor(
    readonly app: Fennel,
    private readonly options: WorkerOptions = {},
  ) {
    this.queueList = options.queues?.length ? [...options.queues] : [app.config.defaultQueue];
    if (options.autoscale) this.autoscaler = new Autoscaler(options.autoscale, (size) => this.resizePool(size));
    this.slotLimit = this.autoscaler?.min ?? options.concurrency ?? cpus().length;
    if (!Number.isInteger(this.slotLimit) || this.slotLimit < 1) throw new ConfigError(`concurrency must be a positive integer (got ${this.slotLimit})`);
    this.poolTarget = this.slotLimit;
    this.taskEvents = options.taskEvents ?? false;
    this.limiter = new RateLimiter(app.registry);
    this.poolKind = options.pool ?? 'process';
    if (!['process', 'thread', 'async'].includes(this.poolKind)) throw new ConfigError(`pool must be process, thread or async (got '${this.poolKind}')`);
    if (this.poolKind !== 'async' && !options.appPath) throw new ConfigError(`the ${this.poolKind} pool needs appPath, the tasks module its slots load`);
    this.name = nodeName(options.hostname ?? DEFAULT_NODENAME);
    this.directQueue = options.directQueue === false ? undefined : directQueue(this.name);
    this.broadcastQueues = options.broadcastQueues ?? [...new Set([app.config.broadcastQueue, ...[...app.registry.values()].filter((t) => t.options.broadcast).map((t) => t.options.queue ?? app.config.broadcastQueue)])];
    ({ log: this.log, print: this.print } = options.logger
      ? { log: options.logger, print: undefined }
      : workerLog({ name: this.name, level: options.logLevel ?? 'info', format: options.logFormat ?? 'json' }));
    // Memoized tasks' caches warn in the worker's log (a cache that fails is a miss, never a failed task).
    const log = this.log;
    app.setCacheLog({ warn: (message) => log.warn(message) });
    // Made here, so that a backend that cannot hold the beat's lease is an error before anything starts.
    if (options.actors) this.actorHost = new ActorHost({ app, node: this.name, log: this.log });
    if (options.beat) this.beat = new Beat(app, { name: `${this.name}/beat`, ...(options.beat === true ? {} : options.beat), logger: this.log });
  }

  /** The beat this worker runs (WorkerOptions.beat), if any. */
  readonly beat: Beat | undefined;

  async start(): Promise<void> {
    // Before anything can fail: whoever watches a worker that does not come up sees what it was trying to do.
    this.print?.(
      renderBanner({
        name: this.name,
        version: FENNEL_VERSION,
        appPath: this.options.appPath,
        broker: this.app.config.broker,
        backend: this.app.config.backend,
        pool: this.poolKind,
        concurrency: this.concurrency,
        taskEvents: this.taskEvents,
        signingKeyIds: this.app.signer?.keyIds,
        queues: [...this.queues, ...(this.directQueue ? [`${this.directQueue} (direct: this worker only)`] : []), ...this.broadcastQueues.map((q) => `${q} (broadcast)`)],
        tasks: this.app.registry.keys(),
      }),
    );
    // From here on, a broker or backend that does not answer is a warning, and its return a line (it is retried).
    this.unwatchConnections = logConnections(this.log);
    const data = { appPath: this.options.appPath ?? '' };
    const recycle = { maxTasksPerChild: this.options.maxTasksPerChild, maxMemoryPerChildMb: this.options.maxMemoryPerChildMb };
    this.pool =
      this.poolKind === 'process'
        ? processPool(this.concurrency, data, recycle)
        : this.poolKind === 'thread'
          ? threadPool(this.concurrency, data, recycle)
          : new AsyncPool(this.concurrency, this.app.registry);
    await this.pool.start();
    this.pool.onPipelining?.(() => void this.resubscribe());
    await this.revoked.start(this.app.backend);
    // Engines unref their timers (a producer must be able to exit); a consuming worker must not.
    this.keepAlive = setInterval(() => {}, 1 << 30);
    this.context = this.executorContext(this.pool);
    if (this.actorHost) this.actorHost.onDelivery = (delivery) => this.take(delivery, this.context!);
    this.subscription = await this.subscribe();
    // Control listens before the worker says it is ready, so a script that waits for "ready" can inspect it.
    if (this.options.control !== false) {
      this.panel = new ControlPanel(this.controlSurface(), this.app.mailbox, this.log, this.app.signer);
      await this.panel.start().catch((error: unknown) => {
        // Remote control is an operator's tool: a mailbox that cannot be opened must not stop the work.
        this.log.warn({ err: error }, `remote control is off: could not listen on the mailbox (${(error as Error).message})`);
      });
    }
    this.autoscaler?.start(() => this.held.size, () => this.slotLimit);
    // Ready means consuming: a worker started while its broker is away says so once it reaches it (stop() cancels
    // the subscription, which ends this wait too).
    await this.subscription.live;
    // Stopped while starting (a SIGTERM while the broker was still out of reach): stop() found no subscription to
    // cancel, so this one goes at once, and the worker never says it is ready.
    if (this.stopping) {
      await this.subscription.cancel();
      return;
    }
    await this.announce();
    this.sendEvent('worker-online', this.workerFields());
    this.heartbeat = setInterval(() => {
      this.sendEvent('worker-heartbeat', this.workerFields());
      void this.announce();
    }, HEARTBEAT_SEC * 1000);
    this.heartbeat.unref();
    // The ready line is printed at any log level and in both formats: scripts and tests wait for /worker ready/,
    // as for Celery's "ready.". URLs are masked: log lines travel further than the worker's machine.
    this.log.child({}, { level: 'info' }).info(
      { queues: this.queues, directQueue: this.directQueue, broadcastQueues: this.broadcastQueues, concurrency: this.concurrency, pool: this.poolKind, broker: maskUrl(this.app.config.broker), backend: maskUrl(this.app.config.backend), tasks: [...this.app.registry.keys()] },
      `worker ready: ${this.name}, ${this.poolKind} pool × ${this.concurrency}, queues ${this.queues.join(', ')}`,
    );
    await this.beat?.start();
    await this.actorHost?.start();
  }

  /** Task events of this turn, and the flush at its end (sendTaskEvent). */
  private taskEventBuffer: FennelEvent[] = [];
  private taskEventFlush: NodeJS.Immediate | undefined;

  private context: ExecutorContext | undefined;

  /** Consumes the current queues with the current prefetch window (start, and each resubscription). */
  private subscribe(): Promise<Subscription> {
    const context = this.context!;
    const broadcast = this.broadcastQueues.length && this.app.transport.capabilities.broadcast ? { queues: this.broadcastQueues, consumer: this.name } : undefined;
    const queues = this.directQueue ? [this.directQueue, ...this.queueList.filter((q) => q !== this.directQueue)] : this.queueList;
    const prefetch = this.prefetchCount;
    // While the pool pipelines, its window is PIPELINED_WINDOW times what the slots need: refilling at half of it
    // still keeps them fed, and makes one claim (and one ack, one store) of many deliveries rather than of one or two.
    // On Redis, a process pool's worker made 5.2 commands per task refilling after every settle, 4.4 at half (#21).
    const refillAt = this.pool?.pipelining ? Math.floor(prefetch / 2) : undefined;
    return this.app.transport.consume({ queues, prefetch, broadcast, refillAt }, (received) => this.take(this.ownCopy(received), context));
  }

  /** Runs one delivery (of the worker's queues, or of an actor's it hosts) to its end, holding it meanwhile. */
  private take(delivery: Delivery, context: ExecutorContext): void {
    const held: HeldTask = {};
    this.held.set(delivery, held);
    const done = (): void => {
      this.processed++;
      // Celery's `total`: the tasks that ran here (got a slot), by name.
      const name = held.startedAt === undefined ? undefined : held.request?.name;
      if (name !== undefined) this.totals.set(name, (this.totals.get(name) ?? 0) + 1);
      this.held.delete(delivery);
      if (this.held.size === 0) this.onDrained?.();
    };
    void execute(delivery, context, held).then(done, done);
  }

  /**
   * Deliveries held at once: slots × the prefetch multiplier (with autoscale, its max slots, as Celery's), and
   * PIPELINED_WINDOW times that while the pool pipelines short tasks.
   */
  private get prefetchCount(): number {
    return (this.autoscaler?.max ?? this.slotLimit) * (this.options.prefetchMultiplier ?? 4) * (this.pool?.pipelining ? PIPELINED_WINDOW : 1);
  }

  /**
   * Consumes again with the current queues and prefetch window: the old subscription is cancelled (what it
   * handed out stays held, leased and valid until settled: nothing is lost or run twice), then a new one starts.
   */
  private resubscribe(): Promise<void> {
    const next = this.resubscribing.then(async () => {
      if (this.stopping || !this.subscription) return;
      await this.subscription.cancel();
      if (this.stopping) return;
      this.subscription = await this.subscribe();
      void this.announce();
    });
    this.resubscribing = next.catch((error: unknown) => this.log.error({ err: error }, `could not consume again after a change of queues or pool size: ${(error as Error).message}`));
    return next;
  }

  /** Changes the pool to `size` slots, and the prefetch window with it (pool_grow, pool_shrink, the autoscaler). */
  /**
   * Resizes the pool to `size` after the resizes asked for before it (one at a time, in order); the size asked
   * for last is `poolTarget` at once. Never rejects: a slot that cannot start is logged.
   */
  private resizePool(size: number): Promise<void> {
    this.poolTarget = size;
    const next = this.resizing.then(() => this.applyResize(size));
    this.resizing = next.catch((error: unknown) => this.log.error({ err: error }, `could not resize the pool to ${size} slot(s): ${(error as Error).message}`));
    return this.resizing;
  }

  private async applyResize(size: number): Promise<void> {
    const pool = this.pool;
    if (!pool || this.stopping || size === this.slotLimit) return;
    const before = this.prefetchCount;
    if (size > this.slotLimit) {
      // The slots first, then the limit: a task given a slot finds one ready.
      await pool.resize(size);
      this.slotLimit = size;
      while (this.busy < this.slotLimit && this.slotWaiters.length > 0) {
        this.busy++;
        this.slotWaiters.shift()!(true);
      }
    } else {
      // The limit first: no new task starts on a slot about to retire; busy ones finish their task first.
      this.slotLimit = size;
      await pool.resize(size);
    }
    this.log.info({ concurrency: size }, `pool resized to ${size} slot(s)`);
    // Monitors (the dashboard) see the new size now, not at the next heartbeat.
    this.sendEvent('worker-heartbeat', this.workerFields());
    if (this.prefetchCount !== before) await this.resubscribe();
  }

  /** What remote control reads and changes (src/worker/control.ts). */
  private controlSurface(): ControlledWorker {
    return {
      name: this.name,
      app: this.app,
      poolKind: this.poolKind,
      concurrency: () => this.slotLimit,
      poolTarget: () => this.poolTarget,
      prefetchCount: () => this.prefetchCount,
      maxTasksPerChild: this.options.maxTasksPerChild,
      pids: () => this.pool?.pids() ?? [],
      pidOf: (id) => this.pool?.pidOf(id),
      held: () => [...this.held].map(([delivery, task]) => ({ delivery, ...task })),
      totals: () => Object.fromEntries(this.totals),
      deadLetters: () => this.deadLetters,
      uptimeSec: () => Math.round((Date.now() - this.startedAt) / 1000),
      clock: () => this.clock,
      queues: () => [...(this.directQueue ? [{ name: this.directQueue, kind: 'direct' as const }] : []), ...this.queueList.map((name) => ({ name, kind: 'queue' as const })), ...this.broadcastQueues.map((name) => ({ name, kind: 'broadcast' as const }))],
      revoked: this.revoked,
      terminate: (id) => this.pool?.terminate(id) ?? false,
      resizePool: (size) => this.resizePool(size),
      autoscale: this.autoscaler && {
        range: () => ({ max: this.autoscaler!.max, min: this.autoscaler!.min }),
        update: async (max, min) => {
          const before = this.prefetchCount;
          await this.autoscaler!.update(max, min);
          if (this.prefetchCount !== before) await this.resubscribe();
        },
      },
      setRateLimit: (task, rate) => {
        this.limiter.set(task, rate);
        this.rateLimits.set(task, rate);
      },
      setTimeLimits: (task, limits) => void this.timeLimits.set(task, limits),
      overrides: (task) => ({
        ...(this.rateLimits.has(task) ? { rateLimit: this.rateLimits.get(task) ?? null } : {}),
        ...(this.timeLimits.has(task) ? { timeLimits: this.timeLimits.get(task)! } : {}),
      }),
      addConsumer: async (queue) => {
        if (this.queueList.includes(queue)) return false;
        this.queueList.push(queue);
        await this.resubscribe();
        return true;
      },
      cancelConsumer: async (queue) => {
        if (!this.queueList.includes(queue)) return false;
        this.queueList = this.queueList.filter((q) => q !== queue);
        await this.resubscribe();
        return true;
      },
      taskEvents: () => this.taskEvents,
      setTaskEvents: (on) => void (this.taskEvents = on),
      shutdown: () => (this.options.onRemoteShutdown ?? (() => void this.stop()))(),
    };
  }

  /**
   * A broadcast sent by Fennel (header `fennel_broadcast`) is run by every worker: each stores its outcome under
   * its own result id (`broadcastResultId`), so the sender's BroadcastResult sees one result per worker. Any other
   * delivery is returned as it is.
   */
  private ownCopy(delivery: Delivery): Delivery {
    const { headers } = delivery.message;
    if (headers[BROADCAST_HEADER] !== true || typeof headers['id'] !== 'string') return delivery;
    const id = broadcastResultId(headers['id'], this.name);
    return {
      message: { ...delivery.message, headers: { ...headers, id }, properties: { ...delivery.message.properties, correlation_id: id } },
      queue: delivery.queue,
      redelivered: delivery.redelivered,
      ack: () => delivery.ack(),
      reject: (options) => delivery.reject(options),
      joinableAck: delivery.joinableAck,
    };
  }

  /** Every queue this worker consumes, as announced to the broker (presence): its own, the named ones, the broadcast ones. */
  private get consumedQueues(): string[] {
    return [...(this.directQueue ? [this.directQueue] : []), ...this.queueList, ...this.broadcastQueues];
  }

  /** An event with Celery's common fields first. */
  private event(type: EventType, fields: Record<string, unknown>): FennelEvent {
    return { type, hostname: this.name, timestamp: Date.now() / 1000, utcoffset: new Date().getTimezoneOffset() / 60, pid: process.pid, clock: ++this.clock, ...fields };
  }

  /**
   * Publishes a worker event at once, after the task events still buffered (so the clock's order holds). Events
   * are telemetry: a failure to send is ignored.
   */
  private sendEvent(type: EventType, fields: Record<string, unknown>): void {
    this.flushTaskEvents();
    try {
      this.app.events.publish(this.event(type, fields));
    } catch {
      // the app is closing
    }
  }

  /**
   * Buffers a task event until the end of this event-loop turn: the task events of a turn go as one message, a list
   * under routing key `task.multi`, as Celery's workers send theirs (its dispatcher's buffer_group), instead of one
   * message each. Celery's monitors and Fennel's read both forms.
   */
  private sendTaskEvent(type: EventType, fields: Record<string, unknown>): void {
    this.taskEventBuffer.push(this.event(type, fields));
    this.taskEventFlush ??= setImmediate(() => this.flushTaskEvents());
  }

  private flushTaskEvents(): void {
    if (this.taskEventFlush) clearImmediate(this.taskEventFlush);
    this.taskEventFlush = undefined;
    if (this.taskEventBuffer.length === 0) return;
    const events = this.taskEventBuffer;
    this.taskEventBuffer = [];
    try {
      this.app.events.publishMany(events);
    } catch {
      // the app is closing
    }
  }

  /**
   * Tells the broker this worker consumes its queues for the next PRESENCE_TTL_SEC (Transport.announceConsumer),
   * which producers read to say "no worker is consuming queue …" when a task waits in vain. Telemetry: a
   * failure is ignored, and the next heartbeat tries again.
   */
  private async announce(): Promise<void> {
    if (this.stopping) return;
    try {
      await this.app.transport.announceConsumer?.(this.name, this.consumedQueues, PRESENCE_TTL_SEC);
    } catch {
      // the broker is away or the app is closing
    }
  }

  private async withdraw(): Promise<void> {
    try {
      await this.app.transport.withdrawConsumer?.(this.name, this.consumedQueues);
    } catch {
      // the announcement expires on its own
    }
  }

  /** What worker-online, worker-heartbeat and worker-offline carry (Celery's heartbeat fields, plus the pool). */
  private workerFields(): Record<string, unknown> {
    const caches = processCacheStats();
    return {
      freq: HEARTBEAT_SEC,
      active: this.busy,
      processed: this.processed,
      loadavg: loadavg().map((n) => Math.round(n * 100) / 100),
      sw_ident: 'fennel',
      sw_ver: FENNEL_VERSION,
      sw_sys: process.platform,
      pool: this.poolKind,
      concurrency: this.slotLimit,
      queues: this.queueList,
      ...(this.autoscaler ? { autoscale: { max: this.autoscaler.max, min: this.autoscaler.min } } : {}),
      // The caches open in this process (memoized tasks' lookups run here), by engine: the gateway's /metrics and
      // dashboard show them. Sent empty too, so that caches closed since the last heartbeat leave the gateway's view.
      cache: caches,
    };
  }

  private executorContext(pool: Pool): ExecutorContext {
    const limiter = this.limiter;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the context's getter reads the worker's switch
    const worker = this;
    return {
      throttle: (name) => limiter.take(name),
      revoked: this.revoked,
      get taskEvents() {
        return worker.taskEvents;
      },
      emit: (type, request, fields) => {
        if (this.taskEvents) this.sendTaskEvent(type, { uuid: request.id, ...fields });
      },
      timeLimits: this.timeLimits,
      deadLettered: () => void this.deadLetters++,
      app: this.app,
      actors: this.actorHost,
      pool,
      log: this.log,
      workerName: this.name,
      abandoned: () => this.abandoned,
      acquireSlot: () => {
        if (this.stopping) return false;
        if (this.busy < this.slotLimit) {
          this.busy++;
          return true;
        }
        return new Promise((resolve) => this.slotWaiters.push(resolve));
      },
      releaseSlot: () => {
        // Handed straight to the next waiter, unless the pool shrank below the slots in use meanwhile.
        const next = this.busy <= this.slotLimit ? this.slotWaiters.shift() : undefined;
        if (next && !this.stopping) next(true);
        else {
          this.busy--;
          next?.(false);
        }
      },
    };
  }

  private goOffline(): void {
    clearInterval(this.heartbeat);
    this.sendEvent('worker-offline', this.workerFields());
  }

  /** Deliveries this worker holds now (running or waiting for a slot). */
  get holding(): number {
    return this.held.size;
  }

  /**
   * Warm shutdown: stop taking work, give deliveries still waiting for a slot back at once, let running
   * tasks finish for up to `graceSec`, then hand back whatever is left and stop the pool.
   */
  async stop(graceSec = this.options.graceSec ?? 30): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.heartbeat);
    this.autoscaler?.stop();
    // First: the lease is given up at once, so another beat takes over while this worker drains.
    await this.beat?.stop();
    // Actors: their calls running now finish, then their leases go, so other hosts restart them at once.
    await this.actorHost?.stop(graceSec * 1000);
    await this.resubscribing;
    await this.subscription?.cancel();
    // No longer consuming: withdrawn at once rather than left to expire (a cold shutdown leaves it to expire).
    await this.withdraw();
    await this.revoked.stop();
    for (const waiter of this.slotWaiters.splice(0)) waiter(false);
    const drained = this.held.size === 0 ? Promise.resolve(true) : new Promise<true>((resolve) => (this.onDrained = () => resolve(true)));
    const timedOut = new Promise<false>((resolve) => setTimeout(() => resolve(false), graceSec * 1000).unref());
    // Control stays up while the worker drains (inspect active shows what it finishes), and goes before the app.
    const drainedInTime = await Promise.race([drained, timedOut]);
    await this.panel?.stop();
    if (drainedInTime) {
      await this.pool?.close();
      this.goOffline();
      await this.app.close();
    } else {
      this.log.warn({ holding: this.held.size }, `grace period of ${graceSec}s over; handing ${this.held.size} unfinished task(s) back to the queue`);
      this.abandoned = true;
      // Tasks are told (their signal aborts) and get a moment to clean up; closing the transport hands back
      // what is held, for immediate redelivery elsewhere; then the slots are killed. No outcome is stored.
      this.pool?.abortAll('worker shutting down');
      this.goOffline();
      await this.app.close();
      await new Promise((resolve) => setTimeout(resolve, ABORT_CLEANUP_MS));
      await this.pool?.close();
    }
    clearInterval(this.keepAlive);
    this.unwatchConnections?.();
    this.log.info('worker stopped');
  }

  /** Cold shutdown (a second Ctrl-C): hand back held messages synchronously where the engine can, and go. */
  async abort(): Promise<void> {
    if (!this.stopping) this.goOffline();
    this.stopping = true;
    this.abandoned = true;
    clearInterval(this.keepAlive);
    this.autoscaler?.stop();
    void this.panel?.stop();
    this.pool?.abortAll('worker exiting at once');
    await Promise.race([this.app.close(), new Promise((r) => setTimeout(r, 1000).unref())]);
  }
}
