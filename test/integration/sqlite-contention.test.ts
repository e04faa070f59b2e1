// CLI commands beside busy workers on one SQLite file. Every worker takes the write lock many times a second
// (claims, result stores, acks, events), and on a loaded machine a holder can lose the CPU mid-transaction; a
// command run beside them must wait its turn for the lock, never fail with "database is locked". This was
// `fennel dead-letters --requeue` failing in CI right after a worker restart: its transaction read before it
// wrote, and SQLite cannot make such a transaction wait for the lock.
//
// And processes opening a new file at the same instant (two workers started together on a fresh broker file): each
// must open it, where SQLite answers one of them SQLITE_BUSY without waiting (a new file is in rollback-journal mode
// until the first switches it to WAL); measured here before the fix, 1 open in about 120 failed so.
//
// No timing is asserted: the failure this guards against is the error itself.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE_ARGS, runCliToEnd, startWorker, stopProcess, tempDb, track, waitFor, type RunningWorker } from '../support/process.ts';
import { makeTempDir } from '../support/tmp.ts';

const db = tempDb();
process.env['FENNEL_BROKER_URL'] = db.url;
const { app } = await import('./fixtures/tasks.ts');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const env = { FENNEL_BROKER_URL: db.url };
/** Workers kept busy; each also sends task events (-E), one more writer per task. */
const WORKERS = 3;
const ROUNDS = 3;
/** Dead letters in circulation: `dead-letters --requeue all` requeues each in a transaction of its own. */
const LETTERS = 8;
const workers: RunningWorker[] = [];
let feeding = true;
let feeder: Promise<void> = Promise.resolve();

after(async () => {
  feeding = false;
  await feeder;
  await Promise.all(workers.map((w) => stopProcess(w)));
  await app.close();
  db.cleanup();
});

function startBusyWorker(): Promise<RunningWorker> {
  return startWorker(TASKS, db.url, ['-P', 'async', '-c', '4', '-E']);
}

describe('CLI commands beside busy workers on one SQLite file', () => {
  before(async () => {
    workers.push(...(await Promise.all(Array.from({ length: WORKERS }, startBusyWorker))));
    // Keep the queue fed, so the workers claim, store and ack for the whole test.
    feeder = (async () => {
      while (feeding) {
        if ((await app.transport.depth('celery')) < 200) app.sendMany('test.add', Array.from({ length: 50 }, (_, i) => [i, 1]));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    // Dead letters to requeue: these workers do not know 'test.ad', so each requeued one comes back as a new one.
    for (let i = 0; i < LETTERS; i++) app.sendTask('test.ad', [i, 1]);
    await waitFor(async () => (await app.transport.listDeadLetters()).length === LETTERS, 'the dead letters to requeue');
  });

  it(`status, call and dead-letters --requeue (one, then all) succeed every time, ${ROUNDS} rounds`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      // Requeued by the last round, they come back as the workers reach them again.
      await waitFor(async () => (await app.transport.listDeadLetters()).length > 0, 'a dead letter to requeue');
      const [letter] = await app.transport.listDeadLetters();
      assert.ok(letter);
      for (const args of [['dead-letters', '--requeue', letter.id], ['status'], ['call', 'test.add', '1', '2'], ['dead-letters', '--requeue', 'all']]) {
        const result = await runCliToEnd(args, env);
        assert.equal(result.code, 0, `round ${round}: fennel ${args.join(' ')} exited ${result.code}: ${result.stderr.join('\n')}`);
      }
    }
  });
});

describe('processes opening a new SQLite file at the same instant', () => {
  it('all open it, every time: 12 processes, 30 new files', async () => {
    const dir = makeTempDir('fennel-new-file-');
    try {
      const paths = Array.from({ length: 30 }, (_, i) => dir.file(`new-${i}.db`));
      // Far enough ahead for every process to have started (tsx compiles the fixture first).
      const first = Date.now() + 8_000;
      const outputs = await Promise.all(
        Array.from({ length: 12 }, () => {
          const child = track(spawn(process.execPath, [...NODE_ARGS, join(import.meta.dirname, 'fixtures/open-new-sqlite.ts'), String(first), '150', ...paths], { stdio: ['ignore', 'pipe', 'inherit'] }));
          let out = '';
          child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
          return new Promise<string[]>((resolve) => child.once('close', () => resolve(out.trim().split('\n'))));
        }),
      );
      const lines = outputs.flat();
      assert.equal(lines.length, 12 * 30, 'one line per process and file');
      assert.deepEqual(lines.filter((line) => line !== 'ok'), [], 'every open succeeded');
    } finally {
      dir.remove();
    }
  });
});
