// amqp:// and amqps:// — RabbitMQ (AMQP 0-9-1, amqplib), in the topology Celery declares by default, so
// Python Celery clients and workers share queues with Fennel (CELERY-WIRE.md 2.3, A.2):
//   queue            durable, named by the routing key; a durable direct exchange of the same name binds it
//                    (Celery's `Queue(name, Exchange(name), routing_key=name)`); publishes go through the
//                    default exchange "" with routing key = queue, as Celery's send_task_message does
//   message          raw JSON body, protocol v2 headers as application_headers, persistent (delivery_mode 2)
//   options          ?maxPriority=N declares x-max-priority (priorities, higher first); ?queueType=quorum
//                    declares quorum queues (replicated; no priorities)
// Fennel additions: `fennel.delay.*` (delayed delivery by binary TTL levels, amqp/delay.ts) and the durable
// queue `fennel.dead_letters` (rejected messages with a `x-fennel-dead-letter` header saying why).
// Publishes wait for publisher confirms; consumers use basic.qos as the prefetch window and ack after the
// outcome is stored; RabbitMQ itself redelivers what a dead consumer held (redelivered flag set).

import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage, GetMessage } from 'amqplib';
import { BrokerUnavailableError, ClosedError, ConfigError } from '../errors.ts';
import type { WireMessage } from '../protocol/message.ts';
import { broadcastCopyQueue, DIRECT_EXCHANGE, directQueueNode, isActorQueue } from '../protocol/queues.ts';
import { amqpTable } from '../clients/amqp/table.ts';
import { AmqpConnection, isConnectionError, isNotFound, isPreconditionFailed, type Session } from '../clients/amqp/connection.ts';
import { DELAY_PREFIX, DELIVER_EXCHANGE, LEVELS, delayRoutingKey, delayUnits, delayableQueue, deliverPattern, levelExchange, levelQueue, levelQueuePattern, nextExchange, passPattern, topLevel, UNIT_MS } from './amqp/delay.ts';
import { ReplyRoutes, replyQueueOptions } from '../clients/amqp/replies.ts';
import { parseAmqpUrl, type AmqpUrl } from '../clients/amqp/url.ts';
import { fromAmqp, toAmqp } from './amqp/wire.ts';
import { describeMessage, type ConsumeOptions, type DeadLetter, type Delivery, type QueueConsumers, type QueueStats, type Route, type Subscription, type Transport } from './transport.ts';

export const DEAD_LETTER_QUEUE = 'fennel.dead_letters';
/** The header a dead letter carries: { id, queue, reason, at (ms since the epoch) }. Removed on requeue. */
const DEAD_HEADER = 'x-fennel-dead-letter';
/** How long a publish keeps trying on new connections (backing off to 2 s) before it rejects. */
const PUBLISH_RETRY_MS = 15_000;
/**
 * The longest one publish attempt may take before its connection is taken for dead (withinAttemptBound): shorter
 * than PUBLISH_RETRY_MS, so the batch still goes out again on a new connection within the publish's budget.
 */
const PUBLISH_ATTEMPT_MS = 10_000;
/** How long a worker's direct queue is kept once nothing uses it (RabbitMQ's x-expires): a day. */
const DIRECT_QUEUE_EXPIRES_MS = 86_400_000;
/** Routing keys are short strings (255 bytes); the delay levels take 2 × LEVELS of them. */
const MAX_DELAYED_QUEUE_BYTES = 255 - 2 * LEVELS;

