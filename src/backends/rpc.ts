// rpc:// — results sent back over RabbitMQ to the process that sent the task, as Celery's rpc backend does
// (celery/backends/rpc.py; CELERY-WIRE.md 2.4, A.4): the worker publishes the meta JSON to the default
// exchange with routing key = the task's `reply_to` and correlation_id = the task id (transient,
// delivery_mode 1); the caller consumes its reply queue, named by its app's oid. Nothing is stored:
// results reach only the caller, which keeps the ones it has received in memory (bounded), so get() and
// countByState() answer for this process's own tasks only, and there are no chords.
// The broker is the app's amqp:// URL. Reply queues are declared by the AMQP transport before the task goes
// out (clients/amqp/replies.ts), so a fast worker's reply always finds its queue.

import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage } from 'amqplib';
import { BrokerUnavailableError, ClosedError, ConfigError } from '../errors.ts';
import { decodeMeta, encodeMeta, type TaskMeta } from '../protocol/result.ts';
import { isReady, States } from '../protocol/states.ts';
import { AmqpConnection, isConnectionError } from '../clients/amqp/connection.ts';
import { ReplyRoutes, replyQueueOptions } from '../clients/amqp/replies.ts';
import { parseAmqpUrl } from '../clients/amqp/url.ts';
import type { ResultBackend, WaitOptions } from './backend.ts';
import { Waiters } from './waiters.ts';

/** Results kept in memory for get() once received (a waiter's result is handed to it on arrival). */
const CACHE_SIZE = 10_000;
/** The AMQP `type` of the marker get() sends through its own reply queue to know it has read all before it. */
const BARRIER_TYPE = 'fennel.rpc.barrier';
const PUBLISH_ATTEMPTS = 4;

