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
import type { Redis } from 'ioredis';
import { BrokerUnavailableError, ClosedError } from '../errors.ts';
import { decodeEnvelope, encodeEnvelope } from '../protocol/envelope.ts';
import type { WireMessage } from '../protocol/message.ts';
import { broadcastCopyQueue, DIRECT_EXCHANGE, directQueueNode } from '../protocol/queues.ts';
import { Batcher } from '../util/batcher.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import { connectRedis, gaveUp } from '../clients/redis/client.ts';
import * as presence from './redis/consumers.ts';
import { ackScript, deadLetterScript, fetchScript, promoteScript, publishOnceScript, publishScript, requeueDeadScript, restoreScript, TRANSPORT_SCRIPTS } from './redis/scripts.ts';
import { PullSubscriptions, type ClaimResult, type QueueStore } from './subscription.ts';
import { parseRedisUrl } from '../clients/redis/url.ts';
import { DEDUPE_HEADER, dedupeId, dedupeTtl, describeMessage, type ConsumeOptions, type DeadLetter, type Delivery, type QueueConsumers, type QueueStats, type Route, type Subscription, type Transport } from './transport.ts';

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

/** A deduplicated id whose message vanished without an ack or dead letter is freed after this (seconds). */
const DEDUPE_SAFETY_SEC = 7 * 86_400;

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

/** Messages read, and keys deleted, per call when purging. */
const PURGE_PAGE = 1_000;

function chunked<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

export class RedisTransport implements Transport {
  readonly capabilities = { delayedDelivery: true, priorities: true, crossProcess: true, deduplication: true, broadcast: true };
  /** The database number: kombu's fanout channels carry it, since pub/sub is server-wide. */
  readonly db: number;
  readonly client: Redis;
  readonly visibilityMs: number;
  readonly pollMs: number;
  private readonly subscriptions = new PullSubscriptions();
  private readonly declared = new Set<string>();
  private closed = false;
  private closing: Promise<void> | undefined;

  /** The URL with any password masked: what errors and logs show. */
  readonly url: string;

  constructor(url: string, options: RedisTransportOptions = {}) {
    // Every part of the URL is checked here (redis/url.ts); a bad one is a ConfigError before any connection.
    const target = parseRedisUrl(url);
    this.url = target.safeUrl;
    this.db = target.db;
    this.visibilityMs = (options.visibilityTimeoutSec ?? 30) * 1000;
    this.pollMs = options.pollIntervalMs ?? 250;
    // Reconnects for ever; a command waits for a connection at most connectTimeoutMs; a database the server
    // does not have is a ConfigError, never database 0. Its duplicate (the blocking connection) follows the same rules.
    this.client = connectRedis(target, { role: 'broker', connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, connectionName: `fennel:${process.pid}` });
    for (const script of TRANSPORT_SCRIPTS) script.install(this.client);
  }

