// Stopping a real `fennel worker`: SIGTERM finishes what runs and hands back what was only prefetched; a
// second SIGINT exits at once (code 130); a grace period that runs out hands the task back. In each case
// nothing is lost: another worker started afterwards runs what the first did not finish.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileLines, pidAlive, signalGroup, startWorker, startWorkerInOwnGroup, stopProcess, tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';

const db = tempDb();
process.env['FENNEL_BROKER_URL'] = db.url;
process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = '2';
const { app, add, sleep, slowFirst } = await import('./fixtures/tasks.ts');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const workers: RunningWorker[] = [];

after(async () => {
  await Promise.all(workers.map((w) => stopProcess(w)));
  await app.close();
  db.cleanup();
});

async function worker(queue: string, flags: string[] = [], ownGroup = false): Promise<RunningWorker> {
  const w = await (ownGroup ? startWorkerInOwnGroup : startWorker)(TASKS, db.url, ['-Q', queue, ...flags]);
  workers.push(w);
  return w;
}

/** Every row of a queue: waiting, scheduled or held. */
async function queueRows(queue: string): Promise<number> {
  const stats = (await app.transport.stats()).find((q) => q.queue === queue);
  return stats ? stats.ready + stats.scheduled + stats.unacked : 0;
}

/** The pid of the pool slot that ran the first run recorded in `log` (slowFirst writes `<id> <pid>`). */
function slotPid(log: string): number {
  return Number(fileLines(log)[0]!.split(' ')[1]);
}