// Deliveries held (handed out, not yet settled) by this process's consumers, per broker and queue. AMQP
// 0-9-1 reports only a queue's ready count; its unacked count needs the management plugin, so stats()
// reports what this process holds (see docs/transports.md).
const heldCounts = new Map<string, number>();

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class AmqpTransport implements Transport {
  readonly capabilities: { delayedDelivery: boolean; priorities: boolean; crossProcess: boolean; broadcast: boolean };
  readonly config: AmqpUrl;
  readonly connection: AmqpConnection;
  /** Queues this transport published to or consumed: what stats() can report (AMQP cannot list queues). */
  private readonly known = new Set<string>();
  get usedQueues(): ReadonlySet<string> {
    return this.known;
  }
  private readonly subscriptions = new Set<AmqpSubscription>();
  private closed = false;
  private readonly publishAttemptMs: number;
  /** Reply addresses shared with the app's rpc:// backend (clients/amqp/replies.ts). */
  readonly replies: ReplyRoutes;

  /**
   * `rpcResults`: results go back by rpc:// (the app's result backend), so the reply queue a task names is
   * declared before the task is published, living `resultExpiresSec` once unused.
   */
  constructor(
    readonly url: string,
    private readonly options: { rpcResults?: boolean; resultExpiresSec?: number; connectTimeoutMs?: number; publishAttemptMs?: number; replies?: ReplyRoutes } = {},
  ) {
    this.replies = options.replies ?? new ReplyRoutes();
    this.publishAttemptMs = options.publishAttemptMs ?? PUBLISH_ATTEMPT_MS;
    this.config = parseAmqpUrl(url);
    this.capabilities = { delayedDelivery: true, priorities: this.config.maxPriority > 0, crossProcess: true, broadcast: true };
    // connectTimeoutMs bounds each connection attempt and how long a publish retries a broker that refuses it.
    this.connection = new AmqpConnection(this.config.connectUrl, this.config.safeUrl, { connectTimeoutMs: options.connectTimeoutMs, role: 'broker' });
  }

  check(): void {
    if (this.closed) throw new ClosedError(`transport ${this.config.safeUrl}`);
  }

  translate(error: unknown): Error {
    if (this.closed) return new ClosedError(`transport ${this.config.safeUrl}`);
    if (error instanceof BrokerUnavailableError || error instanceof ConfigError || error instanceof ClosedError) return error;
    if (isConnectionError(error)) return new BrokerUnavailableError(this.config.safeUrl, (error as Error).message, { cause: error });
    return error instanceof Error ? error : new Error(String(error));
  }

  heldKey(queue: string): string {
    return `${this.config.safeUrl}\n${queue}`;
  }

  /** The arguments of a task queue: Celery declares none by default; options add priority or quorum. */
  private queueArguments(): Record<string, unknown> {
    if (this.config.queueType === 'quorum') return { 'x-queue-type': 'quorum' };
    if (this.config.maxPriority > 0) return { 'x-max-priority': this.config.maxPriority };
    return {};
  }

  /**
   * Declares a task queue as Celery does (exchange, queue, binding), once per session. A queue that exists
   * with other arguments (declared by Celery with other queue_arguments, say) is used as it is: declaring
   * it again would only fail, and the default exchange reaches it either way.
   */
  async ensureQueue(queue: string, session?: Session): Promise<void> {
    const s = session ?? (await this.connection.session());
    this.known.add(queue);
    if (s.declared.has(queue)) return;
    try {
      await this.connection.withChannel(async (ch) => {
        await ch.assertExchange(queue, 'direct', { durable: true });
        const node = directQueueNode(queue);
        // A worker's direct queue outlives it by a day at most once unused (x-expires): node names carry a pid by
        // default, and every run would otherwise leave a durable queue behind. Messages for it wait that long. So
        // does an actor's queue: destroy() leaves it, and a host consumes it while the actor lives.
        const args = node === undefined && !isActorQueue(queue) ? this.queueArguments() : { ...this.queueArguments(), 'x-expires': DIRECT_QUEUE_EXPIRES_MS };
        await ch.assertQueue(queue, { durable: true, arguments: args });
        await ch.bindQueue(queue, queue, queue);
        // A worker's direct queue is also bound as Celery's worker_direct binds it: exchange C.dq2, key = node name.
        if (node !== undefined) {
          await ch.assertExchange(DIRECT_EXCHANGE, 'direct', { durable: true });
          await ch.bindQueue(queue, DIRECT_EXCHANGE, node);
        }
      });
    } catch (error) {
      if (!isPreconditionFailed(error)) throw error;
      await this.connection.withChannel((ch) => ch.checkQueue(queue));
    }
    s.declared.add(queue);
  }

  /**
   * Declares a broadcast queue's fanout exchange (kombu's `Broadcast(name)`: a fanout exchange named after it),
   * once per session. Every consumer binds a queue of its own to it; a message reaches the queues bound now.
   */
  async ensureFanout(name: string, session: Session): Promise<void> {
    const key = `fanout\n${name}`;
    if (session.declared.has(key)) return;
    await this.connection.withChannel((ch) => ch.assertExchange(name, 'fanout', { durable: true }));
    session.declared.add(key);
  }

  private async ensureReplyQueue(name: string, session: Session): Promise<void> {
    if (session.declared.has(name)) return;
    try {
      await this.connection.withChannel((ch) => ch.assertQueue(name, replyQueueOptions(this.options.resultExpiresSec ?? 86_400)));
      this.replies.noteOwnReplyQueue(name);
    } catch (error) {
      // Declared already with other arguments: a Python client's reply queue, which is not ours to read.
      if (!isPreconditionFailed(error)) throw error;
    }
    session.declared.add(name);
  }

  /** The delay levels' exchanges and pass-through bindings, shared by every queue; once per session. */
  private async ensureDelayExchanges(session: Session): Promise<void> {
    if (session.declared.has(DELAY_PREFIX)) return;
    await this.connection.withChannel(async (ch) => {
      const ops: Array<Promise<unknown>> = [ch.assertExchange(DELIVER_EXCHANGE, 'topic', { durable: true })];
      for (let level = 0; level < LEVELS; level++) ops.push(ch.assertExchange(levelExchange(level), 'topic', { durable: true }));
      await Promise.all(ops);
      await Promise.all(Array.from({ length: LEVELS }, (_, level) => ch.bindExchange(nextExchange(level), levelExchange(level), passPattern(level))));
    });
    session.declared.add(DELAY_PREFIX);
  }

  /** The level queues a delay of `units` needs for `queue` (levels 0 to its top bit) and the final binding. */
  private async ensureDelayQueues(queue: string, units: number, session: Session): Promise<void> {
    await this.ensureDelayExchanges(session);
    const missing: number[] = [];
    for (let level = 0; level <= topLevel(units); level++) if (!session.declared.has(levelQueue(level, queue))) missing.push(level);
    const deliverKey = `${DELIVER_EXCHANGE}\n${queue}`;
    if (missing.length === 0 && session.declared.has(deliverKey)) return;
    await this.connection.withChannel(async (ch) => {
      await ch.bindQueue(queue, DELIVER_EXCHANGE, deliverPattern(queue));
      await Promise.all(
        missing.map(async (level) => {
          const name = levelQueue(level, queue);
          // One TTL per level queue, so it expires strictly in order at its head; classic, so it may dead-letter.
          await ch.assertQueue(name, { durable: true, arguments: { 'x-message-ttl': UNIT_MS * 2 ** level, 'x-dead-letter-exchange': nextExchange(level) } });
          await ch.bindQueue(name, levelExchange(level), levelQueuePattern(level, queue));
        }),
      );
    });
    session.declared.add(deliverKey);
    for (const level of missing) session.declared.add(levelQueue(level, queue));
  }

  async publish(message: WireMessage, route: Route): Promise<void> {
    await this.publishMany([[message, route]]);
  }

  async publishMany(batch: ReadonlyArray<readonly [WireMessage, Route]>): Promise<void> {
    this.check();
    for (const [, route] of batch) {
      if (route.delayUntil && !delayableQueue(route.queue)) throw new ConfigError(`queue '${route.queue}' has a '*' or '#' word, which the delay levels' topic bindings would read as a wildcard; rename it to use countdown/eta`);
      if (route.delayUntil && Buffer.byteLength(route.queue) > MAX_DELAYED_QUEUE_BYTES) throw new ConfigError(`queue '${route.queue}' is longer than ${MAX_DELAYED_QUEUE_BYTES} bytes, too long for a delayed publish's routing key`);
    }
    // This publish's place in the process's order, taken before the first await: its messages go onto the channel
    // after those of every publish called before it (below), however long each one's declarations take.
    const previous = this.publishOrder;
    let issued!: () => void;
    this.publishOrder = new Promise<void>((resolve) => (issued = resolve));
    const deadline = Date.now() + PUBLISH_RETRY_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        const session = await this.connection.session();
        // Only the first attempt keeps its place: one sent again after a lost connection follows what went meanwhile.
        await this.withinAttemptBound(this.publishOnce(batch, session, attempt === 1 ? { previous, issued } : undefined), session);
        return;
      } catch (error) {
        issued();
        // A lost connection or a nack: nothing in this batch is known to be stored, so all of it is sent
        // again on a new connection. The worst case is a duplicate (stored, then the confirm was lost):
        // at-least-once, never a publish that silently vanishes. Bounded by time, not attempts: connections
        // closed again and again (a broker restarting) each cost an attempt in a fraction of a second.
        if (this.closed || Date.now() >= deadline || !isConnectionError(error)) throw this.translate(error);
        await sleep(Math.min(100 * 2 ** attempt, 2000));
      }
    }
  }

  /**
   * A publish attempt that neither completes nor fails within PUBLISH_ATTEMPT_MS is on a connection that has
   * stopped answering (RabbitMQ confirms in milliseconds): the connection is dropped, which fails what waits on
   * it and makes everyone reconnect, and the attempt counts as a lost connection (sent again). Without this
   * bound, a publish sent while RabbitMQ was stopping (stop_app) waited on with nothing unconfirmed on the broker's
   * side, about 1 run in 10 of the fault suite: most likely a connection opened just as the broker went down, left
   * open and unanswered, which heartbeats (60 s, two missed) would notice only minutes later.
   */
  private withinAttemptBound(attempt: Promise<void>, session: Session): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.connection.discard(session);
        reject(new BrokerUnavailableError(this.config.safeUrl, `publish unconfirmed after ${this.publishAttemptMs} ms: the connection stopped answering; reconnecting`));
      }, this.publishAttemptMs);
      attempt.then(
        () => (clearTimeout(timer), resolve()),
        (error: unknown) => (clearTimeout(timer), reject(error)),
      );
    });
  }

  /**
   * Resolves once the messages of the last publish called have been put on the channel (or it failed first): a
   * process's publishes reach the broker in the order they were called. Without it, publishes waiting on a queue's
   * declaration resumed in any order (76 of 200 concurrent calls to a new queue were out of order): an actor's calls
   * from one caller must arrive as they were made.
   */
  private publishOrder: Promise<void> = Promise.resolve();

  private async publishOnce(batch: ReadonlyArray<readonly [WireMessage, Route]>, session: Session, order?: { previous: Promise<void>; issued: () => void }): Promise<void> {
    const now = Date.now();
    const items = batch.map(([message, route]) => {
      // A broadcast goes out at once through its fanout exchange; an eta on it is kept by each worker's copy.
      const units = route.broadcast ? 0 : delayUnits((route.delayUntil?.getTime() ?? 0) - now);
      return { queue: route.queue, units, broadcast: route.broadcast === true, out: toAmqp(message, { priority: route.priority ?? message.properties.priority, delayed: units > 0 }) };
    });
    for (const queue of new Set(items.filter((i) => !i.broadcast).map((i) => i.queue))) await this.ensureQueue(queue, session);
    for (const queue of new Set(items.filter((i) => i.broadcast).map((i) => i.queue))) await this.ensureFanout(queue, session);
    if (this.options.rpcResults) {
      for (const [message] of batch) {
        const replyTo = message.properties.reply_to;
        // A message this process holds a delivery of (a retry, an early eta sent back to wait) names its
        // caller's reply queue, which that caller declared and reads: it is neither declared nor read here.
        const { taskId } = describeMessage(message);
        if (typeof replyTo !== 'string' || replyTo === '' || (taskId && this.replies.replyToOf(taskId) === replyTo)) continue;
        await this.ensureReplyQueue(replyTo, session);
      }
    }
    for (const item of items) if (item.units > 0) await this.ensureDelayQueues(item.queue, item.units, session);
    const { channel } = await this.connection.confirmChannel();
    if (order) await order.previous;
    const confirms: Array<Promise<void>> = [];
    for (const { queue, units, out, broadcast } of items) {
      confirms.push(
        new Promise<void>((resolve, reject) => {
          const done = (error: unknown): void => (error ? reject(new Error(`RabbitMQ did not confirm the publish (nack): ${(error as Error).message ?? 'nack'}`)) : resolve());
          // amqplib buffers what the socket cannot take yet; a batch is bounded by its caller.
          if (broadcast) channel.publish(queue, '', out.content, out.options, done);
          else if (units > 0) channel.publish(levelExchange(LEVELS - 1), delayRoutingKey(units, queue), out.content, out.options, done);
          else channel.publish('', queue, out.content, out.options, done);
        }),
      );
    }
    order?.issued();
    // A channel or connection that closes with publishes unconfirmed rejects their callbacks (amqplib ≥ 1.0.5).
    await Promise.all(confirms);
  }

  async consume(options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<Subscription> {
    this.check();
    if (options.queues.length === 0) throw new RangeError('consume needs at least one queue');
    const sub = new AmqpSubscription(this, options, onDelivery);
    this.subscriptions.add(sub);
    try {
      await sub.start();
    } catch (error) {
      this.subscriptions.delete(sub);
      await sub.cancel();
      throw this.translate(error);
    }
    return { cancel: () => sub.cancel(), live: sub.live };
  }

  forget(sub: AmqpSubscription): void {
    this.subscriptions.delete(sub);
  }

  /** Runs a passive probe (checkQueue, purgeQueue) on a throwaway channel; undefined if the queue does not exist. */
  private async probe<T>(fn: (ch: Channel) => Promise<T>): Promise<T | undefined> {
    try {
      return await this.connection.withChannel(fn);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.translate(error);
    }
  }

  /** Ready and scheduled counts of a queue; its delay level queues are probed, as other processes may have declared them. */
  private async counts(queue: string): Promise<{ ready: number; scheduled: number }> {
    const ready = (await this.probe((ch) => ch.checkQueue(queue)))?.messageCount ?? 0;
    const levels = await Promise.all(Array.from({ length: LEVELS }, (_, level) => this.probe((ch) => ch.checkQueue(levelQueue(level, queue)))));
    return { ready, scheduled: levels.reduce((n, r) => n + (r?.messageCount ?? 0), 0) };
  }

  /** Deletes the queue's waiting messages, its scheduled ones (in the delay levels) included. */
  async purge(queue: string): Promise<number> {
    this.check();
    const names = [queue, ...Array.from({ length: LEVELS }, (_, level) => levelQueue(level, queue))];
    const purged = await Promise.all(names.map((name) => this.probe((ch) => ch.purgeQueue(name))));
    return purged.reduce((n, r) => n + (r?.messageCount ?? 0), 0);
  }

  async depth(queue: string): Promise<number> {
    this.check();
    const { ready, scheduled } = await this.counts(queue);
    return ready + scheduled;
  }

  /** The queues this transport has used; `unacked` counts the deliveries this process holds. */
  async stats(): Promise<QueueStats[]> {
    this.check();
    const rows: QueueStats[] = [];
    for (const queue of [...this.known].sort()) {
      const { ready, scheduled } = await this.counts(queue);
      rows.push({ queue, ready, scheduled, unacked: heldCounts.get(this.heldKey(queue)) ?? 0 });
    }
    return rows;
  }

  /**
   * Presence as RabbitMQ reports it: the consumer count of a passive declare (checkQueue), a count without names,
   * which counts Python Celery workers too. AMQP 0-9-1 cannot list a broker's queues (the management plugin can),
   * so besides `queue` only the queues this transport has used are asked about. Workers announce nothing here.
   */
  async consumers(queue?: string): Promise<Map<string, QueueConsumers>> {
    this.check();
    const queues = [...new Set(queue === undefined ? this.known : [queue, ...this.known])];
    const found = await Promise.all(queues.map((q) => this.probe((ch) => ch.checkQueue(q))));
    const map = new Map<string, QueueConsumers>();
    queues.forEach((q, i) => {
      const count = found[i]?.consumerCount ?? 0;
      if (count > 0 || q === queue) map.set(q, { count, names: [] });
    });
    return map;
  }

  private async ensureDeadLetterQueue(ch: Channel): Promise<void> {
    await ch.assertQueue(DEAD_LETTER_QUEUE, { durable: true });
  }

  /** Stores a rejected message in `fennel.dead_letters` (confirmed), with why and where it came from. */
  async deadLetter(message: WireMessage, raw: Buffer, queue: string, reason: string): Promise<void> {
    const session = await this.connection.session();
    if (!session.declared.has(DEAD_LETTER_QUEUE)) {
      await this.connection.withChannel((ch) => this.ensureDeadLetterQueue(ch));
      session.declared.add(DEAD_LETTER_QUEUE);
    }
    const out = toAmqp(message);
    out.options.headers = amqpTable({ ...message.headers, [DEAD_HEADER]: { id: randomUUID(), queue, reason, at: Date.now() } });
    out.options.deliveryMode = 2;
    delete out.options.expiration; // a dead letter is kept until someone requeues it
    const { channel } = await this.connection.confirmChannel();
    await new Promise<void>((resolve, reject) => {
      channel.publish('', DEAD_LETTER_QUEUE, raw, out.options, (error: unknown) => (error ? reject(new Error(`RabbitMQ did not confirm the dead letter (nack): ${(error as Error).message ?? 'nack'}`)) : resolve()));
    });
  }

  /** Reads one dead-letter message into its record; undefined for a message that is not one of ours. */
  private letterOf(msg: GetMessage): DeadLetter | undefined {
    const message = fromAmqp(msg as unknown as ConsumeMessage, DEAD_LETTER_QUEUE, false);
    const meta = message.headers[DEAD_HEADER] as { id?: unknown; queue?: unknown; reason?: unknown; at?: unknown } | undefined;
    if (!meta || typeof meta.id !== 'string' || typeof meta.queue !== 'string') return undefined;
    delete message.headers[DEAD_HEADER];
    message.properties.delivery_info = { exchange: '', routing_key: meta.queue };
    const { taskId, taskName } = describeMessage(message);
    return { id: meta.id, queue: meta.queue, reason: typeof meta.reason === 'string' ? meta.reason : 'rejected', taskId, taskName, createdAt: new Date(typeof meta.at === 'number' ? meta.at : 0), message };
  }

  /**
   * AMQP cannot browse a queue: the letters are taken with basic.get and given back, in their order, when
   * the channel closes. While one call reads them another sees fewer (an admin operation; run one at a time).
   */
  async listDeadLetters(options: { limit?: number } = {}): Promise<DeadLetter[]> {
    this.check();
    const limit = options.limit ?? 100;
    try {
      return await this.connection.withChannel(async (ch) => {
        await this.ensureDeadLetterQueue(ch);
        const letters: DeadLetter[] = [];
        while (letters.length < limit) {
          const msg = await ch.get(DEAD_LETTER_QUEUE, { noAck: false });
          if (!msg) break;
          const letter = this.letterOf(msg);
          if (letter) letters.push(letter);
        }
        return letters;
      });
    } catch (error) {
      throw this.translate(error);
    }
  }

  async requeueDeadLetter(id: string): Promise<boolean> {
    this.check();
    try {
      return await this.connection.withChannel(async (ch) => {
        await this.ensureDeadLetterQueue(ch);
        for (;;) {
          const msg = await ch.get(DEAD_LETTER_QUEUE, { noAck: false });
          if (!msg) return false;
          const letter = this.letterOf(msg);
          if (letter?.id !== id) continue;
          // Published (and confirmed) before the letter is acked: a crash in between leaves a duplicate, never a loss.
          const priority = letter.message.properties.priority;
          await this.publish(letter.message, { queue: letter.queue, ...(typeof priority === 'number' ? { priority } : {}) });
          ch.ack(msg);
          return true;
        }
      });
    } catch (error) {
      throw this.translate(error);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const sub of [...this.subscriptions]) await sub.releaseAll();
    this.subscriptions.clear();
    this.closed = true;
    await this.connection.close();
  }
}

