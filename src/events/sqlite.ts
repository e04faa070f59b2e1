// The sqlite:// event bus: events are rows of a `fennel_events` table in the broker's own SQLite file, so every
// process on the machine that opens the file (workers, the gateway) sees every other's events.
//
// Why a table: SQLite cannot push, but the shared handle (clients/sqlite-file.ts) already wakes each process
// when any process commits. A publisher appends through the handle's group commit, so a worker's events ride in
// the same transaction as its acks and result stores; a subscriber keeps a rowid cursor and reads the rows past
// it when woken. AUTOINCREMENT ids are never reused, so a cursor stays valid after old rows are trimmed.
// The table is capped (MAX_ROWS): a monitor that falls further behind than that loses the oldest events,
// which is the right trade for telemetry.

import { SqliteFile, sqlitePath } from '../clients/sqlite-file.ts';
import { deliverEvent, parseEvent, type EventBus, type FennelEvent } from './events.ts';

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
/** Rows read per query while catching up, so one wake-up never holds the event loop long. */
const READ_BATCH = 500;

/** The buses of this process on each file: a commit by one wakes the others' subscribers at once (see publish). */
const busesOnFile = new Map<SqliteFile, Set<SqliteEventBus>>();

export interface SqliteEventBusOptions {
  /** How often to look for new rows when the file watcher is unavailable (the app's pollIntervalMs). */
  pollIntervalMs?: number;
  maxRows?: number;
}

export class SqliteEventBus implements EventBus {
  private readonly file: SqliteFile;
  private readonly insert: (createdAt: number, json: string) => void;
  private readonly trim: () => void;
  private readonly readAfter: (cursor: number) => Array<{ id: number; event: string }>;
  private readonly lastId: () => number;
  private readonly subscribers = new Set<Subscriber>();
  private readonly pending = new Set<Promise<unknown>>();
  private appended = 0;
  private closed = false;

  constructor(
    readonly url: string,
    private readonly options: SqliteEventBusOptions = {},
  ) {
    this.file = SqliteFile.acquire(sqlitePath(url), url);
    let siblings = busesOnFile.get(this.file);
    if (!siblings) busesOnFile.set(this.file, (siblings = new Set()));
    siblings.add(this);
    const db = this.file.db;
    this.file.run(() => db.exec(SCHEMA));
    const maxRows = options.maxRows ?? MAX_ROWS;
    const insert = db.prepare('INSERT INTO fennel_events (created_at, event) VALUES (?, ?)');
    const trim = db.prepare('DELETE FROM fennel_events WHERE id <= (SELECT MAX(id) FROM fennel_events) - ?');
    const read = db.prepare('SELECT id, event FROM fennel_events WHERE id > ? ORDER BY id LIMIT ?');
    const last = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'fennel_events'").pluck();
    this.insert = (createdAt, json) => void insert.run(createdAt, json);
    this.trim = () => void trim.run(maxRows);
    this.readAfter = (cursor) => read.all(cursor, READ_BATCH) as Array<{ id: number; event: string }>;
    this.lastId = () => (last.get() as number | undefined) ?? 0;
  }

  publish(event: FennelEvent): void {
    if (this.closed) return;
    let json: string;
    try {
      json = JSON.stringify(event);
    } catch {
      return; // an event that cannot be encoded is dropped, as one that cannot be sent
    }
    const trimNow = ++this.appended % TRIM_EVERY === 0;
    // quiet: an event must not wake this process's consumers (they would look for work that is not there);
    // the buses of this process on the same file wake their own subscribers below instead.
    const write = this.file
      .write(
        () => {
          this.insert(Date.now(), json);
          if (trimNow) this.trim();
        },
        { quiet: true },
      )
      .then(
        () => {
          for (const bus of busesOnFile.get(this.file) ?? []) bus.wakeAll();
        },
        () => {}, // telemetry: a failed write (database locked for too long) drops the event
      );
    this.pending.add(write);
    void write.finally(() => this.pending.delete(write));
  }

  async subscribe(handler: (event: FennelEvent) => void): Promise<() => Promise<void>> {
    // From now on: the cursor starts at the newest row committed so far.
    const subscriber: Subscriber = { handler, cursor: this.file.run(this.lastId), stopChange: () => {} };
    subscriber.stopChange = this.file.onChange(() => this.deliver(subscriber), this.options.pollIntervalMs ?? 250);
    this.subscribers.add(subscriber);
    return async () => {
      subscriber.stopChange();
      this.subscribers.delete(subscriber);
    };
  }

  private wakeAll(): void {
    for (const subscriber of this.subscribers) this.deliver(subscriber);
  }

  /** Reads and hands over the rows past this subscriber's cursor, a batch per event-loop turn. */
  private deliver(subscriber: Subscriber): void {
    if (this.closed || subscriber.reading || !this.subscribers.has(subscriber)) return;
    let rows: Array<{ id: number; event: string }>;
    try {
      rows = this.file.run(() => this.readAfter(subscriber.cursor));
    } catch {
      return; // locked or closing: the next wake-up reads again from the same cursor
    }
    if (rows.length === 0) return;
    subscriber.cursor = rows[rows.length - 1]!.id;
    for (const row of rows) {
      const event = parseEvent(row.event); // undefined for a row someone wrote by hand
      if (event) deliverEvent([subscriber.handler], event);
    }
    if (rows.length === READ_BATCH) {
      // More to read: yield to the event loop between batches.
      subscriber.reading = true;
      setImmediate(() => {
        subscriber.reading = false;
        this.deliver(subscriber);
      });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Events published just before close (a worker's worker-offline) are committed before the handle goes.
    await Promise.all([...this.pending]);
    this.closed = true;
    for (const subscriber of this.subscribers) subscriber.stopChange();
    this.subscribers.clear();
    const siblings = busesOnFile.get(this.file);
    siblings?.delete(this);
    if (siblings?.size === 0) busesOnFile.delete(this.file);
    this.file.release();
  }
}

interface Subscriber {
  handler: (event: FennelEvent) => void;
  cursor: number;
  stopChange: () => void;
  reading?: boolean;
}
