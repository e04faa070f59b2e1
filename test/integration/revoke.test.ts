// Revoke with real worker processes, on SQLite and on Redis: a revoked task that has not started never runs,
// on whichever worker receives it, also one started after the revocation; with terminate, a running task's
// pool slot is killed and the worker goes on with the next task. `fennel revoke` does the same from a shell.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Fennel, RemoteTaskError } from '../../src/index.ts';
import { startWorker as startCliWorker, runCliToEnd, stopProcess, tempDb, waitFor, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';

const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const sqlite = tempDb();
const redisSkip = await redisSkipReason();
const amqpSkip = (await rabbitSkipReason()) || redisSkip;
const run = Date.now().toString(36);

function startWorker(broker: string, backend: string, flags: string[]): Promise<RunningWorker> {
  return startCliWorker(TASKS, broker, flags, { FENNEL_RESULT_BACKEND: backend });
}


function runs(log: string): string[] {
  return readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((line) => line.split(' ')[0]!);
}

async function revokedReason(result: { get(o: { timeoutMs: number }): Promise<unknown> }): Promise<string> {
  const error = await result.get({ timeoutMs: 30_000 }).then(
    () => assert.fail('a revoked task has no result'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RemoteTaskError, String(error));
  assert.equal(error.state, 'REVOKED');
  assert.equal(error.remoteName, 'TaskRevokedError');
  return error.remoteMessage;
}

function engineSuite(engine: string, url: () => string, backend: () => string, skip: string | false, prepare: () => Promise<void>): void {
  describe(`revoke on ${engine}`, { skip }, () => {
    let app: Fennel;
    const workers: RunningWorker[] = [];
    const queues = [`${engine}-revoke-${run}`, `${engine}-terminate-${run}`];

    before(async () => {
      await prepare();
      app = new Fennel({ broker: url(), backend: backend(), pollIntervalMs: 50 });
    });
    after(async () => {
      await Promise.all(workers.map((w) => stopProcess(w)));
      await app?.close();
      if (engine === 'amqp') await removeRabbitQueues(queues);
    });

    it('a task revoked while it waits never runs, on a worker running when it was revoked or started after', async () => {
      const log = join(sqlite.dir, `${engine}-revoke.log`);
      writeFileSync(log, '');
      const queue = queues[0]!;
      // Revoked before any worker exists: the worker started later reads the revoked set at start.
      const early = app.sendTask('test.record', [1, log], { queue });
      await early.sent;
      await app.revoke(early.id);
      const worker = await startWorker(url(), backend(), ['-c', '1', '-P', 'process', '-Q', queue, '--loglevel', 'warn']);
      workers.push(worker);
      // One long task occupies the only slot; the next waits behind it and is revoked meanwhile.
      const blocker = app.sendTask('test.record', [2, log, 1500], { queue });
      await waitFor(() => runs(log).includes(blocker.id), 'the blocker to start');
      const waiting = app.sendTask('test.record', [3, log], { queue });
      await waiting.sent;
      await waiting.revoke();
      const after = app.sendTask('test.record', [4, log], { queue });
      assert.equal(await after.get({ timeoutMs: 30_000 }), 8, 'the worker goes on with the next task');
      assert.equal(await blocker.get({ timeoutMs: 30_000 }), 4);
      assert.equal(await revokedReason(early), 'revoked');
      assert.equal(await revokedReason(waiting), 'revoked');
      assert.deepEqual(runs(log).sort(), [blocker.id, after.id].sort(), 'neither revoked task ran');
      // Both messages were consumed (acknowledged), not left behind.
      await waitFor(async () => (await app.transport.depth(queue)) === 0, 'the queue to be empty');
    });

    it('revoke with terminate kills the slot running the task; the worker runs the next task in a new slot', async () => {
      const queue = queues[1]!;
      const worker = await startWorker(url(), backend(), ['-c', '1', '-P', 'process', '-Q', queue, '--loglevel', 'warn']);
      workers.push(worker);
      const log = join(sqlite.dir, `${engine}-terminate.log`);
      writeFileSync(log, '');
      const long = app.sendTask('test.record', [1, log, 600_000], { queue });
      await waitFor(() => runs(log).includes(long.id), 'the long task to start');
      await app.revoke(long.id, { terminate: true });
      assert.equal(await revokedReason(long), 'terminated');
      assert.equal(await app.sendTask('test.add', [20, 22], { queue }).get({ timeoutMs: 30_000 }), 42);
    });
  });
}

engineSuite('sqlite', () => sqlite.url, () => sqlite.url, false, async () => {});
engineSuite('redis', () => redisUrlForTest(REDIS_DB.semantics), () => redisUrlForTest(REDIS_DB.semantics), redisSkip, () => flushRedisDb(REDIS_DB.semantics));
// RabbitMQ with results (and so revocations) in Redis: rpc:// results are the caller's alone, no shared set.
engineSuite('amqp', () => RABBIT_URL, () => redisUrlForTest(REDIS_DB.semantics), amqpSkip, () => flushRedisDb(REDIS_DB.semantics));

describe('fennel revoke (CLI)', () => {
  after(() => sqlite.cleanup());

  it('revokes by id from a shell', async () => {
    const app = new Fennel({ broker: sqlite.url });
    try {
      const result = app.sendTask('test.add', [1, 2], { queue: 'cli-revoke' });
      await result.sent;
      const out = await runCliToEnd(['revoke', result.id], { FENNEL_BROKER_URL: sqlite.url });
      assert.equal(out.code, 0, out.stderr.join('\n'));
      assert.deepEqual(out.stdout, [`revoked ${result.id}`]);
      assert.equal(await revokedReason(result), 'revoked');
    } finally {
      await app.close();
    }
  });
});