interface Held {
  channel: Channel;
  msg: ConsumeMessage;
  queue: string;
  taskId: string | null;
}

/** One consumer: a channel with basic.qos = prefetch and a basic.consume per queue, reopened after a loss. */
class AmqpSubscription {
  private channel: Channel | undefined;
  private active = true;
  private readonly held = new Set<Held>();
  private tags: string[] = [];
  private reopening = false;
  /** Resolves once a consume succeeded, or at cancel (Subscription.live). */
  readonly live: Promise<void>;
  private markLive!: () => void;

  constructor(
    private readonly transport: AmqpTransport,
    private readonly options: ConsumeOptions,
    private readonly onDelivery: (delivery: Delivery) => void,
  ) {
    this.live = new Promise<void>((resolve) => (this.markLive = resolve));
  }

  /**
   * Consumes, or, if RabbitMQ cannot be reached now, keeps trying in the background (a worker started before its
   * broker waits for it, as on every engine). Anything else (a queue declared with other arguments, a refused
   * login) is thrown.
   */
  async start(): Promise<void> {
    try {
      await this.open();
    } catch (error) {
      if (!(error instanceof BrokerUnavailableError) && !isConnectionError(error)) throw error;
      void this.reopen();
    }
  }

  private async open(): Promise<void> {
    const session = await this.transport.connection.session();
    for (const queue of this.options.queues) await this.transport.ensureQueue(queue, session);
    const channel = await session.model.createChannel();
    channel.on('error', () => {});
    // amqplib closes every channel of a connection that is lost, so this also covers connection failures.
    channel.on('close', () => {
      if (this.channel === channel) this.lost();
    });
    // Per consumer; with several queues also per channel, so the window is shared. Quorum queues refuse a
    // per-channel (global) limit, so there the window applies to each queue.
    await channel.prefetch(this.options.prefetch, false);
    if (this.options.queues.length > 1 && this.transport.config.queueType === 'classic') await channel.prefetch(this.options.prefetch, true);
    this.channel = channel;
    this.tags = [];
    try {
      for (const queue of [...this.options.queues, ...(await this.bindBroadcastQueues(channel, session))]) {
        const { consumerTag } = await channel.consume(queue, (msg) => this.onMessage(channel, queue, msg), { noAck: false });
        this.tags.push(consumerTag);
      }
    } catch (error) {
      await this.closeChannel();
      throw error;
    }
    this.markLive();
    if (!this.active) await this.closeChannel();
  }

