// Real worker processes on a real SQLite file: thousands of tasks, a worker SIGKILLed mid-run, another
// started in its place; every result must arrive, correct, and none may be lost.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { sqlitePath } from '../../src/clients/sqlite-file.ts';
import { startWorker, stopProcess, tempDb, waitFor, type RunningWorker } from '../support/process.ts';

const db = tempDb();
process.env['FENNEL_BROKER_URL'] = db.url;
process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = '2';
const { app, record, add } = await import('./fixtures/tasks.ts');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const workers: RunningWorker[] = [];

describe('workers on one SQLite file', () => {
  after(async () => {
    await Promise.all(workers.map((w) => stopProcess(w)));
    await app.close();
    db.cleanup();
  });

  it('runs every one of 3,000 tasks when a worker is SIGKILLed mid-run and another takes over', async () => {
    const log = join(db.dir, 'runs.log');
    writeFileSync(log, '');
    const total = 3000;
    const results = record.delayMany(Array.from({ length: total }, (_, i) => [i, log, 1] as [number, string, number]));
    const first = await startWorker(TASKS, db.url, ['-c', '2', '-P', 'process', '--loglevel', 'warn']);
    workers.push(first);
    const second = await startWorker(TASKS, db.url, ['-c', '4', '-P', 'async', '--loglevel', 'warn']);
    workers.push(second);
    // Kill the first worker once it has done some of the work, while it holds a prefetch window.
    await waitFor(() => readFileSync(log, 'utf8').split('\n').length > total / 4, 'a quarter of the tasks to run', 60_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const third = await startWorker(TASKS, db.url, ['-c', '2', '-P', 'process', '--loglevel', 'warn']);
    workers.push(third);
    const values = await Promise.all(results.map((r) => r.get({ timeoutMs: 120_000 })));
    assert.deepEqual(values, Array.from({ length: total }, (_, i) => i * 2), 'every result arrives, correct and in order');
    // A message the killed worker ran but never acknowledged is still leased until its visibility timeout
    // lapses; then it runs again (at-least-once) and is acknowledged. Wait for the queue to drain.
    const left = async (): Promise<number> => (await app.transport.stats()).reduce((n, s) => n + s.ready + s.scheduled + s.unacked, 0);
    await waitFor(async () => (await left()) === 0, 'the queue to drain, redeliveries included', 60_000);
    const runs = readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' ')[0]!);
    const distinct = new Set(runs);
    assert.equal(distinct.size, total, 'every task ran at least once');
    // At-least-once: only tasks the killed worker held may have run twice.
    assert.ok(runs.length - total <= 2 * 4 * 2 + 2, `few duplicates (${runs.length - total}), bounded by the killed worker's window`);
  });

  it('shares one queue between workers without running a message twice when none dies', async () => {
    const log = join(db.dir, 'runs-2.log');
    writeFileSync(log, '');
    const total = 1000;
    const results = record.delayMany(Array.from({ length: total }, (_, i) => [i, log, 0] as [number, string, number]));
    await Promise.all(results.map((r) => r.get({ timeoutMs: 60_000 })));
    const runs = readFileSync(log, 'utf8').trim().split('\n');
    assert.equal(runs.length, total, 'each message ran exactly once');
    const pids = new Set(runs.map((l) => l.split(' ')[1]));
    assert.ok(pids.size >= 2, `the work was shared (${pids.size} processes ran tasks)`);
  });

  it('never shows another process an outcome stored while its message is still held (the ack rides in the store’s commit)', async () => {
    // The workers of the tests above are stopped, so that the one started here runs these tasks while this process reads.
    await Promise.all(workers.splice(0).map((w) => stopProcess(w)));
    const total = 600;
    const results = add.delayMany(Array.from({ length: total }, (_, i) => [i, 1] as [number, number]));
    await Promise.all(results.map((r) => r.sent));
    // One statement is one snapshot: an outcome (a ready state: the fixture app also stores STARTED, legitimately before
    // the ack) whose message is still in the broker there was stored by one commit and would be acked by a later one.
    // Read as fast as this process can while the worker runs the tasks.
    const reader = new Database(sqlitePath(db.url), { readonly: true });
    const look = reader.prepare(
      `SELECT (SELECT count(*) FROM fennel_results r JOIN fennel_messages m ON json_extract(m.envelope, '$.headers.id') = r.task_id
               WHERE r.status = 'SUCCESS') AS both,
              (SELECT count(*) FROM fennel_results WHERE status = 'SUCCESS' AND task_id IN (SELECT value FROM json_each(?))) AS stored`,
    );
    const ids = JSON.stringify(results.map((r) => r.id));
    const worker = startWorker(TASKS, db.url, ['-c', '2', '-P', 'process', '--loglevel', 'warn']);
    let midway = 0;
    let seen = 0;
    try {
      for (let stored = 0; stored < total; ) {
        const row = look.get(ids) as { both: number; stored: number };
        stored = row.stored;
        seen += row.both;
        if (stored > 0 && stored < total) midway++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      reader.close();
      workers.push(await worker);
    }
    assert.deepEqual(await Promise.all(results.map((r) => r.get({ timeoutMs: 60_000 }))), Array.from({ length: total }, (_, i) => i + 1));
    assert.ok(midway > 10, `the reader looked while the results were being stored (${midway} looks)`);
    assert.equal(seen, 0, `outcomes seen stored with their message still held, over ${midway} looks`);
  });

  it('answers a delay → get round trip from a live worker', async () => {
    assert.equal(await add.delay(20, 22), 42);
  });
});
