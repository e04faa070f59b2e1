// Runs the transport and backend conformance suites against the sqlite:// engines. Every factory call
// opens a fresh database file in its own temp directory (removed when this file's tests end).
//
// A second instance on the same file must use its own connection to test anything: within one process,
// SqliteFile shares a single handle per resolved path. So `reopen`/`peer` open the file through a symlink,
// which SQLite resolves to the same database (one WAL, one lock) while SqliteFile sees another path.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { symlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { ResultBackend } from '../../src/backends/backend.ts';
import { SqliteBackend } from '../../src/backends/sqlite.ts';
import { SqliteTransport } from '../../src/transports/sqlite.ts';
import { SqliteFile, sqlitePath } from '../../src/clients/sqlite-file.ts';
import type { Delivery, Transport } from '../../src/transports/transport.ts';
import type { WireMessage } from '../../src/protocol/message.ts';
import { tempDirsForFile } from '../support/tmp.ts';
import { backendSuite } from './backend.suite.ts';
import { transportSuite, type TransportOpenOptions } from './transport.suite.ts';

const POLL_MS = 100;
const tempDir = tempDirsForFile('fennel-sqlite-conformance-');

function freshUrl(): string {
  return `sqlite://${tempDir().file('fennel.db')}`;
}

/** A URL naming the same database file by another path (a symlink beside it), so it gets its own connection. */
function otherPathTo(url: string): string {
  const path = sqlitePath(url);
  const link = `${path}.second-${randomUUID()}.db`;
  symlinkSync(path, link);
  return `sqlite://${link}`;
}

function openTransport(url: string, opts: TransportOpenOptions): SqliteTransport {
  return new SqliteTransport(url, { visibilityTimeoutSec: opts.visibilityTimeoutSec, pollIntervalMs: POLL_MS });
}

transportSuite('sqlite', (opts) => openTransport(freshUrl(), opts), { delayedDelivery: true, priorities: true, crossProcess: true, deduplication: true, broadcast: true }, {
  reopen: (transport: Transport, opts) => {
    const second = openTransport(otherPathTo(transport.url), opts);
    assert.notEqual(second.sql.insert.database, (transport as SqliteTransport).sql.insert.database, 'the second transport has its own connection');
    return second;
  },
  presence: 'announced',
});

backendSuite('sqlite', () => new SqliteBackend(freshUrl(), { pollIntervalMs: POLL_MS }), {
  peer: (backend: ResultBackend) => new SqliteBackend(otherPathTo(backend.url), { pollIntervalMs: POLL_MS }),
  expiring: (backend: ResultBackend, resultExpiresSec: number) => new SqliteBackend(otherPathTo(backend.url), { pollIntervalMs: POLL_MS, resultExpiresSec }),
  crossProcess: true,
});

// Every write waits for the lock. Workers, producers and the CLI share the file, so any write may find another
// process inside its transaction (for longer on a loaded machine, when the holder loses the CPU). A write must
// then wait, up to the busy timeout, rather than fail at once: a transaction that reads before it writes
// (a deferred BEGIN) cannot wait when it upgrades, and SQLite answers SQLITE_BUSY immediately.
describe('sqlite: a write while another process holds the write lock', () => {
  const HOLD_MS = 400;

  /** A dead letter on `transport`'s file, made the way a worker makes one: consume, then reject. */
  async function deadLetter(transport: SqliteTransport): Promise<string> {
    const id = randomUUID();
    await transport.publish(message(id), { queue: 'celery' });
    let delivered!: (delivery: Delivery) => void;
    const delivery = new Promise<Delivery>((resolve) => (delivered = resolve));
    const sub = await transport.consume({ queues: ['celery'], prefetch: 1 }, delivered);
    await (await delivery).reject({ requeue: false, reason: 'parked' });
    await sub.cancel();
    const letter = (await transport.listDeadLetters()).find((l) => l.taskId === id);
    assert.ok(letter, 'the rejected message is a dead letter');
    return letter.id;
  }

  const cases: Array<[string, (t: SqliteTransport, b: SqliteBackend, setup: string) => Promise<unknown>, (t: SqliteTransport) => Promise<string>]> = [
    ['requeueDeadLetter', (t, _b, letterId) => t.requeueDeadLetter(letterId), deadLetter],
    ['publish', (t) => t.publish(message(randomUUID()), { queue: 'celery' }), async () => ''],
    ['purge', (t) => t.purge('celery'), async () => ''],
    ['store', (_t, b) => b.store({ status: 'SUCCESS', result: 1, traceback: null, children: [], date_done: null, task_id: randomUUID() }), async () => ''],
    ['forget', (_t, b) => b.forget(randomUUID()), async () => ''],
    ['revoke', (_t, b) => b.revoke({ taskId: randomUUID(), terminate: false, expiresAt: new Date(Date.now() + 60_000) }), async () => ''],
  ];
  for (const [name, write, setup] of cases) {
    it(`${name} waits for the lock and succeeds`, async () => {
      const url = freshUrl();
      const transport = openTransport(url, { visibilityTimeoutSec: 30 });
      const backend = new SqliteBackend(url, { pollIntervalMs: POLL_MS });
      try {
        const prepared = await setup(transport);
        const holder = await holdWriteLock(sqlitePath(url), HOLD_MS);
        assert.ok(holder.stillHeld(), 'the other process holds the write lock as the write starts');
        await write(transport, backend, prepared);
        await holder.released;
      } finally {
        await transport.close();
        await backend.close();
      }
    });
  }
});

