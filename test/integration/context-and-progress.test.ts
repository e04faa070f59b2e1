// What a task sees and what its caller sees while it runs, with real `fennel worker` processes:
// currentTask() in every pool kind, PROGRESS and STARTED states, kwargs from a Celery-style message, and
// routing (route table, per-call queue) end to end.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileLines, startWorker, stopProcess, tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';

const db = tempDb();
process.env['FENNEL_BROKER_URL'] = db.url;
process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = '2';
const { app, add, context, progress, sleep, untilAborted } = await import('./fixtures/tasks.ts');
const { Fennel } = await import('fennel');
const { buildTaskMessage } = await import('../../src/protocol/message.ts');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const workers: RunningWorker[] = [];
const apps: Array<{ close(): Promise<void> }> = [];

after(async () => {
  await Promise.all(workers.map((w) => stopProcess(w)));
  for (const a of apps) await a.close();
  await app.close();
  db.cleanup();
});

async function worker(flags: string[]): Promise<RunningWorker> {
  const w = await startWorker(TASKS, db.url, flags);
  workers.push(w);
  return w;
}

describe('currentTask() inside a worker', () => {
  for (const pool of ['process', 'thread', 'async'] as const) {
    it(`gives a task in the ${pool} pool its id, name, retries, queue and an abort signal`, async () => {
      // The default queue ('celery') is shared by the worker of each pool kind in turn, so stop it after.
      const w = await worker(['-P', pool, '-c', '1']);
      try {
        const result = context.delay();
        const ctx = await result.get({ timeoutMs: 30_000 });
        assert.equal(ctx.id, result.id, 'the id is the AsyncResult id');
        assert.equal(ctx.name, 'test.context');
        assert.equal(ctx.retries, 0);
        assert.equal(ctx.queue, 'celery');
        assert.equal(ctx.hasSignal, true, 'signal is an AbortSignal');
        if (pool === 'process') assert.notEqual(ctx.pid, w.child.pid, 'it ran in a child process');
        else assert.equal(ctx.pid, w.child.pid, 'it ran inside the worker process');
      } finally {
        await stopProcess(w, 'SIGTERM');
      }
    });
  }
});

describe('states a caller sees', () => {
  for (const pool of ['process', 'thread', 'async'] as const) {
    it(`reports PROGRESS with the meta a task in the ${pool} pool gave, then SUCCESS`, async () => {
      const queue = uniqueQueue(`progress-${pool}`);
      await worker(['-Q', queue, '-P', pool, '-c', '1']);
      const result = progress.applyAsync([2000], { queue });
      await waitFor(async () => (await result.status()) === 'PROGRESS', 'state PROGRESS');
      assert.deepEqual(await result.info(), { step: 1, of: 2 });
      // The task holds for 2 s after its progress: a STARTED stored late would show here.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(await result.status(), 'PROGRESS', 'never moved back to STARTED');
      assert.equal(await result.get({ timeoutMs: 30_000 }), 'done');
      assert.equal(await result.status(), 'SUCCESS');
    });
  }

  it('stores STARTED, with the pid and worker name, while a task runs', async () => {
    const queue = uniqueQueue('started');
    await worker(['-Q', queue, '-P', 'process', '-c', '1']);
    const result = sleep.applyAsync([2000], { queue });
    await waitFor(async () => (await result.status()) === 'STARTED', 'state STARTED');
    const info = (await result.info()) as { pid?: unknown; hostname?: unknown };
    assert.equal(typeof info.pid, 'number', 'STARTED carries the pid');
    assert.match(String(info.hostname), /^fennel\.\d+@/, 'the default worker name, fennel.<pid>@<host>');
    assert.equal(await result.get({ timeoutMs: 30_000 }), 2000);
    assert.equal(await result.status(), 'SUCCESS');
  });

  it('passes the kwargs of a raw Celery-style message to the task as a trailing object', async () => {
    const queue = uniqueQueue('kwargs');
    await worker(['-Q', queue, '-P', 'async', '-c', '1']);
    const id = randomUUID();
    const message = buildTaskMessage({ id, name: 'test.kw', args: [2], kwargs: { scale: 3 }, queue });
    await app.transport.publish(message, { queue });
    assert.equal(await app.asyncResult<number>(id).get({ timeoutMs: 30_000 }), 6);
  });
});

