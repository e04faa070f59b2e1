// nats://host:4222[,host2…][?replicas=3&prefix=fennel] — NATS JetStream as the broker. The layout (streams,
// subjects, consumers, buckets) is in nats/layout.ts; the consumer's steps in nats/store.ts; countdown and eta in
// nats/scheduler.ts. In short: one WorkQueue stream P_TASKS holds every queue, a durable pull consumer per queue
// (shared by all its workers) hands each message to one pull request, the message is acked (deleted) after its
// outcome is stored, and the consumer's ack wait is the visibility timeout, renewed with "+WPI" while held.
//
// What maps onto JetStream, and how:
//   publish        js.publish, resolved on the PubAck (the stream has it, on a quorum of replicas); publishMany
//                  sends them all before awaiting the acks; then one empty core message per queue on p.w.<queue>
//                  wakes idle consumers (a producer that sends none is found by the next poll, pollIntervalMs).
//                  A publish nobody answered (503 "no responders": the stream has no leader, as during an election
//                  in a cluster) was received by no one, and is sent again with backoff for up to connectTimeoutMs;
//                  then it fails with BrokerUnavailableError saying so. One that got no PubAck in time is not sent
//                  again (the stream may have it): the caller is told.
//   deduplicate    `true`: the message goes to its own subject p.q.<queue>.d.<task id> with the header
//                  Nats-Expected-Last-Subject-Sequence: 0, so the stream refuses it while a message with that id is
//                  on the subject (waiting or held); the ack, the dead letter or a purge deletes it, and the id is
//                  free again. Not Nats-Msg-Id: the server's duplicate window remembers an id for its length,
//                  whether the message is still there or not. Per queue and per stage: a countdown message (p.s.…)
//                  and a ready one (p.q.…) with one id do not see each other.
//                  `{ ttlMs }`: a create-or-compare-and-set in the key-value bucket p_dedupe (task id → expiry),
//                  then the publish: any ttl, exact to the millisecond; ids of a publish that failed are released.
//   delayUntil     scheduled subjects p.s.<queue>.… and the _scheduler consumer (nats/scheduler.ts)
//   priority       ignored: JetStream hands out in stream order (capability `priorities: false`)
//   broadcast      not offered (capability false): it needs a stream of its own with a consumer per worker
//   dead letters   stream P_DEAD (limits retention), one JSON record per letter; its id is the stream sequence
//   presence       bucket p_consumers: <queue>.<consumer> → expiry, read with its keys
// Counts: `ready` is the queue consumer's `num_pending` (messages past what it has handed out), `unacked` its
// `num_ack_pending`, `scheduled` the stream's per-subject counts under p.s.<queue>. Not the stream's count of p.q.<queue>
// minus the pending: a server SIGKILLed can come back with messages that were acked (deleted) before it died and
// whose deletion it had not yet written (nats-server 2.9 writes a block's deletes lazily), while the consumer's
// state, written sooner, is past them; they are never handed out again, and counted that way they would stay `ready`
// for ever. JetStream counts a message handed back with "-NAK" as pending until a consumer takes it again, so for
// that moment it is in `unacked`, not in `ready` (a worker that shut down hands its messages back so).

