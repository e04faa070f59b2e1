// redis://host:port/db — the broker for many machines, in the layout of Celery's own Redis transport
// (kombu transport/redis.py), so Python Celery clients and workers share queues with Fennel:
//   queue            a list per queue; priority buckets `queue\x06\x16{3,6,9}`; LPUSH to publish, pop from the right
//   envelope         kombu's JSON envelope, base64 body, a fresh properties.delivery_tag per publish
//   unacked          hash delivery_tag → [message, exchange, routing_key]; `unacked_index` zset scored by time
// Every state change is one Lua script (transports/redis/*.lua, each with a header listing KEYS and ARGV).
// Where kombu loses work (pop, then record as unacked in a second step), fetch.lua does both at once.
// Fennel additions, ignored by Python workers: `fennel.leases` (the tags Fennel consumers hold, renewed while
// they run; Fennel's restore sweep reads only these, never a Python worker's entries), `fennel.scheduled` (countdown/eta kept in the broker),
// `fennel.wake.<queue>` (a marker idle consumers block on, so they wake at once), `fennel.dead_letters`.
// Priority: kombu's buckets, so 0 is served first and 9 last — the reverse of RabbitMQ and sqlite://.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { BrokerUnavailableError, ClosedError } from '../errors.ts';
import { decodeEnvelope, encodeEnvelope } from '../protocol/envelope.ts';
import type { WireMessage } from '../protocol/message.ts';
import { Batcher } from '../util/batcher.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import { connectRedis, gaveUp } from '../clients/redis/client.ts';
import * as presence from './redis/consumers.ts';
import { parseRedisUrl } from '../clients/redis/url.ts';
import { DEDUPE_HEADER, dedupeId, describeMessage, type ConsumeOptions, type DeadLetter, type Delivery, type QueueConsumers, type QueueStats, type Route, type Subscription, type Transport } from './transport.ts';

export const SEP = '\x06\x16';
const PRIORITY_STEPS = [0, 3, 6, 9];
/** The Redis keys this transport uses: kombu's, then Fennel's own (tests read the layout from here). */
export const REDIS_KEYS = {
  unacked: 'unacked',
  unackedIndex: 'unacked_index',
  unackedMutex: 'unacked_mutex',
  leases: 'fennel.leases',
  scheduled: 'fennel.scheduled',
  wakePrefix: 'fennel.wake.',
  deadLetters: 'fennel.dead_letters',
  deadLetterSeq: 'fennel.dead_letters.seq',
  dedupePrefix: 'fennel.dedupe.',
} as const;
const { unacked: UNACKED, unackedIndex: UNACKED_INDEX, unackedMutex: UNACKED_MUTEX, leases: LEASES, scheduled: SCHEDULED, wakePrefix: WAKE, deadLetters: DEAD, deadLetterSeq: DEAD_SEQ, dedupePrefix: DEDUPE } = REDIS_KEYS;

const PUBLISH_ATTEMPTS = 6;
/** Messages taken by one fetch, and tags acknowledged by one ack: both scripts unpack them as arguments, and Lua's unpack stops near 8,000. */
const MAX_FETCH = 1000;
const MAX_ACK = 2000;

function isConnectionError(error: unknown): boolean {
  const text = `${(error as Error).name} ${(error as Error).message}`;
  return /AbortError|Connection is closed|ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|max retries per request/i.test(text);
}

const SCRIPTS = ['fetch', 'ack', 'restore', 'dead_letter', 'requeue_dead', 'promote', 'publish_once'] as const;
/** A deduplicated id whose message vanished without an ack or dead letter is freed after this (seconds). */
const DEDUPE_SAFETY_SEC = 7 * 86_400;
type ScriptName = (typeof SCRIPTS)[number];

function loadScript(name: ScriptName): string {
  return readFileSync(new URL(`./redis/${name}.lua`, import.meta.url), 'utf8');
}

/** The bucket a priority goes to: kombu's `steps[bisect(steps, p) - 1]`; bucket 0 is the bare queue name. */
export function bucketFor(queue: string, priority = 0): string {
  let step = 0;
  for (const s of PRIORITY_STEPS) if (priority >= s) step = s;
  return step === 0 ? queue : `${queue}${SEP}${step}`;
}

function bucketsOf(queue: string): string[] {
  return PRIORITY_STEPS.map((step) => (step === 0 ? queue : `${queue}${SEP}${step}`));
}

