// The canvas on the memory engines with an in-process async worker: chain, group, chord, map, starmap,
// chunks and their nesting, results checked; failures stop chains and fail chords once; the wire form of a
// chain is Celery's (embed.chain reversed, ids assigned before sending).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pino from 'pino';
import { chain, chord, Fennel, group, RemoteTaskError, Worker } from '../../../src/index.ts';

function setup(): { app: Fennel; tasks: ReturnType<typeof define>; start: () => Promise<Worker> } {
  const app = new Fennel({ broker: `memory://${randomUUID()}` });
  const tasks = define(app);
  return {
    app,
    tasks,
    start: async () => {
      const worker = new Worker(app, { pool: 'async', concurrency: 8, logger: pino({ level: 'silent' }) });
      await worker.start();
      return worker;
    },
  };
}

function define(app: Fennel) {
  const calls: string[] = [];
  return {
    calls,
    add: app.task('c.add', (a: number, b: number) => a + b),
    mul: app.task('c.mul', (a: number, b: number) => a * b),
    sum: app.task('c.sum', (xs: number[]) => xs.reduce((s, x) => s + x, 0)),
    boom: app.task('c.boom', (..._args: unknown[]): number => {
      throw new RangeError('boom');
    }),
    note: app.task('c.note', (...args: unknown[]) => {
      calls.push(JSON.stringify(args));
      return args.length;
    }),
  };
}

async function failureOf(promise: PromiseLike<unknown>): Promise<RemoteTaskError> {
  const error = await Promise.resolve(promise).then(() => assert.fail('expected a failure'), (e: unknown) => e);
  assert.ok(error instanceof RemoteTaskError, String(error));
  return error;
}

