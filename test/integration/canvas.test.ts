// The canvas with real worker processes, on SQLite, Redis and RabbitMQ (results in Redis): chain, group and
// chord results; a chord's members keep their messages small however large the chord; and a chord whose
// members' worker is SIGKILLed mid-run still runs its callback exactly once, with every result.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { chain, chord, Fennel, group } from '../../src/index.ts';
import type * as FixtureModule from './fixtures/tasks.ts';
import { startWorker as startCliWorker, stopProcess, tempDb, waitFor, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';

type Fixtures = typeof FixtureModule;
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const sqlite = tempDb();
const redisSkip = await redisSkipReason();
const amqpSkip = (await rabbitSkipReason()) || redisSkip;
const REDIS_URL = redisUrlForTest(REDIS_DB.semantics);
const run = Date.now().toString(36);

after(() => sqlite.cleanup());

function lines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter(Boolean);
}

function engineSuite(engine: string, broker: string, backend: string, skip: string | false, prepare: () => Promise<void>): void {
  describe(`canvas on ${engine}`, { skip }, () => {
    let app: Fennel;
    let t: Fixtures;
    const workers: RunningWorker[] = [];
    const queue = `${engine}-canvas-${run}`;
    const env = { FENNEL_BROKER_URL: broker, FENNEL_RESULT_BACKEND: backend, FENNEL_VISIBILITY_TIMEOUT_SEC: '2', FENNEL_DEFAULT_QUEUE: queue };
    const startWorker = async (): Promise<RunningWorker> => {
      const w = await startCliWorker(TASKS, broker, ['-P', 'process', '-c', '2', '--loglevel', 'error'], env);
      workers.push(w);
      return w;
    };

    before(async () => {
      await prepare();
      // The fixture module reads its broker from the environment; a fresh copy per engine.
      Object.assign(process.env, env);
      const fixtures = (await import(`./fixtures/tasks.ts?engine=${engine}`)) as Fixtures;
      // The fixtures import 'fennel' (the package), this file src/: the same class, two declarations.
      app = fixtures.app as unknown as Fennel;
      t = fixtures;
    });
    after(async () => {
      await Promise.all(workers.map((w) => stopProcess(w)));
      await app?.close();
      for (const key of Object.keys(env)) delete process.env[key];
      if (engine === 'amqp') await removeRabbitQueues([queue]);
    });

    it('chain, group and chord give their results', async () => {
      await startWorker();
      assert.equal(await chain(t.add.s(1, 2), t.mul.s(10), t.add.s(5)).applyAsync().get({ timeoutMs: 60_000 }), 35);
      assert.deepEqual(await group([t.add.s(1, 1), t.mul.s(3, 3)]).applyAsync().get({ timeoutMs: 60_000 }), [2, 9]);
      assert.equal(await chord(Array.from({ length: 50 }, (_, i) => t.add.s(i, 0)), t.total.s()).applyAsync().get({ timeoutMs: 60_000 }), 1225);
      assert.equal(await chain(t.add.s(1, 1), group([t.mul.s(2), t.mul.s(3)]), t.total.s()).applyAsync().get({ timeoutMs: 60_000 }), 10);
    });

    it('a chord runs its callback exactly once, with every result, when the worker holding members is SIGKILLed', async () => {
      const ledger = join(sqlite.dir, `${engine}-chord.log`);
      writeFileSync(ledger, '');
      const second = await startWorker();
      const size = 120;
      const result = chord(Array.from({ length: size }, (_, i) => t.member.s(i, ledger, 20)), t.collect.s(ledger)).applyAsync();
      await waitFor(() => lines(ledger).length >= size / 3, 'a third of the members to run', 60_000);
      second.child.kill('SIGKILL');
      await second.exited;
      await startWorker();
      assert.equal(await result.get({ timeoutMs: 120_000 }), (size * (size - 1)) / 2, 'the callback got every result');
      // Members the killed worker held run again after the visibility timeout: let them, then count callbacks.
      await new Promise((r) => setTimeout(r, 3_000));
      const callbacks = lines(ledger).filter((l) => l.startsWith('callback'));
      assert.equal(callbacks.length, 1, `the callback ran once (${callbacks.join('; ')})`);
      assert.match(callbacks[0]!, new RegExp(`^callback ${size} `));
      const members = new Set(lines(ledger).filter((l) => l.startsWith('member')).map((l) => l.split(' ')[1]));
      assert.equal(members.size, size, 'every member ran');
    });
  });
}

engineSuite('sqlite', sqlite.url, sqlite.url, false, async () => {});
engineSuite('redis', REDIS_URL, REDIS_URL, redisSkip, () => flushRedisDb(REDIS_DB.semantics));
engineSuite('amqp', RABBIT_URL, REDIS_URL, amqpSkip, () => flushRedisDb(REDIS_DB.semantics));

describe('large fan-out', () => {
  it("a chord member's message does not grow with the chord: 2 members or 10,000, the same size", async () => {
    const url = `sqlite://${join(sqlite.dir, 'fanout.db')}`;
    const app = new Fennel({ broker: url });
    const add = app.task('test.add', (a: number, b: number) => a + b);
    const total = app.task('test.total', (xs: number[]) => xs.reduce((s, x) => s + x, 0));
    try {
      const largest = async (queue: string, size: number): Promise<number> => {
        await chord(Array.from({ length: size }, (_, i) => add.s(i, i).set({ queue })), total.s().set({ queue: `${queue}-cb` })).applyAsync().sent;
        const db = new Database(join(sqlite.dir, 'fanout.db'), { readonly: true });
        try {
          return (db.prepare('SELECT MAX(LENGTH(envelope)) AS n FROM fennel_messages WHERE queue = ?').get(queue) as { n: number }).n;
        } finally {
          db.close();
        }
      };
      const small = await largest('fan-2', 2);
      const big = await largest('fan-10000', 10_000);
      // Digits of the index and the argument values differ; the member list is not in any message.
      assert.ok(big - small < 40, `a member of a 10,000 chord is ${big} bytes, of a 2 chord ${small}`);
    } finally {
      await app.close();
    }
  });
});