  /**
   * For each broadcast queue: its fanout exchange, and this consumer's copy queue bound to it (protocol/queues.ts
   * names it), exclusive to this connection and deleted with it, so a worker that is gone receives nothing later.
   * Returns the copy queues, consumed like any queue.
   */
  private async bindBroadcastQueues(channel: Channel, session: Session): Promise<string[]> {
    const broadcast = this.options.broadcast;
    if (!broadcast) return [];
    const copies: string[] = [];
    for (const queue of broadcast.queues) {
      await this.transport.ensureFanout(queue, session);
      const copy = broadcastCopyQueue(queue, broadcast.consumer);
      await channel.assertQueue(copy, { exclusive: true, autoDelete: true, durable: false });
      await channel.bindQueue(copy, queue, '');
      copies.push(copy);
    }
    return copies;
  }

  /** The channel or its connection is gone: RabbitMQ requeues what it held; consume again with backoff. */
  private lost(): void {
    const channel = this.channel;
    this.channel = undefined;
    for (const h of [...this.held]) if (h.channel === channel || !channel) this.drop(h);
    if (this.active) void this.reopen();
  }

  private async reopen(): Promise<void> {
    if (this.reopening) return;
    this.reopening = true;
    for (let attempt = 1; this.active && !this.channel; attempt++) {
      await sleep(Math.min(100 * 2 ** Math.min(attempt, 5), 2000));
      if (!this.active) break;
      try {
        await this.open();
      } catch {
        // RabbitMQ is still away (or restarting): try again after the next pause
      }
    }
    this.reopening = false;
  }