export interface RedisTransportOptions {
  visibilityTimeoutSec?: number;
  /** How long an idle consumer blocks before it looks again (for messages from producers that send no wake-up). */
  pollIntervalMs?: number;
  /** How long a command waits for a connection before it fails with BrokerUnavailableError (redis/client.ts). */
  connectTimeoutMs?: number;
}

/** Calls a script registered with `defineCommand` (no fixed key count: the count goes first). */
export function callScript(client: Redis, command: string, keys: string[], args: Array<string | number>): Promise<unknown> {
  const fn = (client as unknown as Record<string, (...a: Array<string | number>) => Promise<unknown>>)[command];
  if (!fn) throw new Error(`script ${command} is not defined on this client`);
  return fn.call(client, keys.length, ...keys, ...args);
}

/** Messages read, and keys deleted, per call when purging. */
const PURGE_PAGE = 1_000;

function chunked<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

export class RedisTransport implements Transport {
  readonly capabilities = { delayedDelivery: true, priorities: true, crossProcess: true, deduplication: true };
  readonly client: Redis;
  readonly visibilityMs: number;
  readonly pollMs: number;
  private readonly subscriptions = new Set<RedisSubscription>();
  private readonly declared = new Set<string>();
  private closed = false;

  /** The URL with any password masked: what errors and logs show. */
  readonly url: string;

  constructor(url: string, options: RedisTransportOptions = {}) {
    // Every part of the URL is checked here (redis/url.ts); a bad one is a ConfigError before any connection.
    const target = parseRedisUrl(url);
    this.url = target.safeUrl;
    this.visibilityMs = (options.visibilityTimeoutSec ?? 30) * 1000;
    this.pollMs = options.pollIntervalMs ?? 250;
    // Reconnects for ever; a command waits for a connection at most connectTimeoutMs; a database the server
    // does not have is a ConfigError, never database 0. Its duplicate (the blocking connection) follows the same rules.
    this.client = connectRedis(target, { role: 'broker', connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, connectionName: `fennel:${process.pid}` });
    for (const name of SCRIPTS) this.client.defineCommand(`fennel_${name}`, { lua: loadScript(name) });
  }

  /** Runs one of the Lua scripts (ioredis sends EVALSHA and falls back to EVAL after a Redis restart). */
  readonly run = async (name: ScriptName, keys: string[], args: Array<string | number>): Promise<unknown> => {
    try {
      return await callScript(this.client, `fennel_${name}`, keys, args);
    } catch (error) {
      throw this.translate(error);
    }
  };

  translate(error: unknown): Error {
    if (this.closed) return new ClosedError(`transport ${this.url}`);
    const message = (error as Error).message ?? String(error);
    if (isConnectionError(error) || /ENOTFOUND/.test(message)) {
      return new BrokerUnavailableError(this.url, message, { cause: error });
    }
    return error instanceof Error ? error : new Error(message);
  }

  private check(): void {
    if (this.closed) throw new ClosedError(`transport ${this.url}`);
  }

  async publish(message: WireMessage, route: Route): Promise<void> {
    await this.publishMany([[message, route]]);
  }

