// The `fennel` command as an operator uses it, in its own process: one line and exit code 2 for bad input,
// non-zero and one line for a broken database, and call / status / purge against a live broker.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCliToEnd, startWorker, stopProcess, tempDb, uniqueQueue, type RunningWorker } from '../support/process.ts';

const db = tempDb();
process.env['FENNEL_BROKER_URL'] = db.url;
process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = '2';
const { app, add } = await import('./fixtures/tasks.ts');
const { Fennel, ConfigError } = await import('fennel');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const NO_APP = join(import.meta.dirname, 'fixtures/no-app.ts');
const env = { FENNEL_BROKER_URL: db.url };
const workers: RunningWorker[] = [];
const others: Array<{ cleanup(): void }> = [];

after(async () => {
  await Promise.all(workers.map((w) => stopProcess(w)));
  await app.close();
  db.cleanup();
  for (const o of others) o.cleanup();
});

describe('fennel: bad input', () => {
  it('refuses `worker --app` of a file that does not exist with one line on stderr and exit code 2', async () => {
    const run = await runCliToEnd(['worker', '--app', 'missing.ts'], env);
    assert.equal(run.code, 2);
    assert.equal(run.stderr.length, 1, `one line on stderr, got:\n${run.stderr.join('\n')}`);
    assert.match(run.stderr[0]!, /^fennel: .*missing\.ts.*no such file/);
    assert.deepEqual(run.stdout, []);
  });

  it('refuses `worker --app` of a module that exports no Fennel app with one line and exit code 2', async () => {
    const run = await runCliToEnd(['worker', '--app', NO_APP], env);
    assert.equal(run.code, 2);
    assert.equal(run.stderr.length, 1, `one line on stderr, got:\n${run.stderr.join('\n')}`);
    assert.match(run.stderr[0]!, /^fennel: .*exports no Fennel app/);
  });

  it('refuses `worker --app` of a module with a syntax error with one line on stderr and exit code 2', async () => {
    // Written at run time: a broken .ts file in the repository would break the type-check and the lint.
    const broken = join(db.dir, 'broken-tasks.ts');
    writeFileSync(broken, "import { Fennel } from 'fennel';\nexport const app = new Fennel(;\n");
    const run = await runCliToEnd(['worker', '--app', broken], env);
    assert.equal(run.code, 2);
    assert.equal(run.stderr.length, 1, `one line on stderr, got:\n${run.stderr.join('\n')}`);
    assert.match(run.stderr[0]!, /^fennel: .*broken-tasks\.ts.*failed to load/);
  });

  it('reports a database file that is not SQLite in one line and a non-zero exit code', async () => {
    const corrupt = tempDb();
    others.push(corrupt);
    writeFileSync(corrupt.path, randomBytes(8192));
    const run = await runCliToEnd(['status'], { FENNEL_BROKER_URL: corrupt.url });
    assert.notEqual(run.code, 0);
    assert.equal(run.signal, null);
    assert.equal(run.stderr.length, 1, `one line on stderr, got:\n${run.stderr.join('\n')}`);
    assert.match(run.stderr[0]!, /not a SQLite database/);
  });

  for (const [what, flags, pattern] of [
    ['an unknown pool kind', ['-P', 'bogus'], /--pool must be process, thread or async/],
    ['a concurrency of 0', ['-c', '0'], /--concurrency must be a positive integer/],
  ] as const) {
    it(`refuses \`worker\` with ${what} with one line and exit code 2`, async () => {
      const run = await runCliToEnd(['worker', '--app', TASKS, ...flags], env);
      assert.equal(run.code, 2);
      assert.equal(run.stderr.length, 1, `one line on stderr, got:\n${run.stderr.join('\n')}`);
      assert.match(run.stderr[0]!, pattern);
    });
  }

  it("throws ConfigError for an unknown constructor option, suggesting 'broker'", () => {
    assert.throws(
      () => new Fennel({ brokr: 'x' } as never),
      (error: unknown) => error instanceof ConfigError && /did you mean 'broker'/.test(error.message),
    );
  });
});

