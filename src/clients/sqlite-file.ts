// One SQLite file shared by the sqlite:// transport and result backend of a process: the connection
// (WAL mode, so readers never block the writer and many processes share the file), the schema, error
// translation, and a change notifier. Both the transport and the backend (backends/sqlite.ts) use it.
//
// Why a notifier: SQLite cannot push. Rather than poll in a tight loop, each process watches the database's
// directory; every commit by any process touches the `-wal` file, which wakes consumers and result waiters
// at once. A slow fallback poll covers file systems without inotify.

import Database from 'better-sqlite3';
import { existsSync, mkdirSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { BrokerUnavailableError, ConfigError } from '../errors.ts';
import { checkQuery } from '../util/url.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS fennel_messages (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  queue       TEXT    NOT NULL,
  priority    INTEGER NOT NULL DEFAULT 0,
  visible_at  INTEGER NOT NULL,            -- ms since epoch: publish time, eta, or a held message's lease expiry
  lease       TEXT,                        -- the consumer holding it; NULL while waiting
  deliveries  INTEGER NOT NULL DEFAULT 0,  -- times handed out; > 0 means redelivered
  envelope    TEXT    NOT NULL             -- kombu's envelope JSON (protocol/envelope.ts), body utf-8; '' when it is in fennel_message_bodies
);
-- Claim order: priority (higher first), then the time it became visible, then publish order.
CREATE INDEX IF NOT EXISTS fennel_messages_claim ON fennel_messages (queue, priority DESC, visible_at, id);
CREATE INDEX IF NOT EXISTS fennel_messages_lease ON fennel_messages (lease) WHERE lease IS NOT NULL;
-- Large envelopes (transports/sqlite.ts, OUT_OF_LINE_BYTES), kept out of their message's row: a claim sets the
-- row's lease, which changes the row's size, and SQLite then writes the whole row again, overflow pages and all.
-- Here an envelope is written once, when it is published. The id is its message's (AUTOINCREMENT: never reused).
CREATE TABLE IF NOT EXISTS fennel_message_bodies (
  id          INTEGER PRIMARY KEY,
  envelope    TEXT    NOT NULL
);
-- Every way a message row goes (ack, dead letter, purge, a broadcast copy discarded) takes its body with it.
CREATE TRIGGER IF NOT EXISTS fennel_messages_body_delete AFTER DELETE ON fennel_messages WHEN old.envelope = ''
BEGIN
  DELETE FROM fennel_message_bodies WHERE id = old.id;
END;
-- A message's envelope wherever it is kept: what reads whole messages (a dead letter's copy, an operator) reads this.
CREATE VIEW IF NOT EXISTS fennel_message_envelopes AS
  SELECT m.id, m.queue, m.lease, COALESCE(b.envelope, m.envelope) AS envelope
  FROM fennel_messages m LEFT JOIN fennel_message_bodies b ON b.id = m.id AND m.envelope = '';

