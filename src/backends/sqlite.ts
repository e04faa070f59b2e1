// sqlite://path — the embedded result backend, in the same file as the sqlite transport.
// Each store is one upsert that never overwrites a SUCCESS and stamps the row with the next `seq`; waiters
// keep a cursor and, when the file changes, read only rows newer than it, so the cost of a wake is the
// number of new results, not the number of waiters.

import { decodeMeta, encodeMeta, type TaskMeta } from '../protocol/result.ts';
import { isReady, States } from '../protocol/states.ts';
import { SqliteFile, sqlitePath, type JoinableWrite } from '../clients/sqlite-file.ts';
import { decodeJson } from '../protocol/json.ts';
import type { ChordJoin, Lease, ParkOutcome, ReleasedCall, ResultBackend, Revocation, WaitOptions } from './backend.ts';
import { Waiters } from './waiters.ts';

export interface SqliteBackendOptions {
  /** Results older than this are deleted (Celery's `result_expires`). 0 keeps them for ever. */
  resultExpiresSec?: number;
  pollIntervalMs?: number;
  /** How long a statement waits for another process's lock before it fails with BrokerUnavailableError. */
  connectTimeoutMs?: number;
}

export class SqliteBackend implements ResultBackend {
  private readonly file: SqliteFile;
  private readonly sql;
  private readonly waiters = new Waiters(() => this.stopWatching());
  private cursor = 0;
  private seenVersion = '';
  private unsubscribe: (() => void) | undefined;
  private lastExpiry = 0;
  private readonly expiresMs: number;
  private readonly pollMs: number;

  constructor(
    readonly url: string,
    options: SqliteBackendOptions = {},
  ) {
    this.expiresMs = (options.resultExpiresSec ?? 86_400) * 1000;
    this.pollMs = options.pollIntervalMs ?? 250;
    this.file = SqliteFile.acquire(sqlitePath(url), url, { busyTimeoutMs: options.connectTimeoutMs });
    const db = this.file.db;
    this.sql = this.file.run(() => ({
      // keep_until: NULL for a task's outcome (it expires with the results), a time for app.put's pinned objects.
      store: db.prepare(
        `INSERT INTO fennel_results (task_id, status, meta, seq, updated_at, keep_until)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (task_id) DO UPDATE SET status = excluded.status, meta = excluded.meta,
           seq = excluded.seq, updated_at = excluded.updated_at, keep_until = excluded.keep_until
         WHERE fennel_results.status <> 'SUCCESS'`,
      ),
      get: db.prepare('SELECT meta FROM fennel_results WHERE task_id = ?'),
      nextSeq: db.prepare("UPDATE fennel_counters SET value = value + 1 WHERE name = 'result_seq' RETURNING value"),
      maxSeq: db.prepare("SELECT value AS seq FROM fennel_counters WHERE name = 'result_seq'"),
      since: db.prepare('SELECT task_id, status, seq FROM fennel_results WHERE seq > ? ORDER BY seq'),
      forget: db.prepare('DELETE FROM fennel_results WHERE task_id = ?'),
      expire: db.prepare('DELETE FROM fennel_results WHERE updated_at < ? AND keep_until IS NULL'),
      expireKept: db.prepare('DELETE FROM fennel_results WHERE keep_until < ?'),
      counts: db.prepare('SELECT status, COUNT(*) AS n FROM fennel_results GROUP BY status'),
      chordPart: db.prepare('INSERT OR IGNORE INTO fennel_chord_parts (group_id, idx, result, created_at) VALUES (?, ?, ?, ?)'),
      chordParts: db.prepare('SELECT result FROM fennel_chord_parts WHERE group_id = ? ORDER BY idx'),
      chordCount: db.prepare('SELECT COUNT(*) AS n FROM fennel_chord_parts WHERE group_id = ?'),
      claim: db.prepare('INSERT OR IGNORE INTO fennel_claims (key, created_at) VALUES (?, ?)'),
      expireJoins: db.prepare('DELETE FROM fennel_chord_parts WHERE created_at < ?'),
      expireClaims: db.prepare('DELETE FROM fennel_claims WHERE created_at < ?'),
      revoke: db.prepare('INSERT INTO fennel_revoked (task_id, terminate, expires_at) VALUES (?, ?, ?)'),
      pruneRevoked: db.prepare('DELETE FROM fennel_revoked WHERE expires_at < ?'),
      // Taken when free, lapsed or already the holder's; RETURNING gives nothing when another holds it.
      takeLease: db.prepare(
        `INSERT INTO fennel_leases (name, holder, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE fennel_leases.holder = excluded.holder OR fennel_leases.expires_at <= ?`,
      ),
      readLease: db.prepare('SELECT holder, expires_at FROM fennel_leases WHERE name = ? AND expires_at > ?'),
      releaseLease: db.prepare('DELETE FROM fennel_leases WHERE name = ? AND holder = ?'),
      putRecord: db.prepare('INSERT INTO fennel_records (tbl, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at'),
      readRecords: db.prepare('SELECT key, value FROM fennel_records WHERE tbl = ?'),
      deleteRecord: db.prepare('DELETE FROM fennel_records WHERE tbl = ? AND key = ?'),
      status: db.prepare('SELECT status FROM fennel_results WHERE task_id = ?'),
      isParked: db.prepare('SELECT 1 FROM fennel_parked WHERE task_id = ?'),
      park: db.prepare('INSERT INTO fennel_parked (task_id, call, created_at) VALUES (?, ?, ?)'),
      wait: db.prepare('INSERT OR IGNORE INTO fennel_waits (input, task_id) VALUES (?, ?)'),
      releasedBy: db.prepare('SELECT task_id, call, status FROM fennel_parked WHERE released_by = ?'),
      waitingOn: db.prepare('DELETE FROM fennel_waits WHERE input = ? RETURNING task_id'),
      // released_by alone first: the call (its message, 100 kB for a fan-in of 1,000) is read only on release.
      parkedState: db.prepare('SELECT released_by FROM fennel_parked WHERE task_id = ?'),
      parkedCall: db.prepare('SELECT call FROM fennel_parked WHERE task_id = ?').pluck(),
      stillWaiting: db.prepare('SELECT 1 FROM fennel_waits WHERE task_id = ? LIMIT 1'),
      release: db.prepare('UPDATE fennel_parked SET released_by = ?, status = ? WHERE task_id = ?'),
      expireParked: db.prepare('DELETE FROM fennel_parked WHERE created_at < ?'),
      expireWaits: db.prepare('DELETE FROM fennel_waits WHERE task_id NOT IN (SELECT task_id FROM fennel_parked)'),
      revokedSince: db.prepare('SELECT seq, task_id, terminate, expires_at FROM fennel_revoked WHERE seq > ? AND expires_at > ? ORDER BY seq'),
    }));
  }

