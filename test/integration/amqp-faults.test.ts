// Real `fennel worker` processes on the real RabbitMQ, through the faults a RabbitMQ deployment sees: a worker
// SIGKILLed mid-run, every connection closed by the broker (`rabbitmqctl close_all_connections`), and the
// broker application stopped and started again (`rabbitmqctl stop_app` / `start_app`). Results go to Redis
// (database 5, owned by this file), so reading them does not depend on the broker under test. Each run logs
// one line per task run (fixtures/tasks.ts `record`): lost tasks and duplicate runs are counted, not guessed.
// Queue names are unique and deleted at the end. Waits poll with generous deadlines; nothing asserts on time.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { sleep } from '../conformance/helpers/wait.ts';
import { assertNoneLost } from '../support/ledger.ts';
import { fileLines, isRunning, startWorker, stopProcess, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitAnswers, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const DB = REDIS_DB.amqpFaults;

function rabbitmqctl(...args: string[]): string {
  return execFileSync('rabbitmqctl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
}

/** The same, without blocking this process's event loop (its producer keeps publishing meanwhile). */
async function rabbitmqctlAsync(...args: string[]): Promise<void> {
  await promisify(execFile)('rabbitmqctl', args, { timeout: 120_000 });
}

async function missing(): Promise<string | false> {
  const reason = (await rabbitSkipReason()) || (await redisSkipReason());
  if (reason) return reason;
  try {
    rabbitmqctl('status');
    return false;
  } catch {
    const why = 'rabbitmqctl cannot reach the local RabbitMQ node';
    if (process.env['CI'] === 'true') throw new Error(`${why} (CI=true: required)`);
    return why;
  }
}

const skip = await missing();
process.env['FENNEL_BROKER_URL'] = RABBIT_URL;
process.env['FENNEL_RESULT_BACKEND'] = redisUrlForTest(DB);
const { app, record } = await import('./fixtures/tasks.ts');
const { BrokerUnavailableError } = await import('fennel');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const queues: string[] = [];
let dir: TempDir;
let workers: RunningWorker[] = [];

async function worker(queue: string, flags: string[]): Promise<RunningWorker> {
  const w = await startWorker(TASKS, RABBIT_URL, ['-Q', queue, '--loglevel', 'warn', ...flags]);
  workers.push(w);
  return w;
}

function queueFor(label: string): string {
  const q = uniqueQueue(`amqp-faults-${label}`);
  queues.push(q);
  return q;
}



type Settled = { ok: true; value: number } | { ok: false; error: unknown };

function settle(promise: Promise<number>): Promise<Settled> {
  return promise.then(
    (value) => ({ ok: true, value }),
    (error: unknown) => ({ ok: false, error }),
  );
}

async function allResults(values: Array<Promise<Settled>>): Promise<number[]> {
  const settled = await Promise.all(values);
  const failed = settled.filter((s) => !s.ok);
  if (failed.length) assert.fail(`${failed.length} of ${settled.length} result(s) did not arrive; first: ${String((failed[0] as { error: unknown }).error)}`);
  return settled.map((s) => (s as { value: number }).value);
}

describe('workers on RabbitMQ, through faults', { skip }, () => {
  before(async () => {
    dir = makeTempDir('fennel-amqp-faults-');
    await flushRedisDb(DB);
  });
  afterEach(async () => {
    await Promise.all(workers.map((w) => stopProcess(w)));
    workers = [];
  });
  after(async () => {
    await Promise.all(workers.map((w) => stopProcess(w)));
    await app.close();
    await flushRedisDb(DB);
    await removeRabbitQueues(queues, 'amqp-faults-');
    dir?.remove();
  });

  it('runs every one of 1,000 tasks when one of two workers is SIGKILLed mid-run: RabbitMQ redelivers what it held', async (t) => {
    const queue = queueFor('kill');
    const log = join(dir.path, 'kill.log');
    writeFileSync(log, '');
    const total = 1000;
    const results = record.delayMany(Array.from({ length: total }, (_, i) => [i, log, 2] as [number, string, number]), { queue });
    const values = results.map((r) => settle(r.get({ timeoutMs: 60_000 })));
    const first = await worker(queue, ['-c', '2', '-P', 'process']);
    await worker(queue, ['-c', '4', '-P', 'async']);
    await waitFor(() => fileLines(log).length > total / 4, 'a quarter of the tasks to run', 60_000);
    await stopProcess(first, 'SIGKILL');
    await worker(queue, ['-c', '2', '-P', 'process']);
    assert.deepEqual(await allResults(values), Array.from({ length: total }, (_, i) => i * 2), 'every result arrives, correct and in order');
    const twice = assertNoneLost(t, log, results.map((r) => r.id), 'SIGKILL');
    assert.ok(twice <= 2 * 4 + 2, `only the killed worker's prefetch window (8, plus its running tasks) may have run twice (${twice})`);
    await waitFor(async () => (await app.transport.depth(queue)) === 0, 'the queue to be empty', 30_000);
  });

  it('loses nothing when RabbitMQ closes every connection (close_all_connections) during a run of 1,000 tasks', async (t) => {
    const queue = queueFor('close');
    const log = join(dir.path, 'close.log');
    writeFileSync(log, '');
    const a = await worker(queue, ['-c', '4', '-P', 'async']);
    const b = await worker(queue, ['-c', '2', '-P', 'process']);
    const total = 1000;
    const batches = 20;
    const ids: string[] = [];
    const values: Array<Promise<Settled>> = [];
    let rounds = 0;
    let publishing = true;
    // Batches are published while the connections are being closed, so closes land on publishes, deliveries and acks in flight.
    const closer = (async () => {
      while (publishing || rounds < 4) {
        await sleep(200);
        await rabbitmqctlAsync('close_all_connections', 'fennel fault test');
        rounds++;
      }
    })();
    for (let i = 0; i < batches; i++) {
      const batch = record.delayMany(Array.from({ length: total / batches }, (_, j) => [i * 50 + j, log, 5] as [number, string, number]), { queue });
      ids.push(...batch.map((r) => r.id));
      // A publish that could not be confirmed rejects (after its retries); every task that was sent must run.
      values.push(...batch.map((r) => settle(r.sent.then(() => r.get({ timeoutMs: 60_000 })))));
      await sleep(150);
    }
    publishing = false;
    await closer;
    t.diagnostic(`close_all_connections: ${rounds} rounds`);
    assert.deepEqual(await allResults(values), Array.from({ length: total }, (_, i) => i * 2), 'every publish was confirmed and every result arrives');
    assertNoneLost(t, log, ids, 'close_all_connections');
    assert.ok(isRunning(a) && isRunning(b), 'both workers are still running');
  });

  it('loses no confirmed task when the broker is stopped and started again (stop_app / start_app) mid-run', async (t) => {
    const queue = queueFor('restart');
    const log = join(dir.path, 'restart.log');
    writeFileSync(log, '');
    await worker(queue, ['-c', '4', '-P', 'async']);
    await worker(queue, ['-c', '2', '-P', 'process']);
    const first = record.delayMany(Array.from({ length: 600 }, (_, i) => [i, log, 20] as [number, string, number]), { queue });
    await Promise.all(first.map((r) => r.sent));
    const values = first.map((r) => settle(r.get({ timeoutMs: 90_000 })));
    await waitFor(() => fileLines(log).length >= 100, 'the run to be under way', 60_000);
    try {
      await rabbitmqctlAsync('stop_app');
      const ranBeforeRestart = fileLines(log).length;
      // Sent while the broker is down: confirmed after it is back (the publish retries), or rejected with
      // BrokerUnavailableError if the outage outlasts the retries. Every confirmed one must run.
      const later = record.delayMany(Array.from({ length: 400 }, (_, i) => [600 + i, log, 20] as [number, string, number]), { queue });
      const laterSent = settle(later[0]!.sent.then(() => 0));
      await sleep(1_000);
      await rabbitmqctlAsync('start_app');
      await waitFor(() => rabbitAnswers(), 'RabbitMQ to accept connections again', 60_000);
      const sent = await laterSent;
      if (sent.ok) values.push(...later.map((r) => settle(r.get({ timeoutMs: 90_000 }))));
      else assert.ok(sent.error instanceof BrokerUnavailableError, `an unconfirmed publish rejects with BrokerUnavailableError (got ${String(sent.error)})`);
      t.diagnostic(`${ranBeforeRestart} runs before stop_app; the batch sent while stopped was ${sent.ok ? 'confirmed after start_app' : 'rejected'}`);
      const expected = [...first, ...(sent.ok ? later : [])];
      assert.deepEqual(await allResults(values), expected.map((_, i) => i * 2), 'every confirmed task runs and its result arrives');
      assertNoneLost(t, log, expected.map((r) => r.id), 'stop_app / start_app');
      assert.ok(ranBeforeRestart < 1000, 'the broker was stopped mid-run');
      assert.ok(workers.every(isRunning), 'both workers are still running');
    } finally {
      // Never leave the broker stopped for the tests that follow.
      if (!(await rabbitAnswers())) rabbitmqctl('start_app');
    }
  });
});