  async publishMany(batch: ReadonlyArray<readonly [WireMessage, Route]>): Promise<void> {
    this.check();
    // Encoded once: a resend after a dropped connection carries the same delivery tags.
    const now = Date.now();
    const all = batch.map(([message, route]) => {
      const tag = randomUUID();
      const envelope = encodeEnvelope(message, 'base64', { delivery_tag: tag });
      const due = route.delayUntil?.getTime() ?? 0;
      const dedupe = route.deduplicate ? dedupeId(message) : undefined;
      return { queue: route.queue, bucket: bucketFor(route.queue, route.priority), envelope, tag, due: due > now ? due : 0, dedupe };
    });
    // Deduplicated messages go one by one through publish_once.lua (check and push in one step); the rest
    // in one transaction.
    for (const w of all) {
      if (!w.dedupe) continue;
      await this.withResend(() =>
        this.run('publish_once', [`${DEDUPE}${w.dedupe}`, w.due ? SCHEDULED : w.bucket, `${WAKE}${w.queue}`, `_kombu.binding.${w.queue}`], [w.tag, w.due ? `${w.bucket}\n${w.envelope}` : w.envelope, w.due, `${w.queue}${SEP}${SEP}${w.queue}`, DEDUPE_SAFETY_SEC]),
      );
    }
    const writes = all.filter((w) => !w.dedupe);
    if (writes.length === 0) return;
    await this.withResend(async () => {
      const multi = this.client.multi();
      // One LPUSH per bucket with every envelope for it, in order (the first pushed is the first popped),
      // and one ZADD for all the scheduled ones: a bulk of 500 is a handful of commands, not 500.
      const ready = new Map<string, string[]>();
      const scheduled: Array<string | number> = [];
      for (const w of writes) {
        if (w.due) scheduled.push(w.due, `${w.bucket}\n${w.envelope}`);
        else {
          const list = ready.get(w.bucket);
          if (list) list.push(w.envelope);
          else ready.set(w.bucket, [w.envelope]);
        }
      }
      for (const [bucket, envelopes] of ready) multi.lpush(bucket, ...envelopes);
      if (scheduled.length) multi.zadd(SCHEDULED, ...scheduled);
      for (const queue of new Set(writes.map((w) => w.queue))) {
        if (writes.some((w) => w.queue === queue && !w.due)) multi.zadd(`${WAKE}${queue}`, 0, 'w');
        // Declare the queue as kombu's producer does (maybe_declare), once per queue and transport.
        if (!this.declared.has(queue)) multi.sadd(`_kombu.binding.${queue}`, `${queue}${SEP}${SEP}${queue}`);
      }
      const results = await multi.exec();
      const failed = results?.find(([error]) => error);
      if (!results || failed) throw failed?.[0] ?? new Error('transaction aborted');
      for (const w of writes) this.declared.add(w.queue);
    });
  }

