// Pipelining in the process and thread pools (src/worker/pools/slots.ts, slot-main.ts), with real slots: a task seen
// to be short is handed to a slot several jobs at a time and reported back in batches; a slot that dies holding
// several jobs loses none (the one that killed it is found by running each again alone); time-limited and unknown
// tasks run alone; a lone job is not overtaken; recycling counts pipelined jobs. What was sent to each slot is
// recorded from the pool's own messages, so nothing here depends on how long anything takes.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ToSlot } from '../../../src/worker/pools/ipc.ts';
import type { Job, JobHooks, Outcome } from '../../../src/worker/pools/pool.ts';
import { processSlots } from '../../../src/worker/pools/process.ts';
import { PIPELINE_DEPTH, SlotPool, type RecycleOptions, type SlotHandle } from '../../../src/worker/pools/slots.ts';
import { threadSlots } from '../../../src/worker/pools/thread.ts';
import type { WorkOptions } from '../../fixtures/pool-pipeline-app.ts';
import { waitFor } from '../../support/process.ts';
import { tempDirsForFile, type TempDir } from '../../support/tmp.ts';

const appPath = join(import.meta.dirname, '../../fixtures/pool-pipeline-app.ts');
const hooks: JobHooks = { onProgress: () => {} };
const LIMIT_MS = 20_000;
/** More than the pool needs to call a task short and say it pipelines (32 in a row). */
const WARM_UP = 40;
const tempDir = tempDirsForFile('fennel-pipeline-');

function job(options: WorkOptions = {}, extra: Partial<Job> = {}): Job {
  return { id: randomUUID(), name: 'pipe.work', args: [options], kwargs: {}, retries: 0, queue: null, timeLimitSec: null, softTimeLimitSec: null, ...extra };
}

interface Where {
  slot: string;
  seq: number;
}

function where(outcome: Outcome): Where {
  assert.equal(outcome.kind, 'success', JSON.stringify(outcome));
  return JSON.parse((outcome as { resultJson: string }).resultJson) as Where;
}

/** A pool whose slots' `run` messages are recorded: how many jobs each message carried. */
function recordedPool(kind: 'process' | 'thread', size: number, recycle: RecycleOptions = {}): { pool: SlotPool; batches: number[] } {
  const batches: number[] = [];
  const spawn = (kind === 'process' ? processSlots : threadSlots)({ appPath });
  const recording = (): SlotHandle => {
    const handle = spawn();
    const send = handle.send.bind(handle);
    handle.send = (message: ToSlot) => {
      if (message.type === 'run') batches.push(message.jobs.length);
      send(message);
    };
    return handle;
  };
  return { pool: new SlotPool(kind, size, recording, recycle), batches };
}

async function withPool(pool: SlotPool, body: () => Promise<void>): Promise<void> {
  await pool.start();
  try {
    await body();
  } finally {
    await pool.close();
  }
}

/** Runs `pipe.work` until the pool calls it short and pipelines. */
async function warmUp(pool: SlotPool): Promise<void> {
  for (let i = 0; i < WARM_UP; i++) where(await pool.run(job(), hooks));
  assert.equal(pool.takesAhead('pipe.work'), true, 'a task seen short is taken ahead');
  assert.equal(pool.pipelining, true, 'the pool says it pipelines');
}

function runsOf(dir: TempDir, j: Job): number {
  const file = join(dir.path, `ran-${j.id}`);
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
}

