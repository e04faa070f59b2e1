// Pool.resize with real pools (src/worker/pools/slots.ts, async.ts): growing starts slots that run jobs side by
// side, shrinking retires idle slots at once and busy ones only after their job has reported, a crashed slot is
// replaced up to the current size only, and pids()/pidOf() name the processes. Jobs are held behind a gate the
// test opens, so nothing here depends on how long anything takes.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { RegisteredTask } from '../../../src/app/task.ts';
import { ConfigError } from '../../../src/errors.ts';
import { AsyncPool } from '../../../src/worker/pools/async.ts';
import type { Job, JobHooks, Outcome, Pool } from '../../../src/worker/pools/pool.ts';
import { processPool } from '../../../src/worker/pools/process.ts';
import type { SlotPool } from '../../../src/worker/pools/slots.ts';
import { threadPool } from '../../../src/worker/pools/thread.ts';
import { waitFor } from '../../support/process.ts';
import { makeTempDir, type TempDir } from '../../support/tmp.ts';

const appPath = join(import.meta.dirname, '../../fixtures/pool-resize-app.ts');
const hooks: JobHooks = { onProgress: () => {} };
const LIMIT_MS = 20_000;
const dirs: TempDir[] = [];

after(() => {
  for (const dir of dirs) dir.remove();
});

function job(name: string, args: unknown[] = []): Job {
  return { id: randomUUID(), name, args, kwargs: {}, retries: 0, queue: null, timeLimitSec: null, softTimeLimitSec: null };
}

interface Held {
  pid: number;
  threadId: number;
  startedAt: number;
  endedAt: number;
}

interface Run {
  job: Job;
  outcome: Promise<Outcome>;
}

/** Jobs held behind one gate (a file in a fresh directory): `start` runs one, `open` lets them all finish. */
function gate(pool: Pool): { start: () => Run; started: (runs: Run[]) => Promise<void>; open: () => void } {
  const dir = makeTempDir('fennel-resize-');
  dirs.push(dir);
  return {
    start() {
      const hold = job('resize.hold', [dir.path]);
      return { job: hold, outcome: pool.run(hold, hooks) };
    },
    started: (runs) => waitFor(() => runs.every((r) => existsSync(dir.file(`started-${r.job.id}`))), `${runs.length} held jobs to start`, LIMIT_MS),
    open: () => writeFileSync(dir.file('go'), ''),
  };
}

function held(outcome: Outcome): Held {
  assert.equal(outcome.kind, 'success', JSON.stringify(outcome));
  return JSON.parse((outcome as { resultJson: string }).resultJson) as Held;
}

async function pidJob(pool: Pool): Promise<number> {
  const outcome = await pool.run(job('resize.pid'), hooks);
  assert.equal(outcome.kind, 'success', JSON.stringify(outcome));
  return JSON.parse((outcome as { resultJson: string }).resultJson) as number;
}

/** True once the process is gone: signal 0 fails with ESRCH (Node reaps its children as they exit). */
function exited(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * The largest pids().length seen while watching the pool for `ms`: a window that covers a crashed slot's
 * respawn (500 ms after its exit), not a timed assertion; a timer firing late makes it pass, never fail.
 */
async function largestPidCount(pool: Pool, ms: number): Promise<number> {
  let largest = pool.pids().length;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 10));
    largest = Math.max(largest, pool.pids().length);
  }
  return largest;
}

async function withPool<P extends Pool>(pool: P, body: (pool: P) => Promise<void>): Promise<void> {
  await pool.start();
  try {
    await body(pool);
  } finally {
    await pool.close();
  }
}

async function rejectsBadSizes(pool: Pool): Promise<void> {
  for (const size of [0, 1.5, -1, Number.NaN]) {
    await assert.rejects(pool.resize(size), (e: unknown) => e instanceof ConfigError && /positive integer/.test(e.message), `resize(${size})`);
  }
  assert.equal(pool.size, 1, 'the size is unchanged');
}

const slotPools = { process: processPool, thread: threadPool } as const;

