// Pool slots that die or run away, with real `fennel worker` processes: a slot that is SIGKILLed or throws
// out of its event loop costs one attempt (the task is retried), a slot past its hard time limit is killed
// (FAILURE TimeLimitExceeded), a task that always kills its slot fails with WorkerLostError after maxRetries,
// and in every case the worker itself keeps running and serving other tasks. The async pool runs many
// I/O-bound tasks at once. A slot's task gets the same argument values in every pool (a Date, a Buffer).

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { Job } from '../../src/worker/pools/pool.ts';
import { processPool } from '../../src/worker/pools/process.ts';
import { threadPool } from '../../src/worker/pools/thread.ts';
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

describe('what a task in a pool slot receives', () => {
  // A tasks module of its own, in the test's temp directory, that reports what its arguments are.
  const appPath = join(db.dir, 'describe-args.mts'); // .mts: an ES module outside any package.json
  const fennelEntry = pathToFileURL(join(import.meta.dirname, '../../src/index.ts')).href;
  writeFileSync(
    appPath,
    `import { Fennel } from ${JSON.stringify(fennelEntry)};
export const app = new Fennel();
app.task('args.describe', (when: unknown, bytes: unknown, doc: unknown, text: unknown) => ({
  when: when instanceof Date ? ['Date', when.toISOString()] : [typeof when, String(when)],
  bytes: Buffer.isBuffer(bytes) ? ['Buffer', bytes.toString('hex')] : bytes instanceof Uint8Array ? ['Uint8Array', Buffer.from(bytes).toString('hex')] : [typeof bytes, JSON.stringify(bytes)],
  doc,
  text,
}));
`,
  );
  const job: Job = {
    id: 'job-1',
    name: 'args.describe',
    args: [new Date('2026-11-26T02:30:06.208Z'), Buffer.from([1, 2, 255]), { a: [1, null, 'é'] }, 'quote " \\ \u2028 ✓ '.repeat(50_000)],
    kwargs: {},
    retries: 0,
    queue: null,
    timeLimitSec: null,
    softTimeLimitSec: null,
  };
  const pools = { process: processPool, thread: threadPool };
  // A thread gets a structured clone, which makes a Buffer a plain Uint8Array of the same bytes.
  const bytesKind = { process: 'Buffer', thread: 'Uint8Array' };
  for (const kind of ['process', 'thread'] as const) {
    it(`gets the values the message decoded to in a ${kind} slot: a Date, ${kind === 'process' ? 'a Buffer' : 'the bytes'}, a large string intact`, async () => {
      const pool = pools[kind](1, { appPath });
      await pool.start();
      try {
        const outcome = await pool.run(job, { onProgress: () => {} });
        assert.equal(outcome.kind, 'success', JSON.stringify(outcome));
        assert.deepEqual(JSON.parse((outcome as { resultJson: string }).resultJson), {
          when: ['Date', '2026-11-26T02:30:06.208Z'],
          bytes: [bytesKind[kind], '0102ff'],
          doc: { a: [1, null, 'é'] },
          text: job.args[3],
        });
      } finally {
        await pool.close();
      }
    });
  }
});