for (const kind of ['process', 'thread'] as const) {
  describe(`${kind} pool: pipelining`, () => {
    it('runs a task it has not seen alone, one job per message, and says it does not pipeline', async () => {
      const { pool, batches } = recordedPool(kind, 2);
      await withPool(pool, async () => {
        assert.equal(pool.takesAhead('pipe.work'), false);
        const outcomes = await Promise.all(Array.from({ length: 6 }, () => pool.run(job({}, { name: 'pipe.other' }), hooks)));
        for (const outcome of outcomes) where(outcome);
        // The first job of an unknown task runs alone; what the pool learns from it makes the rest short, but
        // they were queued as lone jobs and stay so.
        assert.deepEqual(batches, [1, 1, 1, 1, 1, 1]);
        assert.equal(pool.pipelining, false);
      });
    });

    it(`hands a short task's jobs to a slot ${PIPELINE_DEPTH} at a time and runs them in order`, async () => {
      const { pool, batches } = recordedPool(kind, 2);
      await withPool(pool, async () => {
        await warmUp(pool);
        batches.length = 0;
        const jobs = Array.from({ length: 64 }, () => job());
        const places = (await Promise.all(jobs.map((j) => pool.run(j, hooks)))).map(where);
        assert.ok(Math.max(...batches) > 1, `several jobs in one message (batches: ${batches.join(',')})`);
        assert.ok(Math.max(...batches) <= PIPELINE_DEPTH, `never more than ${PIPELINE_DEPTH} (batches: ${batches.join(',')})`);
        // In each slot, the jobs ran in the order they were handed to the pool.
        for (const slot of new Set(places.map((p) => p.slot))) {
          const seqs = places.filter((p) => p.slot === slot).map((p) => p.seq);
          assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `slot ${slot} ran its jobs in order`);
        }
      });
    });

    it('loses no job when a slot dies holding several: the one that killed it is lost, each other runs again and succeeds', async () => {
      const { pool, batches } = recordedPool(kind, 2);
      const log = tempDir();
      await withPool(pool, async () => {
        await warmUp(pool);
        batches.length = 0;
        const jobs = Array.from({ length: 16 }, (_, i) => job({ log: log.path, crash: i === 5 }));
        const outcomes = await Promise.all(jobs.map((j) => pool.run(j, hooks)));
        assert.ok(batches[0]! > 1, `the crashing job was sent with others (batches: ${batches.join(',')})`);
        outcomes.forEach((outcome, i) => {
          if (i === 5) assert.equal(outcome.kind, 'lost', JSON.stringify(outcome));
          else where(outcome);
        });
        // It killed its slot twice: among the others, and again alone, which is how it was found out.
        assert.equal(runsOf(log, jobs[5]!), 2);
        for (const [i, j] of jobs.entries()) assert.ok(runsOf(log, j) >= 1 && runsOf(log, j) <= 2, `job ${i} ran once or twice (${runsOf(log, j)})`);
      });
    });

    it("runs a short task's job that has a time limit alone: nothing is sent to its slot until it reports", async () => {
      const { pool } = recordedPool(kind, 2);
      const gate = tempDir();
      await withPool(pool, async () => {
        await warmUp(pool);
        const timed = job({ hold: gate.path }, { timeLimitSec: 60 });
        const held = pool.run(timed, hooks);
        await waitFor(() => existsSync(join(gate.path, `started-${timed.id}`)), 'the timed job to start', LIMIT_MS);
        assert.equal(pool.pipelining, false, 'a lone job stops the pipelining');
        const heldSlot = pool.pidOf(timed.id);
        const others = (await Promise.all(Array.from({ length: 20 }, () => pool.run(job(), hooks)))).map(where);
        if (kind === 'process') assert.ok(others.every((p) => !p.slot.startsWith(`${heldSlot}/`)), 'no job ran on the timed job\'s slot');
        writeFileSync(join(gate.path, 'go'), '');
        where(await held);
      });
    });

    it('keeps a short task short after one slow run, and runs it alone once it has become long', async () => {
      const { pool } = recordedPool(kind, 2);
      await withPool(pool, async () => {
        await warmUp(pool);
        where(await pool.run(job({ busyMs: 50 }), hooks));
        assert.equal(pool.takesAhead('pipe.work'), true, 'one slow run leaves it short');
        assert.equal(pool.pipelining, true);
        for (let i = 0; i < 4 && pool.takesAhead('pipe.work'); i++) where(await pool.run(job({ busyMs: 50 }), hooks));
        assert.equal(pool.takesAhead('pipe.work'), false, 'long after a few slow runs in a row');
        where(await pool.run(job(), hooks)); // a lone job now
        assert.equal(pool.pipelining, false, 'a lone job stops the pipelining');
      });
    });

    it('does not let short jobs overtake a lone job waiting for an empty slot', async () => {
      const { pool } = recordedPool(kind, 1);
      const gate = tempDir();
      await withPool(pool, async () => {
        await warmUp(pool);
        const first = job({ hold: gate.path }, { name: 'pipe.other' });
        const firstRun = pool.run(first, hooks);
        await waitFor(() => existsSync(join(gate.path, `started-${first.id}`)), 'the first lone job to start', LIMIT_MS);
        const lone = pool.run(job({}, { name: 'pipe.other' }), hooks);
        const shorts = Array.from({ length: 10 }, () => pool.run(job(), hooks));
        writeFileSync(join(gate.path, 'go'), '');
        const loneSeq = where(await lone).seq;
        const shortSeqs = (await Promise.all(shorts)).map((o) => where(o).seq);
        assert.ok(where(await firstRun).seq < loneSeq);
        assert.ok(shortSeqs.every((seq) => seq > loneSeq), `the lone job (${loneSeq}) ran before the short ones (${shortSeqs.join(',')})`);
      });
    });
  });
}

describe('process pool: pipelining and recycling', () => {
  it('hands a slot no more jobs than it may run before it is recycled (maxTasksPerChild)', async () => {
    const { pool } = recordedPool('process', 1, { maxTasksPerChild: 5 });
    await withPool(pool, async () => {
      // One run makes the task short: the next 19 are pipelined, up to 8 to a slot were it not for the quota.
      const places: Where[] = [where(await pool.run(job(), hooks))];
      assert.equal(pool.takesAhead('pipe.work'), true);
      places.push(...(await Promise.all(Array.from({ length: 19 }, () => pool.run(job(), hooks)))).map(where));
      const perSlot = new Map<string, number>();
      for (const p of places) perSlot.set(p.slot, (perSlot.get(p.slot) ?? 0) + 1);
      assert.ok([...perSlot.values()].every((n) => n <= 5), `no child ran more than 5 (${[...perSlot.values()].join(',')})`);
      assert.ok(perSlot.size >= 4, `20 jobs took at least 4 children (${perSlot.size})`);
    });
  });
});
