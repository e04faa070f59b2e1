// Live-consumer presence on sqlite:// (the transport's announceConsumer / withdrawConsumer / consumers): the
// table `fennel_consumers (queue, consumer, expires_at)` of the shared file (sqlite-file.ts SCHEMA). A worker's
// announcement is one upsert per queue, in the group commit with its other writes of that turn (its heartbeat
// event, say); a row past expires_at belongs to a worker that died without withdrawing, and is deleted by the
// next announcement once a minute has passed since this process last did so. Reads filter by expiry, so they
// are right without the pruning.

import type Database from 'better-sqlite3';
import type { SqliteFile } from '../clients/sqlite-file.ts';

const PRUNE_EVERY_MS = 60_000;

interface Statements {
  upsert: Database.Statement;
  remove: Database.Statement;
  prune: Database.Statement;
  pruneCopies: Database.Statement;
  live: Database.Statement;
  /** When this handle may prune next. */
  nextPrune: number;
}

const prepared = new WeakMap<Database.Database, Statements>();

function sql(file: SqliteFile): Statements {
  let s = prepared.get(file.db);
  if (!s) {
    const db = file.db;
    s = file.run(() => ({
      upsert: db.prepare('INSERT INTO fennel_consumers (queue, consumer, expires_at) VALUES (?, ?, ?) ON CONFLICT (queue, consumer) DO UPDATE SET expires_at = excluded.expires_at'),
      remove: db.prepare('DELETE FROM fennel_consumers WHERE queue = ? AND consumer = ?'),
      prune: db.prepare('DELETE FROM fennel_consumers WHERE expires_at <= ?'),
      // The broadcast copies made for consumers that are gone, before their presence is: their copy queues are
      // `bcast.<queue>.<consumer>` (protocol/queues.ts broadcastCopyQueue); nobody will consume them again.
      pruneCopies: db.prepare(
        "DELETE FROM fennel_messages WHERE queue IN (SELECT 'bcast.' || queue || '.' || consumer FROM fennel_consumers WHERE expires_at <= ?) AND (lease IS NULL OR visible_at <= ?)",
      ),
      live: db.prepare('SELECT queue, consumer FROM fennel_consumers WHERE expires_at > ?').raw(),
      nextPrune: 0,
    }));
    prepared.set(db, s);
  }
  return s;
}

export async function announceConsumer(file: SqliteFile, consumer: string, queues: readonly string[], ttlSec: number): Promise<void> {
  if (queues.length === 0) return;
  const s = sql(file);
  // quiet: nobody in this process waits for a presence row, so the commit wakes no consumer or result waiter here.
  await file.write(
    () => {
      const now = Date.now();
      const expiresAt = Math.round(now + ttlSec * 1000);
      for (const queue of queues) s.upsert.run(queue, consumer, expiresAt);
      if (now >= s.nextPrune) {
        s.nextPrune = now + PRUNE_EVERY_MS;
        s.pruneCopies.run(now, now);
        s.prune.run(now);
      }
    },
    { quiet: true },
  );
}

export async function withdrawConsumer(file: SqliteFile, consumer: string, queues: readonly string[]): Promise<void> {
  if (queues.length === 0) return;
  const s = sql(file);
  await file.write(
    () => {
      for (const queue of queues) s.remove.run(queue, consumer);
    },
    { quiet: true },
  );
}

/** The live (queue, consumer) rows. */
export function liveConsumers(file: SqliteFile): Array<[string, string]> {
  const s = sql(file);
  return file.run(() => s.live.all(Date.now()) as Array<[string, string]>);
}