describe('fennel: against a live broker', () => {
  before(async () => {
    workers.push(await startWorker(TASKS, db.url, ['-P', 'async', '-c', '2']));
  });

  it('`call test.add 2 3 --wait` prints the result a worker computed', async () => {
    const run = await runCliToEnd(['call', 'test.add', '2', '3', '--wait'], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.deepEqual(run.stdout, ['5']);
  });

  it('`call` without --wait prints the task id, and the task runs', async () => {
    const run = await runCliToEnd(['call', 'test.add', '20', '22'], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.equal(run.stdout.length, 1);
    assert.match(run.stdout[0]!, /^[0-9a-f-]{36}$/);
    assert.equal(await app.asyncResult(run.stdout[0]!).get({ timeoutMs: 30_000 }), 42);
  });

  it('`call --wait` of a task that fails prints the remote error in one line and exits 1', async () => {
    const run = await runCliToEnd(['call', 'test.fail', 'no good', '--wait'], env);
    assert.equal(run.code, 1);
    assert.deepEqual(run.stdout, []);
    assert.equal(run.stderr.length, 1, `one line on stderr, got:\n${run.stderr.join('\n')}`);
    assert.match(run.stderr[0]!, /^fennel: task [0-9a-f-]{36} failed: RangeError: no good$/);
  });

  it('`dead-letters --requeue` of an id that does not exist fails with one line and exit code 2', async () => {
    const run = await runCliToEnd(['dead-letters', '--requeue', '999999'], env);
    assert.equal(run.code, 2);
    assert.deepEqual(run.stderr, ['fennel: no dead letter with id 999999']);
  });

  it('`status --json` counts waiting messages per queue, results per state and dead letters', async () => {
    const queue = uniqueQueue('status');
    await Promise.all(add.delayMany([[1, 1], [2, 2], [3, 3]], { queue }).map((r) => r.sent));
    await add.delay(1, 2).get({ timeoutMs: 30_000 });
    const run = await runCliToEnd(['status', '--json'], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.equal(run.stdout.length, 1);
    const status = JSON.parse(run.stdout[0]!) as { broker: string; queues: Array<{ queue: string; ready: number; scheduled: number; unacked: number }>; states: Record<string, number>; deadLetters: number };
    assert.equal(status.broker, db.url);
    assert.deepEqual(status.queues.find((q) => q.queue === queue), { queue, ready: 3, scheduled: 0, unacked: 0 });
    assert.deepEqual(status.states, await app.backend.countByState());
    assert.ok((status.states['SUCCESS'] ?? 0) >= 2, 'the two tasks run so far are counted as SUCCESS');
    assert.equal(status.deadLetters, 0);
  });

  it('`purge` without -f and without a terminal refuses with exit code 2 and deletes nothing', async () => {
    const queue = uniqueQueue('keep');
    await Promise.all(add.delayMany([[1, 1], [2, 2]], { queue }).map((r) => r.sent));
    const run = await runCliToEnd(['purge', '-Q', queue], env);
    assert.equal(run.code, 2);
    assert.equal(run.stderr.length, 1);
    assert.match(run.stderr[0]!, /-f/);
    assert.equal(await app.transport.depth(queue), 2, 'nothing was deleted');
  });

  it('`purge -f -Q <queue>` deletes the waiting messages of that queue only', async () => {
    const queue = uniqueQueue('purge');
    const other = uniqueQueue('untouched');
    await Promise.all(add.delayMany([[1, 1], [2, 2], [3, 3]], { queue }).map((r) => r.sent));
    await add.applyAsync([4, 4], { queue: other }).sent;
    const run = await runCliToEnd(['purge', '-f', '-Q', queue], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.deepEqual(run.stdout, [`purged 3 message(s) from ${queue}`]);
    assert.equal(await app.transport.depth(queue), 0);
    assert.equal(await app.transport.depth(other), 1, 'another queue is untouched');
  });
});