  private onMessage(channel: Channel, queue: string, msg: ConsumeMessage | null): void {
    // null: the broker cancelled the consumer (its queue was deleted); consume again once it is back.
    if (msg === null) {
      if (this.channel === channel) {
        void this.closeChannel().then(() => this.lost());
      }
      return;
    }
    if (!this.active || this.channel !== channel) {
      // Arrived after cancel: give it straight back.
      try {
        channel.nack(msg, false, true);
      } catch {
        // the channel is closing, which requeues it as well
      }
      return;
    }
    const viaDelay = msg.fields.exchange.startsWith(DELAY_PREFIX);
    let message: WireMessage;
    try {
      message = fromAmqp(msg, queue, viaDelay);
    } catch (error) {
      message = { headers: {}, properties: {}, body: msg.content.toString('utf8'), contentType: 'application/octet-stream', contentEncoding: 'binary', malformed: `unreadable AMQP message: ${(error as Error).message}` };
    }
    const { taskId } = describeMessage(message);
    const held: Held = { channel, msg, queue, taskId };
    this.held.add(held);
    const key = this.transport.heldKey(queue);
    heldCounts.set(key, (heldCounts.get(key) ?? 0) + 1);
    const replyTo = message.properties.reply_to;
    if (taskId && typeof replyTo === 'string' && replyTo !== '') this.transport.replies.noteReplyTo(taskId, replyTo);
    let settled = false;
    const settle = async (fn: () => Promise<void> | void, requeue = false): Promise<void> => {
      if (settled) return;
      if (!this.held.has(held)) {
        // The channel it came on is gone, and RabbitMQ has put the message back in its queue already: a requeue
        // asked for now is done (failing it would keep a worker's shutdown waiting for a hand-back that happened).
        if (requeue) return;
        throw new BrokerUnavailableError(this.transport.config.safeUrl, 'the connection this delivery came on was lost; RabbitMQ hands the message out again');
      }
      await fn(); // if it throws the delivery stays held and can be settled again
      settled = true;
      this.drop(held);
      if (!this.active && this.held.size === 0) await this.closeChannel();
    };
    this.onDelivery({
      message,
      queue,
      redelivered: msg.fields.redelivered,
      ack: () => settle(() => channel.ack(msg)),
      reject: ({ requeue, reason }) =>
        settle(async () => {
          if (requeue) return channel.nack(msg, false, true);
          await this.transport.deadLetter(message, msg.content, queue, reason ?? 'rejected');
          channel.ack(msg);
        }, requeue),
    });
  }