/** Resolves with the exit of `w`, or fails if it has not exited within `timeoutMs`. */
async function exitOf(w: RunningWorker, what: string, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the worker did not exit ${what} (within ${timeoutMs} ms); output:\n${w.lines.slice(-20).join('\n')}`)), timeoutMs);
  });
  try {
    return await Promise.race([w.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('worker shutdown', () => {
  it('on SIGTERM finishes the running task, hands back prefetched ones at once, and exits 0', async () => {
    const queue = uniqueQueue('term');
    const first = await worker(queue, ['-P', 'process', '-c', '1']);
    const running = sleep.applyAsync([1500], { queue });
    await waitFor(async () => (await running.status()) === 'STARTED', 'the 1.5 s task to start');
    // -c 1 × prefetch multiplier 4: these three are claimed by the busy worker but cannot start.
    const waiting = add.delayMany([[1, 1], [2, 2], [3, 3]], { queue });
    await waitFor(async () => (await app.transport.depth(queue)) === 0, 'the worker to prefetch the three waiting tasks');

    first.child.kill('SIGTERM');
    await waitFor(async () => (await app.transport.depth(queue)) === 3, 'the prefetched tasks to be handed back');
    assert.equal(await app.backend.get(running.id).then((m) => m?.status), 'STARTED', 'they were handed back while the running task was still running');

    assert.equal(await running.get({ timeoutMs: 30_000 }), 1500, 'the running task finished');
    assert.deepEqual(await exitOf(first, 'after finishing its task', 20_000), { code: 0, signal: null });
    for (const r of waiting) assert.equal(await r.status(), 'PENDING', 'a handed-back task did not run on the stopping worker');

    await worker(queue, ['-P', 'async', '-c', '2']);
    assert.deepEqual(await Promise.all(waiting.map((r) => r.get({ timeoutMs: 30_000 }))), [2, 4, 6], 'a second worker ran every handed-back task');
  });

  it('on a second SIGINT exits at once with code 130, and the unfinished task runs again on a new worker', async () => {
    const queue = uniqueQueue('int');
    const log = join(db.dir, 'sigint-runs.log');
    const first = await worker(queue, ['-P', 'process', '-c', '1']);
    const result = slowFirst.applyAsync([log, 20_000], { queue }); // the first run takes 20 s, a rerun none
    await waitFor(() => fileLines(log).length === 1, 'the long task to start');

    first.child.kill('SIGINT');
    await first.waitForLine(/warm shutdown/);
    first.child.kill('SIGINT');
    assert.deepEqual(await exitOf(first, 'promptly on the second SIGINT', 10_000), { code: 130, signal: null });
    assert.equal(await result.status(), 'STARTED', 'the task was left unfinished');
    const slot = slotPid(log);
    await waitFor(() => !pidAlive(slot), 'the pool slot that ran it to be gone too', 5_000);

    await worker(queue, ['-P', 'process', '-c', '1']);
    assert.equal(await result.get({ timeoutMs: 30_000 }), 2, 'the new worker ran it again (its second run)');
    assert.equal(fileLines(log).length, 2);
  });

  it('with --grace 1 exits 0 once the grace period is over, and the task is delivered again to another worker', async () => {
    const queue = uniqueQueue('grace');
    const log = join(db.dir, 'grace-runs.log');
    const first = await worker(queue, ['-P', 'process', '-c', '1', '--grace', '1']);
    const result = slowFirst.applyAsync([log, 10_000], { queue }); // the first run takes 10 s, a rerun none
    await waitFor(() => fileLines(log).length === 1, 'the 10 s task to start');

    first.child.kill('SIGTERM');
    await first.waitForLine(/grace period of 1s over/, 10_000);
    assert.deepEqual(await exitOf(first, 'after its grace period, before the 10 s task could end', 8_000), { code: 0, signal: null });
    assert.notEqual(await result.status(), 'SUCCESS', 'the abandoned run stored no outcome');
    const slot = slotPid(log);
    await waitFor(() => !pidAlive(slot), 'the pool slot that ran it to be stopped', 5_000);

    await worker(queue, ['-P', 'process', '-c', '1']);
    assert.equal(await result.get({ timeoutMs: 30_000 }), 2, 'another worker ran it again (its second run)');
    await waitFor(async () => (await queueRows(queue)) === 0, 'the queue to be empty');
    assert.equal(fileLines(log).length, 2, 'it was handed back once, not also retried as a lost slot');
  });

  it('on Ctrl-C (SIGINT to the whole process group) lets the running task in its process slot finish, and exits 0', async () => {
    const queue = uniqueQueue('ctrl-c');
    const first = await worker(queue, ['-P', 'process', '-c', '1'], true);
    const running = sleep.applyAsync([1500], { queue });
    await waitFor(async () => (await running.status()) === 'STARTED', 'the 1.5 s task to start');
    signalGroup(first, 'SIGINT'); // the slot receives it too, and must not die of it
    assert.equal(await running.get({ timeoutMs: 30_000 }), 1500, 'the running task finished');
    assert.deepEqual(await exitOf(first, 'after finishing its task', 20_000), { code: 0, signal: null });
  });

  it('on a second Ctrl-C to the process group exits 130, stops its slots, and the task runs again on a new worker', async () => {
    const queue = uniqueQueue('ctrl-c-twice');
    const log = join(db.dir, 'ctrl-c-runs.log');
    const first = await worker(queue, ['-P', 'process', '-c', '1'], true);
    const result = slowFirst.applyAsync([log, 20_000], { queue });
    await waitFor(() => fileLines(log).length === 1, 'the long task to start');
    signalGroup(first, 'SIGINT');
    await first.waitForLine(/warm shutdown/);
    signalGroup(first, 'SIGINT');
    assert.deepEqual(await exitOf(first, 'promptly on the second Ctrl-C', 10_000), { code: 130, signal: null });
    const slot = slotPid(log);
    await waitFor(() => !pidAlive(slot), 'the pool slot to be gone too', 5_000);
    await worker(queue, ['-P', 'process', '-c', '1']);
    assert.equal(await result.get({ timeoutMs: 30_000 }), 2, 'the new worker ran it again');
  });

  for (const pool of ['thread', 'async'] as const) {
    it(`on SIGTERM a worker with the ${pool} pool finishes its running task and exits 0`, async () => {
      const queue = uniqueQueue(`term-${pool}`);
      const first = await worker(queue, ['-P', pool, '-c', '1']);
      const running = sleep.applyAsync([1500], { queue });
      await waitFor(async () => (await running.status()) === 'STARTED', 'the 1.5 s task to start');
      first.child.kill('SIGTERM');
      assert.equal(await running.get({ timeoutMs: 30_000 }), 1500);
      assert.deepEqual(await exitOf(first, 'after finishing its task', 20_000), { code: 0, signal: null });
    });

    it(`with the ${pool} pool and --grace 1 exits 0 after the grace period and the task is delivered again`, async () => {
      const queue = uniqueQueue(`grace-${pool}`);
      const log = join(db.dir, `grace-${pool}-runs.log`);
      const first = await worker(queue, ['-P', pool, '-c', '1', '--grace', '1']);
      const result = slowFirst.applyAsync([log, 10_000], { queue });
      await waitFor(() => fileLines(log).length === 1, 'the 10 s task to start');
      first.child.kill('SIGTERM');
      assert.deepEqual(await exitOf(first, 'after its grace period', 8_000), { code: 0, signal: null });
      await worker(queue, ['-P', pool, '-c', '1']);
      assert.equal(await result.get({ timeoutMs: 30_000 }), 2, 'another worker ran it again');
      await waitFor(async () => (await queueRows(queue)) === 0, 'the queue to be empty');
      assert.equal(fileLines(log).length, 2, 'it was handed back once, not run a third time');
    });
  }
});