  /** Waits for a command (a script, a transaction), translating a lost connection into BrokerUnavailableError. */
  async call<T>(command: Promise<T>): Promise<T> {
    try {
      return await command;
    } catch (error) {
      throw this.translate(error);
    }
  }

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
      // A broadcast carries kombu's delivery_info for its fanout exchange, so a Python worker that puts it back
      // (kombu's restore) puts it where it came from.
      const envelope = encodeEnvelope(message, 'base64', route.broadcast ? { delivery_tag: tag, delivery_info: { exchange: route.queue, routing_key: BROADCAST_ROUTING_KEY } } : { delivery_tag: tag });
      const due = route.delayUntil?.getTime() ?? 0;
      // A deduplicate-ttl id is kept by the key's own expiry: its message has no header, so no ack frees it.
      const ttl = dedupeTtl(message, route);
      const dedupe = ttl ? ttl.id : route.deduplicate ? dedupeId(message) : undefined;
      const dedupeSec = ttl ? Math.max(1, Math.ceil(ttl.ttlMs / 1000)) : DEDUPE_SAFETY_SEC;
      return { queue: route.queue, bucket: bucketFor(route.queue, route.priority), envelope, tag, due: due > now ? due : 0, dedupe, dedupeSec, broadcast: route.broadcast === true };
    });
    // Broadcasts go to kombu's fanout channel of the queue (its exchange): every subscriber now gets one copy.
    const broadcasts = all.filter((w) => w.broadcast);
    if (broadcasts.length > 0) {
      await this.withResend(async () => {
        const multi = this.client.multi();
        for (const w of broadcasts) multi.publish(fanoutChannel(this.db, w.queue, BROADCAST_ROUTING_KEY), w.envelope);
        await multi.exec();
      });
    }
    // Deduplicated messages go one by one through publish_once.lua (check and push in one step); the rest
    // in one transaction.
    for (const w of all) {
      if (!w.dedupe || w.broadcast) continue;
      await this.withResend(() =>
        this.call(
          publishOnceScript.run(
            this.client,
            { dedupe: `${DEDUPE}${w.dedupe}`, target: w.due ? SCHEDULED : w.bucket, wake: `${WAKE}${w.queue}`, binding: `_kombu.binding.${w.queue}` },
            { tag: w.tag, payload: w.due ? `${w.bucket}\n${w.envelope}` : w.envelope, dueMs: w.due, bindingMember: `${w.queue}${SEP}${SEP}${w.queue}`, safetySec: w.dedupeSec },
          ),
        ),
      );
    }
    const writes = all.filter((w) => !w.dedupe && !w.broadcast);
    if (writes.length === 0) return;
    // One LPUSH per bucket with every envelope for it, in order (the first pushed is the first popped), one ZADD
    // for all the scheduled ones, one wake-up per queue: a bulk of 500 is a handful of commands in one script.
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
    const woken = [...new Set(writes.filter((w) => !w.due).map((w) => w.queue))];
    // Declare the queue as kombu's producer does (maybe_declare), once per queue and transport.
    const undeclared = [...new Set(writes.map((w) => w.queue))].filter((queue) => !this.declared.has(queue));
    const targets = [...ready.keys(), ...woken.map((queue) => `${WAKE}${queue}`), ...undeclared.map((queue) => `_kombu.binding.${queue}`)];
    const countsThenPayload: Array<string | number> = [...ready.values()].map((list) => list.length);
    for (const list of ready.values()) for (const envelope of list) countsThenPayload.push(envelope);
    for (const item of scheduled) countsThenPayload.push(item);
    for (const queue of undeclared) countsThenPayload.push(`${queue}${SEP}${SEP}${queue}`);
    await this.withResend(async () => {
      await this.call(publishScript.run(this.client, { scheduled: SCHEDULED, targets }, { buckets: ready.size, wakes: woken.length, scheduled: scheduled.length / 2, countsThenPayload }));
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
    // A worker's direct queue is also bound as Celery's worker_direct binds it: exchange C.dq2, key = node name.
    for (const q of options.queues) {
      const node = directQueueNode(q);
      if (node !== undefined) await this.client.sadd(`_kombu.binding.${DIRECT_EXCHANGE}`, `${node}${SEP}${SEP}${q}`).catch(() => {});
    }
    const broadcast = options.broadcast;
    const copies = broadcast ? broadcast.queues.map((q) => ({ queue: q, copyQueue: broadcastCopyQueue(q, broadcast.consumer) })) : [];
    const queues = [...options.queues, ...copies.map((c) => c.copyQueue)];
    // Subscribed before consume() returns, so a broadcast published after it reaches this consumer.
    const listener = copies.length ? await BroadcastListener.open(this, copies) : undefined;
    return this.subscriptions.start(new RedisQueueStore(this, queues, listener), { ...options, queues, pollMs: this.pollMs, renewEveryMs: this.visibilityMs / 3 }, onDelivery);
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
      // Exchanges' bindings are not queues: Celery's pidbox and events, and the worker-direct exchange.
      if (queue.includes('pidbox') || queue.startsWith('celeryev') || queue === DIRECT_EXCHANGE) continue;
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
    return (await this.call(requeueDeadScript.run(this.client, { deadLetters: DEAD }, { id, separator: SEP, wakePrefix: WAKE }))) === 1;
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

  /** Closing twice (a warm shutdown and a cold one racing) waits for the one close. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await this.subscriptions.releaseAll();
      this.closed = true;
      await this.client.quit().catch(() => this.client.disconnect());
    })());
  }
}

/** A held message: its delivery tag and what settling it needs. */
interface HeldMessage {
  readonly queue: string;
  readonly tag: string;
  /** The envelope as delivered (a dead letter keeps it). */
  readonly raw: string;
  readonly message: WireMessage;
  /** The key that reserves its deduplicated id, freed when it is settled. */
  readonly dedupeKey: string | undefined;
}

/**
 * The Redis primitives under the shared consumer (subscription.ts), for one subscription: fetch.lua takes and
 * leases, ack.lua (batched per turn), restore.lua, dead_letter.lua; an idle consumer blocks on the queues' wake
 * markers on a connection of its own; due scheduled messages are promoted and lapsed leases restored now and then.
 */
class RedisQueueStore implements QueueStore<HeldMessage> {
  private blocker: Redis | undefined;
  private nextPromote = 0;
  private nextRestore = 0;
  /** Acks settled in one event-loop turn go to Redis as one script call, resolved when it has run. */
  private readonly acks = new Batcher<HeldMessage>(MAX_ACK, async (held) => {
    await this.transport.call(ackScript.run(this.client, { unacked: UNACKED, unackedIndex: UNACKED_INDEX, leases: LEASES, dedupeKeys: held.flatMap((h) => (h.dedupeKey ? [h.dedupeKey] : [])) }, { tags: held.map((h) => h.tag) }));
  });

  constructor(
    private readonly transport: RedisTransport,
    private readonly queues: readonly string[],
    private readonly listener: BroadcastListener | undefined,
  ) {}

  private get client(): Redis {
    return this.transport.client;
  }

  async claim(max: number): Promise<ClaimResult<HeldMessage>> {
    await this.housekeeping();
    const buckets: string[] = [];
    const bucketQueues: string[] = [];
    for (const queue of this.queues) {
      for (const bucket of bucketsOf(queue)) {
        buckets.push(bucket);
        bucketQueues.push(queue);
      }
    }
    const out = (await this.transport.call(
      fetchScript.run(this.client, { unacked: UNACKED, unackedIndex: UNACKED_INDEX, leases: LEASES, deadLetters: DEAD, deadLetterSeq: DEAD_SEQ, buckets }, { max: Math.min(max, MAX_FETCH), nowSec: Date.now() / 1000, wakePrefix: WAKE, bucketQueues }),
    )) as string[];
    // A full fetch that left messages behind has passed the wake-up on to other idle consumers (fetch.lua).
    const claimed = [];
    for (let i = 0; i < out.length; i += 3) claimed.push(this.held(out[i]!, out[i + 1]!, out[i + 2]!));
    return { claimed, nextVisibleAt: this.nextPromote };
  }

  /** Never throws: an envelope that named a tag but does not decode is handed out marked malformed, and the executor dead-letters it. */
  private held(queue: string, tag: string, raw: string): ClaimResult<HeldMessage>['claimed'][number] {
    const message = decodeEnvelope(raw);
    const deduped = dedupeId(message);
    const redelivered = message.headers['redelivered'] === true || (message.properties.delivery_info as { redelivered?: boolean } | undefined)?.redelivered === true;
    return { handle: { queue, tag, raw, message, dedupeKey: deduped ? `${DEDUPE}${deduped}` : undefined }, message, queue, redelivered };
  }

  /** Moves due scheduled messages and restores messages whose holders died, now and then. */
  private async housekeeping(): Promise<void> {
    const now = Date.now();
    const { pollMs, visibilityMs } = this.transport;
    if (now >= this.nextPromote) {
      const next = Number(await this.transport.call(promoteScript.run(this.client, { scheduled: SCHEDULED }, { nowMs: now, max: 1000, wakePrefix: WAKE })));
      this.nextPromote = next < 0 ? now + pollMs : Math.min(next, now + pollMs);
    }
    if (now >= this.nextRestore) {
      this.nextRestore = now + Math.max(250, Math.min(visibilityMs / 2, 5000));
      await this.restore({ lapsedBeforeSec: (now - visibilityMs) / 1000, max: 1000, tag: '' });
    }
  }

  private restore(what: { lapsedBeforeSec: number; max: number; tag: string }): Promise<unknown> {
    return this.transport.call(restoreScript.run(this.client, { unacked: UNACKED, unackedIndex: UNACKED_INDEX, unackedMutex: UNACKED_MUTEX, leases: LEASES }, { ...what, separator: SEP, wakePrefix: WAKE }));
  }

  /** Pushes the delivery time of every held message forward (kombu's restore sweep reads these scores). */
  async renew(held: readonly HeldMessage[]): Promise<void> {
    const now = Date.now() / 1000;
    const args: Array<string | number> = [];
    for (const h of held) args.push(now, h.tag);
    // Both scores: kombu's sweep reads unacked_index, Fennel's reads fennel.leases.
    await this.client.multi().zadd(UNACKED_INDEX, 'XX', ...args).zadd(LEASES, 'XX', ...args).exec();
  }

  ack(held: HeldMessage): Promise<void> {
    return this.acks.add(held);
  }

  async requeue(held: HeldMessage): Promise<void> {
    await this.restore({ lapsedBeforeSec: 0, max: 0, tag: held.tag });
  }

  async deadLetter(held: HeldMessage, reason: string): Promise<void> {
    const { taskId, taskName } = describeMessage(held.message);
    await this.transport.call(
      deadLetterScript.run(
        this.client,
        { unacked: UNACKED, unackedIndex: UNACKED_INDEX, leases: LEASES, deadLetters: DEAD, deadLetterSeq: DEAD_SEQ, dedupeKey: held.dedupeKey ? [held.dedupeKey] : [] },
        { tag: held.tag, reason, nowSec: Date.now() / 1000, taskId: taskId ?? '', taskName: taskName ?? '', queue: held.queue, envelope: held.raw },
      ),
    );
  }

  async releaseAll(held: readonly HeldMessage[]): Promise<void> {
    await Promise.all(held.map((h) => this.requeue(h).catch(() => {})));
  }

  /** Blocks on the wake markers until a Fennel producer publishes, a scheduled message is due, or the poll interval passes. */
  async waitForWork(until: number): Promise<void> {
    // A connection of its own for the blocking wait, so acks and stores never queue behind it.
    if (!this.blocker) {
      this.blocker = this.client.duplicate();
      this.blocker.on('error', () => {});
    }
    const timeoutMs = Math.max(10, Math.min(this.transport.pollMs, until - Date.now()));
    await this.blocker.bzpopmin(...this.queues.map((q) => `${WAKE}${q}`), (timeoutMs / 1000).toFixed(2));
  }

  stop(): void {
    this.blocker?.disconnect();
    this.listener?.close();
  }
}

/**
 * kombu's fanout channel for exchange `queue` on database `db` (transport/redis.py `_get_publish_topic`, with
 * Celery's defaults fanout_prefix `/{db}.` and fanout_patterns on): `/{db}.{exchange}`, then `/{routing key}` if any.
 */
export function fanoutChannel(db: number, queue: string, routingKey = ''): string {
  return routingKey ? `/${db}.${queue}/${routingKey}` : `/${db}.${queue}`;
}

/**
 * The routing key a broadcast is published with on Redis: Celery gives a `Broadcast` queue of its `task_queues`
 * the default routing key (task_default_routing_key, which is task_default_queue, `celery`), and with fanout_patterns
 * a Python worker subscribes to `/{db}.{exchange}/celery` only. Fennel's workers listen to both forms.
 */
export const BROADCAST_ROUTING_KEY = 'celery';

/** Escapes the glob characters of PSUBSCRIBE, so a queue name is matched as written. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * One consumer's side of broadcast queues on Redis: subscribed to each queue's fanout channel (kombu's layout, so
 * Python Celery producers' `Broadcast` messages arrive too), it pushes every message it hears into the consumer's
 * copy queue, with a delivery tag of its own (a tag names one held message in the shared unacked hash), and wakes
 * the consumer. From there a copy is claimed, leased and acknowledged like any message. Pub/sub keeps nothing: a
 * message published while this connection is down is not received (at most once up to the copy queue).
 */
class BroadcastListener {
  /** Set by close(): a message the closing connection still reads is for a consumer that has stopped. */
  private closed = false;

  private constructor(private readonly subscriber: Redis) {}

  static async open(transport: RedisTransport, copies: ReadonlyArray<{ queue: string; copyQueue: string }>): Promise<BroadcastListener> {
    const subscriber = transport.client.duplicate();
    subscriber.on('error', () => {});
    const byChannel = new Map<string, { queue: string; copyQueue: string }>();
    for (const copy of copies) byChannel.set(fanoutChannel(transport.db, copy.queue), copy);
    let listener: BroadcastListener | undefined;
    subscriber.on('pmessage', (_pattern: string, channel: string, raw: string) => {
      if (listener?.closed) return;
      // With kombu's fanout_patterns a routing key may follow the exchange: `/{db}.{exchange}/{routing key}`.
      const slash = channel.indexOf('/', 1);
      const copy = byChannel.get(slash < 0 ? channel : channel.slice(0, slash));
      if (!copy) return;
      const { queue, copyQueue } = copy;
      const multi = transport.client.multi();
      multi.lpush(copyQueue, retag(raw, queue));
      multi.zadd(`${WAKE}${copyQueue}`, 0, 'w');
      multi.exec().catch(() => {}); // the server went away between the message and the copy: at most once
    });
    const patterns = [...byChannel.keys()].flatMap((channel) => [globEscape(channel), `${globEscape(channel)}/*`]);
    try {
      await transport.call(subscriber.psubscribe(...patterns));
    } catch (error) {
      subscriber.disconnect();
      throw error;
    }
    return (listener = new BroadcastListener(subscriber));
  }

  close(): void {
    this.closed = true;
    this.subscriber.disconnect();
  }
}

/**
 * The envelope with a fresh delivery tag, and routed to the broadcast queue it came through (so the task sees that
 * queue, whatever routing key the fanout carried); text that is not an envelope is kept as it is (fetch dead-letters it).
 */
function retag(raw: string, queue: string): string {
  try {
    const envelope = JSON.parse(raw) as { properties?: Record<string, unknown> };
    if (envelope === null || typeof envelope !== 'object' || typeof envelope.properties !== 'object' || envelope.properties === null) return raw;
    envelope.properties.delivery_tag = randomUUID();
    envelope.properties.delivery_info = { exchange: queue, routing_key: queue };
    return JSON.stringify(envelope);
  } catch {
    return raw;
  }
}
