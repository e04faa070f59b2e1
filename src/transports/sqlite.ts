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
import * as presence from './sqlite-consumers.ts';
import { SqliteFile, sqlitePath } from '../clients/sqlite-file.ts';
import { consumerMap } from './presence.ts';
import { dedupeId, describeMessage, type ConsumeOptions, type DeadLetter, type Delivery, type QueueConsumers, type QueueStats, type Route, type Subscription, type Transport } from './transport.ts';

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
  readonly capabilities = { delayedDelivery: true, priorities: true, crossProcess: true, deduplication: true };
  private readonly file: SqliteFile;
  private readonly visibilityMs: number;
  private readonly pollMs: number;
  private readonly subscriptions = new Set<SqliteSubscription>();
  private closed = false;
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
    await this.file.write(() => this.insert(message, route, Date.now()));
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
    const taskId = route.deduplicate ? dedupeId(message) : undefined;
    // In the publish transaction: the id is taken if its entry points at a message row that still exists.
    if (taskId && this.sql.dedupeTaken.get(taskId)) return;
    const { lastInsertRowid } = this.sql.insert.run(route.queue, route.priority ?? 0, visibleAt, encodeEnvelope(message, 'utf-8'));
    if (taskId) this.sql.dedupeTake.run(taskId, lastInsertRowid);
  }

  async consume(options: ConsumeOptions, onDelivery: (delivery: Delivery) => void): Promise<Subscription> {
    this.check();
    if (options.queues.length === 0) throw new RangeError('consume needs at least one queue');
    const sub = new SqliteSubscription(this, this.file, options, onDelivery, this.visibilityMs, this.pollMs);
    this.subscriptions.add(sub);
    sub.start();
    return {
      cancel: async () => {
        sub.stop();
      },
    };
  }

  /** Called by a subscription once it is stopped and holds nothing. */
  forget(sub: SqliteSubscription): void {
    this.subscriptions.delete(sub);
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
      this.sql.insert.run(row.queue, typeof priority === 'number' ? priority : 0, Date.now(), row.envelope);
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

  async close(): Promise<void> {
    if (this.closed) return;
    // Held deliveries are handed back at once rather than waiting out their visibility timeout.
    for (const sub of this.subscriptions) sub.releaseAll();
    this.subscriptions.clear();
    this.closed = true;
    this.file.release();
  }
}

type StatementName = 'dedupeTaken' | 'dedupeTake' | 'dedupeRelease' | 'insert' | 'claim' | 'nextVisible' | 'renew' | 'ack' | 'requeue' | 'releaseAll' | 'toDead' | 'purge' | 'depth' | 'stats' | 'listDead' | 'getDead' | 'deleteDead';