  /**
   * Runs a publish step, sending it again (whole) if the connection dropped under it: ioredis cannot resend a
   * transaction it lost (AbortError). The worst case is a duplicate (the first ran and only its reply was
   * lost): at-least-once, never a publish that silently vanishes. A deduplicated publish cannot even duplicate.
   */
  private async withResend(step: () => Promise<unknown>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await step();
        return;
      } catch (error) {
        // A client that gave up (the server away for connectTimeoutMs) is final: resending would only wait again.
        const dropped = (isConnectionError(error) || error instanceof BrokerUnavailableError) && !gaveUp(error);
        if (this.closed || attempt >= PUBLISH_ATTEMPTS || !dropped) throw error instanceof BrokerUnavailableError || error instanceof ClosedError ? error : this.translate(error);
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      }
    }
  }

  async consume(options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<Subscription> {
    this.check();
    if (options.queues.length === 0) throw new RangeError('consume needs at least one queue');
    // Declare the queues the way kombu does, so a Python producer routing through the default exchange finds them.
    for (const q of options.queues) await this.client.sadd(`_kombu.binding.${q}`, `${q}${SEP}${SEP}${q}`).catch(() => {});
    const sub = new RedisSubscription(this, options, onDelivery);
    this.subscriptions.add(sub);
    sub.start();
    return { cancel: async () => sub.stop() };
  }

  forget(sub: RedisSubscription): void {
    this.subscriptions.delete(sub);
  }

  /**
   * Deletes the queue's waiting messages, its scheduled ones (countdown/eta) included. Reads the lists page
   * by page and deletes in chunks: a queue of a million messages is neither one reply nor one argument list.
   */
  async purge(queue: string): Promise<number> {
    this.check();
    const buckets = bucketsOf(queue);
    const scheduled = (await this.client.zrange(SCHEDULED, 0, -1)).filter((m) => buckets.some((b) => m.startsWith(`${b}\n`)));
    // Deduplicated ids of purged messages are freed (an admin operation: reading the lists is acceptable).
    const freed: string[] = [];
    const free = (raw: string): void => {
      const id = raw.includes(DEDUPE_HEADER) ? dedupeId(decodeEnvelope(raw)) : undefined;
      if (id) freed.push(`${DEDUPE}${id}`);
    };
    for (const member of scheduled) free(member.slice(member.indexOf('\n') + 1));
    for (const b of buckets) {
      for (let start = 0; ; start += PURGE_PAGE) {
        const page = await this.client.lrange(b, start, start + PURGE_PAGE - 1);
        for (const raw of page) free(raw);
        if (page.length < PURGE_PAGE) break;
      }
    }
    const multi = this.client.multi();
    for (const b of buckets) multi.llen(b);
    multi.del(...buckets);
    const removals = chunked(scheduled, PURGE_PAGE);
    for (const members of removals) multi.zrem(SCHEDULED, ...members);
    for (const keys of chunked(freed, PURGE_PAGE)) multi.del(...keys); // last, so the counts above keep their places
    const results = (await multi.exec()) ?? [];
    const count = (from: number, to: number): number => results.slice(from, to).reduce((n, [, v]) => n + Number(v), 0);
    return count(0, buckets.length) + count(buckets.length + 1, buckets.length + 1 + removals.length);
  }

  /** Messages in the queue's priority buckets. */
  private async readyCount(queue: string): Promise<number> {
    const multi = this.client.multi();
    for (const b of bucketsOf(queue)) multi.llen(b);
    return ((await multi.exec()) ?? []).reduce((n, [, v]) => n + Number(v), 0);
  }

  /** Ready messages in the queue's buckets plus its scheduled ones (countdown/eta), as on every engine. */
  async depth(queue: string): Promise<number> {
    this.check();
    const ready = await this.readyCount(queue);
    const scheduled = (await this.client.zrange(SCHEDULED, 0, -1)).filter((m) => m.startsWith(`${queue}\n`) || m.startsWith(`${queue}${SEP}`)).length;
    return ready + scheduled;
  }

  async stats(): Promise<QueueStats[]> {
    this.check();
    const byQueue = new Map<string, QueueStats>();
    const row = (queue: string): QueueStats => {
      let s = byQueue.get(queue);
      if (!s) byQueue.set(queue, (s = { queue, ready: 0, scheduled: 0, unacked: 0 }));
      return s;
    };
    const bindings = await this.client.keys('_kombu.binding.*');
    for (const key of bindings) {
      const queue = key.slice('_kombu.binding.'.length);
      if (queue.includes('pidbox') || queue.startsWith('celeryev')) continue;
      row(queue).ready = await this.readyCount(queue);
    }
    for (const member of await this.client.zrange(SCHEDULED, 0, -1)) {
      const bucket = member.slice(0, member.indexOf('\n'));
      row(bucket.split(SEP)[0]!).scheduled++;
    }
    for (const entry of await this.client.hvals(UNACKED)) {
      const queue = /"([^"]*)"\s*\]\s*$/.exec(entry)?.[1];
      if (queue) row(queue).unacked++;
    }
    return [...byQueue.values()].sort((a, b) => a.queue.localeCompare(b.queue));
  }

  async listDeadLetters(options: { limit?: number } = {}): Promise<DeadLetter[]> {
    this.check();
    const records = Object.values(await this.client.hgetall(DEAD)).map(
      (text) => JSON.parse(text) as { id: string; queue: string; reason: string; created_at: number; task_id?: string; task_name?: string; envelope: string },
    );
    records.sort((a, b) => Number(a.id) - Number(b.id));
    return records.slice(0, options.limit ?? 100).map((r) => {
      const message = decodeEnvelope(r.envelope);
      const described = describeMessage(message);
      return {
        id: r.id,
        queue: r.queue,
        reason: r.reason,
        taskId: r.task_id || described.taskId,
        taskName: r.task_name || described.taskName,
        createdAt: new Date(r.created_at * 1000),
        message,
      };
    });
  }

  async requeueDeadLetter(id: string): Promise<boolean> {
    this.check();
    return (await this.run('requeue_dead', [DEAD], [id, SEP, WAKE])) === 1;
  }

  /** Presence (redis/consumers.ts): `HSET fennel.consumers <queue>\n<consumer> <expiry ms>`, one field per queue. */
  async announceConsumer(consumer: string, queues: readonly string[], ttlSec: number): Promise<void> {
    await this.withPresence(() => presence.announceConsumer(this.client, consumer, queues, ttlSec));
  }

  async withdrawConsumer(consumer: string, queues: readonly string[]): Promise<void> {
    await this.withPresence(() => presence.withdrawConsumer(this.client, consumer, queues));
  }

  consumers(queue?: string): Promise<Map<string, QueueConsumers>> {
    return this.withPresence(() => presence.listConsumers(this.client, queue));
  }

  private async withPresence<T>(step: () => Promise<T>): Promise<T> {
    this.check();
    try {
      return await step();
    } catch (error) {
      throw this.translate(error);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const sub of this.subscriptions) await sub.releaseAll();
    this.subscriptions.clear();
    this.closed = true;
    await this.client.quit().catch(() => this.client.disconnect());
  }
}

