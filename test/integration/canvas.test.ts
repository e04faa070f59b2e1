// The canvas with real worker processes, on SQLite, Redis and RabbitMQ (results in Redis): chain, group and
// chord results; a chord's members keep their messages small however large the chord; a chord callback
// that Fennel workers run gets its results by reference (one a Celery worker may run, inline); and a chord
// whose members' worker is SIGKILLed mid-run still runs its callback exactly once, with every result.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { chain, chord, Fennel, group, Signature, type AsyncResult, type RemoteTaskError } from '../../src/index.ts';
import { ChordResults } from '../../src/protocol/json.ts';
import type * as FixtureModule from './fixtures/tasks.ts';
import { startWorker as startCliWorker, stopProcess, tempDb, waitFor, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';

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

/** The bodies of the messages waiting in a queue that no worker consumes, as the broker holds them. */
type Peek = (queue: string) => Promise<string[]>;

const peekSqlite: Peek = async (queue) => {
  const db = new Database(sqlite.path, { readonly: true });
  try {
    const rows = db.prepare('SELECT envelope FROM fennel_message_envelopes WHERE queue = ?').all(queue) as Array<{ envelope: string }>;
    return rows.map((row) => (JSON.parse(row.envelope) as { body: string }).body);
  } finally {
    db.close();
  }
};

const peekRedis: Peek = async (queue) => {
  const client = testRedisClient(REDIS_DB.semantics);
  try {
    const envelopes = await client.lrange(queue, 0, -1);
    return envelopes.map((text) => Buffer.from((JSON.parse(text) as { body: string }).body, 'base64').toString('utf8'));
  } finally {
    client.disconnect();
  }
};

function engineSuite(engine: string, broker: string, backend: string, skip: string | false, prepare: () => Promise<void>, peek?: Peek): void {
  describe(`canvas on ${engine}`, { skip }, () => {
    let app: Fennel;
    let t: Fixtures;
    const workers: RunningWorker[] = [];
    const queue = `${engine}-canvas-${run}`;
    const env = { FENNEL_BROKER_URL: broker, FENNEL_RESULT_BACKEND: backend, FENNEL_VISIBILITY_TIMEOUT_SEC: '2', FENNEL_DEFAULT_QUEUE: queue };
    const startWorker = async (...flags: string[]): Promise<RunningWorker> => {
      const w = await startCliWorker(TASKS, broker, ['-P', 'process', '-c', '2', '--loglevel', 'error', ...flags], env);
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

    it('chords nest: a chord in a chord header (three levels deep), and a chain ending in a task after a nested chord, report to the enclosing chord', async () => {
      // sum of sums: each inner chord's callback is one member of the outer chord.
      const inner = (from: number): ReturnType<typeof chord> => chord([t.add.s(from, 0), t.add.s(from + 1, 0)], t.total.s());
      const two = chord([inner(0), inner(2)], t.total.s());
      assert.equal(await chord([two, inner(4), t.add.s(100, 0)], t.total.s()).applyAsync().get({ timeoutMs: 60_000 }), 0 + 1 + 2 + 3 + 4 + 5 + 100);
      assert.equal(await chord([chain(inner(1), t.mul.s(10)), t.add.s(7, 0)], t.total.s()).applyAsync().get({ timeoutMs: 60_000 }), (1 + 2) * 10 + 7);
      // What cannot report to the enclosing chord is refused (by applyAsync, or by its result where the header is
      // sent once the join's size is stored: Redis), not left waiting for ever.
      const refused = await (async () => {
        try {
          return await chord([chord([t.add.s(1, 0)], group([t.mul.s(1), t.mul.s(2)]))], t.total.s()).applyAsync().get({ timeoutMs: 60_000 });
        } catch (error) {
          return error;
        }
      })();
      assert.match(String(refused), /ConfigError: a chord inside a group or a chord's header must end in a task, not a group/);
    });

    it('a task that rejects its message, or is not registered, fails the rest of its chain', async () => {
      if (workers.length === 0) await startWorker();
      const rejected = chain(t.add.s(1, 2), t.refuse.si('not today'), t.add.s(1)).applyAsync();
      await assert.rejects(rejected.get({ timeoutMs: 60_000 }), (error: RemoteTaskError) => error.remoteName === 'Reject');
      const nobody = new Signature(() => app, 'test.nobody', [], {}, {}, true);
      const unknown = chain(t.add.s(1, 2), nobody as never, t.add.s(1)).applyAsync();
      await assert.rejects(unknown.get({ timeoutMs: 60_000 }), (error: RemoteTaskError) => error.remoteName === 'NotRegistered');
    });

    /**
     * Runs a chord of 4 adds whose callback goes to a queue no worker consumes yet; the callback's message
     * body, and its result. (The fixtures' signatures are typed from the package's declarations, chord from src/.)
     */
    const parkedCallback = async (callbackQueue: string, callback: { set(options: { queue: string }): unknown }): Promise<{ body: string; result: AsyncResult<unknown> }> => {
      const result = chord(Array.from({ length: 4 }, (_, i) => t.add.s(i, 1_000_000)), callback.set({ queue: callbackQueue }) as never).applyAsync();
      let bodies: string[] = [];
      await waitFor(async () => (bodies = await peek!(callbackQueue)).length > 0, 'the callback message', 60_000);
      return { body: bodies[0]!, result };
    };

    it('a chord callback that Fennel workers run carries a reference to the results, not the results', { skip: !peek && 'no peek at this broker' }, async () => {
      await startWorker();
      const callbackQueue = `${queue}-by-reference`;
      const { body, result } = await parkedCallback(callbackQueue, t.total.s());
      const [args] = JSON.parse(body) as [unknown[]];
      assert.equal((args[0] as { __type__?: string }).__type__, 'fennel_chord_results', body);
      assert.ok(!body.includes('1000003'), `the results are not in the message: ${body}`);
      // The worker that runs it reads them from the result backend.
      await startWorker('-Q', callbackQueue);
      assert.equal(await result.get({ timeoutMs: 60_000 }), 4_000_006);
    });

    it('a chord callback this worker does not know (Celery may run it) carries the results inline', { skip: !peek && 'no peek at this broker' }, async () => {
      await startWorker();
      const elsewhere = app.task('test.elsewhere', (xs: number[]) => xs.length);
      const { body } = await parkedCallback(`${queue}-inline`, elsewhere.s());
      const [args] = JSON.parse(body) as [unknown[]];
      assert.deepEqual(args[0], [1_000_000, 1_000_001, 1_000_002, 1_000_003]);
    });

    it('a callback whose results are gone from the backend fails with ChordError instead of running without them', async () => {
      await startWorker();
      const result = t.total.applyAsync([new ChordResults(`gone-${run}`, 2) as unknown as number[]]);
      await assert.rejects(result.get({ timeoutMs: 60_000 }), (error: RemoteTaskError) => {
        assert.equal(error.remoteName, 'ChordError', String(error));
        assert.match(error.remoteMessage, /no longer in the result backend/);
        return true;
      });
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

engineSuite('sqlite', sqlite.url, sqlite.url, false, async () => {}, peekSqlite);
engineSuite('redis', REDIS_URL, REDIS_URL, redisSkip, () => flushRedisDb(REDIS_DB.semantics), peekRedis);
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
          return (db.prepare('SELECT MAX(LENGTH(envelope)) AS n FROM fennel_message_envelopes WHERE queue = ?').get(queue) as { n: number }).n;
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