  /** Forgets a held delivery (settled, or its channel is gone). */
  private drop(held: Held): void {
    if (!this.held.delete(held)) return;
    const key = this.transport.heldKey(held.queue);
    const n = (heldCounts.get(key) ?? 1) - 1;
    if (n > 0) heldCounts.set(key, n);
    else heldCounts.delete(key);
    if (held.taskId) this.transport.replies.releaseReplyTo(held.taskId);
  }

  private async closeChannel(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close().catch(() => {});
  }

  /** Stops new deliveries; the channel stays open until the held ones are settled. */
  async cancel(): Promise<void> {
    if (!this.active) return;
    this.active = false;
    this.markLive();
    const channel = this.channel;
    // basic.cancel per consumer; what is in flight meanwhile is nacked back in onMessage.
    if (channel) await Promise.all(this.tags.map((tag) => channel.cancel(tag).catch(() => {})));
    if (this.held.size === 0) await this.closeChannel();
    this.transport.forget(this);
  }

  /** Hands every held message back at once (transport close). */
  async releaseAll(): Promise<void> {
    await this.cancel();
    for (const h of [...this.held]) {
      try {
        h.channel.nack(h.msg, false, true);
      } catch {
        // the channel is gone, and RabbitMQ has requeued it already
      }
      this.drop(h);
    }
    await this.closeChannel();
  }
}