export interface RpcBackendOptions {
  /** The amqp:// broker URL the replies travel through (the app's broker). */
  broker: string;
  resultExpiresSec?: number;
  /** Bounds each connection attempt, and how long a publish retries a broker that refuses it. Default 5000. */
  connectTimeoutMs?: number | undefined;
  /** This instance's reply queue. Default: the reply queues of this process's producers (the app's oid). */
  replyQueue?: string;
  /**
   * Where store() sends the result of a task no consumer in this process holds (so its caller is unknown).
   * Default: this instance's own reply queue, so a process that stores results of its own tasks reads them.
   */
  fallbackReplyTo?: string;
  /** Reply addresses shared with the app's AMQP transport (clients/amqp/replies.ts). Default: its own, unshared. */
  replies?: ReplyRoutes;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class RpcBackend implements ResultBackend {
  private readonly connection: AmqpConnection;
  private readonly safeUrl: string;
  private readonly expiresSec: number;
  private readonly waiters = new Waiters();
  private readonly cache = new Map<string, TaskMeta>();
  private readonly barriers = new Map<string, () => void>();
  private channel: Promise<Channel> | undefined;
  private readonly consuming = new Set<string>();
  private closed = false;
  private readonly unfollow: () => void;
  private readonly replies: ReplyRoutes;

  constructor(
    readonly url: string,
    private readonly options: RpcBackendOptions,
  ) {
    if (!/^amqps?:/i.test(options.broker)) {
      throw new ConfigError(`the rpc:// result backend sends results back through RabbitMQ; it needs an amqp:// broker, not ${options.broker.replace(/:[^:@/]*@/, ':***@')} (use redis:// or sqlite:// results there)`);
    }
    const broker = parseAmqpUrl(options.broker);
    this.safeUrl = broker.safeUrl;
    this.expiresSec = options.resultExpiresSec ?? 86_400;
    this.replies = options.replies ?? new ReplyRoutes();
    this.connection = new AmqpConnection(broker.connectUrl, broker.safeUrl, { connectTimeoutMs: options.connectTimeoutMs, role: 'result backend' });
    // A get() can start before its task (the first to name a reply queue) is published: consume each reply
    // queue as soon as it is declared while anyone waits.
    this.unfollow = options.replyQueue
      ? () => {}
      : this.replies.onOwnReplyQueue(() => {
          if (!this.closed && this.waiters.size > 0) this.listen().catch(() => void this.relisten());
        });
  }

  /** The queues this instance reads: its own, or those its process's producers named as reply_to. */
  private replyQueues(): string[] {
    return this.options.replyQueue ? [this.options.replyQueue] : [...this.replies.ownReplyQueues()];
  }

  private check(): void {
    if (this.closed) throw new ClosedError(`result backend ${this.url}`);
  }

  async store(meta: TaskMeta): Promise<void> {
    this.check();
    const caller = this.replies.replyToOf(meta.task_id);
    const to = caller ?? this.options.fallbackReplyTo ?? this.replyQueues()[0];
    // No caller to tell (a task sent without reply_to): Celery's rpc backend has nowhere to send it either.
    if (!to) return;
    // A caller's queue is the caller's to declare (a Python client declares its own, with its own arguments);
    // a queue of this side's choosing is declared here, so the reply is not dropped as unroutable.
    if (!caller) await this.declare(to);
    await this.publish(to, Buffer.from(encodeMeta(meta), 'utf8'), meta.task_id);
  }

  private async declare(queue: string): Promise<void> {
    const session = await this.connection.session();
    if (session.declared.has(queue)) return;
    await this.connection.withChannel((ch) => ch.assertQueue(queue, replyQueueOptions(this.expiresSec)));
    session.declared.add(queue);
  }

  private async publish(routingKey: string, content: Buffer, correlationId: string, type?: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const { channel } = await this.connection.confirmChannel();
        await new Promise<void>((resolve, reject) => {
          channel.publish('', routingKey, content, { contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 1, priority: 0, correlationId, ...(type ? { type } : {}) }, (error: unknown) =>
            error ? reject(new Error(`RabbitMQ did not confirm the result (nack): ${(error as Error).message ?? 'nack'}`)) : resolve(),
          );
        });
        return;
      } catch (error) {
        if (this.closed) throw new ClosedError(`result backend ${this.url}`);
        if (attempt >= PUBLISH_ATTEMPTS || !isConnectionError(error)) {
          throw error instanceof BrokerUnavailableError ? error : new BrokerUnavailableError(this.safeUrl, (error as Error).message, { cause: error });
        }
        await sleep(100 * 2 ** attempt);
      }
    }
  }

  /** Consumes every reply queue not consumed yet, (re)connecting if needed. */
  private async listen(): Promise<Channel | undefined> {
    const queues = this.replyQueues();
    if (queues.length === 0) return undefined;
    const opening = (this.channel ??= this.openChannel());
    let channel: Channel;
    try {
      channel = await opening;
    } catch (error) {
      if (this.channel === opening) this.channel = undefined;
      throw error;
    }
    for (const queue of queues) {
      if (this.consuming.has(queue)) continue;
      this.consuming.add(queue);
      try {
        await channel.assertQueue(queue, replyQueueOptions(this.expiresSec));
        // no-ack, as Celery's result consumer: a reply is read once, and kept here.
        await channel.consume(queue, (msg) => this.onReply(msg), { noAck: true });
      } catch (error) {
        this.consuming.delete(queue);
        throw error;
      }
    }
    return channel;
  }

  private async openChannel(): Promise<Channel> {
    const session = await this.connection.session();
    const channel = await session.model.createChannel();
    channel.on('error', () => {});
    channel.on('close', () => {
      this.consuming.clear();
      this.channel = undefined;
      // Replies sent meanwhile wait in the queue (it is not auto-deleted): consume again while anyone waits.
      if (!this.closed && this.waiters.size > 0) void this.relisten();
    });
    return channel;
  }

  private async relisten(): Promise<void> {
    for (let attempt = 1; !this.closed && !this.channel && this.waiters.size > 0; attempt++) {
      await sleep(Math.min(100 * 2 ** Math.min(attempt, 5), 2000));
      await this.listen().catch(() => {});
    }
  }

  private onReply(msg: ConsumeMessage | null): void {
    if (!msg) return;
    if (msg.properties.type === BARRIER_TYPE) {
      const id = String(msg.properties.correlationId);
      this.barriers.get(id)?.();
      return;
    }
    let meta: TaskMeta;
    try {
      meta = decodeMeta(msg.content.toString('utf8'));
    } catch {
      return; // not a result: a Celery client would not read it either
    }
    if (!meta || typeof meta !== 'object' || typeof meta.task_id !== 'string') return;
    this.remember(meta);
    if (isReady(meta.status)) this.waiters.wake(meta.task_id, meta);
  }

  /** Keeps the latest state of a task, except that a SUCCESS is never replaced (Celery's rule, as in every backend). */
  private remember(meta: TaskMeta): void {
    const current = this.cache.get(meta.task_id);
    if (current?.status === States.SUCCESS) return;
    this.cache.delete(meta.task_id);
    this.cache.set(meta.task_id, meta);
    for (const id of this.cache.keys()) {
      if (this.cache.size <= CACHE_SIZE) break;
      if (!this.waiters.has(id)) this.cache.delete(id);
    }
  }

  /**
   * Reads everything already sent to this instance's reply queue: a marker goes through the queue and, the
   * queue being FIFO, every result published before it has been received once it comes back.
   */
  private async catchUp(): Promise<void> {
    const channel = await this.listen();
    const own = this.replyQueues()[0];
    if (!channel || !own) return;
    const id = randomUUID();
    const back = new Promise<void>((resolve) => this.barriers.set(id, resolve));
    try {
      await this.publish(own, Buffer.from('{}'), id, BARRIER_TYPE);
      await back;
    } finally {
      this.barriers.delete(id);
    }
  }

  async get(taskId: string): Promise<TaskMeta | undefined> {
    this.check();
    await this.catchUp();
    return this.cache.get(taskId);
  }

  async wait(taskId: string, options: WaitOptions): Promise<TaskMeta | undefined> {
    options.signal?.throwIfAborted();
    this.check();
    const waiting = this.waiters.add(taskId, options);
    const known = this.cache.get(taskId);
    if (known && isReady(known.status)) this.waiters.wake(taskId, known);
    else {
      // A broker that is away now is retried while the wait lasts; the wait itself ends by its timeout.
      this.listen().catch(() => void this.relisten());
    }
    return waiting;
  }

  async forget(taskId: string): Promise<void> {
    this.check();
    // A reply already on its way would otherwise land after the delete.
    await this.catchUp();
    this.cache.delete(taskId);
  }

  /** The results this process has received (rpc results are not stored anywhere else). */
  async countByState(): Promise<Record<string, number>> {
    this.check();
    await this.catchUp();
    const counts: Record<string, number> = {};
    for (const meta of this.cache.values()) counts[meta.status] = (counts[meta.status] ?? 0) + 1;
    return counts;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unfollow();
    this.waiters.wakeAll();
    for (const resolve of this.barriers.values()) resolve();
    await this.connection.close();
  }
}
