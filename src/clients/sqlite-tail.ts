// Following an append-only table of the shared SQLite file from its newest row on: what the sqlite:// event bus
// (events/sqlite.ts) and channels (channels/sqlite.ts) both do. A follower keeps an id cursor and reads the rows
// past it when woken: by any process's commit (SqliteFile.onChange watches the `-wal` file, with a fallback poll),
// or at once by wakeFollowers() after a quiet commit in this process. Quiet, because a commit that is not work
// must not wake the transport's consumers, which would look for messages that are not there.
// The table's id must be AUTOINCREMENT: ids are never reused, so a cursor stays valid after old rows are deleted
// (a plain rowid table would hand out id 1 again once it is empty, behind every cursor).

import type { SqliteFile } from './sqlite-file.ts';

/** Rows read per query while catching up, so one wake-up never holds the event loop long. */
const READ_BATCH = 500;

export interface FollowOptions<Row extends { id: number }> {
  /** The rows with id > `cursor`, in id order, at most `limit` of them. */
  read(cursor: number, limit: number): Row[];
  /** Each batch, in order. An error it throws is its own: the follower carries on. */
  deliver(rows: Row[]): void;
  /** How often to look without a wake-up (the app's pollIntervalMs), where the file watcher is unavailable. */
  pollIntervalMs: number;
}

interface Follower {
  readonly table: string;
  wake(): void;
}

/** The followers of this process, by file: a quiet commit to a table wakes the followers of that table. */
const followersOnFile = new Map<SqliteFile, Set<Follower>>();

/** The newest id `table` has ever handed out (0 if none): where a follower starts. */
export function lastRowId(file: SqliteFile, table: string): number {
  return file.run(() => (file.db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').pluck().get(table) as number | undefined) ?? 0);
}

/**
 * Follows `table` from the newest row committed so far: rows committed later, by any process, are delivered in
 * id order (commit order: SQLite has one writer). Returns the stop. Throws BrokerUnavailableError if the file
 * cannot be read now.
 */
export function followTable<Row extends { id: number }>(file: SqliteFile, table: string, options: FollowOptions<Row>): () => void {
  let cursor = lastRowId(file, table);
  let stopped = false;
  let reading = false;
  const follower: Follower = {
    table,
    wake(): void {
      if (stopped || reading) return;
      let rows: Row[];
      try {
        rows = file.run(() => options.read(cursor, READ_BATCH));
      } catch {
        return; // locked or closing: the next wake-up reads again from the same cursor
      }
      if (rows.length === 0) return;
      cursor = rows[rows.length - 1]!.id;
      try {
        options.deliver(rows);
      } catch {
        // the receiver's bug; the rows are behind the cursor now, and the follower goes on
      }
      if (rows.length === READ_BATCH) {
        // More to read: yield to the event loop between batches.
        reading = true;
        setImmediate(() => {
          reading = false;
          follower.wake();
        });
      }
    },
  };
  let siblings = followersOnFile.get(file);
  if (!siblings) followersOnFile.set(file, (siblings = new Set()));
  siblings.add(follower);
  const stopChange = file.onChange(() => follower.wake(), options.pollIntervalMs);
  return () => {
    if (stopped) return;
    stopped = true;
    stopChange();
    const set = followersOnFile.get(file);
    set?.delete(follower);
    if (set?.size === 0) followersOnFile.delete(file);
  };
}

/** Wakes this process's followers of `table` on `file` at once, after a quiet commit to it by this process. */
export function wakeFollowers(file: SqliteFile, table: string): void {
  for (const follower of followersOnFile.get(file) ?? []) if (follower.table === table) follower.wake();
}
