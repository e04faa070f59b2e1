// sqlite://path — the embedded default broker: one SQLite file (WAL) that producers and workers of one
// machine share. Each state change is one statement or one transaction:
//   publish    INSERT (a batch in one transaction)
//   claim      UPDATE … RETURNING: take up to N visible messages and lease them to this consumer
//   renew      UPDATE every message this consumer holds, pushing its lease forward (from the worker's
//              parent process, so a CPU-bound task cannot starve it)
//   ack        DELETE the held row;   reject → requeue (clear lease) or move to fennel_dead_letters
// A held message's `visible_at` is its lease expiry: if the holder dies, it becomes claimable again after
// `visibilityTimeoutSec` with no sweeper. Priority: higher numbers are served first (as on RabbitMQ).

import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { ClosedError } from '../errors.ts';
import { decodeEnvelope, encodeEnvelope } from '../protocol/envelope.ts';
import type { WireMessage } from '../protocol/message.ts';
import { broadcastCopyQueue } from '../protocol/queues.ts';
import * as presence from './sqlite-consumers.ts';
import { SqliteFile, sqlitePath } from '../clients/sqlite-file.ts';
import { consumerMap } from './presence.ts';
import { PullSubscriptions, type ClaimResult, type QueueStore } from './subscription.ts';
import { dedupeId, dedupeTtl, describeMessage, type ConsumeOptions, type DeadLetter, type Delivery, type QueueConsumers, type QueueStats, type Route, type Subscription, type Transport } from './transport.ts';

export interface SqliteTransportOptions {
  /** A held message whose holder stops renewing becomes visible again after this long. */
  visibilityTimeoutSec?: number;
  /** How often consumers look for work when no change notification arrives (inotify missing, etas). */
  pollIntervalMs?: number;
  /** How long a statement waits for another process's lock before it fails with BrokerUnavailableError. */
  connectTimeoutMs?: number;
}

interface ClaimedRow {
  id: number;
  queue: string;
  priority: number;
  deliveries: number;
  envelope: string;
}

export class SqliteTransport implements Transport {
  readonly capabilities = { delayedDelivery: true, priorities: true, crossProcess: true, deduplication: true, broadcast: true };
  private readonly file: SqliteFile;
  private readonly visibilityMs: number;
  private readonly pollMs: number;
  private readonly subscriptions = new PullSubscriptions();
  private closed = false;
  /** When lapsed deduplicate-ttl entries were last deleted (ms). */
  private lastTtlPrune = 0;
  private closing: Promise<void> | undefined;
  /** Prepared statements, shared with this transport's subscriptions. */
  readonly sql: Record<StatementName, Database.Statement>;

  constructor(
    readonly url: string,
    options: SqliteTransportOptions = {},
  ) {
    this.visibilityMs = (options.visibilityTimeoutSec ?? 30) * 1000;
    this.pollMs = options.pollIntervalMs ?? 250;
    this.file = SqliteFile.acquire(sqlitePath(url), url, { busyTimeoutMs: options.connectTimeoutMs });
    this.sql = this.file.run(() => prepare(this.file.db));
  }

  private check(): void {
    if (this.closed) throw new ClosedError(`transport ${this.url}`);
  }

  async publish(message: WireMessage, route: Route): Promise<void> {
    this.check();
    await this.file.write(() => this.insert(message, route, Date.now()), { bytes: message.body.length });
  }

  async publishMany(batch: ReadonlyArray<readonly [WireMessage, Route]>): Promise<void> {
    this.check();
    const now = Date.now();
    await this.file.write(() => {
      for (const [message, route] of batch) this.insert(message, route, now);
    });
  }

