// Pool slots that die or run away, with real `fennel worker` processes: a slot that is SIGKILLed or throws
// out of its event loop costs one attempt (the task is retried), a slot past its hard time limit is killed
// (FAILURE TimeLimitExceeded), a task that always kills its slot fails with WorkerLostError after maxRetries,
// and in every case the worker itself keeps running and serving other tasks. The async pool runs many
// I/O-bound tasks at once.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileLines, isRunning, startWorker, stopProcess, tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';

const db = tempDb();
process.env['FENNEL_BROKER_URL'] = db.url;
process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = '2';
const { app, add, crashOnce, crashAlways, exitAlways, record, spin, throwOutOfLoopOnce, span } = await import('./fixtures/tasks.ts');
const { RemoteTaskError } = await import('fennel');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const workers: RunningWorker[] = [];

after(async () => {
  await Promise.all(workers.map((w) => stopProcess(w)));
  await app.close();
  db.cleanup();
});

async function worker(queue: string, flags: string[]): Promise<RunningWorker> {
  const w = await startWorker(TASKS, db.url, ['-Q', queue, ...flags]);
  workers.push(w);
  return w;
}

/** The stored state of a task, read fresh (an AsyncResult caches ready states). */
async function storedState(id: string): Promise<string | undefined> {
  return (await app.backend.get(id))?.status;
}