CREATE TABLE IF NOT EXISTS fennel_dead_letters (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  queue       TEXT    NOT NULL,
  reason      TEXT    NOT NULL,
  task_id     TEXT,
  task_name   TEXT,
  created_at  INTEGER NOT NULL,
  envelope    TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS fennel_results (
  task_id     TEXT PRIMARY KEY,
  status      TEXT    NOT NULL,
  meta        TEXT    NOT NULL,            -- Celery's result layout (protocol/result.ts)
  seq         INTEGER NOT NULL,            -- commit order: waiters read only rows newer than their cursor
  updated_at  INTEGER NOT NULL,
  keep_until  INTEGER                      -- ms since epoch: kept until then instead of result_expires (app.put's ttlSec)
);
CREATE INDEX IF NOT EXISTS fennel_results_seq ON fennel_results (seq);
-- A counter that never goes back (MAX(seq) would, after the newest result is forgotten or expired).
CREATE TABLE IF NOT EXISTS fennel_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO fennel_counters (name, value) VALUES ('result_seq', 0);
CREATE INDEX IF NOT EXISTS fennel_results_updated ON fennel_results (updated_at);

-- Task ids of messages published with deduplicate, and the row that holds each. An id is taken while its
-- row exists (waiting or held); the ack or dead letter deletes the entry, and a purged row frees it too.
CREATE TABLE IF NOT EXISTS fennel_dedupe (
  task_id     TEXT PRIMARY KEY,
  message_id  INTEGER NOT NULL
);

-- Chord joins: each member's result by index, and whether the join has completed (backends/sqlite.ts).
CREATE TABLE IF NOT EXISTS fennel_chord_parts (
  group_id    TEXT    NOT NULL,
  idx         INTEGER NOT NULL,
  result      TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (group_id, idx)
);
CREATE TABLE IF NOT EXISTS fennel_claims (key TEXT PRIMARY KEY, created_at INTEGER NOT NULL);

-- Revoked task ids, read by every worker on the file (backends/sqlite.ts); rowid order is revocation order.
CREATE TABLE IF NOT EXISTS fennel_revoked (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id     TEXT    NOT NULL,
  terminate   INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL             -- ms since epoch; workers forget the id after it
);

-- Live consumers (presence, sqlite-consumers.ts): a worker upserts a row per queue on every heartbeat and deletes
-- them when it stops; a row past expires_at is a worker that died. Read by get()'s timeout hint and fennel call.
CREATE TABLE IF NOT EXISTS fennel_consumers (
  queue       TEXT    NOT NULL,
  consumer    TEXT    NOT NULL,            -- the worker's node name
  expires_at  INTEGER NOT NULL,            -- ms since epoch
  PRIMARY KEY (queue, consumer)
) WITHOUT ROWID;

-- Channel messages (channels/sqlite.ts): publish/subscribe, at most once. Subscribers follow the table with an id
-- cursor per channel (AUTOINCREMENT: ids are never reused, so a cursor outlives the rows behind it); publishers
-- delete rows older than a minute as they go.
CREATE TABLE IF NOT EXISTS fennel_channel_messages (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  channel     TEXT    NOT NULL,
  payload     TEXT    NOT NULL,            -- the value as JSON, Fennel's tagged codec (protocol/json.ts)
  created_at  INTEGER NOT NULL             -- ms since epoch: what expiry goes by
);
CREATE INDEX IF NOT EXISTS fennel_channel_messages_read ON fennel_channel_messages (channel, id);
CREATE INDEX IF NOT EXISTS fennel_channel_messages_age ON fennel_channel_messages (created_at);

-- Task ids published with deduplicate: { ttlSec } (transports/sqlite.ts): taken until keep_until, whether or not
-- the message has run since (beat's fires: one due time, one message). Publishers delete lapsed rows as they go.
CREATE TABLE IF NOT EXISTS fennel_dedupe_ttl (
  task_id     TEXT    PRIMARY KEY,
  keep_until  INTEGER NOT NULL             -- ms since epoch
);

-- Leases (backends/sqlite.ts): "holder leads until expires_at", taken when free or lapsed, renewed by its holder
-- (beat's leader). One machine shares the file, so every process reads the same clock.
CREATE TABLE IF NOT EXISTS fennel_leases (
  name        TEXT    PRIMARY KEY,
  holder      TEXT    NOT NULL,
  expires_at  INTEGER NOT NULL             -- ms since epoch
);

-- Small durable records by table and key (backends/sqlite.ts): beat's last fire per schedule.
CREATE TABLE IF NOT EXISTS fennel_records (
  tbl         TEXT    NOT NULL,
  key         TEXT    NOT NULL,
  value       TEXT    NOT NULL,            -- JSON
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (tbl, key)
);

-- Calls parked until their inputs are ready (backends/sqlite.ts park and settle: object references): the call
-- (message and route, JSON) and, once an input's outcome has released it, which input and with what state.
CREATE TABLE IF NOT EXISTS fennel_parked (
  task_id      TEXT    PRIMARY KEY,
  call         TEXT    NOT NULL,
  released_by  TEXT,
  status       TEXT,
  created_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fennel_parked_released_by ON fennel_parked (released_by) WHERE released_by IS NOT NULL;

-- The inputs a parked call still waits for: a row per (input, call), deleted when that input's outcome is stored.
CREATE TABLE IF NOT EXISTS fennel_waits (
  input    TEXT NOT NULL,
  task_id  TEXT NOT NULL,
  PRIMARY KEY (input, task_id)
);
CREATE INDEX IF NOT EXISTS fennel_waits_task ON fennel_waits (task_id);
`;

/**
 * The version of SCHEMA, kept in the file's user_version once the schema is in place: bump it with every change
 * to SCHEMA. Opening then only reads it. Running SCHEMA takes the write lock (its INSERT), so every process
 * opening the file, `fennel status` included, would queue behind the workers' writes to change nothing.
 */
const SCHEMA_VERSION = 7;

/**
 * What CREATE TABLE IF NOT EXISTS cannot do for a file made by an older version: columns added to a table that
 * exists. Each runs once, inside the schema's transaction, on a file whose user_version is below its own.
 */
const MIGRATIONS: ReadonlyArray<{ version: number; table: string; column: string; sql: string }> = [
  { version: 6, table: 'fennel_results', column: 'keep_until', sql: 'ALTER TABLE fennel_results ADD COLUMN keep_until INTEGER' },
];

/** Run after the tables exist (a partial index on a column a migration adds). */
const SCHEMA_INDEXES = `
CREATE INDEX IF NOT EXISTS fennel_results_keep ON fennel_results (keep_until) WHERE keep_until IS NOT NULL;
`;

function ensureSchema(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version >= SCHEMA_VERSION) return;
  // Immediate: processes opening a new file together create the schema one after the other.
  db.transaction(() => {
    db.exec(SCHEMA);
    for (const migration of MIGRATIONS) {
      if (migration.version <= version) continue;
      const columns = db.prepare(`SELECT name FROM pragma_table_info('${migration.table}')`).all() as Array<{ name: string }>;
      if (!columns.some((c) => c.name === migration.column)) db.exec(migration.sql);
    }
    db.exec(SCHEMA_INDEXES);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

/** What untilNotBusy sleeps on, synchronously (the file is opened in a constructor). */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * Runs `step` again while it fails with SQLITE_BUSY, for at most `ms`. A new file starts in rollback-journal mode:
 * processes opening it together each read it (a shared lock) and then want it to themselves (the switch to WAL, the
 * schema), and SQLite answers one of them SQLITE_BUSY at once instead of calling its busy handler, which could
 * deadlock them (sqlite3_busy_handler's documentation: the application should retry). Two workers started together
 * on a new file failed so ("database is locked") on a loaded machine.
 */
function untilNotBusy<T>(ms: number, step: () => T): T {
  const deadline = Date.now() + ms;
  for (let pause = 5; ; pause = Math.min(2 * pause, 100)) {
    try {
      return step();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY') || Date.now() + pause > deadline) throw error;
      Atomics.wait(PAUSE, 0, 0, pause);
    }
  }
}

/**
 * A group commit stops taking writes once its transaction has held the write lock this long; the rest go in the
 * next one. Every other process waits while the lock is held: a producer that calls delay() 50,000 times in one
 * turn would otherwise hold it for seconds (1.8 s measured on a loaded 2-core machine), past the busy timeout.
 */
const MAX_HOLD_MS = 20;

/**
 * Writes asked for in one turn wait for its end to be committed together, unless those waiting carry this many
 * bytes (the `bytes` a writer says it brings): then they are committed at once. A producer that sends eight 6.7 MB
 * messages in one turn (a chord's header) otherwise made the workers wait for all eight before the first was
 * visible, and held the write lock while it wrote them all.
 */
const EARLY_COMMIT_BYTES = 1024 * 1024;

/** When, after a change seen by the file watcher that showed no commit yet, the file is looked at again (ms; SqliteFile.changedElsewhere). */
const RECHECK_MS: readonly number[] = [2, 20];

/** How long a statement waits for another process's lock when no connectTimeoutMs is given (the app's default). */
const BUSY_TIMEOUT_MS = 5000;

/** Turns a SQLite error into a BrokerUnavailableError that says what to do. */
export function translateSqliteError(url: string, error: unknown, busyTimeoutMs = BUSY_TIMEOUT_MS): Error {
  const code = (error as { code?: string }).code ?? '';
  const message = (error as Error).message ?? String(error);
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new BrokerUnavailableError(url, `database is locked by another process (waited ${busyTimeoutMs} ms, connectTimeoutMs)`, { cause: error });
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new BrokerUnavailableError(url, 'the file is not a SQLite database or is corrupt; point FENNEL_BROKER_URL at another file', { cause: error });
  }
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_PERM') || code.startsWith('SQLITE_IOERR')) {
    return new BrokerUnavailableError(url, `cannot open or write the database file (${message})`, { cause: error });
  }
  if (code.startsWith('SQLITE_')) return new BrokerUnavailableError(url, message, { cause: error });
  return error instanceof Error ? error : new Error(message);
}

/**
 * A write that another component of this process runs inside its own transaction on the same file: a delivery's ack,
 * taken in the transaction that stores the task's outcome (Delivery.joinableAck, ResultBackend.settleAndAck). `file`
 * is the handle it must join; `run` is the write, synchronous, inside that transaction; `committed` is called once
 * that transaction has committed.
 */
export interface JoinableWrite {
  readonly file: SqliteFile;
  run(): void;
  committed(): void;
}

export class SqliteFile {
  private static readonly open = new Map<string, SqliteFile>();

  readonly db: Database.Database;
  private refs = 0;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  /** The next look after a change seen by the watcher that showed no commit yet (changedElsewhere). */
  private recheck: NodeJS.Timeout | undefined;
  /** `PRAGMA data_version` when the watcher last woke the listeners. */
  private watchedVersion = -1;
  private readonly listeners = new Set<() => void>();
  private wakePending = false;
  /** Commits made by this process, so a reader can tell "nothing changed" without a query. */
  localCommits = 0;
  /** Runs a function in a transaction, or in a savepoint when already inside one (better-sqlite3 nests). */
  private readonly atomically: Database.Transaction<(fn: () => unknown) => unknown>;
  private readonly dataVersion: Database.Statement;
  /** The bytes the pending writes said they bring (write's `bytes`). */
  private pendingBytes = 0;
  private flushing = false;
  private pending: Array<{ fn: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void; quiet: boolean }> = [];

  /**
   * Opens (or shares this process's open handle of) the database at `path`. Call `release()` when done.
   * `busyTimeoutMs` (the app's connectTimeoutMs) bounds how long a statement waits for another process's lock;
   * the first opener's value holds for the handle it shares.
   */
  static acquire(path: string, url: string, options: { busyTimeoutMs?: number | undefined } = {}): SqliteFile {
    const full = path === ':memory:' ? path : resolve(path);
    let file = SqliteFile.open.get(full);
    if (!file) {
      file = new SqliteFile(full, url, options.busyTimeoutMs ?? BUSY_TIMEOUT_MS);
      SqliteFile.open.set(full, file);
    }
    file.refs++;
    return file;
  }

  private constructor(
    readonly path: string,
    readonly url: string,
    readonly busyTimeoutMs: number,
  ) {
    if (path !== ':memory:') {
      // A directory that cannot be made (a file in the way, no permission) is the URL's fault, known at once:
      // a ConfigError naming the directory and why, not a stack trace from the first statement.
      try {
        mkdirSync(dirname(path), { recursive: true });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        const reason = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (error as Error).message;
        throw new ConfigError(`${url}: the directory ${dirname(path)} cannot be created (${reason}); point the URL at a file in a writable directory`, { cause: error });
      }
    }
    try {
      this.db = new Database(path, { timeout: busyTimeoutMs });
      const db = this.db;
      untilNotBusy(busyTimeoutMs, () => db.pragma('journal_mode = WAL'));
      // NORMAL under WAL is durable against a crashed process (what at-least-once needs here);
      // only an OS crash or power loss can drop the last commits.
      this.db.pragma('synchronous = NORMAL');
      untilNotBusy(busyTimeoutMs, () => ensureSchema(db));
      this.atomically = this.db.transaction((fn: () => unknown) => fn());
      this.dataVersion = this.db.prepare('PRAGMA data_version').pluck();
    } catch (error) {
      throw translateSqliteError(url, error, busyTimeoutMs);
    }
  }

  /** Runs `fn` with SQLite errors translated. */
  run<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw translateSqliteError(this.url, error, this.busyTimeoutMs);
    }
  }

  /**
   * Group commit: runs `fn` in the next write transaction, together with every other write asked for in
   * the same turn of the event loop (acks and result stores from many finishing tasks, say). Each `fn` runs
   * in its own savepoint, so one failing write rejects only its own caller. Resolves after the commit.
   * `quiet` writes (claims) do not wake this process's listeners.
   */
  write<T>(fn: () => T, options: { quiet?: boolean; bytes?: number } = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ fn, resolve: resolve as (value: unknown) => void, reject, quiet: options.quiet ?? false });
      this.pendingBytes += options.bytes ?? 0;
      // Not from inside a transaction being written (a write asked for by a write's own fn): that commits later.
      if (this.pendingBytes >= EARLY_COMMIT_BYTES && !this.flushing) this.flush();
      else if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    if (this.pending.length === 0) return; // drained by release()
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.flushing = true;
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      if (batch.length === 1) {
        // One write: its own transaction, rolled back whole if it throws.
        try {
          outcomes.push({ ok: true, value: this.atomically.immediate(batch[0]!.fn) });
        } catch (error) {
          outcomes.push({ ok: false, error });
        }
      } else {
        this.atomically.immediate(() => {
          const start = performance.now();
          for (const item of batch) {
            if (outcomes.length > 0 && performance.now() - start > MAX_HOLD_MS) break;
            try {
              outcomes.push({ ok: true, value: this.atomically(item.fn) }); // nested: a savepoint
            } catch (error) {
              outcomes.push({ ok: false, error });
            }
          }
        });
      }
    } catch (error) {
      for (const item of batch) item.reject(translateSqliteError(this.url, error, this.busyTimeoutMs));
      return;
    } finally {
      this.flushing = false;
    }
    // Writes left out by MAX_HOLD_MS go first in the next transaction, on the next turn, so call order holds.
    if (outcomes.length < batch.length) {
      this.pending = [...batch.splice(outcomes.length), ...this.pending];
      setImmediate(() => this.flush());
    }
    // A batch of quiet writes (claims) wakes no one here: waking this process's own consumers after
    // their own claim would make them claim again, in a loop.
    if (batch.some((item) => !item.quiet)) {
      this.localCommits++;
      this.notify();
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(translateSqliteError(this.url, outcome.error, this.busyTimeoutMs));
    });
  }

  /**
   * A number that changes whenever any process has committed since the last call (SQLite's data_version
   * counts other connections' commits; localCommits counts this one's).
   */
  version(): string {
    return `${this.dataVersion.get() as number}:${this.localCommits}`;
  }

  /** Calls `listener` (coalesced) whenever any process may have committed a change. Returns an unsubscribe. */
  onChange(listener: () => void, fallbackPollMs: number): () => void {
    this.listeners.add(listener);
    this.startWatching(fallbackPollMs);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopWatching();
    };
  }

  /** Wakes this process's listeners after a local commit, without waiting for the file watcher. */
  notify(): void {
    if (this.wakePending || this.listeners.size === 0) return;
    this.wakePending = true;
    setImmediate(() => {
      this.wakePending = false;
      for (const listener of this.listeners) listener();
    });
  }

  private startWatching(fallbackPollMs: number): void {
    if (this.poll) return;
    this.poll = setInterval(() => this.notify(), fallbackPollMs);
    this.poll.unref();
    if (this.path === ':memory:' || !existsSync(dirname(this.path))) return;
    const wal = `${basename(this.path)}-wal`;
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, (_event, name) => {
        if (name === wal) this.changedElsewhere();
      });
      this.watcher.on('error', () => this.stopWatcherOnly());
    } catch {
      // No inotify here (or too many watches): the fallback poll still delivers, only slower.
    }
  }

  /**
   * The -wal file was written: by another process's commit, or by this process (its own commits, which notify
   * directly, and its claims, which must not wake its own consumers). Listeners are woken only if another connection
   * has committed since the watcher last woke them (`PRAGMA data_version`, one cheap read). inotify reports the write
   * of a commit's frames, and the commit becomes visible a moment later, when the writer updates the WAL index (shared
   * memory, which inotify does not see): so when nothing has moved yet, the file is looked at again RECHECK_MS later.
   * Without the later looks a waiter slept until the fallback poll (250 ms): with a worker's store and ack in one
   * commit, 1 round trip in 10.
   */
  private changedElsewhere(): void {
    clearTimeout(this.recheck);
    this.recheck = undefined;
    if (this.committedElsewhere()) this.notify();
    else this.lookAgain(0);
  }

  private lookAgain(step: number): void {
    if (step >= RECHECK_MS.length) return;
    this.recheck = setTimeout(
      () => {
        this.recheck = undefined;
        if (this.committedElsewhere()) this.notify();
        else this.lookAgain(step + 1);
      },
      RECHECK_MS[step]! - (RECHECK_MS[step - 1] ?? 0),
    );
    this.recheck.unref();
  }

  /** True if another connection has committed since the last time this said so. */
  private committedElsewhere(): boolean {
    let version: number;
    try {
      version = this.dataVersion.get() as number;
    } catch {
      return true; // cannot tell (the file is gone or closing): let the listeners look
    }
    if (version === this.watchedVersion) return false;
    this.watchedVersion = version;
    return true;
  }

  private stopWatcherOnly(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private stopWatching(): void {
    this.stopWatcherOnly();
    clearTimeout(this.recheck);
    this.recheck = undefined;
    clearInterval(this.poll);
    this.poll = undefined;
  }

  release(): void {
    if (--this.refs > 0) return;
    this.stopWatching();
    SqliteFile.open.delete(this.path);
    // Writes asked for before the close are committed, not failed: those a bounded group commit left for a
    // later turn included.
    while (this.pending.length > 0) this.flush();
    this.db.close();
  }
}

/**
 * `sqlite://fennel.db` → `fennel.db` (relative to the working directory); `sqlite:///abs/path.db` →
 * `/abs/path.db`; `sqlite://:memory:`; a bare `sqlite://` is `fennel.db`. The rest of the URL is the path, as
 * written (no host, no %-decoding). No query parameter is read, so any is refused rather than ignored
 * (`?mode=ro` would not make the file read-only).
 */
export function sqlitePath(url: string): string {
  if (!/^sqlite:\/\//i.test(url)) throw new ConfigError(`${url} is not a SQLite URL: it starts with sqlite://`);
  const rest = url.slice('sqlite://'.length);
  const q = rest.indexOf('?');
  if (q >= 0) checkQuery({ scheme: 'sqlite', masked: url, query: new URLSearchParams(rest.slice(q + 1)) }, []);
  const path = q < 0 ? rest : rest.slice(0, q);
  return path === '' ? 'fennel.db' : path;
}