describe('canvas', () => {
  it('chain: each result feeds the next (s prepends, si does not); the result is the last step', async () => {
    const { tasks, start } = setup();
    const worker = await start();
    try {
      assert.equal(await chain(tasks.add.s(1, 2), tasks.add.s(3), tasks.mul.s(10)).applyAsync().get({ timeoutMs: 5_000 }), 60);
      assert.equal(await chain(tasks.add.s(1, 2), tasks.add.si(5, 5)).applyAsync().get({ timeoutMs: 5_000 }), 10);
    } finally {
      await worker.stop(1);
    }
  });

  it("chain's wire form is Celery's: the first message carries the rest reversed, each with its task id", () => {
    const { tasks } = setup();
    const dict = chain(tasks.add.s(1, 2), tasks.add.s(3), tasks.add.s(4)).toJSON();
    assert.equal(dict.subtask_type, 'chain');
    assert.deepEqual((dict.kwargs['tasks'] as Array<{ task: string; args: unknown[] }>).map((t) => [t.task, t.args]), [['c.add', [1, 2]], ['c.add', [3]], ['c.add', [4]]]);
    assert.deepEqual(JSON.parse(JSON.stringify(tasks.add.s(4).set({ queue: 'q', taskId: 'x' }))), { task: 'c.add', args: [4], kwargs: {}, options: { queue: 'q', task_id: 'x' }, subtask_type: null, immutable: false });
  });

  it('a failing step stops the chain, and the chain result fails with its error', async () => {
    const { tasks, start } = setup();
    const worker = await start();
    try {
      const error = await failureOf(chain(tasks.add.s(1, 2), tasks.boom.s(), tasks.note.s('never')).applyAsync().get({ timeoutMs: 5_000 }));
      assert.equal(error.remoteName, 'RangeError');
      assert.deepEqual(tasks.calls, [], 'the step after the failure never ran');
    } finally {
      await worker.stop(1);
    }
  });

  it('group: results in order, progress, and per-member failures', async () => {
    const { tasks, start } = setup();
    const worker = await start();
    try {
      const g = group([tasks.add.s(1, 1), tasks.add.s(2, 2), tasks.add.s(3, 3)]).applyAsync();
      assert.deepEqual(await g.get({ timeoutMs: 5_000 }), [2, 4, 6]);
      assert.equal(await g.completedCount(), 3);
      assert.equal(await g.ready(), true);
      const mixed = group([tasks.add.s(1, 1), tasks.boom.s()]).applyAsync();
      const settled = await mixed.settled({ timeoutMs: 5_000 });
      assert.equal(settled[0]!.status, 'fulfilled');
      assert.equal(settled[1]!.status, 'rejected');
      await failureOf(mixed.get({ timeoutMs: 5_000 }));
    } finally {
      await worker.stop(1);
    }
  });

  it('chord: the callback runs once with every result in order; a failing member fails it once and runs its errback once', async () => {
    const { tasks, start } = setup();
    const worker = await start();
    try {
      const ok = chord(Array.from({ length: 20 }, (_, i) => tasks.add.s(i, i)), tasks.sum.s()).applyAsync();
      assert.equal(await ok.get({ timeoutMs: 5_000 }), 380);
      const failed = chord([tasks.add.s(1, 1), tasks.boom.s(), tasks.boom.s()], tasks.sum.s().onError(tasks.note.si('errback'))).applyAsync();
      const error = await failureOf(failed.get({ timeoutMs: 5_000 }));
      assert.equal(error.remoteName, 'ChordError');
      assert.match(error.remoteMessage, /raised RangeError: boom/);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(tasks.calls, [JSON.stringify(['errback'])], 'the errback ran once for two failed members');
    } finally {
      await worker.stop(1);
    }
  });

  it('map, starmap and chunks', async () => {
    const { tasks, start } = setup();
    const worker = await start();
    try {
      assert.deepEqual(await tasks.sum.map([[1, 2], [3, 4]]).applyAsync().get({ timeoutMs: 5_000 }), [3, 7]);
      assert.deepEqual(await tasks.add.starmap([[1, 2], [3, 4]]).applyAsync().get({ timeoutMs: 5_000 }), [3, 7]);
      const chunks = tasks.add.chunks(Array.from({ length: 10 }, (_, i) => [i, 1] as [number, number]), 4);
      assert.equal(chunks.members.length, 3);
      assert.deepEqual(await chunks.applyAsync().get({ timeoutMs: 5_000 }), [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]);
    } finally {
      await worker.stop(1);
    }
  });

  it('nesting: a chain in a group, a group in a chain (a chord), a chord whose callback is a chain', async () => {
    const { tasks, start } = setup();
    const worker = await start();
    try {
      const g = group([chain(tasks.add.s(1, 1), tasks.mul.s(10)), tasks.add.s(5, 5)]).applyAsync();
      assert.deepEqual(await g.get({ timeoutMs: 5_000 }), [20, 10]);
      const c = chain(tasks.add.s(1, 1), group([tasks.mul.s(2), tasks.mul.s(3)]), tasks.sum.s()).applyAsync();
      assert.equal(await c.get({ timeoutMs: 5_000 }), 10); // 2 → [4, 6] → 10
      const cc = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], chain(tasks.sum.s(), tasks.mul.s(100))).applyAsync();
      assert.equal(await cc.get({ timeoutMs: 5_000 }), 600);
      const tail = chain(tasks.add.s(1, 1), chord([tasks.mul.s(2), tasks.mul.s(3)], tasks.sum.s()), tasks.mul.s(2)).applyAsync();
      assert.equal(await tail.get({ timeoutMs: 5_000 }), 20); // 2 → [4, 6] → 10 → 20
      const trailing = chain(tasks.add.s(1, 1), group([tasks.mul.s(2), tasks.mul.s(3)])).applyAsync();
      assert.deepEqual(await trailing.get({ timeoutMs: 5_000 }), [4, 6]);
    } finally {
      await worker.stop(1);
    }
  });

  it('a stored result keeps small arguments (for monitors) and drops large ones (a merge step would write them again and again)', async () => {
    const { app, tasks, start } = setup();
    const worker = await start();
    try {
      const small = tasks.sum.delay([1, 2]);
      const large = tasks.sum.delay(Array.from({ length: 5000 }, (_, i) => i));
      await Promise.all([small.get({ timeoutMs: 5_000 }), large.get({ timeoutMs: 5_000 })]);
      assert.deepEqual((await app.backend.get(small.id))?.args, [[1, 2]]);
      assert.equal((await app.backend.get(large.id))?.args, null);
    } finally {
      await worker.stop(1);
    }
  });
});
