// Real `fennel worker` processes on the nats:// broker (the shared NATS server, 127.0.0.1:4222, prefix
// `integration_nats`, owned by this file), with results in its key-value buckets (nats:// as the result backend): a few tasks, a
// retry with a countdown (through the scheduler consumer), a countdown call, and a worker SIGKILLed while it holds a
// task, whose message comes back to another worker once the visibility timeout (2 s) has passed without renewal.
// Each run logs one line (fixtures/tasks.ts `record`), so runs are counted, not guessed.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { NatsLink } from '../../src/clients/nats/connection.ts';
import { natsSkipReason, natsUrlForTest } from '../support/nats.ts';
import { fileLines, startWorker, stopProcess, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const PREFIX = 'integration_nats';
const URL = natsUrlForTest(PREFIX);
const skip = await natsSkipReason();
process.env['FENNEL_BROKER_URL'] = URL;
process.env['FENNEL_RESULT_BACKEND'] = URL;
process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = '2';
const { app, add, flaky, record } = await import('./fixtures/tasks.ts');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
let dir: TempDir;
let workers: RunningWorker[] = [];

async function worker(queue: string, flags: string[] = []): Promise<RunningWorker> {
  const w = await startWorker(TASKS, URL, ['-Q', queue, '--loglevel', 'warn', ...flags]);
  workers.push(w);
  return w;
}

/** Deletes this file's streams and buckets (every stream named after its prefix). */
async function removeStreams(): Promise<void> {
  const link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'integration-cleanup' });
  try {
    const { jsm } = await link.handles();
    for await (const name of jsm.streams.names()) {
      if (name.startsWith(`${PREFIX.toUpperCase()}_`) || name.startsWith(`KV_${PREFIX}_`)) await jsm.streams.delete(name);
    }
  } finally {
    await link.close();
  }
}

describe('workers on nats://', { skip }, () => {
  before(async () => {
    dir = makeTempDir('fennel-nats-');
    await removeStreams();
  });
  afterEach(async () => {
    await Promise.all(workers.map((w) => stopProcess(w, 'SIGTERM')));
    workers = [];
  });
  after(async () => {
    await Promise.all(workers.map((w) => stopProcess(w)));
    await app.close();
    await removeStreams();
    dir?.remove();
  });

  it('runs tasks, a retry with a backoff countdown, and a countdown call no earlier than its time', async () => {
    const queue = uniqueQueue('nats-tasks');
    await worker(queue, ['-c', '2', '-P', 'async']);
    const sums = Array.from({ length: 5 }, (_, i) => add.applyAsync([i, 10], { queue }));
    assert.deepEqual(await Promise.all(sums.map((r) => r.get({ timeoutMs: 20_000 }))), [10, 11, 12, 13, 14]);
    assert.equal(await flaky.applyAsync([2], { queue }).get({ timeoutMs: 20_000 }), 'ok after 2 retries');
    const sent = Date.now();
    const later = add.applyAsync([1, 1], { queue, countdown: 1 });
    assert.equal(await later.get({ timeoutMs: 20_000 }), 2);
    assert.ok(Date.now() - sent >= 1_000, `the countdown call ran after ${Date.now() - sent} ms, not before 1 s`);
    await waitFor(async () => (await app.transport.depth(queue)) === 0, 'the queue empty', 10_000);
  });

  it('hands a task held by a SIGKILLed worker to another worker after the visibility timeout, once more', async () => {
    const queue = uniqueQueue('nats-kill');
    const log = join(dir.path, 'kill.log');
    writeFileSync(log, '');
    const first = await worker(queue, ['-c', '1', '-P', 'async']);
    const result = record.applyAsync([21, log, 3_000], { queue });
    await waitFor(() => fileLines(log).length === 1, 'the first run to start', 20_000);
    await stopProcess(first, 'SIGKILL');
    const killedAt = Date.now();
    await worker(queue, ['-c', '1', '-P', 'async']);
    assert.equal(await result.get({ timeoutMs: 30_000 }), 42);
    const runs = fileLines(log);
    assert.equal(runs.length, 2, 'run once by the killed worker, once by the next');
    assert.ok(runs.every((line) => line.startsWith(`${result.id} `)));
    assert.notEqual(runs[0]!.split(' ')[1], runs[1]!.split(' ')[1], 'by two processes');
    assert.ok(Date.now() - killedAt >= 1_500, 'not before the visibility timeout lapsed');
    // The outcome is stored before the message is acknowledged: the queue is empty once that ack has landed.
    const counts = async (): Promise<unknown> => {
      const stats = (await app.transport.stats()).find((s) => s.queue === queue);
      return stats && { ready: stats.ready, scheduled: stats.scheduled, unacked: stats.unacked };
    };
    const empty = { ready: 0, scheduled: 0, unacked: 0 };
    await waitFor(async () => JSON.stringify(await counts()) === JSON.stringify(empty), 'the queue empty, nothing held', 10_000).catch(() => {});
    assert.deepEqual(await counts(), empty);
  });
});