  async store(meta: TaskMeta): Promise<void> {
    await this.write(meta, false);
  }

  async settle(meta: TaskMeta): Promise<ReleasedCall[]> {
    return this.write(meta, true);
  }

  async settleAndAck(meta: TaskMeta, ack: JoinableWrite): Promise<{ released: ReleasedCall[]; acked: boolean }> {
    // Another file (results kept apart from the broker): two transactions, as settle then ack.
    if (ack.file !== this.file) return { released: await this.write(meta, true), acked: false };
    let acked = false;
    const released = await this.write(meta, true, null, (calls) => {
      if (calls.length > 0) return;
      ack.run();
      acked = true;
    });
    if (acked) ack.committed();
    return { released, acked };
  }

  async storeFor(meta: TaskMeta, ttlSec: number): Promise<void> {
    // 0 keeps it until it is forgotten: a time no clock reaches.
    await this.write(meta, false, ttlSec === 0 ? Number.MAX_SAFE_INTEGER : Date.now() + ttlSec * 1000);
  }

  /**
   * One store, and with `release` the calls it releases, in the same transaction of the group commit. `keepUntil`:
   * kept until then (ms since epoch) rather than for the results' expiry. `then`: run in the same savepoint after the
   * store, with the calls it released (settleAndAck's ack).
   */
  private async write(meta: TaskMeta, release: boolean, keepUntil: number | null = null, then?: (released: ReleasedCall[]) => void): Promise<ReleasedCall[]> {
    const text = encodeMeta(meta);
    const now = Date.now();
    const released = await this.file.write(() => {
      const seq = (this.sql.nextSeq.get() as { value: number }).value;
      this.sql.store.run(meta.task_id, meta.status, text, seq, now, keepUntil);
      const calls = release && isReady(meta.status) ? this.releaseOn(meta.task_id) : [];
      then?.(calls);
      return calls;
    });
    // Once a minute, by whichever process stores: pinned objects past their time, and (unless results are kept for
    // ever) results, joins, claims and parked calls past the results' expiry.
    if (now - this.lastExpiry > 60_000) {
      this.lastExpiry = now;
      this.file.run(() => {
        this.sql.expireKept.run(now);
        if (this.expiresMs === 0) return;
        this.sql.expire.run(now - this.expiresMs);
        this.sql.expireJoins.run(now - this.expiresMs);
        this.sql.expireClaims.run(now - this.expiresMs);
        this.sql.expireParked.run(now - this.expiresMs);
        this.sql.expireWaits.run();
      });
    }
    return released;
  }

