// Memoized tasks (issue #19, src/app/memo.ts) end to end: real `fennel worker` processes on redis:// (database
// REDIS_DB.semantics, flushed before and after; the queues are unique to the run) with their cache on a ring of three
// private memcached servers (test/support/memcached.ts), and on the default lru://. Each run of a memoized task
// appends a line to a file, so the test counts computations; nothing depends on how long anything took.
//
//   - two worker processes compute each of 20 calls once; the same 20 calls again send no message (the queue's
//     counts do not move), and are SUCCESS at once, also for another process reading the result backend by id;
//   - a call sent anyway (a signature, as a canvas sends it) is answered by the worker from the cache, unrun;
//   - a failure is never cached; invalidate() forgets one call; a task's own key function; junk under a key is a miss;
//   - a cached result passed as an argument (an object reference) is read by the worker like any result;
//   - every memcached server SIGKILLed: calls are sent and computed, never failed;
//   - on lru:// (this process only), the producer answers a repeated call from what it read the first time.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AsyncResult, Cache, Fennel } from '../../src/index.ts';
import { memoKey } from '../../src/cache/keys.ts';
import { States } from '../../src/protocol/states.ts';
import type * as CacheApp from './fixtures/cache-app.ts';
import { memcachedSkipReason, startMemcached, type RunningMemcached } from '../support/memcached.ts';
import { fileLines, remoteFailure, startWorker, stopProcess, waitFor, type RunningWorker } from '../support/process.ts';
import { flushRedisDb, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { makeTempDir } from '../support/tmp.ts';

const TASKS = join(import.meta.dirname, 'fixtures/cache-app.ts');
const WAIT_MS = 60_000;
const DB = REDIS_DB.semantics;
const REDIS_URL = redisUrlForTest(DB);
const skip = (await redisSkipReason()) || memcachedSkipReason();

describe('memoized tasks', { skip }, () => {
  const dir = makeTempDir('fennel-cache-');
  const runsFile = dir.file('runs.txt');
  const servers: RunningMemcached[] = [];
  const workers: RunningWorker[] = [];
  let tasks: typeof CacheApp;
  let queue: string;
  let memcachedUrl: string;

  /** The lines the tasks appended: one per computation. */
  const runs = (prefix: string): string[] => fileLines(runsFile).filter((line) => line.startsWith(`${prefix} `));

  /** The test's own app on the run's queue (the fixture's app is built from the environment at import). */
  async function loadApp(env: Record<string, string>): Promise<typeof CacheApp> {
    Object.assign(process.env, env);
    // A fresh module instance per configuration: the query string makes the loader import it again.
    return (await import(`${TASKS}?${randomUUID()}`)) as typeof CacheApp;
  }

  before(async () => {
    await flushRedisDb(DB);
    for (let i = 0; i < 3; i++) servers.push(await startMemcached());
    memcachedUrl = `memcached://${servers.map((s) => s.address).join(',')}`;
    queue = `cache-${randomUUID().slice(0, 8)}`;
    const env = { FENNEL_RESULT_BACKEND: REDIS_URL, FENNEL_DEFAULT_QUEUE: queue, FENNEL_CACHE_URL: memcachedUrl, CACHE_RUNS_FILE: runsFile };
    tasks = await loadApp({ FENNEL_BROKER_URL: REDIS_URL, ...env });
    workers.push(await startWorker(TASKS, REDIS_URL, ['-P', 'process', '-c', '2', '-n', 'one@cache'], env));
    workers.push(await startWorker(TASKS, REDIS_URL, ['-P', 'async', '-c', '4', '-n', 'two@cache'], env));
  });

  after(async () => {
    await Promise.all(workers.map((w) => stopProcess(w, 'SIGTERM')));
    await tasks?.app.close();
    await Promise.all(servers.map((s) => s.stop()));
    await flushRedisDb(DB);
    dir.remove();
  });

  /** Ready, scheduled and held messages of the run's queue. */
  async function queueCounts(): Promise<number> {
    const row = (await tasks.app.transport.stats()).find((s) => s.queue === queue);
    return row ? row.ready + row.scheduled + row.unacked : 0;
  }

  it('computes each call once across two workers; the same calls again send nothing and are SUCCESS at once, for any reader', async () => {
    const xs = Array.from({ length: 20 }, (_, i) => i + 1);
    const first = xs.map((x) => tasks.square.delay(x));
    assert.deepEqual(await Promise.all(first.map((r) => r.get({ timeoutMs: WAIT_MS }))), xs.map((x) => x * x));
    assert.equal(runs('square').length, 20);
    // Results are stored before their messages are acknowledged: wait for the last acks, so that the count below
    // says what the second round sent.
    await waitFor(async () => (await queueCounts()) === 0, 'the first round to be acknowledged', WAIT_MS);

    const again = xs.map((x) => tasks.square.delay(x));
    assert.deepEqual(await Promise.all(again.map((r) => r.get({ timeoutMs: WAIT_MS }))), xs.map((x) => x * x));
    await Promise.all(again.map((r) => r.sent));
    assert.equal(runs('square').length, 20, 'no call was computed again');
    assert.equal(await queueCounts(), 0, 'no message was sent');
    for (const r of again) assert.equal(r.state, States.SUCCESS);
    assert.ok(again.every((r, i) => r.id !== first[i]!.id), 'each call has an id of its own');

    // Another process knows the hit by its id alone: the outcome is in the result backend.
    const reader = new Fennel({ broker: REDIS_URL });
    try {
      const stored = new AsyncResult<number>(again[4]!.id, () => reader.backend);
      assert.equal(await stored.get({ timeoutMs: WAIT_MS }), 25);
    } finally {
      await reader.close();
    }
  });

  it('a call sent anyway (a signature, as a canvas sends it) is answered by the worker from the cache, without running', async () => {
    assert.equal(await tasks.square.delay(31).get({ timeoutMs: WAIT_MS }), 961);
    const before = runs('square 31').length;
    assert.equal(before, 1);
    const viaWorker = tasks.square.s(31).applyAsync();
    assert.equal(await viaWorker.get({ timeoutMs: WAIT_MS }), 961);
    assert.equal(runs('square 31').length, 1, 'the worker did not run it');
  });

  it('never caches a failure, forgets one call on invalidate(), and keys by the task’s own key function', async () => {
    for (let i = 0; i < 2; i++) assert.equal((await remoteFailure(tasks.fails.delay(1), WAIT_MS)).remoteName, 'RangeError');
    assert.equal(runs('fails 1').length, 2);

    assert.equal(await tasks.square.delay(41).get({ timeoutMs: WAIT_MS }), 1681);
    await tasks.square.invalidate(41);
    assert.equal(await tasks.square.delay(41).get({ timeoutMs: WAIT_MS }), 1681);
    assert.equal(runs('square 41').length, 2, 'computed again after invalidate');

    assert.equal(await tasks.greet.delay({ id: 7, name: 'Ada' }).get({ timeoutMs: WAIT_MS }), 'hello Ada');
    assert.equal(await tasks.greet.delay({ id: 7, name: 'someone else' }).get({ timeoutMs: WAIT_MS }), 'hello Ada', 'one key for user 7');
    assert.equal(runs('greet 7').length, 1);
  });

  it('something under a call’s key that is not a result (another program’s) is a miss: the call is sent and run', async () => {
    const junk = new Cache(memcachedUrl);
    try {
      assert.equal(await junk.setText(memoKey('cache.square', [81]), 'not { json', 0), true);
    } finally {
      await junk.close();
    }
    assert.equal(await tasks.square.delay(81).get({ timeoutMs: WAIT_MS }), 6561);
    assert.equal(runs('square 81').length, 1);
    assert.equal(await tasks.square.delay(81).get({ timeoutMs: WAIT_MS }), 6561, 'and the result replaced it');
    assert.equal(runs('square 81').length, 1);
  });

  it('a cached result passed as an argument is read by the worker like any other result', async () => {
    assert.equal(await tasks.square.delay(51).get({ timeoutMs: WAIT_MS }), 2601);
    const cached = tasks.square.delay(51);
    const sum = tasks.add.delay(cached, 1);
    assert.equal(await sum.get({ timeoutMs: WAIT_MS }), 2602);
    assert.equal(runs('square 51').length, 1);
  });

  it('with every memcached server SIGKILLed, calls are sent and computed, never failed', async () => {
    await Promise.all(servers.map((s) => s.kill('SIGKILL')));
    const results = [61, 62, 61].map((x) => tasks.square.delay(x));
    assert.deepEqual(await Promise.all(results.map((r) => r.get({ timeoutMs: WAIT_MS }))), [3721, 3844, 3721]);
    assert.equal(runs('square 61').length, 2, 'nothing cached, so computed each time');
    const misses = tasks.app.cache.stats();
    assert.ok(misses.some((s) => s.errors > 0), 'the producer counted its cache errors');
    for (const s of servers) await s.restart();
  });

  it('on lru:// (each process its own), the producer answers a call it has read before', async () => {
    const lruQueue = `${queue}-lru`;
    const env = { FENNEL_RESULT_BACKEND: REDIS_URL, FENNEL_DEFAULT_QUEUE: lruQueue, FENNEL_CACHE_URL: 'lru://', CACHE_RUNS_FILE: runsFile };
    const local = await loadApp({ FENNEL_BROKER_URL: REDIS_URL, ...env });
    const worker = await startWorker(TASKS, REDIS_URL, ['-P', 'async', '-n', 'lru@cache'], env);
    try {
      assert.equal(await local.square.delay(71).get({ timeoutMs: WAIT_MS }), 5041);
      const again = local.square.delay(71);
      assert.equal(await again.get({ timeoutMs: WAIT_MS }), 5041);
      assert.equal(runs('square 71').length, 1);
      const [stats] = local.app.cache.stats();
      assert.equal(stats!.engine, 'lru');
      assert.equal(stats!.hits, 1);
    } finally {
      await stopProcess(worker, 'SIGTERM');
      await local.app.close();
    }
  });
});