/** Awaits a result that must fail, and returns the RemoteTaskError it failed with. */
async function remoteFailure(result: PromiseLike<unknown> & { get(o: { timeoutMs: number }): Promise<unknown> }): Promise<InstanceType<typeof RemoteTaskError>> {
  const error = await result.get({ timeoutMs: 30_000 }).then(
    (value) => assert.fail(`expected a failure, got ${JSON.stringify(value)}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RemoteTaskError, `a RemoteTaskError (got ${String(error)})`);
  return error;
}

/** `promise`, or a failure naming the worker's last output as soon as the worker process exits instead. */
async function unlessWorkerExits<T>(w: RunningWorker, promise: Promise<T>): Promise<T> {
  const exited = w.exited.then(({ code, signal }) => {
    throw new Error(`the worker process exited (code ${code}, signal ${signal}); its last output:\n${w.lines.slice(-12).join('\n')}`);
  });
  exited.catch(() => {});
  return Promise.race([promise, exited]);
}

describe('the process pool (-P process)', () => {
  const queue = uniqueQueue('faults-process');
  let w: RunningWorker;
  before(async () => {
    w = await worker(queue, ['-P', 'process', '-c', '2']);
  });

  it('retries a task whose slot was SIGKILLed on the first attempt, and the retry succeeds', async () => {
    const result = crashOnce.applyAsync([], { queue });
    assert.equal(await result.get({ timeoutMs: 30_000 }), 'survived after 1 retries');
    assert.equal(await storedState(result.id), 'SUCCESS', 'the stored state is SUCCESS, not left at STARTED');
    assert.equal((await app.backend.get(result.id))?.retries, 1, 'the stored meta records one retry');
    assert.ok(isRunning(w), 'the worker process survived its slot being killed');
    assert.equal(await add.applyAsync([2, 3], { queue }).get({ timeoutMs: 30_000 }), 5, 'and it serves the next task');
  });

  it('retries a task whose slot died of an exception thrown out of its event loop', async () => {
    const result = throwOutOfLoopOnce.applyAsync([], { queue });
    assert.equal(await result.get({ timeoutMs: 30_000 }), 'survived after 1 retries');
    assert.ok(isRunning(w), 'the worker process is still running');
  });

  it('kills a task past its hard time limit (FAILURE TimeLimitExceeded) while other tasks keep completing', async () => {
    const runaway = spin.applyAsync([], { queue });
    await waitFor(async () => (await storedState(runaway.id)) === 'STARTED', 'the runaway task to start');
    // The other slot keeps serving while one is stuck in a CPU loop.
    const meanwhile = add.delayMany(Array.from({ length: 20 }, (_, i) => [i, i] as [number, number]), { queue });
    assert.deepEqual(await unlessWorkerExits(w, Promise.all(meanwhile.map((r) => r.get({ timeoutMs: 30_000 })))), Array.from({ length: 20 }, (_, i) => 2 * i));
    const error = await remoteFailure(runaway);
    assert.equal(error.remoteName, 'TimeLimitExceeded');
    assert.equal(error.state, 'FAILURE');
    assert.equal(await storedState(runaway.id), 'FAILURE', 'the stored state is FAILURE, not left at STARTED');
    assert.ok(isRunning(w), 'the worker process is still running after its slot was killed');
    // The killed slot is replaced: two tasks that each hold a slot can again run side by side.
    const after = add.delayMany(Array.from({ length: 10 }, (_, i) => [i, 1] as [number, number]), { queue });
    assert.deepEqual(await unlessWorkerExits(w, Promise.all(after.map((r) => r.get({ timeoutMs: 30_000 })))), Array.from({ length: 10 }, (_, i) => i + 1));
  });

  it('fails a task that always kills its slot with WorkerLostError once maxRetries (1) is spent', async () => {
    const result = crashAlways.applyAsync([], { queue });
    const error = await unlessWorkerExits(w, remoteFailure(result));
    assert.equal(error.remoteName, 'WorkerLostError');
    assert.match(error.remoteMessage, /SIGKILL/);
    const meta = await app.backend.get(result.id);
    assert.equal(meta?.status, 'FAILURE');
    assert.equal(meta?.retries, 1, 'it ran twice: the first attempt and one retry');
    assert.ok(isRunning(w), 'the worker process is still running');
    assert.equal(await add.applyAsync([40, 2], { queue }).get({ timeoutMs: 30_000 }), 42);
  });
});

describe('one slot and a hard time limit', () => {
  for (const pool of ['process', 'thread'] as const) {
    it(`runs the task queued behind a timed-out one on a fresh ${pool} slot, not on the slot being killed`, async () => {
      const queue = uniqueQueue(`faults-one-${pool}`);
      const w = await worker(queue, ['-P', pool, '-c', '1']);
      const runaway = spin.applyAsync([], { queue });
      await waitFor(async () => (await storedState(runaway.id)) === 'STARTED', 'the runaway task to start');
      const next = add.applyAsync([2, 3], { queue }); // waits for the only slot
      assert.equal((await remoteFailure(runaway)).remoteName, 'TimeLimitExceeded');
      assert.equal(await unlessWorkerExits(w, next.get({ timeoutMs: 30_000 })), 5);
      assert.equal((await app.backend.get(next.id))?.retries, 0, 'the queued task was not charged a lost attempt on the killed slot');
      assert.ok(isRunning(w), 'the worker process is still running');
    });
  }
});

describe('the thread pool (-P thread)', () => {
  const queue = uniqueQueue('faults-thread');
  let w: RunningWorker;
  before(async () => {
    w = await worker(queue, ['-P', 'thread', '-c', '2']);
  });

  it('terminates a thread past its hard time limit (FAILURE TimeLimitExceeded) while other tasks keep completing', async () => {
    const runaway = spin.applyAsync([], { queue });
    await waitFor(async () => (await storedState(runaway.id)) === 'STARTED', 'the runaway task to start');
    const meanwhile = add.delayMany(Array.from({ length: 20 }, (_, i) => [i, i] as [number, number]), { queue });
    assert.deepEqual(await unlessWorkerExits(w, Promise.all(meanwhile.map((r) => r.get({ timeoutMs: 30_000 })))), Array.from({ length: 20 }, (_, i) => 2 * i));
    const error = await remoteFailure(runaway);
    assert.equal(error.remoteName, 'TimeLimitExceeded');
    assert.equal(await storedState(runaway.id), 'FAILURE', 'the stored state is FAILURE, not left at STARTED');
    assert.ok(isRunning(w), 'the worker process is still running after a thread was terminated');
    assert.equal(await add.applyAsync([2, 3], { queue }).get({ timeoutMs: 30_000 }), 5);
  });

  it('retries a task whose thread died of an exception thrown out of its event loop', async () => {
    const result = throwOutOfLoopOnce.applyAsync([], { queue });
    assert.equal(await result.get({ timeoutMs: 30_000 }), 'survived after 1 retries');
    assert.equal(await storedState(result.id), 'SUCCESS');
    assert.ok(isRunning(w), 'the worker process is still running');
    assert.equal(await add.applyAsync([1, 1], { queue }).get({ timeoutMs: 30_000 }), 2, 'and the replaced thread serves the next task');
  });

  it('fails a task that always ends its thread (process.exit) with WorkerLostError once maxRetries (1) is spent', async () => {
    const result = exitAlways.applyAsync([], { queue });
    const error = await remoteFailure(result);
    assert.equal(error.remoteName, 'WorkerLostError');
    assert.match(error.remoteMessage, /exit code 3/);
    const meta = await app.backend.get(result.id);
    assert.equal(meta?.status, 'FAILURE');
    assert.equal(meta?.retries, 1, 'it ran twice: the first attempt and one retry');
    assert.ok(isRunning(w), 'the worker process is still running');
    assert.equal(await add.applyAsync([40, 2], { queue }).get({ timeoutMs: 30_000 }), 42);
  });
});

describe('leases on long tasks', () => {
  it('never hands a task that outlives the visibility timeout (2 s) to a second worker while the first runs it', async () => {
    const queue = uniqueQueue('lease');
    const log = join(db.dir, 'lease-runs.log');
    writeFileSync(log, '');
    await worker(queue, ['-P', 'process', '-c', '1']);
    const result = record.applyAsync([21, log, 5000], { queue });
    await waitFor(() => fileLines(log).length === 1, 'the 5 s task to start');
    // A second, idle worker on the same queue: it would take the message if the first let its lease lapse.
    await worker(queue, ['-P', 'async', '-c', '2']);
    assert.equal(await result.get({ timeoutMs: 30_000 }), 42);
    assert.equal(fileLines(log).length, 1, 'the task ran once');
  });
});

describe('the async pool (-P async)', () => {
  it('runs 50 sleeping tasks at once with -c 50', async () => {
    const queue = uniqueQueue('faults-async');
    const log = join(db.dir, 'async-spans.log');
    writeFileSync(log, '');
    const total = 50;
    // Queued before the worker starts, so its first claim takes the whole batch.
    const results = span.delayMany(Array.from({ length: total }, () => [log, 2000] as [string, number]), { queue });
    await worker(queue, ['-P', 'async', '-c', String(total)]);
    await Promise.all(results.map((r) => r.get({ timeoutMs: 30_000 })));
    // Replay the log: the most tasks that had started and not yet ended at any point.
    let running = 0;
    let peak = 0;
    for (const line of fileLines(log)) {
      running += line.startsWith('start ') ? 1 : -1;
      peak = Math.max(peak, running);
    }
    assert.equal(fileLines(log).length, 2 * total, 'every task started and ended once');
    assert.equal(peak, total, `all ${total} tasks were running at the same time (peak ${peak})`);
  });
});
