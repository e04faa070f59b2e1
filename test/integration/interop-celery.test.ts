// Interop with real Python Celery on Redis, both ways: a Python Celery client calls a real `fennel worker`, and
// a Fennel producer calls a real Python Celery worker; plus the wire facts on Redis that make it work (kombu's
// envelope, `_kombu.binding.*`, the shared `unacked` layout, `fennel.scheduled`). Debian's Celery 5.2.6 /
// kombu 5.2.4 run with /usr/bin/python3 (not the python3 first on PATH). Redis database 14, flushed before and
// after; every queue name is unique. Missing Redis or Celery skips with one line, except on CI, where it fails.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { chord, Fennel, RemoteTaskError, Signature, type Delivery } from 'fennel';
import { startWorker, stopProcess, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { PYTHON, startPython as startPythonIn, stopPython, type PythonProcess } from '../support/python.ts';

const DB = 14;
const REDIS_URL = `redis://127.0.0.1:6379/${DB}`;
const FIXTURES = join(import.meta.dirname, 'fixtures/interop');
const TASKS = join(FIXTURES, 'tasks.ts');
/** The chord cases' Fennel tasks (tasks.ts plus the callback `interop.tsum`) and Python ones (chord_tasks.py). */
const CHORD_TASKS = join(FIXTURES, 'chord-tasks.ts');
/** Where both sides' chord callbacks record each run: "<task> <task id> <results>" (INTEROP_LEDGER_URL). */
const RUNS = 'interop.chord.runs';
const SEP = '\x06\x16'; // kombu's priority-bucket and binding separator
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// INTEROP_LEDGER_URL: where the chord cases' callbacks record their runs (chord_tasks.py, chord-tasks.ts).
const PY_ENV = { ...process.env, PYTHONPATH: FIXTURES, PYTHONDONTWRITEBYTECODE: '1', INTEROP_BROKER_URL: REDIS_URL, INTEROP_LEDGER_URL: REDIS_URL };

/** Why these tests cannot run here, or false. */
async function missing(): Promise<string | false> {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    await probe.connect();
    await probe.ping();
  } catch {
    return 'Redis not reachable at 127.0.0.1:6379';
  } finally {
    probe.disconnect();
  }
  const python = spawnSync(PYTHON, ['-c', 'import celery, redis'], { encoding: 'utf8' });
  if (python.status !== 0) return `${PYTHON} cannot import celery and redis (apt-get install python3-celery python3-redis)`;
  return false;
}

const reason = await missing();
const ON_CI = process.env['CI'] === 'true';

type Proc = PythonProcess;

function startPython(args: string[]): Proc {
  return startPythonIn(args, { cwd: FIXTURES, env: PY_ENV });
}

/** Runs a Python fixture script to its end; its stdout's last line. */
async function runPython(args: string[], timeoutMs = 120_000): Promise<string> {
  const proc = startPython(args);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  assert.equal(code, 0, `python ${args.join(' ')} failed:\n${proc.lines.join('\n')}`);
  return proc.lines.filter((l) => l.startsWith('{') || UUID.test(l)).at(-1) ?? '';
}

/** Starts a Python Celery worker on `queue` from fixtures/interop/celery_tasks.py (or `module`) and waits for "ready". */
async function startCeleryWorker(queue: string, module = 'celery_tasks'): Promise<Proc> {
  const worker = startPython([
    '-m', 'celery', '-A', module, 'worker', '-Q', queue, '-c', '1', '-P', 'solo',
    '--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'info', '-n', `interop-${queue}@%h`,
  ]);
  // If this test process ends without its after() hooks (a crash), the Celery worker must not outlive it.
  const kill = (): void => void worker.child.kill('SIGKILL');
  process.once('exit', kill);
  void worker.exited.then(() => process.off('exit', kill));
  await worker.waitForLine(/ready\./);
  return worker;
}