describe('routing', () => {
  it('sends a task to the queue its route names, where a worker on that queue runs it; a per-call queue wins', async () => {
    const routed = uniqueQueue('routed');
    const perCall = uniqueQueue('per-call');
    const producer = new Fennel({ routes: { 'test.add': { queue: routed } } });
    apps.push(producer);
    const viaRoute = producer.sendTask<number>('test.add', [2, 3]);
    await viaRoute.sent;
    const viaCall = producer.sendTask<number>('test.add', [4, 5], { queue: perCall });
    await viaCall.sent;
    assert.equal(await producer.transport.depth(routed), 1, 'the routed call waits on the route queue');
    assert.equal(await producer.transport.depth(perCall), 1, 'the call with its own queue waits there');
    assert.equal(await producer.transport.depth('celery'), 0, 'nothing went to the default queue');

    await worker(['-Q', routed, '-P', 'async', '-c', '2']);
    assert.equal(await viaRoute.get({ timeoutMs: 30_000 }), 5, 'a worker on the route queue runs it');
    assert.equal(await producer.transport.depth(perCall), 1, 'the per-call message is not on the route queue');

    await worker(['-Q', perCall, '-P', 'async', '-c', '2']);
    assert.equal(await viaCall.get({ timeoutMs: 30_000 }), 9);

    // The task sees the queue it was routed to.
    const routedCtx = new Fennel({ routes: { 'test.*': { queue: routed } } });
    apps.push(routedCtx);
    const ctx = await routedCtx.sendTask<{ queue: string }>('test.context').get({ timeoutMs: 30_000 });
    assert.equal(ctx.queue, routed, 'currentTask().queue is the routed queue');
    assert.equal(await add.applyAsync([1, 1], { queue: routed }).get({ timeoutMs: 30_000 }), 2);
  });
});

describe('currentTask().signal on a hard shutdown', () => {
  // context.ts: the signal is "aborted when the task passes its soft time limit or the worker shuts down hard",
  // so a task can stop cleanly (close files, release locks) before it is handed back.
  const cases = [
    ...(['process', 'thread', 'async'] as const).map((pool) => ({ pool, how: 'the grace period runs out' as const })),
    ...(['process', 'async'] as const).map((pool) => ({ pool, how: 'a second SIGINT arrives' as const })),
  ];
  for (const { pool, how } of cases) {
    it(`aborts the signal of a task running in the ${pool} pool when ${how}`, async () => {
      const queue = uniqueQueue(`abort-${pool}`);
      const log = join(db.dir, `${queue}.log`);
      const w = await worker(['-Q', queue, '-P', pool, '-c', '1', '--grace', '1']);
      const result = untilAborted.applyAsync([log], { queue });
      await waitFor(() => fileLines(log).length === 1, 'the task to start');
      if (how === 'the grace period runs out') {
        w.child.kill('SIGTERM');
        assert.equal((await w.exited).code, 0);
      } else {
        w.child.kill('SIGINT');
        await w.waitForLine(/warm shutdown/);
        w.child.kill('SIGINT');
        assert.equal((await w.exited).code, 130);
      }
      // The abort listener writes synchronously; allow a moment for a slot process to flush after the worker exits.
      const aborted = await waitFor(() => fileLines(log).some((l) => l.startsWith(`aborted ${result.id}`)), 'the abort line', 3_000).then(
        () => true,
        () => false,
      );
      assert.ok(aborted, `the task saw its signal abort before it was stopped; its log:\n${fileLines(log).join('\n')}`);
    });
  }
});