/** One consume loop: fetch into the prefetch window, block on the wake markers when idle, renew leases. */
class RedisSubscription {
  /** The delivery tags handed out and not yet settled (each delivery knows its own queue). */
  private readonly held = new Set<string>();
  private active = false;
  private looping = false;
  private blocker: Redis | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private nextPromote = 0;
  private nextRestore = 0;
  private roomWaiter: (() => void) | undefined;
  /**
   * Acks settled in one event-loop turn go to Redis as one script call; the deliveries are released when it
   * has run, before their callers' (shared) promise resolves.
   */
  private readonly acks = new Batcher<RedisDelivery>(MAX_ACK, async (deliveries) => {
    await this.transport.run(
      'ack',
      [UNACKED, UNACKED_INDEX, LEASES, ...deliveries.flatMap((d) => (d.dedupeKey ? [d.dedupeKey] : []))],
      deliveries.map((d) => d.tag),
    );
    for (const d of deliveries) this.release(d);
  });

  constructor(
    private readonly transport: RedisTransport,
    private readonly options: ConsumeOptions,
    private readonly onDelivery: (delivery: Delivery) => void,
  ) {}

  start(): void {
    this.active = true;
    // A separate connection for the blocking wait, so acks and stores never queue behind it.
    this.blocker = this.transport.client.duplicate();
    this.blocker.on('error', () => {});
    this.renewTimer = setInterval(() => void this.renew(), Math.max(50, Math.floor(this.transport.visibilityMs / 3)));
    this.renewTimer.unref();
    void this.loop();
  }

  /** Pushes the delivery time of every held message forward (kombu's restore sweep reads these scores). */
  private async renew(): Promise<void> {
    if (this.held.size === 0) return;
    const now = Date.now() / 1000;
    const args: Array<string | number> = [];
    for (const tag of this.held) args.push(now, tag);
    // Both scores: kombu's sweep reads unacked_index, Fennel's reads fennel.leases.
    await this.transport.client.multi().zadd(UNACKED_INDEX, 'XX', ...args).zadd(LEASES, 'XX', ...args).exec().catch(() => {});
  }