  /**
   * Inside the store's transaction: the calls the outcome of `input` (stored just now) releases. Two indexed
   * lookups for a task nothing waits on, which is nearly every task.
   */
  private releaseOn(input: string): ReleasedCall[] {
    const released: ReleasedCall[] = (this.sql.releasedBy.all(input) as Array<{ task_id: string; call: string; status: string }>).map((row) => ({ taskId: row.task_id, callJson: row.call, input, status: row.status, again: true }));
    const waiting = this.sql.waitingOn.all(input) as Array<{ task_id: string }>;
    if (waiting.length === 0) return released;
    // The outcome that stands: a SUCCESS stored before is kept over a later one.
    const status = (this.sql.status.get(input) as { status: string }).status;
    for (const { task_id: taskId } of waiting) {
      const state = this.sql.parkedState.get(taskId) as { released_by: string | null } | undefined;
      if (!state || state.released_by !== null) continue;
      if (status === States.SUCCESS && this.sql.stillWaiting.get(taskId)) continue;
      this.sql.release.run(input, status, taskId);
      released.push({ taskId, callJson: this.sql.parkedCall.get(taskId) as string, input, status, again: false });
    }
    return released;
  }

  async park(taskId: string, inputs: readonly string[], callJson: string): Promise<ParkOutcome> {
    // One transaction with the inputs' states: an outcome stored after it finds the wait rows (settle), one stored
    // before is read here, so no release is missed.
    return this.file.write((): ParkOutcome => {
      if (this.sql.isParked.get(taskId)) return { ready: false };
      const waiting: string[] = [];
      for (const input of inputs) {
        const status = (this.sql.status.get(input) as { status: string } | undefined)?.status;
        if (status === undefined || !isReady(status)) waiting.push(input);
        else if (status !== States.SUCCESS) return { ready: false, failed: { input, status } };
      }
      if (waiting.length === 0) return { ready: true };
      this.sql.park.run(taskId, callJson, Date.now());
      for (const input of waiting) this.sql.wait.run(input, taskId);
      return { ready: false };
    });
  }

  async get(taskId: string): Promise<TaskMeta | undefined> {
    return this.read(taskId);
  }