import type { ConsumerConfig, JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { NatsLink, type NatsHandles } from '../clients/nats/connection.ts';
import { openBucket } from '../clients/nats/kv.ts';
import type { Replies } from '../clients/nats/requests.ts';
import { AckPolicy, consumerMismatch, DeliverPolicy, headers, isNoResponders, isNotFound, isWrongLastSequence, nanos, publishStored, pullNoWait, RetentionPolicy, settle, StorageType, streamMismatch, type Stored, type StreamNeeds } from '../clients/nats/jetstream.ts';
import { asBrokerUnavailable, BrokerUnavailableError, ClosedError, ConfigError, PayloadTooLargeError } from '../errors.ts';
import { decodeEnvelope, encodeEnvelope } from '../protocol/envelope.ts';
import type { WireMessage } from '../protocol/message.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../util/connection-state.ts';
import { DUE_HEADER, NatsLayout, SCHEDULER } from './nats/layout.ts';
import { Scheduler, SCHEDULER_ACK_WAIT_MS } from './nats/scheduler.ts';
import { NatsQueueStore, type HeldMessage, type StoreHost } from './nats/store.ts';
import { consumerMap } from './presence.ts';
import { PullSubscriptions } from './subscription.ts';
import { dedupeId, dedupeTtl, describeMessage, type ConsumeOptions, type DeadLetter, type Delivery, type QueueConsumers, type QueueStats, type Route, type Subscription, type Transport } from './transport.ts';

export interface NatsTransportOptions {
  /** A held message whose holder stops renewing is handed out again after this long (the consumers' ack wait). */
  visibilityTimeoutSec?: number;
  /** How long an idle consumer waits for a wake-up before it looks again (messages from producers that send none, lapsed holds). */
  pollIntervalMs?: number;
  /** How long a connection and any request wait for the server before failing with BrokerUnavailableError. */
  connectTimeoutMs?: number;
}

/** How long the stream remembers a Nats-Msg-Id (a scheduler's promotion, a dead letter, a requeued dead letter). */
export const DUPLICATE_WINDOW_MS = 120_000;
/** Longest `deduplicate: { ttlMs }` kept exactly: the bucket's entries are deleted this long after their last write. */
export const DEDUPE_TTL_MAX_MS = 31 * 86_400_000;
/** Presence entries are gone this long after a worker's last announcement, whatever TTL it gave. */
const PRESENCE_MAX_MS = 86_400_000;
/**
 * A queue's consumer nobody has pulled from for this long is deleted by the server (inactive_threshold, honoured for
 * durable consumers since nats-server 2.9): every worker's direct queue and every actor's queue has one, and default
 * node names carry the pid, so each run would otherwise leave one behind for ever (RabbitMQ's `x-expires` does the
 * same for a day). Its messages stay in the stream, and the queue's next worker makes the consumer again, which
 * hands them out (deliver policy all); a running worker pulls every pollIntervalMs, so its consumers never lapse.
 */
export const QUEUE_CONSUMER_IDLE_MS = 86_400_000;
/** Messages a purge takes through the queue's consumer per pull. */
const PURGE_BATCH = 256;

interface DeadRecord {
  queue: string;
  reason: string;
  created_at: number;
  task_id: string | null;
  task_name: string | null;
  envelope: string;
}

export class NatsTransport implements Transport {
  readonly capabilities = { delayedDelivery: true, priorities: false, crossProcess: true, deduplication: true, broadcast: false };
  readonly url: string;
  readonly layout: NatsLayout;
  readonly visibilityMs: number;
  readonly pollMs: number;
  readonly timeoutMs: number;
  private readonly link: NatsLink;
  private readonly subscriptions = new PullSubscriptions();
  /** The streams and the scheduler consumer, made once per transport. */
  private streams: Promise<void> | undefined;
  /** Each queue's consumer, made (or checked) once per transport; resolves with its ack wait in ms. */
  private readonly queueConsumers = new Map<string, Promise<number>>();
  private readonly buckets = new Map<string, Promise<KV>>();
  private scheduler: Scheduler | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(url: string, options: NatsTransportOptions = {}) {
    this.timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    // Every part of the URL is checked here (clients/nats/url.ts); nothing connects until first use.
    this.link = new NatsLink(url, { connectTimeoutMs: this.timeoutMs, name: `fennel-broker:${process.pid}` });
    this.url = this.link.url.safeUrl;
    this.layout = new NatsLayout(this.link.url.prefix);
    this.visibilityMs = (options.visibilityTimeoutSec ?? 30) * 1000;
    this.pollMs = options.pollIntervalMs ?? 250;
  }

  private check(): void {
    if (this.closed) throw new ClosedError(`transport ${this.url}`);
  }

  /** Runs a step against the server: a Fennel error as it is, anything else as BrokerUnavailableError (ClosedError once closed). */
  private async call<T>(step: () => Promise<T>): Promise<T> {
    this.check();
    try {
      return await step();
    } catch (error) {
      if (this.closed) throw new ClosedError(`transport ${this.url}`);
      throw asBrokerUnavailable(this.url, error);
    }
  }

  private async handles(): Promise<NatsHandles> {
    const handles = await this.link.handles();
    await (this.streams ??= this.makeStreams(handles.jsm).catch((error: unknown) => {
      this.streams = undefined; // tried again by the next call
      throw error;
    }));
    return handles;
  }

  /** P_TASKS, P_DEAD and the _scheduler consumer; adding one that exists with this configuration changes nothing. */
  private async makeStreams(jsm: JetStreamManager): Promise<void> {
    const { layout } = this;
    const replicas = this.link.url.replicas;
    // One that exists already is checked (a stream or consumer someone else made under these names that Fennel
    // cannot use is a ConfigError, never reconfigured); one made here, or identical to it, is Fennel's.
    await addStream(
      jsm,
      { name: layout.tasks, subjects: [layout.stageFilter('q'), layout.stageFilter('s')], retention: RetentionPolicy.Workqueue, storage: StorageType.File, num_replicas: replicas, duplicate_window: nanos(DUPLICATE_WINDOW_MS) },
      { retention: 'workqueue', subjects: [layout.stageFilter('q'), layout.stageFilter('s')] },
    );
    await addStream(jsm, { name: layout.dead, subjects: [layout.deadSubject], retention: RetentionPolicy.Limits, storage: StorageType.File, num_replicas: replicas, duplicate_window: nanos(DUPLICATE_WINDOW_MS), allow_direct: true }, { retention: 'limits', subjects: [layout.deadSubject] });
    await addConsumer(jsm, layout.tasks, { durable_name: SCHEDULER, filter_subject: layout.stageFilter('s'), ack_wait: nanos(SCHEDULER_ACK_WAIT_MS) });
  }

  /**
   * The queue's durable consumer, made if missing; one whose ack wait differs from this transport's visibility
   * timeout is updated to it (the newest setting wins). Resolves with the ack wait it had, so a subscription renews
   * often enough for the shorter of the two.
   */
  private ensureConsumer(queue: string): Promise<number> {
    let made = this.queueConsumers.get(queue);
    if (!made) {
      made = (async () => {
        const { jsm } = await this.handles();
        const name = this.layout.consumer(queue);
        try {
          const info = await jsm.consumers.info(this.layout.tasks, name);
          const mismatch = consumerMismatch(info.config, this.layout.queueFilter('q', queue));
          if (mismatch) throw consumerError(this.layout.tasks, name, mismatch);
          const ackWaitMs = (info.config.ack_wait ?? 0) / 1e6;
          if (ackWaitMs !== this.visibilityMs || info.config.inactive_threshold !== nanos(QUEUE_CONSUMER_IDLE_MS)) {
            await jsm.consumers.update(this.layout.tasks, name, { ack_wait: nanos(this.visibilityMs), inactive_threshold: nanos(QUEUE_CONSUMER_IDLE_MS) });
          }
          return ackWaitMs;
        } catch (error) {
          if (!isNotFound(error)) throw error;
        }
        // Made by another process meanwhile: checked by addConsumer.
        await addConsumer(jsm, this.layout.tasks, { durable_name: name, filter_subject: this.layout.queueFilter('q', queue), ack_wait: nanos(this.visibilityMs), inactive_threshold: nanos(QUEUE_CONSUMER_IDLE_MS) });
        return this.visibilityMs;
      })();
      made.catch(() => this.queueConsumers.delete(queue));
      this.queueConsumers.set(queue, made);
    }
    return made;
  }

  async publish(message: WireMessage, route: Route): Promise<void> {
    await this.publishMany([[message, route]]);
  }

  async publishMany(batch: ReadonlyArray<readonly [WireMessage, Route]>): Promise<void> {
    this.check();
    for (const [, route] of batch) if (route.broadcast) throw new ConfigError(`${this.url}: broadcast queues are not supported on nats:// (queue '${route.queue}')`);
    // Encoded (and every queue name checked) before anything is sent.
    const now = Date.now();
    const items = batch.map(([message, route]) => {
      const due = route.delayUntil?.getTime() ?? 0;
      const ttl = dedupeTtl(message, route);
      const id = !ttl && route.deduplicate ? dedupeId(message) : undefined;
      const scheduled = due > now;
      return { queue: route.queue, ttl, scheduled, due, subject: this.layout.subject(scheduled ? 's' : 'q', route.queue, id), once: id !== undefined, payload: Buffer.from(encodeEnvelope(message, 'utf-8'), 'utf8') };
    });
    await this.call(async () => {
      const { nc, replies } = await this.handles();
      const limit = nc.info?.max_payload;
      for (const item of items) if (limit !== undefined && item.payload.length > limit) throw new PayloadTooLargeError(item.payload.length, limit);
      const sent = await Promise.all(
        items.map(async (item) => {
          const taken = item.ttl ? await this.takeTtl(item.ttl.id, item.ttl.ttlMs) : undefined;
          if (taken === false) return false;
          const h = item.scheduled || item.once ? headers() : undefined;
          if (item.scheduled) h!.set(DUE_HEADER, String(item.due));
          if (item.once) h!.set(EXPECTED_LAST_SUBJECT_SEQUENCE, '0');
          try {
            await this.jsPublish(replies, item.subject, item.payload, h);
            return !item.scheduled;
          } catch (error) {
            if (item.once && isWrongLastSequence(error)) return false; // a message with this id is pending: dropped
            if (taken) await this.releaseTtl(item.ttl!.id, taken).catch(() => {});
            throw error;
          }
        }),
      );
      const woken = new Set(items.filter((_, i) => sent[i]).map((item) => item.queue));
      for (const queue of woken) nc.publish(this.layout.wake(queue));
    });
  }

  /**
   * js.publish, each attempt waiting timeoutMs for its PubAck. While no server answers at all (503 "no responders": a
   * stream with no leader, as during an election in a cluster) it is sent again with backoff, for up to timeoutMs:
   * nobody received it, so no copy is made. Past that, BrokerUnavailableError saying so. An attempt that got no
   * PubAck in time is not sent again (the stream may have it): its error goes to the caller.
   */
  private async jsPublish(replies: Replies, subject: string, payload: Uint8Array | string, msgHeaders?: ReturnType<typeof headers>): Promise<Stored> {
    const deadline = Date.now() + this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await publishStored(replies, subject, payload, this.timeoutMs, msgHeaders);
      } catch (error) {
        if (!isNoResponders(error) || this.closed) throw error;
        if (Date.now() >= deadline) {
          throw new BrokerUnavailableError(this.url, `no server took the publish to ${subject} within ${this.timeoutMs} ms ("no responders": its stream has no leader, as while a cluster elects one, or JetStream is not running)`, { cause: error });
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1_000, Math.max(1, deadline - Date.now()))));
      }
    }
  }

  /** Takes `id` for `ttlMs` unless a live entry holds it: resolves with the entry's revision, or false if taken. */
  private async takeTtl(id: string, ttlMs: number): Promise<number | false> {
    const kv = await this.bucket(this.layout.dedupeBucket, DEDUPE_TTL_MAX_MS);
    const key = this.layout.token(id);
    const expiry = String(Date.now() + ttlMs);
    try {
      return await kv.create(key, expiry);
    } catch (error) {
      if (!isWrongLastSequence(error)) throw error;
    }
    const entry = await kv.get(key);
    if (entry && entry.operation === 'PUT' && Number(entry.string()) > Date.now()) return false;
    try {
      // The entry lapsed: take it over, unless another publish did so first (compare and set on its revision).
      return await kv.update(key, expiry, entry?.revision ?? 0);
    } catch (error) {
      if (isWrongLastSequence(error)) return false;
      throw error;
    }
  }

  private async releaseTtl(id: string, revision: number): Promise<void> {
    const kv = await this.bucket(this.layout.dedupeBucket, DEDUPE_TTL_MAX_MS);
    await kv.delete(this.layout.token(id), { previousSeq: revision });
  }

  private bucket(name: string, maxAgeMs: number): Promise<KV> {
    let opening = this.buckets.get(name);
    if (!opening) {
      opening = (async () => openBucket(await this.link.handles(), name, { ttlSec: maxAgeMs / 1000, replicas: this.link.url.replicas }))();
      opening.catch(() => this.buckets.delete(name));
      this.buckets.set(name, opening);
    }
    return opening;
  }

  async consume(options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<Subscription> {
    this.check();
    if (options.queues.length === 0) throw new RangeError('consume needs at least one queue');
    const queues = options.queues;
    for (const q of queues) this.layout.token(q); // a name too long is a ConfigError here, not a failing claim loop
    // The streams, the queues' consumers and the wake subscriptions are made here when the servers answer in time,
    // so that what Fennel cannot use (a ConfigError) fails the call. A cluster that is away or slow (an election,
    // Raft under load: a stream or consumer made can take longer than connectTimeoutMs) does not: the store makes
    // them on its first claim, the subscription retries with backoff and says so, and `live` waits for it, as a
    // worker started while its broker is away does on every engine.
    const store = new NatsQueueStore(this.storeHost(), queues);
    let ackWaits: number[] = [];
    try {
      ackWaits = await this.call(() => store.prepare());
    } catch (error) {
      if (!(error instanceof BrokerUnavailableError)) throw error;
    }
    this.scheduler ??= new Scheduler({ stream: this.layout.tasks, jetstream: async () => (await this.handles()).js, promote: (subject, payload, seq) => this.promote(subject, payload, seq) });
    const renewEveryMs = Math.min(this.visibilityMs, ...ackWaits) / 3;
    return this.subscriptions.start(store, { ...options, pollMs: this.pollMs, renewEveryMs }, onDelivery);
  }

  private storeHost(): StoreHost {
    return {
      timeoutMs: this.timeoutMs,
      stream: this.layout.tasks,
      connection: async () => (await this.handles()).replies,
      consumerName: (queue) => this.layout.consumer(queue),
      plainSubject: (queue) => this.layout.subject('q', queue),
      recreateConsumer: async (queue) => {
        this.queueConsumers.delete(queue);
        await this.ensureConsumer(queue);
      },
      consumerExists: async (queue) => (await this.consumerCounts(queue)) !== undefined,
      ensureConsumers: (queues) => Promise.all(queues.map((q) => this.ensureConsumer(q))),
      deadLetter: (held, reason) => this.deadLetter(held, reason),
      wake: (queue) => void this.link.handles().then(({ nc }) => nc.publish(this.layout.wake(queue)), () => {}),
      onWake: async (queues, wake) => {
        const { nc } = await this.handles();
        const subs = queues.map((q) => nc.subscribe(this.layout.wake(q), { callback: () => wake() }));
        await nc.flush(); // the server holds the subscriptions before the first claim
        return () => subs.forEach((s) => s.unsubscribe());
      },
    };
  }

  /** A due scheduled message onto its queue (scheduler.ts): the stream sequence as message id makes a repeat a duplicate. */
  private async promote(scheduled: string, payload: Uint8Array, streamSeq: number): Promise<void> {
    const { nc, replies } = await this.handles();
    const subject = this.layout.readySubject(scheduled);
    const h = headers();
    h.set(MSG_ID, `s${streamSeq}`);
    if (subject.includes('.d.')) h.set(EXPECTED_LAST_SUBJECT_SEQUENCE, '0');
    try {
      await this.jsPublish(replies, subject, payload, h);
    } catch (error) {
      if (!isWrongLastSequence(error)) throw error; // else: a message with this deduplicated id is pending already
    }
    const parsed = this.layout.parse(subject);
    if (parsed) nc.publish(`${this.layout.prefix}.w.${parsed.token}`);
  }

  /** The held message as a record in P_DEAD (once per stream sequence within the duplicate window), then "+TERM". */
  private async deadLetter(held: HeldMessage, reason: string): Promise<void> {
    const { taskId, taskName } = describeMessage(held.message);
    const record: DeadRecord = { queue: held.queue, reason, created_at: Date.now(), task_id: taskId, task_name: taskName, envelope: held.raw };
    await this.call(async () => {
      const { replies } = await this.handles();
      await this.jsPublish(replies, this.layout.deadSubject, JSON.stringify(record), msgId(`t${held.streamSeq}`));
      await settle(replies, held.reply, '+TERM', this.timeoutMs);
    });
  }

  /** Messages per subject of P_TASKS under `filter`. */
  private async subjectCounts(filter: string): Promise<Record<string, number>> {
    const { jsm } = await this.handles();
    const info = await jsm.streams.info(this.layout.tasks, { subjects_filter: filter });
    return info.state.subjects ?? {};
  }

  /**
   * The queue consumer's counts: `waiting`, its `num_pending` (messages of its filter past what it has handed out),
   * and `unacked`, its `num_ack_pending`; undefined if the queue has no consumer yet (then nothing was handed out).
   */
  private async consumerCounts(queue: string): Promise<{ waiting: number; unacked: number } | undefined> {
    const { jsm } = await this.handles();
    try {
      const info = await jsm.consumers.info(this.layout.tasks, this.layout.consumer(queue));
      return { waiting: info.num_pending, unacked: info.num_ack_pending };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * Deletes the queue's waiting messages (ready and scheduled). The scheduled ones by a stream purge of their subjects;
   * the ready ones are taken through the queue's consumer and terminated, so held messages stay, and so the consumer
   * counts them gone. A stream purge of the ready subjects would not tell it: nats-server 2.9 keeps its count of
   * pending messages (num_pending's cache), a `no_wait` pull that the count says can be served is queued instead of
   * refused, and with nothing to serve it then waits with no expiry. The next idle claim hung until its timeout, and
   * a message published meanwhile went to it. (The scheduler's consumer pulls with an expiry, so its stale count
   * costs nothing.)
   */
  async purge(queue: string): Promise<number> {
    return this.call(async () => {
      const { replies, jsm } = await this.handles();
      const scheduled = (await jsm.streams.purge(this.layout.tasks, { filter: this.layout.queueFilter('s', queue) })).purged;
      await this.ensureConsumer(queue);
      let purged = scheduled;
      for (;;) {
        const msgs = await pullNoWait(replies.nc, this.layout.tasks, this.layout.consumer(queue), PURGE_BATCH, this.timeoutMs);
        await Promise.all(msgs.map((m) => settle(replies, m.reply!, '+TERM', this.timeoutMs)));
        purged += msgs.length;
        if (msgs.length < PURGE_BATCH) return purged;
      }
    });
  }

  async depth(queue: string): Promise<number> {
    return this.call(async () => {
      const scheduled = sum(await this.subjectCounts(this.layout.queueFilter('s', queue)));
      // Without a consumer nothing was handed out: every message on the queue's subjects waits.
      const ready = (await this.consumerCounts(queue))?.waiting ?? sum(await this.subjectCounts(this.layout.queueFilter('q', queue)));
      return ready + scheduled;
    });
  }

  async stats(): Promise<QueueStats[]> {
    return this.call(async () => {
      const { jsm } = await this.handles();
      const rows = new Map<string, QueueStats>();
      const row = (token: string): QueueStats | undefined => {
        const queue = this.layout.queueOf(token);
        if (queue === undefined) return undefined;
        let r = rows.get(queue);
        if (!r) rows.set(queue, (r = { queue, ready: 0, scheduled: 0, unacked: 0 }));
        return r;
      };
      for (const [subject, count] of Object.entries(await this.subjectCounts(`${this.layout.prefix}.>`))) {
        const parsed = this.layout.parse(subject);
        const r = parsed && row(parsed.token);
        if (!r) continue;
        if (parsed.stage === 's') r.scheduled += count;
        else r.ready += count;
      }
      // A queue with a consumer: what it will hand out (see Counts above); without one, every message waits.
      for await (const info of jsm.consumers.list(this.layout.tasks)) {
        const r = row(info.name);
        if (!r) continue;
        r.unacked = info.num_ack_pending;
        r.ready = info.num_pending;
      }
      return [...rows.values()].sort((a, b) => a.queue.localeCompare(b.queue));
    });
  }

  async listDeadLetters(options: { limit?: number } = {}): Promise<DeadLetter[]> {
    const limit = options.limit ?? 100;
    return this.call(async () => {
      const { jsm } = await this.handles();
      const letters: DeadLetter[] = [];
      let seq = 1;
      while (letters.length < limit) {
        const stored = await jsm.direct.getMessage(this.layout.dead, { seq, next_by_subj: this.layout.deadSubject }).catch((error: unknown) => {
          if (isNotFound(error)) return null;
          throw error;
        });
        if (!stored) break;
        seq = stored.seq + 1;
        const letter = deadLetterOf(String(stored.seq), stored.string(), stored.time);
        if (letter) letters.push(letter);
      }
      return letters;
    });
  }

  async requeueDeadLetter(id: string): Promise<boolean> {
    if (!/^[1-9]\d{0,15}$/.test(id)) return false;
    return this.call(async () => {
      const { nc, replies, jsm } = await this.handles();
      const stored = await jsm.streams.getMessage(this.layout.dead, { seq: Number(id) }).catch((error: unknown) => {
        if (isNotFound(error)) return null;
        throw error;
      });
      if (!stored) return false;
      const record = parseRecord(stored.string());
      if (!record) return false;
      // The letter's sequence as message id: two requeues of one letter within the duplicate window make one message.
      const ack = await this.jsPublish(replies, this.layout.subject('q', record.queue), record.envelope, msgId(`d${id}`));
      await jsm.streams.deleteMessage(this.layout.dead, Number(id)).catch(() => false);
      nc.publish(this.layout.wake(record.queue));
      return !ack.duplicate;
    });
  }

  /** Presence: one key per (queue, consumer) in p_consumers, its value the expiry in ms. */
  async announceConsumer(consumer: string, queues: readonly string[], ttlSec: number): Promise<void> {
    await this.call(async () => {
      const kv = await this.bucket(this.layout.consumersBucket, PRESENCE_MAX_MS);
      const expiry = String(Date.now() + ttlSec * 1000);
      await Promise.all(queues.map((q) => kv.put(this.layout.presenceKey(q, consumer), expiry)));
    });
  }

  async withdrawConsumer(consumer: string, queues: readonly string[]): Promise<void> {
    await this.call(async () => {
      const kv = await this.bucket(this.layout.consumersBucket, PRESENCE_MAX_MS);
      await Promise.all(queues.map((q) => kv.purge(this.layout.presenceKey(q, consumer))));
    });
  }

  async consumers(queue?: string): Promise<Map<string, QueueConsumers>> {
    return this.call(async () => {
      const kv = await this.bucket(this.layout.consumersBucket, PRESENCE_MAX_MS);
      const keys: string[] = [];
      for await (const key of await kv.keys(queue === undefined ? '>' : `${this.layout.token(queue)}.*`)) keys.push(key);
      const now = Date.now();
      const live: Array<[string, string]> = [];
      await Promise.all(
        keys.map(async (key) => {
          const entry = await kv.get(key);
          const [queueToken, consumerToken] = key.split('.');
          const q = queueToken === undefined ? undefined : this.layout.queueOf(queueToken);
          const c = consumerToken === undefined ? undefined : this.layout.queueOf(consumerToken);
          if (!entry || entry.operation !== 'PUT' || q === undefined || c === undefined) return;
          if (Number(entry.string()) > now) live.push([q, c]);
          else void kv.purge(key, { previousSeq: entry.revision }).catch(() => {}); // lapsed: tidy, unless renewed meanwhile
        }),
      );
      return consumerMap(live, queue);
    });
  }

  /** Closing twice (a warm shutdown and a cold one racing) waits for the one close. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await this.subscriptions.releaseAll();
      await this.scheduler?.stop();
      this.closed = true;
      await this.link.close();
    })());
  }
}

/** JetStream's headers: a message id (deduplicated within the duplicate window), and a publish's expected last sequence on its subject. */
const MSG_ID = 'Nats-Msg-Id';
const EXPECTED_LAST_SUBJECT_SEQUENCE = 'Nats-Expected-Last-Subject-Sequence';

function msgId(id: string): ReturnType<typeof headers> {
  const h = headers();
  h.set(MSG_ID, id);
  return h;
}

function sum(counts: Record<string, number>): number {
  return Object.values(counts).reduce((n, c) => n + c, 0);
}

function parseRecord(text: string): DeadRecord | undefined {
  try {
    const record = JSON.parse(text) as DeadRecord;
    return record && typeof record.queue === 'string' && typeof record.envelope === 'string' ? record : undefined;
  } catch {
    return undefined;
  }
}

function deadLetterOf(id: string, text: string, storedAt: Date): DeadLetter | undefined {
  const record = parseRecord(text);
  if (!record) return undefined;
  const message = decodeEnvelope(record.envelope);
  const described = describeMessage(message);
  return {
    id,
    queue: record.queue,
    reason: typeof record.reason === 'string' && record.reason !== '' ? record.reason : 'rejected',
    taskId: record.task_id ?? described.taskId,
    taskName: record.task_name ?? described.taskName,
    createdAt: new Date(typeof record.created_at === 'number' ? record.created_at : storedAt.getTime()),
    message,
  };
}

/**
 * Adds a stream. The server takes an identical one as made; one that exists with other settings (another process
 * made it, maybe with other limits) is used as it is once streamMismatch finds it fit, else it is a ConfigError
 * naming the stream and the setting. Subjects another stream holds are a ConfigError naming it.
 */
async function addStream(jsm: JetStreamManager, config: Parameters<JetStreamManager['streams']['add']>[0], needs: StreamNeeds): Promise<void> {
  try {
    await jsm.streams.add(config);
    return;
  } catch (error) {
    if (/subjects overlap/i.test((error as Error).message)) {
      throw new ConfigError(`NATS stream ${config.name} cannot be made: its subjects ${JSON.stringify(config.subjects)} overlap another stream's (${(error as Error).message}); give Fennel a prefix of its own (nats://…?prefix=…)`, { cause: error });
    }
    if (!/already in use/i.test((error as Error).message)) throw error;
  }
  const mismatch = streamMismatch((await jsm.streams.info(config.name)).config, needs);
  if (mismatch) throw new ConfigError(`NATS stream ${config.name} exists and Fennel cannot use it: ${mismatch}. Something else made it under Fennel's name: delete it, or give Fennel a prefix of its own (nats://…?prefix=…)`);
}

function consumerError(stream: string, name: string, mismatch: string): ConfigError {
  return new ConfigError(`NATS consumer ${name} of stream ${stream} exists and Fennel cannot use it: ${mismatch}. Delete it (Fennel makes it again), or give Fennel a prefix of its own (nats://…?prefix=…)`);
}

/**
 * Adds a durable pull consumer with Fennel's settings: explicit acks, no delivery limit (poison handling is the
 * worker's), no ack-pending limit (many workers share it). One that exists with other settings is checked
 * (consumerMismatch) and used as it is, or refused with a ConfigError.
 */
async function addConsumer(jsm: JetStreamManager, stream: string, config: Partial<ConsumerConfig> & { durable_name: string; filter_subject: string }): Promise<void> {
  try {
    await jsm.consumers.add(stream, { ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_deliver: -1, max_ack_pending: -1, ...config });
    return;
  } catch (error) {
    if (!/already (exists|in use)/i.test((error as Error).message)) throw error;
  }
  const mismatch = consumerMismatch((await jsm.consumers.info(stream, config.durable_name)).config, config.filter_subject);
  if (mismatch) throw consumerError(stream, config.durable_name, mismatch);
}
