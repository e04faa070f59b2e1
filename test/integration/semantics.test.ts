// Task semantics with real worker processes, on SQLite and on Redis: automatic retries with backoff and the
// last error as the final FAILURE, retry({ countdownMs, error }), per-task rate limits that do not hold up
// other tasks, poison messages (a task that keeps crashing its slot goes to the dead letters), slot recycling
// (--max-tasks-per-child), and time limits given in milliseconds per call.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Fennel, RemoteTaskError, type AsyncResult } from '../../src/index.ts';
import { startWorker as startCliWorker, stopProcess, tempDb, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';

const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const sqlite = tempDb();
const redisSkip = await redisSkipReason();
const REDIS_URL = redisUrlForTest(REDIS_DB.semantics);
const amqpSkip = (await rabbitSkipReason()) || redisSkip;
const run = Date.now().toString(36);

function startWorker(broker: string, backend: string, flags: string[]): Promise<RunningWorker> {
  return startCliWorker(TASKS, broker, flags, { FENNEL_RESULT_BACKEND: backend });
}


async function failure(result: AsyncResult<unknown>): Promise<RemoteTaskError> {
  const error = await result.get({ timeoutMs: 60_000 }).then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RemoteTaskError, String(error));
  return error;
}

function engineSuite(engine: string, url: string, backend: string, skip: string | false, prepare: () => Promise<void>): void {
  describe(`task semantics on ${engine}`, { skip }, () => {
    let app: Fennel;
    const workers: RunningWorker[] = [];
    const queue = `${engine}-semantics-${run}`;
    const queues = [queue, `${queue}-recycle`];
    const send = (name: string, args: unknown[] = [], options: object = {}): AsyncResult<unknown> => app.sendTask(name, args, { queue, ...options });

    before(async () => {
      await prepare();
      app = new Fennel({ broker: url, backend, pollIntervalMs: 50 });
      workers.push(await startWorker(url, backend, ['-c', '2', '-P', 'process', '-Q', queue, '--loglevel', 'error']));
    });
    after(async () => {
      await Promise.all(workers.map((w) => stopProcess(w)));
      await app?.close();
      if (engine === 'amqp') await removeRabbitQueues(queues, queue);
    });

    it('autoRetryFor retries with backoff until the task succeeds; the meta counts the retries', async () => {
      const result = send('test.flaky', [3]);
      assert.equal(await result.get({ timeoutMs: 60_000 }), 'ok after 3 retries');
      assert.equal((await app.backend.get(result.id))?.retries, 3);
    });

    it('after the last retry the task fails with the last error (not MaxRetriesExceededError)', async () => {
      const error = await failure(send('test.hopeless'));
      assert.equal(error.remoteName, 'RangeError');
      assert.equal(error.remoteMessage, 'still broken at attempt 2');
      assert.match(error.remoteStack ?? '', /RangeError: still broken/);
    });

    it('retry({ countdownMs, error }) fails with that error once the retries are spent', async () => {
      const error = await failure(send('test.retryWithError'));
      assert.equal(error.remoteName, 'TypeError');
      assert.equal(error.remoteMessage, 'bad input at attempt 1');
    });

    it("a rate limit spaces a task's starts (4/s: ≥ 250 ms apart) and other tasks run meanwhile", async () => {
      const log = join(sqlite.dir, `${engine}-limited.log`);
      writeFileSync(log, '');
      const limitedResults = Array.from({ length: 5 }, () => send('test.limited', [log]));
      const other = send('test.stamp', [log]);
      await Promise.all([other, ...limitedResults].map((r) => r.get({ timeoutMs: 30_000 })));
      const entries = readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' '));
      const starts = entries.filter(([who]) => who !== 'unlimited').map(([, at]) => Number(at)).sort((a, b) => a - b);
      const otherStart = Number(entries.find(([who]) => who === 'unlimited')![1]);
      assert.equal(starts.length, 5);
      // Timers fire no earlier than scheduled, so the spacing is a lower bound whatever the machine's load.
      for (let i = 1; i < starts.length; i++) assert.ok(starts[i]! - starts[i - 1]! >= 240, `starts ${i - 1} and ${i} are ${starts[i]! - starts[i - 1]!} ms apart`);
      // Both times are the worker's own clock: the unlimited task did not wait behind the limited ones.
      assert.ok(otherStart < starts.at(-1)!, 'the unlimited task started before the last limited one');
    });

    it('a task that crashes its slot every time goes to the dead letters after 3 crashes, with the reason', async () => {
      const result = send('test.poison');
      const error = await failure(result);
      assert.equal(error.remoteName, 'WorkerLostError');
      assert.equal((await app.backend.get(result.id))?.retries, 2, 'three attempts: the first and two retries');
      // The FAILURE is stored before the message is dead-lettered (store, then settle): wait for the letter.
      let letter;
      for (const deadline = Date.now() + 30_000; !letter && Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
        letter = (await app.transport.listDeadLetters()).find((l) => l.taskId === result.id);
      }
      assert.ok(letter, 'a dead letter for the poison message');
      assert.match(letter.reason, /^Poison: crashed its pool slot 3 times/);
      assert.equal(await send('test.add', [2, 2]).get({ timeoutMs: 30_000 }), 4, 'the worker goes on');
    });

    it('timeLimitMs on a call kills the task after that many milliseconds', async () => {
      const error = await failure(send('test.spin', [], { timeLimitMs: 300 }));
      assert.equal(error.remoteName, 'TimeLimitExceeded');
      assert.match(error.remoteMessage, /0\.3 s/);
    });

    it('deduplicate with a taskId enqueues once while the first call is pending, and again once it has finished', { skip: engine === 'amqp' && 'RabbitMQ has no atomic check-and-publish: deduplicate is refused there' }, async () => {
      const log = join(sqlite.dir, `${engine}-dedupe.log`);
      writeFileSync(log, '');
      const taskId = `dedupe-${engine}-${Date.now()}`;
      const calls = Array.from({ length: 3 }, () => send('test.record', [7, log, 300], { taskId, deduplicate: true }));
      await Promise.all(calls.map((c) => c.sent));
      assert.equal(await calls[0]!.get({ timeoutMs: 30_000 }), 14);
      assert.equal(await calls[2]!.get({ timeoutMs: 30_000 }), 14, 'a duplicate shares the first call\'s result');
      // The result is stored before the message is acknowledged: the id is free once the ack has happened.
      const ackDeadline = Date.now() + 30_000;
      while ((await app.transport.stats()).some((st) => st.queue === queue && st.unacked + st.ready > 0) && Date.now() < ackDeadline) await new Promise((r) => setTimeout(r, 50));
      const again = send('test.record', [8, log], { taskId, deduplicate: true });
      await again.sent;
      // Same id, so wait for the second run in the ledger rather than on the (already stored) result.
      const deadline = Date.now() + 30_000;
      while (readFileSync(log, 'utf8').trim().split('\n').length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' ')[0]), [taskId, taskId], 'one run per pending period');
    });

    it('--max-tasks-per-child replaces a slot after its quota, losing no task', async () => {
      const recycleQueue = `${queue}-recycle`;
      const w = await startWorker(url, backend, ['-c', '1', '-P', 'process', '-Q', recycleQueue, '--max-tasks-per-child', '2', '--loglevel', 'error']);
      workers.push(w);
      const pids: number[] = [];
      for (let i = 0; i < 6; i++) pids.push((await app.sendTask('test.pid', [], { queue: recycleQueue }).get({ timeoutMs: 30_000 })) as number);
      const distinct = [...new Set(pids)];
      assert.equal(distinct.length, 3, `three slots ran two tasks each (pids ${pids.join(', ')})`);
      for (let i = 0; i < 6; i += 2) assert.equal(pids[i], pids[i + 1]);
    });
  });
}

engineSuite('sqlite', sqlite.url, sqlite.url, false, async () => {});
engineSuite('redis', REDIS_URL, REDIS_URL, redisSkip, () => flushRedisDb(REDIS_DB.semantics));
// RabbitMQ with results in Redis (revocations and the SUCCESS guard need a shared result store).
engineSuite('amqp', RABBIT_URL, REDIS_URL, amqpSkip, () => flushRedisDb(REDIS_DB.semantics));

after(() => sqlite.cleanup());