// Reads never wait for writers under WAL, and a process that only reads (`fennel status`) takes no write lock: a
// file whose schema is in place is opened without writing to it. `stillHeld()` after the call, true, shows that
// the call returned while the other process still held the lock, so it did not wait for it.
describe('sqlite: opening and reading while another process holds the write lock', () => {
  it('opens a file whose schema is in place, and reads it, without waiting for the lock', async () => {
    const url = freshUrl();
    const first = openTransport(url, { visibilityTimeoutSec: 30 });
    await first.publish(message(randomUUID()), { queue: 'celery' });
    await first.close();
    const holder = await holdWriteLock(sqlitePath(url), 1_000);
    const transport = openTransport(url, { visibilityTimeoutSec: 30 });
    const backend = new SqliteBackend(url, { pollIntervalMs: POLL_MS });
    try {
      assert.deepEqual(await transport.stats(), [{ queue: 'celery', ready: 1, scheduled: 0, unacked: 0 }]);
      assert.deepEqual(await transport.listDeadLetters(), []);
      assert.deepEqual(await backend.countByState(), {});
      assert.ok(holder.stillHeld(), 'opened and read while the other process still held the write lock');
    } finally {
      await transport.close();
      await backend.close();
      await holder.released;
    }
  });
});

// The group commit puts one turn's writes in one transaction, but not for longer than MAX_HOLD_MS (20 ms): every
// other process waits while it holds the lock. A slowWrite alone holds it longer than that.
describe('sqlite: group commit', () => {
  /** `fn`, after holding the lock for 30 ms. */
  const slowWrite =
    <T>(fn: () => T) =>
    (): T => {
      const until = performance.now() + 30;
      while (performance.now() < until) {
        // the transaction is open: the lock is held
      }
      return fn();
    };

  it('splits a turn of slow writes into several transactions, running them in call order', async () => {
    const url = freshUrl();
    const file = SqliteFile.acquire(sqlitePath(url), url);
    try {
      const ran: number[] = [];
      const before = file.localCommits;
      assert.deepEqual(await Promise.all([0, 1, 2].map((n) => file.write(slowWrite(() => (ran.push(n), n))))), [0, 1, 2]);
      assert.deepEqual(ran, [0, 1, 2]);
      assert.equal(file.localCommits - before, 3, 'one transaction each');
    } finally {
      file.release();
    }
  });

  it('commits the writes asked for before the file is released, those left for a later turn included', async () => {
    const url = freshUrl();
    const file = SqliteFile.acquire(sqlitePath(url), url);
    const insert = file.db.prepare('INSERT INTO fennel_claims (key, created_at) VALUES (?, 0)');
    const writes = [0, 1, 2].map((n) => file.write(slowWrite(() => insert.run(`key-${n}`))));
    file.release();
    await Promise.all(writes);
    const db = new Database(sqlitePath(url), { readonly: true });
    try {
      assert.deepEqual(db.prepare('SELECT key FROM fennel_claims ORDER BY key').pluck().all(), ['key-0', 'key-1', 'key-2']);
    } finally {
      db.close();
    }
  });

  it('still puts quick writes of one turn in one transaction', async () => {
    const url = freshUrl();
    const file = SqliteFile.acquire(sqlitePath(url), url);
    try {
      const before = file.localCommits;
      await Promise.all([0, 1, 2].map((n) => file.write(() => n)));
      assert.equal(file.localCommits - before, 1);
    } finally {
      file.release();
    }
  });
});