  private insert(message: WireMessage, route: Route, now: number): void {
    const visibleAt = Math.max(now, route.delayUntil?.getTime() ?? 0);
    if (route.broadcast) {
      // One row per consumer of the broadcast queue announced now, in its own copy queue, in this transaction.
      const envelope = encodeEnvelope(message, 'utf-8');
      for (const [consumer] of this.sql.broadcastConsumers.all(route.queue, now) as Array<[string]>) {
        insertRow(this.sql, broadcastCopyQueue(route.queue, consumer), route.priority ?? 0, visibleAt, envelope);
      }
      return;
    }
    const ttl = dedupeTtl(message, route);
    if (ttl) {
      // Taken unless its entry has lapsed; a lapsed entry is taken over in the same statement.
      if (this.sql.dedupeTtlTake.run(ttl.id, now + ttl.ttlMs, now).changes === 0) return;
      if (now - this.lastTtlPrune > 60_000) {
        this.lastTtlPrune = now;
        this.sql.dedupeTtlPrune.run(now);
      }
      insertRow(this.sql, route.queue, route.priority ?? 0, visibleAt, encodeEnvelope(message, 'utf-8'));
      return;
    }
    const taskId = route.deduplicate ? dedupeId(message) : undefined;
    // In the publish transaction: the id is taken if its entry points at a message row that still exists.
    if (taskId && this.sql.dedupeTaken.get(taskId)) return;
    const id = insertRow(this.sql, route.queue, route.priority ?? 0, visibleAt, encodeEnvelope(message, 'utf-8'));
    if (taskId) this.sql.dedupeTake.run(taskId, id);
  }

