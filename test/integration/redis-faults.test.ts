// Real `fennel worker` processes on a real Redis, through the faults a Redis deployment sees: a worker
// SIGKILLed mid-run, a task that outlives several visibility timeouts, every Fennel connection killed by
// the server (CLIENT KILL), and the server itself restarted (with an append-only file, on a private port).
// Each run logs one line per task run (fixtures/tasks.ts `record`), so lost tasks and duplicate runs are
// counted, not guessed. Database 12 of 127.0.0.1:6379 belongs to this file; the restart test runs its own
// redis-server on port 6391. Waits poll with generous deadlines; nothing asserts on elapsed time.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { sleep } from '../conformance/helpers/wait.ts';
import { assertNoneLost, runsById } from '../support/ledger.ts';
import { fileLines, isRunning, startWorker, stopProcess, track, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { flushRedisDb, REDIS_DB, redisAnswers, redisSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const DB = REDIS_DB.faults;
const URL = redisUrlForTest(DB);
const PRIVATE_PORT = 6391;
const skip = await redisSkipReason();
process.env['FENNEL_BROKER_URL'] = URL;
process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = '2';
const { app, record } = await import('./fixtures/tasks.ts');
const { Fennel } = await import('fennel');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
let dir: TempDir;
let workers: RunningWorker[] = [];

async function worker(url: string, queue: string, flags: string[]): Promise<RunningWorker> {
  const w = await startWorker(TASKS, url, ['-Q', queue, '--loglevel', 'warn', ...flags]);
  workers.push(w);
  return w;
}



/** The Redis client ids of the Fennel connections (named fennel:<pid>) of these processes, on one database. */
async function fennelConnections(admin: Redis, pids: number[]): Promise<Array<{ id: string; name: string; flags: string }>> {
  const names = new Set(pids.map((pid) => `fennel:${pid}`));
  const list = (await admin.client('LIST')) as string;
  return list
    .split('\n')
    .filter(Boolean)
    .map((line) => Object.fromEntries(line.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) as Record<string, string>)
    .filter((c) => names.has(c['name']!) && c['db'] === String(DB))
    .map((c) => ({ id: c['id']!, name: c['name']!, flags: c['flags']! }));
}

/** Where each of these tasks is now, for a failure message: runs logged, stored state, and where its message is. */
async function whereAre(redis: Redis, ids: string[], log: string, queue: string): Promise<string> {
  const runs = runsById(log);
  const find = (texts: string[], id: string): number => texts.filter((text) => text.includes(id)).length;
  const buckets = [queue, `${queue}\x06\x163`, `${queue}\x06\x166`, `${queue}\x06\x169`];
  const listed = (await Promise.all(buckets.map((b) => redis.lrange(b, 0, -1)))).flat();
  const unacked = await redis.hvals('unacked');
  const scheduled = await redis.zrange('fennel.scheduled', 0, -1);
  const dead = await redis.hvals('fennel.dead_letters');
  const lines = await Promise.all(
    ids.map(async (id) => {
      const meta = await redis.get(`celery-task-meta-${id}`);
      const status = meta ? (JSON.parse(meta) as { status: string }).status : 'none';
      return `${id}: runs ${runs.get(id) ?? 0}, stored ${status}, queued ${find(listed, id)}, unacked ${find(unacked, id)}, scheduled ${find(scheduled, id)}, dead ${find(dead, id)}`;
    }),
  );
  return lines.join('\n');
}

type Settled = { ok: true; value: number } | { ok: false; error: unknown };

/** Waits for a result without ever leaving a rejection unhandled (a failure is collected, and reported at the end). */
function settle(promise: Promise<number>): Promise<Settled> {
  return promise.then(
    (value) => ({ ok: true, value }),
    (error: unknown) => ({ ok: false, error }),
  );
}

/** The results, in order; on a failure, names every task that has none, why, and where it is. */
async function allResults(results: Array<{ id: string }>, values: Array<Promise<Settled>>, redis: Redis, log: string, queue: string): Promise<number[]> {
  const settled = await Promise.all(values);
  const failed = results.map((r, i) => ({ id: r.id, s: settled[i]! })).filter(({ s }) => !s.ok);
  if (failed.length) {
    const byReason = new Map<string, string[]>();
    for (const { id, s } of failed) {
      const reason = String((s as { error: unknown }).error).replace(/[0-9a-f-]{36}/g, '<id>');
      byReason.set(reason, [...(byReason.get(reason) ?? []), id]);
    }
    const parts: string[] = [];
    for (const [reason, ids] of byReason) parts.push(`${ids.length}× ${reason}; for example:\n${await whereAre(redis, ids.slice(0, 3), log, queue)}`);
    assert.fail(`${failed.length} of ${results.length} result(s) did not arrive:\n${parts.join('\n')}`);
  }
  return settled.map((s) => (s as { value: number }).value);
}

describe('workers on Redis, through faults', { skip }, () => {
  before(async () => {
    dir = makeTempDir('fennel-redis-faults-');
    await flushRedisDb(DB);
  });
  afterEach(async () => {
    await Promise.all(workers.map((w) => stopProcess(w)));
    workers = [];
  });
  after(async () => {
    await Promise.all(workers.map((w) => stopProcess(w)));
    await app.close();
    await flushRedisDb(DB);
    dir?.remove();
  });

  it('runs every one of 2,000 tasks when one of two workers is SIGKILLed mid-run and another takes over', async (t) => {
    const queue = uniqueQueue('redis-kill');
    const log = join(dir.path, 'kill.log');
    writeFileSync(log, '');
    const total = 2000;
    const results = record.delayMany(Array.from({ length: total }, (_, i) => [i, log, 2] as [number, string, number]), { queue });
    const values = results.map((r) => settle(r.get({ timeoutMs: 60_000 })));
    const first = await worker(URL, queue, ['-c', '2', '-P', 'process']);
    await worker(URL, queue, ['-c', '4', '-P', 'async']);
    // Killed once it has done some of the work, while it holds a prefetch window (2 × 4).
    await waitFor(() => fileLines(log).length > total / 4, 'a quarter of the tasks to run', 60_000);
    await stopProcess(first, 'SIGKILL');
    await worker(URL, queue, ['-c', '2', '-P', 'process']);
    const inspect = testRedisClient(DB);
    try {
      assert.deepEqual(await allResults(results, values, inspect, log, queue), Array.from({ length: total }, (_, i) => i * 2), 'every result arrives, correct and in order');
    } finally {
      inspect.disconnect();
    }
    const twice = assertNoneLost(t, log, results.map((r) => r.id), 'SIGKILL');
    assert.ok(twice <= 2 * 4 + 2, `only the killed worker's window (8, plus its running tasks) may have run twice (${twice})`);
    await waitFor(async () => (await app.transport.stats()).filter((s) => s.queue === queue).every((s) => s.ready + s.scheduled + s.unacked === 0), 'the queue empty and nothing unacked', 30_000);
  });

  it('does not run a task twice while its live worker holds it for three visibility timeouts (the lease is renewed)', async (t) => {
    const queue = uniqueQueue('redis-long');
    const log = join(dir.path, 'long.log');
    writeFileSync(log, '');
    await worker(URL, queue, ['-c', '2', '-P', 'async']);
    const long = record.delayMany([[1, log, 6_000], [2, log, 6_000]], { queue });
    await waitFor(() => fileLines(log).length === 2, 'both long tasks to start');
    // A second, idle worker on the queue: a message restored behind the holder's back would go to it.
    await worker(URL, queue, ['-c', '2', '-P', 'async']);
    assert.deepEqual(await Promise.all(long.map((r) => r.get({ timeoutMs: 60_000 }))), [2, 4]);
    assert.equal(assertNoneLost(t, log, long.map((r) => r.id), 'long tasks'), 0, 'neither long task ran twice');
    assert.equal(new Set(fileLines(log).map((l) => l.split(' ')[1])).size, 1, 'both ran in the first worker only');
    assert.deepEqual(await app.transport.stats().then((s) => s.find((row) => row.queue === queue)), { queue, ready: 0, scheduled: 0, unacked: 0 });
  });

  it('loses nothing when Redis kills every Fennel connection (CLIENT KILL) during a run of 1,000 tasks: producers and workers reconnect', async (t) => {
    const queue = uniqueQueue('redis-client-kill');
    const log = join(dir.path, 'client-kill.log');
    writeFileSync(log, '');
    const admin = testRedisClient(DB);
    try {
      const a = await worker(URL, queue, ['-c', '4', '-P', 'async']);
      const b = await worker(URL, queue, ['-c', '2', '-P', 'process']);
      const pids = [process.pid, a.child.pid!, b.child.pid!];
      const total = 1000;
      const batches = 20;
      const results: Array<ReturnType<typeof record.delay>> = [];
      const values: Array<Promise<Settled>> = [];
      let killed = 0;
      let rounds = 0;
      const kinds = new Set<string>();
      /** Kills every connection of the producer (this process: its producer, result reader and subscriber) and of both workers. */
      const killAll = async (): Promise<void> => {
        for (const c of await fennelConnections(admin, pids)) {
          killed += Number(await admin.client('KILL', 'ID', c.id));
          kinds.add(c.flags.includes('P') ? 'pubsub' : 'normal');
        }
        rounds++;
      };
      // Batches are published while the connections are being killed, so some kills land on a publish,
      // a fetch, a store or an ack in flight.
      let publishing = true;
      const killer = (async () => {
        while (publishing || rounds < 6) {
          await sleep(120);
          await killAll();
        }
      })();
      for (let i = 0; i < batches; i++) {
        const batch = record.delayMany(Array.from({ length: total / batches }, (_, j) => [i * 50 + j, log, 5] as [number, string, number]), { queue });
        results.push(...batch);
        values.push(...batch.map((r) => settle(r.get({ timeoutMs: 45_000 }))));
        await sleep(30);
      }
      publishing = false;
      await killer;
      t.diagnostic(`CLIENT KILL: ${killed} connections killed in ${rounds} rounds (${[...kinds].join(', ')})`);
      assert.ok(killed >= 3 * rounds, `connections of the producer and both workers were killed (${killed})`);
      assert.deepEqual(await allResults(results, values, admin, log, queue), Array.from({ length: total }, (_, i) => i * 2), 'every result arrives, correct');
      assertNoneLost(t, log, results.map((r) => r.id), 'CLIENT KILL');
      assert.ok(isRunning(a) && isRunning(b), 'both workers are still running');
      const back = new Set((await fennelConnections(admin, pids)).map((c) => c.name));
      assert.ok(back.has(`fennel:${a.child.pid}`) && back.has(`fennel:${b.child.pid}`), 'both workers are connected again');
    } finally {
      admin.disconnect();
    }
  });

  describe('a restart of redis-server (append-only file, private port 6391)', () => {
    let dataDir: TempDir;
    let server: ChildProcess | undefined;
    let serverOutput = '';
    const url = redisUrlForTest(0, PRIVATE_PORT);

    async function startServer(): Promise<void> {
      serverOutput = '';
      const proc = track(spawn('redis-server', ['--port', String(PRIVATE_PORT), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dataDir.path, '--save', ''], { stdio: ['ignore', 'pipe', 'pipe'] }));
      proc.stdout.on('data', (chunk: Buffer) => (serverOutput += chunk.toString()));
      proc.stderr.on('data', (chunk: Buffer) => (serverOutput += chunk.toString()));
      server = proc;
      await waitFor(async () => proc.exitCode !== null || (await redisAnswers(PRIVATE_PORT, 500)), `redis-server on port ${PRIVATE_PORT} to answer`, 20_000).catch((error: Error) => {
        throw new Error(`${error.message}; its output:\n${serverOutput}`);
      });
      if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode}); its output:\n${serverOutput}`);
    }

    async function stopServer(): Promise<void> {
      const proc = server;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM'); // redis-server's SHUTDOWN: the append-only file is fsynced, then it exits
      await exited;
    }

    before(async () => {
      dataDir = makeTempDir('fennel-redis-aof-');
      if (await redisAnswers(PRIVATE_PORT, 300)) throw new Error(`something already answers on port ${PRIVATE_PORT}; this test needs it for its own redis-server`);
      await startServer();
    });
    after(async () => {
      if (server && server.exitCode === null && server.signalCode === null) {
        const proc = server;
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGKILL');
        await exited;
      }
      dataDir?.remove();
    });

    it('workers resume, get() waiters resubscribe, and every result arrives when redis-server is stopped and started again mid-run', async (t) => {
      const producer = new Fennel({ broker: url, visibilityTimeoutSec: 2 });
      const remote = producer.task('test.record', async (n: number, _log: string, _sleepMs?: number) => n * 2); // its body runs in the worker
      try {
        const queue = uniqueQueue('redis-restart');
        const log = join(dir.path, 'restart.log');
        writeFileSync(log, '');
        await worker(url, queue, ['-c', '4', '-P', 'async']);
        await worker(url, queue, ['-c', '2', '-P', 'process']);
        const total = 1000;
        const results = remote.delayMany(Array.from({ length: 600 }, (_, i) => [i, log, 20] as [number, string, number]), { queue });
        const values = results.map((r) => settle(r.get({ timeoutMs: 60_000 })));
        await waitFor(() => fileLines(log).length >= 150, 'the run to be under way', 60_000);
        await stopServer();
        const ranBeforeRestart = fileLines(log).length;
        // Sent while the server is down: held in the client's offline queue, published once it is back.
        const later = remote.delayMany(Array.from({ length: total - 600 }, (_, i) => [600 + i, log, 20] as [number, string, number]), { queue });
        results.push(...later);
        values.push(...later.map((r) => settle(r.get({ timeoutMs: 60_000 }))));
        await startServer();
        const inspect = testRedisClient(0, PRIVATE_PORT);
        try {
          assert.deepEqual(await allResults(results, values, inspect, log, queue), Array.from({ length: total }, (_, i) => i * 2), 'every result arrives, correct');
        } finally {
          inspect.disconnect();
        }
        assertNoneLost(t, log, results.map((r) => r.id), 'redis-server restart');
        t.diagnostic(`${ranBeforeRestart} runs before the restart`);
        assert.ok(ranBeforeRestart < total, 'the server was stopped mid-run');
        assert.ok(workers.every(isRunning), 'both workers are still running');
      } finally {
        await producer.close();
      }
    });
  });
});
