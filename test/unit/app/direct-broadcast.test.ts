// Direct and broadcast calls through the app and in-process workers (memory://, async pool): who runs what, and
// what the handles report. The engines' own side is the messaging conformance suite; real worker processes (and a
// SIGKILL) are test/integration/direct-broadcast.test.ts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pino from 'pino';
import { BroadcastResult, ConfigError, currentTask, Fennel } from '../../../src/index.ts';
import { Worker } from '../../../src/worker/worker.ts';
import { sleep } from '../../conformance/helpers/wait.ts';

/** One app per process, as it would be: workers and the producer share only the memory:// broker and backend. */
function appsOn(broker: string, backend: string, define: (app: Fennel) => void): () => Fennel {
  return () => {
    const app = new Fennel({ broker, backend });
    define(app);
    return app;
  };
}

async function withWorkers<T>(makeApp: () => Fennel, names: string[], fn: () => Promise<T>): Promise<T> {
  const workers = names.map((hostname) => new Worker(makeApp(), { pool: 'async', concurrency: 2, hostname, logger: pino({ level: 'silent' }) }));
  for (const w of workers) await w.start();
  try {
    return await fn();
  } finally {
    for (const w of workers) await w.stop(1);
  }
}

const urls = (): [string, string] => [`memory://${randomUUID()}`, `memory://${randomUUID()}`];

describe('direct calls (applyAsync({ worker }))', () => {
  it('run on the named worker only, through its queue <name>.dq2', async () => {
    const make = appsOn(...urls(), (app) => app.task('where', () => currentTask().queue));
    const app = make();
    await withWorkers(make, ['a@test', 'b@test'], async () => {
      const results = Array.from({ length: 6 }, () => app.sendTask<string>('where', [], { worker: 'b@test' }));
      for (const r of results) assert.equal(await r.get({ timeoutMs: 5000 }), 'b@test.dq2');
      assert.equal(results[0]!.queue, 'b@test.dq2');
    });
    await app.close();
  });

  it('refuses worker with queue or broadcast, and a name that is not one', async () => {
    const app = new Fennel({ broker: `memory://${randomUUID()}` });
    const t = app.task('t', () => 1);
    assert.throws(() => t.applyAsync([], { worker: 'a@h', queue: 'q' }), ConfigError);
    assert.throws(() => t.applyAsync([], { worker: 'a@h', broadcast: true }), ConfigError);
    assert.throws(() => t.applyAsync([], { worker: '' }), ConfigError);
    await app.close();
  });
});

describe('broadcast calls', () => {
  it('every worker online runs it once, and the handle has one result per worker', async () => {
    const runs: string[] = [];
    const make = appsOn(...urls(), (app) =>
      app.task('ping', (n: number) => {
        runs.push(currentTask().id);
        return n * 2;
      }, { broadcast: true }),
    );
    const app = make();
    await withWorkers(make, ['w1@test', 'w2@test', 'w3@test'], async () => {
      const handle = app.sendTask<number>('ping', [21], { broadcast: true });
      assert.ok(handle instanceof BroadcastResult);
      assert.deepEqual(await handle.workers(), ['w1@test', 'w2@test', 'w3@test']);
      const outcome = await handle.collect({ timeoutMs: 5000 });
      assert.deepEqual([...outcome.results.entries()].sort(), [['w1@test', 42], ['w2@test', 42], ['w3@test', 42]]);
      assert.deepEqual(outcome.missing, []);
      assert.equal(await handle.result('w2@test').get({ timeoutMs: 1000 }), 42);
      await sleep(200);
      assert.deepEqual(runs.sort(), ['w1@test', 'w2@test', 'w3@test'].map((w) => `${handle.id}/${w}`), 'each worker ran it exactly once, under its own result id');
    });
    await app.close();
  });

  it('a worker that starts after the broadcast does not run it; one named but gone is reported missing', async () => {
    const runs: string[] = [];
    const make = appsOn(...urls(), (app) => app.task('note', () => void runs.push(currentTask().id)));
    const app = make();
    await withWorkers(make, ['early@test'], async () => {
      const handle = app.sendTask('note', [], { broadcast: true });
      const outcome = await handle.collect({ timeoutMs: 5000 });
      assert.deepEqual([...outcome.results.keys()], ['early@test']);
      // (memory:// engines are shared by URL in a process, and a stopping worker closes its app's: so the late
      // worker stops last, when the whole test is done.)
      await withWorkers(make, ['late@test'], async () => {
        await sleep(300);
        assert.equal(runs.length, 1, 'the late worker did not run the earlier broadcast');
        const named = await app.sendTask('note', [], { broadcast: true }).collect({ timeoutMs: 1000, workers: ['early@test', 'late@test', 'gone@test'] });
        assert.deepEqual(named.missing, ['gone@test']);
        assert.deepEqual([...named.results.keys()].sort(), ['early@test', 'late@test']);
      });
    });
    await app.close();
  });
});
