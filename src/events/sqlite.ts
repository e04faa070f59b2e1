// The sqlite:// event bus: events are rows of a `fennel_events` table in the broker's own SQLite file, so every
// process on the machine that opens the file (workers, the gateway) sees every other's events.
//
// Why a table: SQLite cannot push, but the shared handle (clients/sqlite-file.ts) already wakes each process
// when any process commits. A publisher appends through the handle's group commit, so a worker's events ride in
// the same transaction as its acks and result stores; a subscriber follows the table from its newest row
// (clients/sqlite-tail.ts, shared with channels/sqlite.ts): a rowid cursor, and the rows past it when woken.
// AUTOINCREMENT ids are never reused, so a cursor stays valid after old rows are trimmed.
// The table is capped (MAX_ROWS): a monitor that falls further behind than that loses the oldest events,
// which is the right trade for telemetry.

import { SqliteFile, sqlitePath } from '../clients/sqlite-file.ts';
import { followTable, wakeFollowers } from '../clients/sqlite-tail.ts';
import { deliverEvent, parseEvents, payloadOf, type EventBus, type FennelEvent } from './events.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS fennel_events (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  created_at  INTEGER NOT NULL,            -- ms since epoch, for people reading the table by hand
  event       TEXT    NOT NULL             -- one event, Celery's JSON layout (events/events.ts)
);`;

/** Rows kept: about ten minutes of a busy pool's task events, or hours of heartbeats. */
export const MAX_ROWS = 20_000;
/** Trim once every this many appends by one process, so the cap costs one indexed range delete now and then. */
const TRIM_EVERY = 500;
const TABLE = 'fennel_events';

export interface SqliteEventBusOptions {
  /** How often to look for new rows when the file watcher is unavailable (the app's pollIntervalMs). */
  pollIntervalMs?: number;
  maxRows?: number;
}

export class SqliteEventBus implements EventBus {
  private readonly file: SqliteFile;
  private readonly insert: (createdAt: number, json: string) => void;
  private readonly trim: () => void;
  private readonly readAfter: (cursor: number, limit: number) => Array<{ id: number; event: string }>;
  /** The stop of each subscription. */
  private readonly subscribers = new Set<() => void>();
  private readonly pending = new Set<Promise<unknown>>();
  private appended = 0;
  private closed = false;

  constructor(
    readonly url: string,
    private readonly options: SqliteEventBusOptions = {},
  ) {
    this.file = SqliteFile.acquire(sqlitePath(url), url);
    const db = this.file.db;
    this.file.run(() => db.exec(SCHEMA));
    const maxRows = options.maxRows ?? MAX_ROWS;
    const insert = db.prepare('INSERT INTO fennel_events (created_at, event) VALUES (?, ?)');
    const trim = db.prepare('DELETE FROM fennel_events WHERE id <= (SELECT MAX(id) FROM fennel_events) - ?');
    const read = db.prepare('SELECT id, event FROM fennel_events WHERE id > ? ORDER BY id LIMIT ?');
    this.insert = (createdAt, json) => void insert.run(createdAt, json);
    this.trim = () => void trim.run(maxRows);
    this.readAfter = (cursor, limit) => read.all(cursor, limit) as Array<{ id: number; event: string }>;
  }

  publish(event: FennelEvent): void {
    this.send(event);
  }

  /** One row holding the list (Celery's `task.multi` body); a follower hands on each event in order. */
  publishMany(events: readonly FennelEvent[]): void {
    const payload = payloadOf(events);
    if (payload) this.send(payload);
  }

  private send(payload: FennelEvent | readonly FennelEvent[]): void {
    if (this.closed) return;
    let json: string;
    try {
      json = JSON.stringify(payload);
    } catch {
      return; // an event that cannot be encoded is dropped, as one that cannot be sent
    }
    const trimNow = ++this.appended % TRIM_EVERY === 0;
    // quiet: an event must not wake this process's consumers (they would look for work that is not there);
    // the followers of the table in this process (every bus on the file) are woken below instead.
    const write = this.file
      .write(
        () => {
          this.insert(Date.now(), json);
          if (trimNow) this.trim();
        },
        { quiet: true },
      )
      .then(
        () => wakeFollowers(this.file, TABLE),
        () => {}, // telemetry: a failed write (database locked for too long) drops the event
      );
    this.pending.add(write);
    void write.finally(() => this.pending.delete(write));
  }

  async subscribe(handler: (event: FennelEvent) => void): Promise<() => Promise<void>> {
    // From now on: the follower starts at the newest row committed so far.
    const stop = followTable(this.file, TABLE, {
      pollIntervalMs: this.options.pollIntervalMs ?? 250,
      read: this.readAfter,
      deliver: (rows) => {
        for (const row of rows) {
          // Nothing for a row someone wrote by hand that holds no event.
          for (const event of parseEvents(row.event)) deliverEvent([handler], event);
        }
      },
    });
    this.subscribers.add(stop);
    return async () => {
      stop();
      this.subscribers.delete(stop);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Events published just before close (a worker's worker-offline) are committed before the handle goes.
    await Promise.all([...this.pending]);
    this.closed = true;
    for (const stop of this.subscribers) stop();
    this.subscribers.clear();
    this.file.release();
  }
}