describe('interop with Python Celery 5 on Redis', { skip: ON_CI ? false : reason }, () => {
  let redis: Redis;

  before(async () => {
    if (reason) throw new Error(`${reason} (CI=true: Redis and Debian's Celery are required)`);
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await redis.flushdb();
  });

  after(async () => {
    await redis?.flushdb();
    redis?.disconnect();
  });

  describe('Python Celery client → Fennel worker', () => {
    const queue = uniqueQueue('interop-py2fennel');
    const second = `${queue}-b`;
    let worker: RunningWorker | undefined;

    before(async () => {
      worker = await startWorker(TASKS, REDIS_URL, ['-Q', `${queue},${second}`, '-c', '2']);
    });

    after(async () => {
      if (worker) await stopProcess(worker, 'SIGTERM');
    });

    // Checked before any Python client declares the queue (a Celery producer SADDs the same member).
    it("declares each consumed queue in kombu's layout: _kombu.binding.<queue> = {<queue>␆␖␆␖<queue>}", async () => {
      assert.deepEqual(await redis.smembers(`_kombu.binding.${second}`), [`${second}${SEP}${SEP}${second}`]);
      // kombu's Queue(name).declare() binds exchange <name> to queue <name> only; with `-Q a,b` Fennel also puts b's
      // binding into a's set (src/transports/redis.ts consume(): sadd(`_kombu.binding.${queues[0]}`, ...all queues)).
      assert.deepEqual(await redis.smembers(`_kombu.binding.${queue}`), [`${queue}${SEP}${SEP}${queue}`]);
    });

    it('runs send_task calls: args, kwargs as a trailing object, countdown, priority, failure, expiry, unknown name', async () => {
      const report = JSON.parse(await runPython(['client.py', 'report', queue])) as Record<string, unknown>;
      assert.equal(report['add'], 5, 'positional args');
      assert.equal(report['kw'], 21, "kwargs {'scale': 3} reach the task as its trailing options object");
      assert.equal(report['kw_default'], 7, 'no kwargs: no trailing object');
      const countdown = report['countdown'] as { value: number; elapsed: number };
      assert.equal(countdown.value, 42, 'a countdown call (eta header on the list) is deferred by the Fennel worker and runs');
      assert.ok(countdown.elapsed >= 0.95, `not before its countdown of 1 s (took ${countdown.elapsed} s)`);
      assert.equal(report['priority'], 9, 'priority 9: kombu bucket <queue>␆␖9, consumed by Fennel');
      assert.deepEqual(report['fail'], {
        raised: true, type: 'TypeError', module: 'builtins', message: 'boom', args: ['boom'], state: 'FAILURE', has_traceback: true,
      });
      assert.deepEqual(report['expired'], {
        raised: true, type: 'TaskRevokedError', module: 'celery.exceptions', message: 'expired', args: ['expired'], state: 'REVOKED', has_traceback: false,
      });
      assert.deepEqual(report['unregistered'], {
        raised: true, type: 'NotRegistered', module: 'celery.exceptions', message: "'interop.nope'", args: ['interop.nope'], state: 'FAILURE', has_traceback: false,
      });
      assert.deepEqual(report['meta'], { status: 'SUCCESS', result: 5, name: 'interop.add', args: [2, 3], kwargs: {}, queue });
      // Dates: kombu < 5.3 has no JSON type tags. A Python datetime arrives as an ISO string, and a Date returned
      // by Fennel reaches a 5.2 client as the raw tag object; kombu >= 5.3 (Celery 5.3+) decodes both.
      const { kombu } = report['versions'] as { kombu: string };
      const when = report['when'] as { received: unknown; epoch: unknown };
      if (/^5\.[0-2]\./.test(kombu)) {
        assert.deepEqual(when, { received: { other: '2020-01-02T03:04:05Z' }, epoch: { __type__: 'datetime', __value__: '1970-01-01T00:00:00.000000+00:00' } });
      } else {
        assert.deepEqual(when, { received: { date: '2020-01-02T03:04:05.000Z' }, epoch: { python_datetime: '1970-01-01T00:00:00+00:00' } });
      }
    });

    it('leaves nothing unacked or queued behind', async () => {
      assert.equal(await redis.hlen('unacked'), 0);
      assert.equal(await redis.zcard('unacked_index'), 0);
      assert.equal(await redis.llen(queue), 0);
      assert.equal(await redis.zcard('fennel.scheduled'), 0);
    });
  });

  describe('Fennel producer → Python Celery worker', () => {
    const queue = uniqueQueue('interop-fennel2py');
    let app: Fennel;
    let celery: Proc | undefined;
    let firstId = '';

    before(async () => {
      app = new Fennel({ broker: REDIS_URL });
      // Published before the Python worker exists, so the exact list element can be read back, then consumed by Celery.
      const first = app.sendTask('py.add', [20, 22], { queue });
      await first.sent;
      firstId = first.id;
    });

    after(async () => {
      await stopPython(celery);
      await app?.close();
    });

    it("puts kombu's envelope on the list: base64 3-element body, delivery_tag, anonymous-exchange delivery_info", async () => {
      const raw = await redis.lindex(queue, 0);
      assert.ok(raw, 'the message is on the list named after the queue (priority 0: no bucket suffix)');
      assert.equal(await redis.llen(queue), 1);
      const envelope = JSON.parse(raw) as { body: string; 'content-type': string; 'content-encoding': string; headers: Record<string, unknown>; properties: Record<string, unknown> };
      assert.equal(envelope['content-type'], 'application/json');
      assert.equal(envelope['content-encoding'], 'utf-8');
      assert.equal(envelope.properties['body_encoding'], 'base64');
      assert.match(String(envelope.properties['delivery_tag']), UUID, 'a fresh uuid4 delivery_tag, which kombu keys its unacked hash by');
      assert.deepEqual(envelope.properties['delivery_info'], { exchange: '', routing_key: queue });
      assert.equal(envelope.properties['correlation_id'], firstId);
      assert.equal(envelope.properties['priority'], 0);
      assert.match(String(envelope.properties['reply_to']), UUID);
      const body = JSON.parse(Buffer.from(envelope.body, 'base64').toString('utf8')) as unknown[];
      assert.deepEqual(body, [[20, 22], {}, { callbacks: null, errbacks: null, chain: null, chord: null }], 'three elements: a two-element body would crash a Celery worker');
      assert.equal(envelope.headers['lang'], 'js');
      assert.equal(envelope.headers['task'], 'py.add');
      assert.equal(envelope.headers['id'], firstId);
      assert.deepEqual(envelope.headers['timelimit'], [null, null]);
    });

    it('is accepted by the Celery worker: that message runs, and get() reads the Python result', async () => {
      celery = await startCeleryWorker(queue);
      assert.equal(await app.asyncResult(firstId).get({ timeoutMs: 30_000 }), 42);
      // The result comes through Redis, the worker's log through a pipe: the log line may arrive after the result.
      await celery.waitForLine(new RegExp(`Task py\\.add\\[${firstId}\\] received`), 10_000);
      assert.deepEqual(await redis.smembers(`_kombu.binding.${queue}`), [`${queue}${SEP}${SEP}${queue}`], "the Celery worker's own binding: the shape Fennel writes");
    });

    it('sendTask: positional args, kwargs, and a Python exception as RemoteTaskError', async () => {
      assert.equal(await app.sendTask('py.add', [2, 3], { queue }).get({ timeoutMs: 30_000 }), 5);
      assert.equal(await app.sendTask('py.add', [2], { queue, kwargs: { b: 5 } }).get({ timeoutMs: 30_000 }), 7);
      assert.equal(await app.sendTask('py.add', [], { queue, kwargs: { a: 1, b: 2 } }).get({ timeoutMs: 30_000 }), 3);
      const failing = app.sendTask('py.fail', [], { queue });
      await assert.rejects(failing.get({ timeoutMs: 30_000 }), (error: unknown) => {
        assert.ok(error instanceof RemoteTaskError);
        assert.equal(error.remoteName, 'ValueError');
        assert.equal(error.remoteModule, 'builtins');
        assert.equal(error.remoteMessage, 'boom, 42', "exc_message ['boom', 42], the exception's args");
        assert.equal(error.state, 'FAILURE');
        assert.match(error.remoteStack ?? '', /ValueError: \('boom', 42\)/, 'the Python traceback');
        return true;
      });
      const expired = app.sendTask('py.add', [1, 1], { queue, expires: new Date(Date.now() - 60_000) });
      await assert.rejects(expired.get({ timeoutMs: 30_000 }), (error: unknown) => {
        assert.ok(error instanceof RemoteTaskError);
        assert.equal(error.remoteName, 'TaskRevokedError');
        assert.equal(error.state, 'REVOKED');
        return true;
      });
    });

    it('a countdown stays in fennel.scheduled, unseen by Celery, until a Fennel consumer promotes it', async () => {
      const delayed = app.sendTask('py.add', [1, 1], { queue, countdown: 0.2 });
      await delayed.sent;
      const scheduled = await redis.zrange('fennel.scheduled', 0, -1);
      assert.equal(scheduled.length, 1);
      assert.ok(scheduled[0]!.startsWith(`${queue}\n{`), 'member "<bucket>\\n<envelope>", scored by the due time');
      // Well past its due time, with no Fennel consumer on this database: still scheduled, never on the list.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(await redis.zcard('fennel.scheduled'), 1);
      assert.equal(await redis.llen(queue), 0);
      assert.equal(await delayed.status(), 'PENDING');
      assert.ok(!celery!.lines.some((l) => l.includes(delayed.id)), 'the Celery worker has not seen it');
      // Any Fennel consumer on the database promotes every due message, whatever queue it consumes itself.
      const other = uniqueQueue('interop-promoter');
      const subscription = await app.transport.consume({ queues: [other], prefetch: 1 }, () => {});
      try {
        assert.equal(await delayed.get({ timeoutMs: 30_000 }), 2);
      } finally {
        await subscription.cancel();
      }
      assert.equal(await redis.zcard('fennel.scheduled'), 0);
    });

    it("records a delivery in kombu's unacked layout: unacked[tag] = [envelope, \"\", queue], unacked_index scored in seconds", async () => {
      const held = uniqueQueue('interop-held');
      const result = app.sendTask('py.add', [0, 0], { queue: held });
      await result.sent;
      let delivery: Delivery | undefined;
      const subscription = await app.transport.consume({ queues: [held], prefetch: 1 }, (d) => (delivery = d));
      try {
        await waitFor(() => delivery !== undefined, 'the delivery');
        const tag = String(delivery!.message.properties['delivery_tag']);
        const entry = JSON.parse((await redis.hget('unacked', tag))!) as [Record<string, unknown>, string, string];
        assert.equal(entry.length, 3);
        assert.equal((entry[0]['headers'] as Record<string, unknown>)['id'], result.id);
        assert.equal(entry[1], '', 'exchange: the anonymous exchange, so kombu restores to routing_key');
        assert.equal(entry[2], held, 'routing_key: the queue');
        const score = Number(await redis.zscore('unacked_index', tag));
        assert.ok(Math.abs(score - Date.now() / 1000) < 60, `score ${score} is unix seconds, as kombu's time()`);
        await delivery!.ack();
        assert.equal(await redis.hexists('unacked', tag), 0);
        assert.equal(await redis.zscore('unacked_index', tag), null);
      } finally {
        await subscription.cancel();
      }
    });

    // A Celery worker holds an ETA message unacked (in `unacked`, scored once, never renewed) until it is due, and
    // so it holds prefetched messages and acks_late tasks. A Fennel consumer's restore sweep, on any queue of the
    // database, restores every entry older than Fennel's visibilityTimeoutSec: the Celery worker receives it again
    // and runs it once per restore. Shown with visibilityTimeoutSec 1 and a countdown of 4 s; with the default 30 s
    // the same happens to any countdown, eta or prefetch wait longer than 30 s.
    it('does not make a Celery worker run a countdown task twice (Fennel visibility sweep vs kombu-held entries)', async () => {
      const sweeper = new Fennel({ broker: REDIS_URL, visibilityTimeoutSec: 1 });
      const subscription = await sweeper.transport.consume({ queues: [uniqueQueue('interop-sweeper')], prefetch: 1 }, () => {});
      try {
        const id = await runPython(['client.py', 'countdown', queue, '4']);
        assert.match(id, UUID);
        assert.equal(await app.asyncResult(id).get({ timeoutMs: 30_000 }), 3);
        // Its log line may come after the result (a pipe against Redis); duplicates, if any, run at the same eta.
        await celery!.waitForLine(new RegExp(`Task py\\.add\\[${id}\\] succeeded`), 10_000);
        await new Promise((resolve) => setTimeout(resolve, 500));
        const runs = celery!.lines.filter((l) => l.includes(`Task py.add[${id}] succeeded`)).length;
        assert.equal(runs, 1, `the Celery worker ran it ${runs} times`);
      } finally {
        await subscription.cancel();
        await sweeper.close();
      }
    });
  });
  // Issue #17: one chord, one join. Celery's Redis backend joins a chord in its own keys (`celery-taskset-meta-<group>`
  // `.j`, `.t`, `.s`); Fennel's workers join there too (src/backends/redis/celery_chord_join.lua), and Fennel's
  // producer writes `.s` as Celery's does, so a chord completes whoever started it and whoever runs its members.
  describe('chords across Python Celery and Fennel workers (one join, in Celery\'s keys)', () => {
    const fennelQueue = uniqueQueue('interop-chord-fennel');
    const pyQueue = uniqueQueue('interop-chord-py');
    const env = { INTEROP_LEDGER_URL: REDIS_URL };
    let fennel: RunningWorker | undefined;
    /** Fennel workers started mid-test, on a queue whose members were held back until the others had joined. */
    const late: RunningWorker[] = [];
    let celery: Proc | undefined;
    let app: Fennel;
    const callbackIds: string[] = [];

    before(async () => {
      fennel = await startWorker(CHORD_TASKS, REDIS_URL, ['-Q', fennelQueue, '-c', '2'], env);
      celery = await startCeleryWorker(pyQueue, 'chord_tasks');
      app = new Fennel({ broker: REDIS_URL });
    });

    after(async () => {
      await stopPython(celery);
      if (fennel) await stopProcess(fennel, 'SIGTERM');
      for (const worker of late) await stopProcess(worker, 'SIGTERM');
      await app?.close();
    });

    /** A signature of a task by name (Python's or Fennel's), for Fennel's canvas. */
    const sig = (task: string, args: unknown[], queue: string): Signature => new Signature(() => app, task, args, {}, { queue });

    interface ChordReport {
      id: string;
      group_id: string;
      value?: unknown;
      error?: { type: string; module: string; message: string };
    }

    /** Starts a chord with Celery's canvas in a Python client (fixtures/interop/chord_client.py); waits for it unless nowait. */
    const pythonChord = async (header: Array<{ task: string; args?: unknown[]; queue: string; immutable?: boolean }>, body: { task: string; queue: string }, nowait = false): Promise<ChordReport> =>
      JSON.parse(await runPython(['chord_client.py', 'chord', JSON.stringify({ header, body, nowait })])) as ChordReport;

    /** The callback's runs recorded in the ledger by either side: the results each run was given. */
    const runsOf = async (callbackId: string): Promise<unknown[]> =>
      (await redis.lrange(RUNS, 0, -1)).map((line) => line.split(' ')).filter(([, id]) => id === callbackId).map(([, , ...rest]) => JSON.parse(rest.join(' ')) as unknown);

    const chordKeys = (groupId: string): Promise<{ size: number; added: number; join: number; done: string | null }> =>
      Promise.all([
        redis.exists(`celery-taskset-meta-${groupId}.s`),
        redis.exists(`celery-taskset-meta-${groupId}.t`),
        redis.zcard(`celery-taskset-meta-${groupId}.j`),
        redis.get(`fennel.chord.${groupId}.done`),
      ]).then(([size, added, join, done]) => ({ size, added, join, done }));

    const startLate = async (queue: string): Promise<void> => {
      late.push(await startWorker(CHORD_TASKS, REDIS_URL, ['-Q', queue, '-c', '2'], env));
    };

    /** The results of add(i, i) for i < n, in order, and their sum. */
    const doubled = (n: number): number[] => Array.from({ length: n }, (_, i) => 2 * i);
    const doubledSum = (n: number): number => n * (n - 1);

    it('a chord started by a Python client completes on Fennel workers: the callback, Celery\'s or Fennel\'s, runs once with the results in order', async () => {
      const header = Array.from({ length: 20 }, (_, i) => ({ task: 'interop.add', args: [i, i], queue: fennelQueue }));
      for (const body of [{ task: 'py.tsum', queue: pyQueue }, { task: 'interop.tsum', queue: fennelQueue }]) {
        const report = await pythonChord(header, body);
        assert.deepEqual(report.error, undefined, `${body.task}: ${JSON.stringify(report.error)}`);
        assert.equal(report.value, doubledSum(20), body.task);
        callbackIds.push(report.id);
        assert.deepEqual(await runsOf(report.id), [doubled(20)], `${body.task} ran once, with the results in group_index order`);
        // A Fennel worker completed Celery's join: `.s` and `.t` are gone (no Celery worker can complete it again),
        // Fennel's done marker holds the total, and the entries stay for their expiry.
        assert.deepEqual(await chordKeys(report.group_id), { size: 0, added: 0, join: 20, done: '20' });
        if (body.task === 'interop.tsum') {
          // Celery's messages carry no chord size: the callback gets the results inline, as Celery's worker sends them.
          const meta = JSON.parse((await redis.get(`celery-task-meta-${report.id}`))!) as { args: unknown[] };
          assert.deepEqual(meta.args, [doubled(20)]);
        }
      }
    });

    it('a chord started by Fennel completes on Python workers: Celery\'s join finds the size Fennel wrote, and sends the callback once', async () => {
      const header = Array.from({ length: 20 }, (_, i) => sig('py.add', [i, i], pyQueue));
      for (const body of [sig('py.tsum', [], pyQueue), sig('interop.tsum', [], fennelQueue)]) {
        const result = chord(header, body).applyAsync();
        assert.equal(await result.get({ timeoutMs: 90_000 }), doubledSum(20), body.task);
        callbackIds.push(result.id);
        assert.deepEqual(await runsOf(result.id), [doubled(20)], `${body.task} ran once, with the results in order`);
      }
    });

    it('a chord whose members run on both Python and Fennel workers completes once, started by either side', async () => {
      const size = 40;
      const where = (i: number): { task: string; queue: string } => (i % 2 ? { task: 'interop.add', queue: fennelQueue } : { task: 'py.add', queue: pyQueue });
      for (const body of [{ task: 'py.tsum', queue: pyQueue }, { task: 'interop.tsum', queue: fennelQueue }]) {
        const report = await pythonChord(Array.from({ length: size }, (_, i) => ({ ...where(i), args: [i, i] })), body);
        assert.equal(report.value, doubledSum(size), `Python-started, ${body.task}: ${JSON.stringify(report)}`);
        callbackIds.push(report.id);
        assert.deepEqual(await runsOf(report.id), [doubled(size)], `Python-started, ${body.task} ran once`);

        const result = chord(Array.from({ length: size }, (_, i) => sig(where(i).task, [i, i], where(i).queue)), sig(body.task, [], body.queue)).applyAsync();
        assert.equal(await result.get({ timeoutMs: 90_000 }), doubledSum(size), `Fennel-started, ${body.task}`);
        callbackIds.push(result.id);
        assert.deepEqual(await runsOf(result.id), [doubled(size)], `Fennel-started, ${body.task} ran once`);
      }
    });

    it('Fennel completing a Fennel-started join after Python members sends its callback by reference, which reads the Python entries from .j', async () => {
      const lateQueue = uniqueQueue('interop-chord-late');
      const header = Array.from({ length: 20 }, (_, i) => (i < 10 ? sig('py.add', [i, i], pyQueue) : sig('interop.add', [i, i], lateQueue)));
      const sizesBefore = new Set(await redis.keys('celery-taskset-meta-*.s'));
      const result = chord(header, sig('interop.tsum', [], fennelQueue)).applyAsync();
      await result.sent;
      const written = (await redis.keys('celery-taskset-meta-*.s')).filter((key) => !sizesBefore.has(key));
      assert.equal(written.length, 1, 'the producer wrote .s before it sent the members');
      assert.equal(await redis.get(written[0]!), '20');
      const groupId = written[0]!.slice('celery-taskset-meta-'.length, -'.s'.length);
      await waitFor(async () => (await redis.zcard(`celery-taskset-meta-${groupId}.j`)) === 10, 'the Python members to join', 60_000);
      await startLate(lateQueue);
      assert.equal(await result.get({ timeoutMs: 90_000 }), doubledSum(20));
      callbackIds.push(result.id);
      assert.deepEqual(await runsOf(result.id), [doubled(20)], 'ran once, with the results in group_index order');
      assert.equal((await chordKeys(groupId)).done, '20', 'a Fennel worker completed the join');
      const meta = JSON.parse((await redis.get(`celery-task-meta-${result.id}`))!) as { args: Array<{ __type__?: string }> };
      assert.equal(meta.args[0]?.__type__, 'fennel_chord_results', 'its message carried a reference to the results, not the results');
    });

    it('a member that failed on the Python worker fails the chord with ChordError when a Fennel worker completes the join', async () => {
      const lateQueue = uniqueQueue('interop-chord-late');
      const header = [{ task: 'py.fail', queue: pyQueue, immutable: true }, ...[1, 2, 3].map((i) => ({ task: 'interop.add', args: [i, i], queue: lateQueue }))];
      const report = await pythonChord(header, { task: 'py.tsum', queue: pyQueue }, true);
      await waitFor(async () => (await redis.zcard(`celery-taskset-meta-${report.group_id}.j`)) === 1, "the failed member's entry", 60_000);
      await startLate(lateQueue);
      const got = JSON.parse(await runPython(['chord_client.py', 'get', JSON.stringify({ id: report.id })])) as ChordReport;
      assert.equal(got.error?.type, 'ChordError', JSON.stringify(got));
      assert.equal(got.error?.module, 'celery.exceptions');
      assert.match(got.error?.message ?? '', /^Dependency [0-9a-f-]{36} raised ValueError\('boom', 42\)$/);
      assert.equal((await chordKeys(report.group_id)).done, '4', 'a Fennel worker completed the join');
      assert.deepEqual(await runsOf(report.id), [], 'the callback never ran');
    });

    it('no chord callback ran twice', async () => {
      // Anything sent twice would have run by now (the workers are idle); then count once more.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      for (const id of callbackIds) assert.equal((await runsOf(id)).length, 1, `callback ${id}`);
    });
  });

  describe('task events, both ways (a worker sends those of a turn as one task.multi list)', () => {
    /** The routing keys of the task event messages on the interop database's celeryev channels, as they arrive. */
    async function watchTaskEventKeys(): Promise<{ keys: string[]; stop: () => void }> {
      const raw = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      const keys: string[] = [];
      raw.on('pmessage', (_pattern: string, channel: string) => keys.push(channel.slice(channel.lastIndexOf('/') + 1)));
      await raw.psubscribe(`/${DB}.celeryev/task.*`);
      return { keys, stop: () => raw.disconnect() };
    }

    it("a Python Celery prefork worker's task events, sent as task.multi lists, reach a Fennel monitor in order", async () => {
      const queue = uniqueQueue('interop-events-py');
      const watch = await watchTaskEventKeys();
      const monitor = new Fennel({ broker: REDIS_URL });
      const events: Array<{ type: string; uuid: unknown }> = [];
      const unsubscribe = await monitor.events.subscribe((e) => events.push({ type: e.type, uuid: e['uuid'] }));
      const worker = startPython([
        '-m', 'celery', '-A', 'celery_tasks', 'worker', '-Q', queue, '-c', '1', '-P', 'prefork', '-E',
        '--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'info', '-n', `interop-${queue}@%h`,
      ]);
      try {
        await worker.waitForLine(/ready\./);
        const results = Array.from({ length: 5 }, (_, i) => monitor.sendTask('py.add', [i, 1], { queue }));
        for (const [i, r] of results.entries()) assert.equal(await r.get({ timeoutMs: 20_000 }), i + 1);
        const typesOf = (id: string): unknown[] => events.filter((e) => e.uuid === id).map((e) => e.type);
        await waitFor(() => results.every((r) => typesOf(r.id).includes('task-succeeded')), 'task-succeeded of every call');
        for (const r of results) assert.deepEqual(typesOf(r.id), ['task-received', 'task-started', 'task-succeeded']);
        assert.ok(watch.keys.includes('task.multi'), `the Celery worker sent lists (keys seen: ${[...new Set(watch.keys)].join(', ')})`);
      } finally {
        await stopPython(worker);
        await unsubscribe();
        await monitor.close();
        watch.stop();
      }
    });

    it("Celery's event receiver reads a Fennel worker's task events, sent as task.multi lists", async () => {
      const queue = uniqueQueue('interop-events-fennel');
      const dir = mkdtempSync(join(tmpdir(), 'fennel-interop-events-'));
      const idFile = join(dir, 'ids');
      const watch = await watchTaskEventKeys();
      const producer = new Fennel({ broker: REDIS_URL });
      const receiver = startPython([join(FIXTURES, 'events_receiver.py'), idFile]);
      let worker: RunningWorker | undefined;
      try {
        await receiver.waitForLine(/^ready$/);
        worker = await startWorker(TASKS, REDIS_URL, ['-E', '-c', '10', '-P', 'async', '-Q', queue]);
        const results = Array.from({ length: 20 }, (_, i) => producer.sendTask('interop.add', [i, 1], { queue }));
        writeFileSync(idFile, results.map((r) => r.id).join('\n'));
        for (const [i, r] of results.entries()) assert.equal(await r.get({ timeoutMs: 20_000 }), i + 1);
        assert.equal(await receiver.exited, 0, receiver.lines.join('\n'));
        const read = receiver.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; uuid: string });
        for (const r of results) assert.deepEqual(read.filter((e) => e.uuid === r.id).map((e) => e.type), ['task-received', 'task-started', 'task-succeeded'], r.id);
        assert.ok(watch.keys.includes('task.multi'), `the Fennel worker sent lists (keys seen: ${[...new Set(watch.keys)].join(', ')})`);
      } finally {
        if (worker) await stopProcess(worker, 'SIGTERM');
        await stopPython(receiver);
        await producer.close();
        watch.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