  async consume(options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<Subscription> {
    this.check();
    const broadcast = options.broadcast;
    const queues = broadcast ? [...options.queues, ...broadcast.queues.map((q) => broadcastCopyQueue(q, broadcast.consumer))] : options.queues;
    // A broadcast reaches the consumers announced when it is published: announce before the first claim, and
    // keep the announcement alive while the subscription lasts (the store renews it, and withdraws it on stop).
    const presence = broadcast?.queues.length ? new BroadcastPresence(this.file, broadcast.consumer, broadcast.queues) : undefined;
    await presence?.start();
    const store = new SqliteQueueStore(this.sql, this.file, queues, this.visibilityMs, this.pollMs, presence);
    // Refill at half the window, not after every settle: one claim transaction then takes many messages.
    return this.subscriptions.start(store, { ...options, queues, pollMs: this.pollMs, renewEveryMs: this.visibilityMs / 3, refillAt: Math.floor(options.prefetch / 2) }, onDelivery);
  }

  async purge(queue: string): Promise<number> {
    this.check();
    return this.file.run(() => this.sql.purge.run(queue, Date.now()).changes);
  }

  async depth(queue: string): Promise<number> {
    this.check();
    return this.file.run(() => (this.sql.depth.get(queue, Date.now()) as { n: number }).n);
  }

  async stats(): Promise<QueueStats[]> {
    this.check();
    const rows = this.file.run(() => this.sql.stats.all({ now: Date.now() }) as QueueStats[]);
    return rows;
  }

  async listDeadLetters(options: { limit?: number } = {}): Promise<DeadLetter[]> {
    this.check();
    const rows = this.file.run(
      () => this.sql.listDead.all(options.limit ?? 100) as Array<{ id: number; queue: string; reason: string; task_id: string | null; task_name: string | null; created_at: number; envelope: string }>,
    );
    return rows.map((r) => ({
      id: String(r.id),
      queue: r.queue,
      reason: r.reason,
      taskId: r.task_id,
      taskName: r.task_name,
      createdAt: new Date(r.created_at),
      message: decodeEnvelope(r.envelope),
    }));
  }

  async requeueDeadLetter(id: string): Promise<boolean> {
    this.check();
    // Through the group commit (BEGIN IMMEDIATE), as every write here: this transaction reads before it writes,
    // and begun deferred it could not wait for a worker's lock (SQLite fails the upgrade at once, SQLITE_BUSY).
    return this.file.write(() => {
      const row = this.sql.getDead.get(Number(id)) as { queue: string; envelope: string } | undefined;
      if (!row) return false;
      const priority = decodeEnvelope(row.envelope).properties.priority;
      insertRow(this.sql, row.queue, typeof priority === 'number' ? priority : 0, Date.now(), row.envelope);
      this.sql.deleteDead.run(Number(id));
      return true;
    });
  }

  /** Presence (sqlite-consumers.ts): one upsert per queue into `fennel_consumers`, in the group commit. */
  async announceConsumer(consumer: string, queues: readonly string[], ttlSec: number): Promise<void> {
    this.check();
    await presence.announceConsumer(this.file, consumer, queues, ttlSec);
  }

  async withdrawConsumer(consumer: string, queues: readonly string[]): Promise<void> {
    this.check();
    await presence.withdrawConsumer(this.file, consumer, queues);
  }

  async consumers(queue?: string): Promise<Map<string, QueueConsumers>> {
    this.check();
    return consumerMap(presence.liveConsumers(this.file), queue);
  }

  /** Closing twice (a warm shutdown and a cold one racing) waits for the one close: the file is released once. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      // Held deliveries are handed back at once rather than waiting out their visibility timeout.
      await this.subscriptions.releaseAll();
      this.closed = true;
      this.file.release();
    })());
  }
}

type StatementName = 'broadcastConsumers' | 'dedupeTtlTake' | 'dedupeTtlPrune' | 'dedupeTaken' | 'dedupeTake' | 'dedupeRelease' | 'insert' | 'insertBody' | 'body' | 'claim' | 'nextVisible' | 'renew' | 'ack' | 'requeue' | 'releaseAll' | 'toDead' | 'purge' | 'depth' | 'stats' | 'listDead' | 'getDead' | 'deleteDead';

function prepare(db: Database.Database): Record<StatementName, Database.Statement> {
  return {
    insert: db.prepare('INSERT INTO fennel_messages (queue, priority, visible_at, envelope) VALUES (?, ?, ?, ?)'),
    insertBody: db.prepare('INSERT INTO fennel_message_bodies (id, envelope) VALUES (?, ?)'),
    body: db.prepare('SELECT envelope FROM fennel_message_bodies WHERE id = ?').pluck(),
    broadcastConsumers: db.prepare('SELECT consumer FROM fennel_consumers WHERE queue = ? AND expires_at > ?').raw(),
    dedupeTtlTake: db.prepare('INSERT INTO fennel_dedupe_ttl (task_id, keep_until) VALUES (?, ?) ON CONFLICT (task_id) DO UPDATE SET keep_until = excluded.keep_until WHERE fennel_dedupe_ttl.keep_until <= ?'),
    dedupeTtlPrune: db.prepare('DELETE FROM fennel_dedupe_ttl WHERE keep_until <= ?'),
    dedupeTaken: db.prepare('SELECT 1 FROM fennel_dedupe d JOIN fennel_messages m ON m.id = d.message_id WHERE d.task_id = ?'),
    dedupeTake: db.prepare('INSERT INTO fennel_dedupe (task_id, message_id) VALUES (?, ?) ON CONFLICT (task_id) DO UPDATE SET message_id = excluded.message_id'),
    dedupeRelease: db.prepare('DELETE FROM fennel_dedupe WHERE task_id = ? AND message_id = ?'),
    claim: db.prepare(
      `UPDATE fennel_messages SET lease = ?, visible_at = ?, deliveries = deliveries + 1
       WHERE id IN (SELECT id FROM fennel_messages WHERE queue = ? AND visible_at <= ?
                    ORDER BY priority DESC, visible_at, id LIMIT ?)
       RETURNING id, queue, priority, deliveries, envelope`,
    ),
    nextVisible: db.prepare('SELECT MIN(visible_at) AS t FROM fennel_messages WHERE queue = ? AND visible_at > ?'),
    renew: db.prepare('UPDATE fennel_messages SET visible_at = ? WHERE lease = ?'),
    ack: db.prepare('DELETE FROM fennel_messages WHERE id = ? AND lease = ?'),
    requeue: db.prepare('UPDATE fennel_messages SET lease = NULL, visible_at = 0 WHERE id = ? AND lease = ?'),
    releaseAll: db.prepare('UPDATE fennel_messages SET lease = NULL, visible_at = 0 WHERE lease = ?'),
    toDead: db.prepare(
      `INSERT INTO fennel_dead_letters (queue, reason, task_id, task_name, created_at, envelope)
       SELECT queue, ?, ?, ?, ?, envelope FROM fennel_message_envelopes WHERE id = ? AND lease = ?`,
    ),
    // A message whose holder's lease has lapsed counts as waiting again (its holder died).
    purge: db.prepare('DELETE FROM fennel_messages WHERE queue = ? AND (lease IS NULL OR visible_at <= ?)'),
    depth: db.prepare('SELECT COUNT(*) AS n FROM fennel_messages WHERE queue = ? AND (lease IS NULL OR visible_at <= ?)'),
    stats: db.prepare(
      `SELECT queue,
              SUM(visible_at <= @now) AS ready,
              SUM(lease IS NULL AND visible_at > @now) AS scheduled,
              SUM(lease IS NOT NULL AND visible_at > @now) AS unacked
       FROM fennel_messages GROUP BY queue ORDER BY queue`,
    ),
    listDead: db.prepare('SELECT * FROM fennel_dead_letters ORDER BY id LIMIT ?'),
    getDead: db.prepare('SELECT queue, envelope FROM fennel_dead_letters WHERE id = ?'),
    deleteDead: db.prepare('DELETE FROM fennel_dead_letters WHERE id = ?'),
  };
}

/**
 * Envelopes this long or longer (UTF-16 code units, about bytes for the JSON text) are kept in fennel_message_bodies
 * rather than in their message's row. A claim sets the row's lease, which changes the row's size, and SQLite then
 * writes the whole row again: for a 0.67 MB envelope that is 0.67 MB more in the WAL at every claim. Below this,
 * rewriting a few pages costs less than the second row. 16 KiB: four 4 KiB pages.
 */
const OUT_OF_LINE_BYTES = 16 * 1024;

/** Inserts a message row (and its envelope's own row when it is large); returns the row's id. */
function insertRow(sql: Record<StatementName, Database.Statement>, queue: string, priority: number, visibleAt: number, envelope: string): number | bigint {
  if (envelope.length < OUT_OF_LINE_BYTES) return sql.insert.run(queue, priority, visibleAt, envelope).lastInsertRowid;
  const { lastInsertRowid } = sql.insert.run(queue, priority, visibleAt, '');
  sql.insertBody.run(lastInsertRowid, envelope);
  return lastInsertRowid;
}

/** A held row: what ack, requeue and dead-letter need. */
interface HeldRow {
  id: number;
  message: WireMessage;
  /** The deduplicated task id the row reserves, freed when it is settled. */
  dedupedId: string | undefined;
}

/**
 * The SQLite primitives under the shared consumer (subscription.ts), for one lease holder. Claims, settles and
 * renewals go through the file's group commit, so they share a transaction with the stores of the same turn.
 */
class SqliteQueueStore implements QueueStore<HeldRow> {
  private readonly lease = randomUUID();

  constructor(
    private readonly sql: Record<StatementName, Database.Statement>,
    private readonly file: SqliteFile,
    private readonly queues: readonly string[],
    private readonly visibilityMs: number,
    private readonly pollMs: number,
    private readonly presence: BroadcastPresence | undefined,
  ) {}

  async claim(max: number): Promise<ClaimResult<HeldRow>> {
    const now = Date.now();
    const { rows, nextVisibleAt } = await this.file.write(
      () => {
        const out: ClaimedRow[] = [];
        for (const queue of this.queues) {
          if (out.length >= max) break;
          const got = this.sql.claim.all(this.lease, now + this.visibilityMs, queue, now, max - out.length) as ClaimedRow[];
          for (const row of got) if (row.envelope === '') row.envelope = this.sql.body.get(row.id) as string;
          got.sort((a, b) => b.priority - a.priority || a.id - b.id);
          out.push(...got);
        }
        // Not a full window: when is the earliest scheduled message (an eta, another consumer's lease) due?
        let next: number | undefined;
        if (out.length < max) {
          for (const queue of this.queues) {
            const t = (this.sql.nextVisible.get(queue, now) as { t: number | null }).t;
            if (t !== null) next = Math.min(next ?? t, t);
          }
        }
        return { rows: out, nextVisibleAt: next };
      },
      { quiet: true },
    );
    return {
      nextVisibleAt,
      claimed: rows.map((row) => {
        const message = decodeEnvelope(row.envelope);
        return { handle: { id: row.id, message, dedupedId: dedupeId(message) }, message, queue: row.queue, redelivered: row.deliveries > 1 };
      }),
    };
  }

  async renew(): Promise<void> {
    this.file.run(() => this.sql.renew.run(Date.now() + this.visibilityMs, this.lease));
  }

  private release(row: HeldRow): void {
    if (row.dedupedId) this.sql.dedupeRelease.run(row.dedupedId, row.id);
  }

  ack(row: HeldRow): Promise<void> {
    return this.file.write(() => this.ackNow(row));
  }

  /** The ack inside the transaction that stores the outcome, when the result backend is this file (Backend.settleAndAck). */
  joinableAck(row: HeldRow): { file: SqliteFile; run(): void } {
    return { file: this.file, run: () => this.ackNow(row) };
  }

  private ackNow(row: HeldRow): void {
    this.sql.ack.run(row.id, this.lease);
    this.release(row);
  }

  requeue(row: HeldRow): Promise<void> {
    return this.file.write(() => void this.sql.requeue.run(row.id, this.lease));
  }

  deadLetter(row: HeldRow, reason: string): Promise<void> {
    return this.file.write(() => {
      const { taskId, taskName } = describeMessage(row.message);
      this.sql.toDead.run(reason, taskId, taskName, Date.now(), row.id, this.lease);
      this.sql.ack.run(row.id, this.lease);
      this.release(row);
    });
  }

  async releaseAll(): Promise<void> {
    this.file.run(() => this.sql.releaseAll.run(this.lease));
  }

  /** Every commit to the file, by any process, may be new work (and every poll interval, if inotify is missing). */
  watch(poke: () => void): () => void {
    return this.file.onChange(poke, this.pollMs);
  }

  stop(): void {
    this.presence?.stop();
  }
}

/** How long a broadcast subscriber's announcement lasts, renewed at a third of it while it consumes. */
const BROADCAST_PRESENCE_SEC = 10;

/**
 * A broadcast subscriber's presence in `fennel_consumers` (sqlite-consumers.ts), which is where a broadcast
 * publish looks for the consumers to copy a message to. Renewed while the subscription consumes; withdrawn when
 * it stops, so a broadcast sent after that makes no copy for it. If the process dies, the entry lapses after
 * BROADCAST_PRESENCE_SEC; a broadcast sent meanwhile still makes a copy, which the next subscription under that name
 * discards when it starts, and the presence pruning deletes if none does (sqlite-consumers.ts).
 */
class BroadcastPresence {
  private timer: NodeJS.Timeout | undefined;

  private readonly discardStale: Database.Statement;

  constructor(
    private readonly file: SqliteFile,
    private readonly consumer: string,
    private readonly queues: readonly string[],
  ) {
    // Not held by a live lease: waiting copies, and copies whose holder died.
    this.discardStale = file.run(() => file.db.prepare('DELETE FROM fennel_messages WHERE queue = ? AND (lease IS NULL OR visible_at <= ?)'));
  }

  async start(): Promise<void> {
    // Copies waiting from before this subscription were sent while it was not consuming (an earlier process under
    // the same name, killed while its presence still counted): a consumer that starts later gets none.
    await this.file.write(() => {
      const now = Date.now();
      for (const queue of this.queues) this.discardStale.run(broadcastCopyQueue(queue, this.consumer), now);
    });
    await presence.announceConsumer(this.file, this.consumer, this.queues, BROADCAST_PRESENCE_SEC);
    this.timer = setInterval(() => void presence.announceConsumer(this.file, this.consumer, this.queues, BROADCAST_PRESENCE_SEC).catch(() => {}), (BROADCAST_PRESENCE_SEC * 1000) / 3);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    presence.withdrawConsumer(this.file, this.consumer, this.queues).catch(() => {});
  }
}