  private async loop(): Promise<void> {
    if (this.looping) return;
    this.looping = true;
    let failures = 0;
    while (this.active) {
      try {
        await this.housekeeping();
        const room = this.options.prefetch - this.held.size;
        if (room <= 0) {
          await new Promise<void>((resolve) => (this.roomWaiter = resolve));
          continue;
        }
        const got = await this.fetch(room);
        failures = 0;
        if (got === room) {
          // There may be more: pass the wake-up on to other idle consumers.
          const wake = this.transport.client.multi();
          for (const q of this.options.queues) wake.zadd(`${WAKE}${q}`, 0, 'w');
          await wake.exec();
          continue;
        }
        if (got > 0) continue;
        await this.waitForWork();
      } catch {
        // Redis is away: the client reconnects with backoff; look again shortly.
        failures++;
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * failures, 2000)));
      }
    }
    this.looping = false;
  }

  /** Moves due scheduled messages and restores messages whose holders died, now and then. */
  private async housekeeping(): Promise<void> {
    const now = Date.now();
    if (now >= this.nextPromote) {
      const next = Number(await this.transport.run('promote', [SCHEDULED], [now, 1000, WAKE]));
      this.nextPromote = next < 0 ? now + this.transport.pollMs : Math.min(next, now + this.transport.pollMs);
    }
    if (now >= this.nextRestore) {
      this.nextRestore = now + Math.max(250, Math.min(this.transport.visibilityMs / 2, 5000));
      await this.transport.run('restore', [UNACKED, UNACKED_INDEX, UNACKED_MUTEX, LEASES], [(now - this.transport.visibilityMs) / 1000, 1000, '', SEP, WAKE]);
    }
  }

  private async fetch(room: number): Promise<number> {
    const keys: string[] = [UNACKED, UNACKED_INDEX, LEASES, DEAD, DEAD_SEQ];
    const queues: string[] = [];
    for (const queue of this.options.queues) {
      for (const bucket of bucketsOf(queue)) {
        keys.push(bucket);
        queues.push(queue);
      }
    }
    const out = (await this.transport.run('fetch', keys, [Math.min(room, MAX_FETCH), Date.now() / 1000, ...queues])) as string[];
    for (let i = 0; i < out.length; i += 3) this.deliver(out[i]!, out[i + 1]!, out[i + 2]!);
    return out.length / 3;
  }

  /** Blocks on the wake markers until a Fennel producer publishes, a scheduled message is due, or the poll interval passes. */
  private async waitForWork(): Promise<void> {
    const timeoutMs = Math.max(10, Math.min(this.transport.pollMs, this.nextPromote - Date.now()));
    const keys = this.options.queues.map((q) => `${WAKE}${q}`);
    await this.blocker!.bzpopmin(...keys, (timeoutMs / 1000).toFixed(2));
  }

  private deliver(queue: string, tag: string, raw: string): void {
    this.held.add(tag);
    // Never throws: an envelope that named a tag but does not decode is handed out marked malformed, and
    // the executor dead-letters it with the reason.
    this.onDelivery(new RedisDelivery(this, queue, tag, raw));
  }

  /** Acknowledges a held delivery (batched with the others of this turn). */
  ack(delivery: RedisDelivery): Promise<void> {
    return this.acks.add(delivery);
  }

  /** Rejects a held delivery: back to its queue at once, or to the dead letters. */
  async reject(delivery: RedisDelivery, requeue: boolean, reason: string | undefined): Promise<void> {
    const { tag, dedupeKey, queue, message } = delivery;
    if (requeue) await this.transport.run('restore', [UNACKED, UNACKED_INDEX, UNACKED_MUTEX, LEASES], [0, 0, tag, SEP, WAKE]);
    else {
      const { taskId, taskName } = describeMessage(message);
      await this.transport.run('dead_letter', [UNACKED, UNACKED_INDEX, LEASES, DEAD, DEAD_SEQ, ...(dedupeKey ? [dedupeKey] : [])], [tag, reason ?? 'rejected', Date.now() / 1000, taskId ?? '', taskName ?? '', queue, delivery.raw]);
    }
    this.release(delivery);
  }

  /** A delivery is settled: its place in the prefetch window is free. (If settling failed it stays held and leased, and can be settled again.) */
  private release(delivery: RedisDelivery): void {
    delivery.settled = true;
    this.held.delete(delivery.tag);
    this.roomWaiter?.();
    this.roomWaiter = undefined;
    if (!this.active && this.held.size === 0) this.finish();
  }

  stop(): void {
    this.active = false;
    this.roomWaiter?.();
    this.blocker?.disconnect();
    if (this.held.size === 0) this.finish();
  }

  private finish(): void {
    clearInterval(this.renewTimer);
    this.transport.forget(this);
  }

  /** Hands every held message back for immediate redelivery (transport close). */
  async releaseAll(): Promise<void> {
    this.stop();
    await Promise.all([...this.held].map((tag) => this.transport.run('restore', [UNACKED, UNACKED_INDEX, UNACKED_MUTEX, LEASES], [0, 0, tag, SEP, WAKE]).catch(() => {})));
    this.held.clear();
    this.finish();
  }
}

/** One message handed to the consumer, held (and leased) until it is acknowledged or rejected once. */
class RedisDelivery implements Delivery {
  readonly message: WireMessage;
  readonly redelivered: boolean;
  /** The key that reserves its deduplicated id, freed when it is settled. */
  readonly dedupeKey: string | undefined;
  settled = false;

  constructor(
    private readonly subscription: RedisSubscription,
    readonly queue: string,
    readonly tag: string,
    readonly raw: string,
  ) {
    const message = decodeEnvelope(raw);
    const deduped = dedupeId(message);
    this.message = message;
    this.dedupeKey = deduped ? `${DEDUPE}${deduped}` : undefined;
    this.redelivered = message.headers['redelivered'] === true || (message.properties.delivery_info as { redelivered?: boolean } | undefined)?.redelivered === true;
  }

  ack(): Promise<void> {
    return this.settled ? Promise.resolve() : this.subscription.ack(this);
  }

  reject({ requeue, reason }: { requeue: boolean; reason?: string }): Promise<void> {
    return this.settled ? Promise.resolve() : this.subscription.reject(this, requeue, reason);
  }
}