/** A message as a producer would send it, for rows that only need to exist. */
function message(id: string): WireMessage {
  return {
    headers: { lang: 'js', task: 'test.add', id, retries: 0 },
    properties: { correlation_id: id, reply_to: '', delivery_mode: 2, delivery_info: { exchange: '', routing_key: 'celery' }, priority: 0 },
    body: '[[1,2],{},{}]',
    contentType: 'application/json',
    contentEncoding: 'utf-8',
  };
}

/**
 * Another process takes the write lock on `path` (BEGIN IMMEDIATE) and keeps it for `ms`, as a worker in the
 * middle of a transaction does. Resolves once the lock is taken; `stillHeld()` probes it from a fresh connection.
 */
async function holdWriteLock(path: string, ms: number): Promise<{ released: Promise<void>; stillHeld(): boolean }> {
  const script = `
    const Database = require('better-sqlite3');
    const db = new Database(process.argv[1]);
    db.exec('BEGIN IMMEDIATE');
    process.stdout.write('held\\n');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.argv[2]));
    db.exec('COMMIT');
    db.close();`;
  // From the repository root, where require() finds better-sqlite3.
  const child = spawn(process.execPath, ['-e', script, path, String(ms)], { cwd: resolve(import.meta.dirname, '../..'), stdio: ['ignore', 'pipe', 'inherit'] });
  const released = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    void released.then(() => reject(new Error('the lock holder exited before it took the lock')));
  });
  const probe = (): boolean => {
    const db = new Database(path, { timeout: 0 });
    try {
      db.exec('BEGIN IMMEDIATE');
      db.exec('ROLLBACK');
      return false;
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
      return true;
    } finally {
      db.close();
    }
  };
  return { released, stillHeld: probe };
}

// A file made by an older Fennel is brought up to date on open: schema 6 added fennel_results.keep_until
// (app.put's pinned objects), which CREATE TABLE IF NOT EXISTS cannot add to a table that exists.
it('a schema-5 file gains keep_until on open, keeps its results, and pins objects', async () => {
  const url = freshUrl();
  const path = sqlitePath(url);
  const old = new Database(path);
  old.exec(`CREATE TABLE fennel_results (task_id TEXT PRIMARY KEY, status TEXT NOT NULL, meta TEXT NOT NULL, seq INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE TABLE fennel_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO fennel_counters VALUES ('result_seq', 1);`);
  const kept = randomUUID();
  old.prepare('INSERT INTO fennel_results VALUES (?, ?, ?, 1, ?)').run(kept, 'SUCCESS', JSON.stringify({ status: 'SUCCESS', result: 'from schema 5', traceback: null, children: [], date_done: null, task_id: kept }), Date.now());
  old.pragma('user_version = 5');
  old.close();
  const backend = new SqliteBackend(url, { pollIntervalMs: POLL_MS });
  try {
    assert.equal((await backend.get(kept))?.result, 'from schema 5');
    const pinned = randomUUID();
    await backend.storeFor(meta(pinned), 0);
    assert.equal((await backend.get(pinned))?.status, 'SUCCESS');
    const check = new Database(path, { readonly: true });
    try {
      assert.equal(check.pragma('user_version', { simple: true }), 7);
      assert.equal((check.prepare('SELECT keep_until FROM fennel_results WHERE task_id = ?').get(pinned) as { keep_until: number }).keep_until, Number.MAX_SAFE_INTEGER);
    } finally {
      check.close();
    }
  } finally {
    await backend.close();
  }

  function meta(id: string) {
    return { status: 'SUCCESS', result: 'pinned', traceback: null, children: [], date_done: null, task_id: id };
  }
});