for (const kind of ['process', 'thread'] as const) {
  const slotPool = (size: number): SlotPool => slotPools[kind](size, { appPath });

  describe(`${kind} pool: resize`, () => {
    it('grows from 1 to 3 slots that run three jobs side by side', async () => {
      await withPool(slotPool(1), async (pool) => {
        await pool.resize(3);
        assert.equal(pool.size, 3);
        if (kind === 'process') assert.equal(new Set(pool.pids()).size, 3, 'three children once resize resolves');
        else assert.deepEqual(pool.pids(), [process.pid], 'threads share the worker process');
        const g = gate(pool);
        const runs = [g.start(), g.start(), g.start()];
        await g.started(runs);
        g.open();
        const results = (await Promise.all(runs.map((r) => r.outcome))).map(held);
        assert.ok(Math.max(...results.map((r) => r.startedAt)) <= Math.min(...results.map((r) => r.endedAt)), 'all three started before any ended');
        assert.equal(new Set(results.map((r) => (kind === 'process' ? r.pid : r.threadId))).size, 3, 'on three different slots');
      });
    });

    it('shrinks from 3 to 1 while three jobs run: each completes, and a waiting job runs on the slot kept', async () => {
      await withPool(slotPool(3), async (pool) => {
        const before = pool.pids();
        const g = gate(pool);
        const runs = [g.start(), g.start(), g.start()];
        await g.started(runs);
        const waiting = g.start(); // no free slot: it waits through the shrink
        await pool.resize(1);
        assert.equal(pool.size, 1);
        if (kind === 'process') assert.equal(pool.pids().length, 3, 'busy slots stay until their job has reported');
        g.open();
        const results = (await Promise.all([...runs, waiting].map((r) => r.outcome))).map(held);
        assert.equal(results.length, 4, 'no job lost or cut short');
        if (kind === 'process') {
          await waitFor(() => pool.pids().length === 1, 'one slot left', LIMIT_MS);
          const kept = pool.pids()[0]!;
          assert.equal(results[3]!.pid, kept, 'the waiting job ran on the slot kept');
          for (const pid of before.filter((p) => p !== kept)) await waitFor(() => exited(pid), `retired child ${pid} to exit`, LIMIT_MS);
          assert.equal(await pidJob(pool), kept, 'and the slot kept serves the next job');
        } else {
          assert.equal(await pidJob(pool), process.pid);
        }
      });
    });

    it('rejects a size that is not a positive integer with ConfigError', async () => {
      await withPool(slotPool(1), rejectsBadSizes);
    });
  });
}

describe('process pool: resize of idle slots, crashes and pidOf', () => {
  const slotPool = (size: number): SlotPool => processPool(size, { appPath });

  it('retires idle slots at once when shrinking, and their children exit', async () => {
    await withPool(slotPool(3), async (pool) => {
      const before = pool.pids();
      await pool.resize(1);
      assert.equal(pool.pids().length, 1, 'one slot as soon as resize resolves');
      const kept = pool.pids()[0]!;
      for (const pid of before.filter((p) => p !== kept)) await waitFor(() => exited(pid), `retired child ${pid} to exit`, LIMIT_MS);
      assert.equal(await pidJob(pool), kept);
    });
  });

  it('replaces a slot that crashes after a shrink, up to the new size only', async () => {
    await withPool(slotPool(3), async (pool) => {
      await pool.resize(2);
      const before = pool.pids();
      const crash = await pool.run(job('resize.crash'), hooks);
      assert.equal(crash.kind, 'lost');
      let largest = 0;
      await waitFor(
        () => {
          largest = Math.max(largest, pool.pids().length);
          return pool.pids().length === 2 && pool.pids().some((p) => !before.includes(p));
        },
        'the crashed slot to be replaced',
        LIMIT_MS,
      );
      largest = Math.max(largest, await largestPidCount(pool, 1500));
      assert.ok(largest <= 2, `never more than 2 slots (saw ${largest})`);
      assert.equal(pool.pids().length, 2);
    });
  });

  it('counts a slot waiting to be respawned when shrinking: it is not started on top of the new size', async () => {
    await withPool(slotPool(3), async (pool) => {
      const crash = await pool.run(job('resize.crash'), hooks);
      assert.equal(crash.kind, 'lost');
      await pool.resize(1); // within the crashed slot's respawn delay
      assert.equal(pool.pids().length, 1);
      const largest = await largestPidCount(pool, 2000);
      assert.ok(largest <= 1, `never more than 1 slot (saw ${largest})`);
      assert.equal(await pidJob(pool), pool.pids()[0]);
    });
  });

  it('gives the pid of the child running a job, and undefined once it has finished', async () => {
    await withPool(slotPool(2), async (pool) => {
      const g = gate(pool);
      const run = g.start();
      await g.started([run]);
      const pid = pool.pidOf(run.job.id);
      assert.ok(pid !== undefined && pool.pids().includes(pid), `a slot's pid (got ${pid})`);
      g.open();
      assert.equal(held(await run.outcome).pid, pid, 'the child that ran it');
      assert.equal(pool.pidOf(run.job.id), undefined);
      assert.equal(pool.pidOf('no-such-job'), undefined);
    });
  });
});

