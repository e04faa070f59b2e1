// The async pool (src/worker/pools/async.ts): one promise per job, settled by the first of the task's outcome,
// a termination or the hard time limit; the soft limit aborts the task's signal; a full pool makes jobs wait.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { currentTask } from '../../../src/app/context.ts';
import type { RegisteredTask } from '../../../src/app/task.ts';
import { AsyncPool } from '../../../src/worker/pools/async.ts';
import type { Job, JobHooks } from '../../../src/worker/pools/pool.ts';

function registry(tasks: Record<string, (...args: unknown[]) => unknown>): Map<string, RegisteredTask> {
  return new Map(Object.entries(tasks).map(([name, fn]) => [name, { name, fn, options: {} }]));
}

function job(name: string, fields: Partial<Job> = {}): Job {
  return { id: `${name}-${Math.random()}`, name, args: [], kwargs: {}, retries: 0, queue: null, timeLimitSec: null, softTimeLimitSec: null, ...fields };
}

const hooks: JobHooks = { onProgress: () => {} };
const never = new Promise<never>(() => {});

describe('AsyncPool', () => {
  it('settles a task that returns a plain value, and one that returns a promise, with their results', async () => {
    const pool = new AsyncPool(2, registry({ plain: (a, b) => (a as number) + (b as number), later: async () => 'done' }));
    assert.deepEqual(await pool.run(job('plain', { args: [2, 3] }), hooks), { kind: 'success', resultJson: '5' });
    assert.deepEqual(await pool.run(job('later'), hooks), { kind: 'success', resultJson: '"done"' });
  });

  it('runs the task in its context (currentTask) whether it returns at once or later', async () => {
    const pool = new AsyncPool(1, registry({ now: () => currentTask().id, afterAwait: async () => (await Promise.resolve(), currentTask().id) }));
    assert.deepEqual(await pool.run(job('now', { id: 'a' }), hooks), { kind: 'success', resultJson: '"a"' });
    assert.deepEqual(await pool.run(job('afterAwait', { id: 'b' }), hooks), { kind: 'success', resultJson: '"b"' });
  });

  it('turns a throw and a rejection into failures', async () => {
    const pool = new AsyncPool(1, registry({ throws: () => { throw new TypeError('bad'); }, rejects: () => Promise.reject(new RangeError('worse')) }));
    const thrown = await pool.run(job('throws'), hooks);
    assert.equal(thrown.kind, 'failure');
    assert.equal(thrown.kind === 'failure' && thrown.error.name, 'TypeError');
    const rejected = await pool.run(job('rejects'), hooks);
    assert.equal(rejected.kind === 'failure' && rejected.error.message, 'worse');
  });

  it('ends a task past its hard time limit with a timeout, aborts its signal, and frees its place', async () => {
    let signal: AbortSignal | undefined;
    const pool = new AsyncPool(1, registry({ stuck: () => ((signal = currentTask().signal), never), quick: () => 1 }));
    const outcome = await pool.run(job('stuck', { timeLimitSec: 0.05 }), hooks);
    assert.deepEqual(outcome, { kind: 'timeout', seconds: 0.05 });
    assert.equal(signal?.aborted, true);
    assert.deepEqual(await pool.run(job('quick'), hooks), { kind: 'success', resultJson: '1' }, 'the place is free again');
  });

  it('aborts the signal at the soft time limit and lets the task finish', async () => {
    const pool = new AsyncPool(1, registry({
      polite: () => {
        const { signal } = currentTask();
        return new Promise((resolve) => signal.addEventListener('abort', () => resolve(`stopped: ${(signal.reason as Error).message}`)));
      },
    }));
    assert.deepEqual(await pool.run(job('polite', { softTimeLimitSec: 0.05 }), hooks), { kind: 'success', resultJson: '"stopped: soft time limit of 0.05 s"' });
  });

  it('terminates a running job at once; its later outcome is ignored', async () => {
    let finish!: (value: string) => void;
    let signal: AbortSignal | undefined;
    const pool = new AsyncPool(1, registry({ slow: () => ((signal = currentTask().signal), new Promise((resolve) => (finish = resolve))) }));
    const running = pool.run(job('slow', { id: 'victim' }), hooks);
    await Promise.resolve();
    assert.equal(pool.terminate('victim'), true);
    assert.equal(pool.terminate('victim'), false, 'not running any more');
    finish('too late');
    assert.deepEqual(await running, { kind: 'terminated' });
    assert.equal(signal?.aborted, true);
  });

  it('makes a job wait while every place is taken, and starts it when one frees', async () => {
    const order: string[] = [];
    let release!: () => void;
    const pool = new AsyncPool(1, registry({
      first: () => new Promise<void>((resolve) => (release = () => (order.push('first done'), resolve()))),
      second: () => void order.push('second ran'),
    }));
    const first = pool.run(job('first'), hooks);
    const second = pool.run(job('second'), hooks);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, [], 'the second waits for the only place');
    release();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first done', 'second ran']);
  });
});
