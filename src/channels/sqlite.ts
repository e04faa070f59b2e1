// The sqlite:// channel engine: a channel's messages are rows of `fennel_channel_messages` in the broker's own
// file (schema in clients/sqlite-file.ts), so every process on the machine that opens the file sees them.
//
// Publish appends a row through the handle's group commit (quiet: it wakes no task consumer), then wakes this
// process's subscribers of the table at once; other processes are woken by the file watcher. A subscription
// follows the table from its newest row (clients/sqlite-tail.ts, shared with the event bus), reading only its
// channel's rows past its cursor. SQLite has one writer at a time, so ids are handed out in commit order, and a
// subscription sees exactly the rows committed after it began, in that order.
// Rows expire: a publisher deletes the rows older than MESSAGE_TTL_MS as it goes (at most once a second), so the
// table holds about a minute of traffic; a subscriber whose process stalls for longer than that loses what expired.
// While it has subscriptions, the engine keeps the process running (a timer that does nothing), as the socket of
// a Redis or RabbitMQ subscription does: the file's watcher and poll do not, so that a producer can exit.

import { SqliteFile, sqlitePath } from '../clients/sqlite-file.ts';
import { followTable, wakeFollowers } from '../clients/sqlite-tail.ts';
import type { ChannelEngine } from './engine.ts';

const TABLE = 'fennel_channel_messages';
/** How long a message stays in the table for subscribers that are catching up. */
export const MESSAGE_TTL_MS = 60_000;
/** A publisher deletes expired rows at most this often: one indexed range delete, inside one of its writes. */
const SWEEP_EVERY_MS = 1_000;

export interface SqliteChannelEngineOptions {
  /** How often a subscriber looks for new rows without a file-change wake-up (the app's pollIntervalMs). */
  pollIntervalMs?: number | undefined;
  /** How long a write waits for another process's lock (the app's connectTimeoutMs). */
  connectTimeoutMs?: number | undefined;
}

export class SqliteChannelEngine implements ChannelEngine {
  private readonly file: SqliteFile;
  private readonly insert: (channel: string, payload: string, createdAt: number) => void;
  private readonly sweep: (before: number) => void;
  private readonly readAfter: (channel: string, cursor: number, limit: number) => Array<{ id: number; payload: string }>;
  private readonly pollIntervalMs: number;
  /** Each subscription's stop, and its channel. */
  private readonly stops = new Map<() => void, string>();
  private readonly pending = new Set<Promise<unknown>>();
  private lastSweep = 0;
  private keepAlive: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly url: string,
    options: SqliteChannelEngineOptions = {},
  ) {
    this.file = SqliteFile.acquire(sqlitePath(url), url, { busyTimeoutMs: options.connectTimeoutMs });
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    const db = this.file.db;
    const insert = db.prepare(`INSERT INTO ${TABLE} (channel, payload, created_at) VALUES (?, ?, ?)`);
    const sweep = db.prepare(`DELETE FROM ${TABLE} WHERE created_at < ?`);
    const read = db.prepare(`SELECT id, payload FROM ${TABLE} WHERE channel = ? AND id > ? ORDER BY id LIMIT ?`);
    this.insert = (channel, payload, createdAt) => void insert.run(channel, payload, createdAt);
    this.sweep = (before) => void sweep.run(before);
    this.readAfter = (channel, cursor, limit) => read.all(channel, cursor, limit) as Array<{ id: number; payload: string }>;
  }

  async publish(channel: string, payload: string): Promise<void> {
    const write = this.file.write(
      () => {
        const now = Date.now();
        this.insert(channel, payload, now);
        if (now - this.lastSweep >= SWEEP_EVERY_MS) {
          this.lastSweep = now;
          this.sweep(now - MESSAGE_TTL_MS);
        }
      },
      { quiet: true },
    );
    this.pending.add(write);
    try {
      await write; // rejects with BrokerUnavailableError (locked for connectTimeoutMs, read-only, …)
    } finally {
      this.pending.delete(write);
    }
    wakeFollowers(this.file, TABLE);
  }

  async subscribe(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    const stop = followTable(this.file, TABLE, {
      pollIntervalMs: this.pollIntervalMs,
      read: (cursor, limit) => this.readAfter(channel, cursor, limit),
      deliver: (rows) => {
        for (const row of rows) onMessage(row.payload);
      },
    });
    this.stops.set(stop, channel);
    this.keepAlive ??= setInterval(() => {}, 1 << 30);
    return async () => {
      stop();
      this.stops.delete(stop);
      if (this.stops.size === 0) this.stopKeepingAlive();
    };
  }

  /** How many subscriptions to `channel` this engine holds (the file keeps no subscriber state: they are readers here). */
  subscriberCount(channel: string): number {
    let count = 0;
    for (const name of this.stops.values()) if (name === channel) count++;
    return count;
  }

  private stopKeepingAlive(): void {
    clearInterval(this.keepAlive);
    this.keepAlive = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Messages published just before close are committed before the handle goes.
    await Promise.allSettled([...this.pending]);
    for (const stop of this.stops.keys()) stop();
    this.stops.clear();
    this.stopKeepingAlive();
    this.file.release();
  }
}