  wait(taskId: string, options: WaitOptions): Promise<TaskMeta | undefined> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    // Everything up to registering the waiter is synchronous, so no store can slip between the cursor,
    // the first look and the registration: a result committed after the look has seq > cursor.
    if (this.waiters.size === 0) this.cursor = this.file.run(() => (this.sql.maxSeq.get() as { seq: number }).seq);
    const current = this.read(taskId);
    if (current && isReady(current.status)) return Promise.resolve(current);
    const waiting = this.waiters.add(taskId, options);
    this.unsubscribe ??= this.file.onChange(() => this.check(), this.pollMs);
    return waiting;
  }

  private read(taskId: string): TaskMeta | undefined {
    const row = this.file.run(() => this.sql.get.get(taskId) as { meta: string } | undefined);
    return row ? decodeMeta(row.meta) : undefined;
  }

  /** Reads the results stored since the cursor and wakes the waiters of those that are ready. */
  private check(): void {
    if (this.waiters.size === 0) return;
    // Every write to the -wal file (claims and acks included) wakes us; most change no result we wait for.
    const version = this.file.version();
    if (version === this.seenVersion) return;
    this.seenVersion = version;
    let rows: Array<{ task_id: string; status: string; seq: number }>;
    try {
      rows = this.file.run(() => this.sql.since.all(this.cursor) as typeof rows);
    } catch {
      return; // busy: the next change or poll tries again
    }
    for (const row of rows) {
      this.cursor = row.seq;
      if (!isReady(row.status)) continue;
      if (!this.waiters.has(row.task_id)) continue;
      let meta: TaskMeta | undefined;
      try {
        meta = this.read(row.task_id); // undefined if another process forgot it in between
      } catch {
        continue; // an undecodable row must not crash the process from a file-change callback
      }
      if (meta) this.waiters.wake(row.task_id, meta);
    }
  }

  private stopWatching(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  async chordJoin(groupId: string, index: number, size: number, resultJson: string, withResults = true): Promise<ChordJoin> {
    // One transaction: the insert, the count and (for the completing call) the read, so exactly one member
    // sees the count reach the size with its own insert.
    return this.file.write(() => {
      const inserted = this.sql.chordPart.run(groupId, index, resultJson, Date.now()).changes === 1;
      const count = (this.sql.chordCount.get(groupId) as { n: number }).n;
      if (count < size) return { complete: false, first: false, results: [] };
      return { complete: true, first: inserted && count === size, results: withResults ? this.readChordParts(groupId) : [] };
    });
  }

  async chordResults(groupId: string, size: number): Promise<unknown[] | undefined> {
    const results = this.file.run(() => this.readChordParts(groupId));
    return results.length >= size ? results : undefined;
  }

  private readChordParts(groupId: string): unknown[] {
    return (this.sql.chordParts.all(groupId) as Array<{ result: string }>).map((r) => decodeJson(r.result));
  }

  async claimOnce(key: string): Promise<boolean> {
    return this.file.write(() => this.sql.claim.run(key, Date.now()).changes === 1);
  }

  async revoke(revocation: Revocation): Promise<void> {
    const now = Date.now();
    await this.file.write(() => {
      this.sql.pruneRevoked.run(now);
      this.sql.revoke.run(revocation.taskId, revocation.terminate ? 1 : 0, revocation.expiresAt.getTime());
    });
  }

  async watchRevocations(onRevoke: (revocation: Revocation) => void): Promise<() => Promise<void>> {
    let cursor = 0;
    const read = (): void => {
      let rows: Array<{ seq: number; task_id: string; terminate: number; expires_at: number }>;
      try {
        rows = this.file.run(() => this.sql.revokedSince.all(cursor, Date.now()) as typeof rows);
      } catch {
        return; // busy: the next change or poll reads them
      }
      for (const row of rows) {
        cursor = row.seq;
        onRevoke({ taskId: row.task_id, terminate: row.terminate === 1, expiresAt: new Date(row.expires_at) });
      }
    };
    read();
    const unsubscribe = this.file.onChange(read, this.pollMs);
    return async () => unsubscribe();
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease> {
    return this.file.write(() => {
      const now = Date.now();
      this.sql.takeLease.run(name, holder, now + ttlMs, now);
      const row = this.sql.readLease.get(name, now) as { holder: string; expires_at: number };
      return { holder: row.holder, expiresAt: new Date(row.expires_at) };
    });
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.file.write(() => void this.sql.releaseLease.run(name, holder));
  }

  async readLease(name: string): Promise<Lease | undefined> {
    const row = this.file.run(() => this.sql.readLease.get(name, Date.now()) as { holder: string; expires_at: number } | undefined);
    return row ? { holder: row.holder, expiresAt: new Date(row.expires_at) } : undefined;
  }

  async putRecord(table: string, key: string, json: string): Promise<void> {
    await this.file.write(() => void this.sql.putRecord.run(table, key, json, Date.now()));
  }

  async deleteRecord(table: string, key: string): Promise<void> {
    await this.file.write(() => void this.sql.deleteRecord.run(table, key));
  }

  async readRecords(table: string): Promise<Map<string, string>> {
    const rows = this.file.run(() => this.sql.readRecords.all(table) as Array<{ key: string; value: string }>);
    return new Map(rows.map((r) => [r.key, r.value]));
  }

  async forget(taskId: string): Promise<void> {
    this.file.run(() => this.sql.forget.run(taskId));
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = this.file.run(() => this.sql.counts.all() as Array<{ status: string; n: number }>);
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  async close(): Promise<void> {
    this.waiters.wakeAll();
    this.stopWatching();
    this.file.release();
  }
}