describe('async pool: resize', () => {
  /** An async pool whose `hold` jobs log their start and end and wait for `open()`. */
  function holdingPool(size: number): { pool: AsyncPool; log: string[]; open: () => void } {
    const log: string[] = [];
    let open!: () => void;
    const gateOpen = new Promise<void>((resolve) => (open = resolve));
    const hold = async (name: string): Promise<string> => {
      log.push(`start ${name}`);
      await gateOpen;
      log.push(`end ${name}`);
      return name;
    };
    const registry = new Map<string, RegisteredTask>([['hold', { name: 'hold', fn: hold as (...args: unknown[]) => unknown, options: {} }]]);
    return { pool: new AsyncPool(size, registry), log, open };
  }
  const starts = (log: string[]): number => log.filter((l) => l.startsWith('start')).length;

  it('grows from 1 to 3 and starts waiting jobs up to the new size at once', async () => {
    const { pool, log, open } = holdingPool(1);
    const outcomes = ['a', 'b', 'c', 'd'].map((name) => pool.run(job('hold', [name]), hooks));
    await waitFor(() => starts(log) === 1, 'the first job to start', LIMIT_MS);
    await pool.resize(3);
    assert.equal(pool.size, 3);
    await waitFor(() => starts(log) === 3, 'three jobs to run', LIMIT_MS);
    await new Promise((r) => setImmediate(r));
    assert.equal(starts(log), 3, 'the fourth still waits');
    open();
    assert.deepEqual((await Promise.all(outcomes)).map((o) => o.kind), ['success', 'success', 'success', 'success']);
    const firstEnd = log.findIndex((l) => l.startsWith('end'));
    assert.deepEqual(log.slice(0, firstEnd), ['start a', 'start b', 'start c'], 'three started before any ended');
  });

  it('shrinks from 3 to 1 while three jobs run: they finish, then jobs start one at a time', async () => {
    const { pool, log, open } = holdingPool(3);
    const running = ['a', 'b', 'c'].map((name) => pool.run(job('hold', [name]), hooks));
    await waitFor(() => starts(log) === 3, 'three jobs to run', LIMIT_MS);
    await pool.resize(1);
    assert.equal(pool.size, 1);
    const later = ['d', 'e'].map((name) => pool.run(job('hold', [name]), hooks));
    await new Promise((r) => setImmediate(r));
    assert.equal(starts(log), 3, 'no new job starts above the new size');
    open();
    assert.deepEqual((await Promise.all([...running, ...later])).map((o) => o.kind), Array(5).fill('success'));
    // d waits until all three have ended (below the new size), and e until d has ended.
    const at = (entry: string): number => log.indexOf(entry);
    assert.ok(at('start d') > Math.max(at('end a'), at('end b'), at('end c')), `d waited for the running jobs: ${log.join(', ')}`);
    assert.ok(at('start e') > at('end d'), `one at a time after the shrink: ${log.join(', ')}`);
  });

  it("gives the worker's own pid for a running job, and undefined once it has finished", async () => {
    const { pool, log, open } = holdingPool(1);
    const id = randomUUID();
    const outcome = pool.run({ ...job('hold', ['a']), id }, hooks);
    await waitFor(() => starts(log) === 1, 'the job to start', LIMIT_MS);
    assert.deepEqual(pool.pids(), [process.pid]);
    assert.equal(pool.pidOf(id), process.pid);
    open();
    await outcome;
    assert.equal(pool.pidOf(id), undefined);
  });

  it('rejects a size that is not a positive integer with ConfigError', async () => {
    await rejectsBadSizes(holdingPool(1).pool);
  });
});