function prepare(db: Database.Database): Record<StatementName, Database.Statement> {
  return {
    insert: db.prepare('INSERT INTO fennel_messages (queue, priority, visible_at, envelope) VALUES (?, ?, ?, ?)'),
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
       SELECT queue, ?, ?, ?, ?, envelope FROM fennel_messages WHERE id = ? AND lease = ?`,
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

/** One consume loop: claims into a prefetch window, renews the leases it holds, settles deliveries. */
class SqliteSubscription {
  private readonly lease = randomUUID();
  private held = 0;
  private active = false;
  private scheduled = false;
  private filling = false;
  private wakeAgain = false;
  private timer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly transport: SqliteTransport,
    private readonly file: SqliteFile,
    private readonly options: ConsumeOptions,
    private readonly onDelivery: (delivery: Delivery) => void,
    private readonly visibilityMs: number,
    private readonly pollMs: number,
  ) {}

  start(): void {
    this.active = true;
    this.unsubscribe = this.file.onChange(() => this.wake(), this.pollMs);
    // Renew well inside the timeout so one slow tick cannot let a lease lapse.
    this.renewTimer = setInterval(() => this.renew(), Math.max(50, Math.floor(this.visibilityMs / 3)));
    this.renewTimer.unref();
    this.wake();
  }

  private renew(): void {
    if (this.held === 0) return;
    try {
      this.file.run(() => this.transport.sql.renew.run(Date.now() + this.visibilityMs, this.lease));
    } catch {
      // The next tick tries again; the lease has two more ticks of slack before it lapses.
    }
  }

  private wake(): void {
    if (!this.active) return;
    if (this.filling) {
      this.wakeAgain = true; // a change arrived while a claim was in flight: look again after it
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.fill();
    });
  }

  /**
   * Claims as many messages as the window has room for, queue by queue in the order given. The claim goes
   * through the file's group commit, so it shares a transaction with the acks and stores of the same turn.
   */
  private fill(): void {
    if (!this.active || this.filling) return;
    clearTimeout(this.timer);
    const room = this.options.prefetch - this.held;
    if (room <= 0) return;
    const now = Date.now();
    this.filling = true;
    this.wakeAgain = false;
    this.file
      .write(() => {
        const out: ClaimedRow[] = [];
        for (const queue of this.options.queues) {
          if (out.length >= room) break;
          const got = this.transport.sql.claim.all(this.lease, now + this.visibilityMs, queue, now, room - out.length) as ClaimedRow[];
          got.sort((a, b) => b.priority - a.priority || a.id - b.id);
          out.push(...got);
        }
        return out;
      }, { quiet: true })
      .then(
        (rows) => {
          this.filling = false;
          if (!this.active) {
            // Cancelled while the claim was in flight: these were never handed out, so they go straight back.
            try {
              for (const row of rows) this.file.run(() => this.transport.sql.requeue.run(row.id, this.lease));
            } catch {
              // The file is closed or busy: these leases lapse on their own after the visibility timeout.
            }
            if (this.held === 0) this.finish();
            return;
          }
          this.held += rows.length;
          for (const row of rows) this.deliver(row);
          if (this.wakeAgain || rows.length === room) this.wake();
          else this.scheduleNextVisible(now);
        },
        () => {
          // A busy or failing database: try again after a poll interval instead of crashing the worker.
          this.filling = false;
          if (this.active) this.scheduleAt(Date.now() + this.pollMs);
        },
      );
  }

  /** Sleeps until the earliest scheduled message (eta, or another consumer's lease expiring) is due. */
  private scheduleNextVisible(now: number): void {
    let next = Infinity;
    try {
      for (const queue of this.options.queues) {
        const t = (this.transport.sql.nextVisible.get(queue, now) as { t: number | null }).t;
        if (t !== null) next = Math.min(next, t);
      }
    } catch {
      next = now + this.pollMs; // busy: look again after a poll interval
    }
    if (next !== Infinity) this.scheduleAt(next);
  }

  private scheduleAt(when: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.wake(), Math.max(1, when - Date.now()));
    this.timer.unref();
  }

  private deliver(row: ClaimedRow): void {
    let settled = false;
    const settle = async (fn: () => void): Promise<void> => {
      if (settled) return;
      // If the statement fails (a busy database), the delivery stays held and leased, and the caller's
      // error path can settle it again; marking it settled first would leave it leased for ever.
      await this.file.write(fn);
      if (settled) return;
      settled = true;
      this.held--;
      // Refill at half the window, not after every settle: one claim transaction then takes many messages.
      if (this.active && this.held <= Math.floor(this.options.prefetch / 2)) this.wake();
      else if (this.held === 0) this.finish();
    };
    const message = decodeEnvelope(row.envelope);
    const dedupedId = dedupeId(message);
    const release = (): void => {
      if (dedupedId) this.transport.sql.dedupeRelease.run(dedupedId, row.id);
    };
    this.onDelivery({
      message,
      queue: row.queue,
      redelivered: row.deliveries > 1,
      ack: () =>
        settle(() => {
          this.transport.sql.ack.run(row.id, this.lease);
          release();
        }),
      reject: ({ requeue, reason }) =>
        settle(() => {
          if (requeue) {
            this.transport.sql.requeue.run(row.id, this.lease);
            return;
          }
          const { taskId, taskName } = describeMessage(message);
          this.transport.sql.toDead.run(reason ?? 'rejected', taskId, taskName, Date.now(), row.id, this.lease);
          this.transport.sql.ack.run(row.id, this.lease);
          release();
        }),
    });
  }

  /** Stops claiming; held deliveries keep their leases until they are settled. */
  stop(): void {
    this.active = false;
    clearTimeout(this.timer);
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.held === 0 && !this.filling) this.finish();
  }

  private finish(): void {
    clearInterval(this.renewTimer);
    this.transport.forget(this);
  }

  /** Hands every held message back for immediate redelivery (transport close). */
  releaseAll(): void {
    this.stop();
    try {
      this.file.run(() => this.transport.sql.releaseAll.run(this.lease));
    } catch {
      // If this fails the leases lapse on their own after the visibility timeout.
    }
    clearInterval(this.renewTimer);
  }
}
