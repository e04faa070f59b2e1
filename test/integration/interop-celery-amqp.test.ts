// Interop with real Python Celery on RabbitMQ, both ways: a Python Celery client calls a real `fennel worker`,
// and a Fennel producer calls a real Python Celery worker; results come back by rpc:// (each side's reply
// queue) and, with the same AMQP broker, through a Redis result store (database 10, owned by this file).
// Plus the wire facts that make it work: Celery's properties and headers on the AMQP message, raw JSON body.
// Debian's Celery 5.2.6 / kombu 5.2.4 / py-amqp 5.1 run with /usr/bin/python3. Queue names are unique and
// deleted at the end. Missing RabbitMQ, Redis or Celery skips with one line, except on CI, where it fails.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'amqplib';
import { Redis } from 'ioredis';
import { chord, Fennel, RemoteTaskError, Signature } from 'fennel';
import { runCli, stopProcess, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { PYTHON, startPython as startPythonIn, stopPython, type PythonProcess } from '../support/python.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures/interop-amqp');
const PY_TASKS = join(import.meta.dirname, 'fixtures/interop');
const TASKS = join(import.meta.dirname, 'fixtures/interop/tasks.ts');
/** The chord cases' tasks: tasks.ts plus the callback `interop.tsum`; chord_tasks.py is the Python side's. */
const CHORD_TASKS = join(import.meta.dirname, 'fixtures/interop/chord-tasks.ts');
const REDIS_URL = redisUrlForTest(REDIS_DB.amqpInterop);
// kombu writes the default vhost "/" as "//"; amqplib reads RABBIT_URL's "/" path as the same vhost.
const PY_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672//';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function missing(): Promise<string | false> {
  const rabbit = await rabbitSkipReason();
  if (rabbit) return rabbit;
  const redis = await redisSkipReason();
  if (redis) return redis;
  const python = spawnSync(PYTHON, ['-c', 'import celery, amqp, redis'], { encoding: 'utf8' });
  if (python.status !== 0) {
    const reason = `${PYTHON} cannot import celery, amqp and redis (apt-get install python3-celery python3-redis)`;
    if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: Debian's Celery is required)`);
    return reason;
  }
  return false;
}

const skip = await missing();
const queues: string[] = [];

function queueFor(label: string): string {
  const q = uniqueQueue(`interop-amqp-${label}`);
  queues.push(q);
  return q;
}

type Proc = PythonProcess;

function startPython(args: string[], resultBackend: string): Proc {
  // The Celery tasks are the Redis interop test's (fixtures/interop/celery_tasks.py); the client is this test's own.
  // INTEROP_LEDGER_URL: where the chord cases' callbacks record their runs (chord_tasks.py, chord-tasks.ts).
  const env = { ...process.env, PYTHONPATH: [FIXTURES, PY_TASKS].join(delimiter), INTEROP_BROKER_URL: PY_AMQP_URL, INTEROP_RESULT_BACKEND: resultBackend, INTEROP_LEDGER_URL: REDIS_URL };
  return startPythonIn(args, { cwd: FIXTURES, env });
}

/** Runs client_amqp.py to its end and parses its JSON report. */
async function runClient(queue: string, resultBackend: string): Promise<Record<string, unknown>> {
  const proc = startPython(['client_amqp.py', queue], resultBackend);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 120_000);
  const code = await proc.exited;
  clearTimeout(timer);
  assert.equal(code, 0, `client_amqp.py failed:\n${proc.lines.join('\n')}`);
  return JSON.parse(proc.lines.filter((l) => l.startsWith('{')).at(-1) ?? '{}') as Record<string, unknown>;
}

async function startCeleryWorker(queue: string, resultBackend: string, module = 'celery_tasks'): Promise<Proc> {
  const worker = startPython(
    ['-m', 'celery', '-A', module, 'worker', '-Q', queue, '-c', '1', '-P', 'solo', '--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'info', '-n', `interop-${queue}@%h`],
    resultBackend,
  );
  await waitFor(() => worker.lines.some((l) => /ready\./.test(l)) || worker.child.exitCode !== null, 'the Celery worker to be ready').catch((error: Error) => {
    throw new Error(`${error.message}; output:\n${worker.lines.slice(-30).join('\n')}`);
  });
  assert.equal(worker.child.exitCode, null, `the Celery worker exited:\n${worker.lines.join('\n')}`);
  return worker;
}

async function startFennelWorker(queue: string, resultBackend: string, tasks = TASKS): Promise<RunningWorker> {
  const worker = runCli(['worker', '--app', tasks, '-Q', queue, '-c', '2'], { FENNEL_BROKER_URL: RABBIT_URL, FENNEL_RESULT_BACKEND: resultBackend, INTEROP_LEDGER_URL: REDIS_URL });
  await worker.waitForLine(/worker ready/);
  return worker;
}

function assertReport(report: Record<string, unknown>): void {
  assert.equal(report['add'], 5, 'positional args');
  assert.equal(report['kw'], 21, "kwargs {'scale': 3} reach the task as its trailing options object");
  const countdown = report['countdown'] as { value: number; elapsed: number };
  assert.equal(countdown.value, 42, 'a countdown call is sent back to wait in the delay levels, then runs');
  assert.ok(countdown.elapsed >= 0.95, `not before its countdown of 1 s (took ${countdown.elapsed} s)`);
  assert.equal(report['priority'], 9);
  assert.deepEqual(report['fail'], { raised: true, type: 'TypeError', module: 'builtins', args: ['boom'], state: 'FAILURE' });
  assert.deepEqual(report['expired'], { raised: true, type: 'TaskRevokedError', module: 'celery.exceptions', args: ['expired'], state: 'REVOKED' });
  assert.deepEqual(report['unregistered'], { raised: true, type: 'NotRegistered', module: 'celery.exceptions', args: ['interop.nope'], state: 'FAILURE' });
}

describe('interop with Python Celery 5 on RabbitMQ', { skip }, () => {
  before(() => flushRedisDb(REDIS_DB.amqpInterop));

  after(async () => {
    await flushRedisDb(REDIS_DB.amqpInterop);
    // The unknown-name call leaves a dead letter (Fennel records one so it can be requeued once deployed).
    await removeRabbitQueues(queues, 'interop-amqp-');
  });

  for (const [label, backend] of [['rpc://', 'rpc://'], ['Redis', REDIS_URL]] as const) {
    describe(`Python Celery client → Fennel worker (results: ${label})`, () => {
      const queue = queueFor('py2fennel');
      let worker: RunningWorker | undefined;

      before(async () => {
        worker = await startFennelWorker(queue, backend);
      });

      after(async () => {
        if (worker) await stopProcess(worker, 'SIGTERM');
      });

      it('runs send_task calls: args, kwargs, countdown, priority, failure, expiry, unknown name', async () => {
        assertReport(await runClient(queue, backend));
      });
    });
  }

  describe('Fennel producer → Python Celery worker (results: rpc://)', () => {
    const queue = queueFor('fennel2py');
    let app: Fennel;
    let celery: Proc | undefined;
    let firstId = '';

    before(async () => {
      app = new Fennel({ broker: RABBIT_URL, backend: 'rpc://' });
      queues.push(app.oid); // its reply queue
      const first = app.sendTask('py.add', [20, 22], { queue });
      await first.sent;
      firstId = first.id;
    });

    after(async () => {
      await stopPython(celery);
      await app?.close();
    });

    it('puts Celery’s AMQP message on the queue: properties, protocol v2 headers, raw three-element JSON body', async () => {
      const conn = await connect(RABBIT_URL);
      try {
        const ch = await conn.createChannel();
        const msg = await ch.get(queue, { noAck: false });
        assert.ok(msg, 'the message waits on the queue named after the routing key');
        assert.equal(msg.fields.exchange, '', 'published through the default exchange, routing key = queue');
        assert.equal(msg.fields.routingKey, queue);
        const p = msg.properties;
        assert.equal(p.contentType, 'application/json');
        assert.equal(p.contentEncoding, 'utf-8');
        assert.equal(p.deliveryMode, 2, 'persistent');
        assert.equal(p.correlationId, firstId);
        assert.equal(p.priority, 0);
        assert.match(String(p.replyTo), UUID, "reply_to: the app's oid, its rpc reply queue");
        const headers = p.headers as Record<string, unknown>;
        assert.equal(headers['lang'], 'js');
        assert.equal(headers['task'], 'py.add');
        assert.equal(headers['id'], firstId);
        assert.equal(headers['root_id'], firstId);
        assert.deepEqual(headers['timelimit'], [null, null], 'JSON null as AMQP void');
        assert.deepEqual(headers['stamps'], {});
        assert.deepEqual(JSON.parse(msg.content.toString('utf8')), [[20, 22], {}, { callbacks: null, errbacks: null, chain: null, chord: null }]);
        await ch.close(); // not acked: the message goes back for the Celery worker
      } finally {
        await conn.close();
      }
    });

    it('the Celery worker runs it and replies to the reply queue; get() reads the Python result', async () => {
      celery = await startCeleryWorker(queue, 'rpc://');
      assert.equal(await app.asyncResult(firstId).get({ timeoutMs: 30_000 }), 42);
      // The reply comes through RabbitMQ, the worker's log through a pipe: the log line may arrive after the reply.
      const worker = celery;
      await waitFor(() => worker.lines.some((l) => l.includes(`Task py.add[${firstId}] received`)), 'the Celery worker to log receiving it', 10_000);
    });

    it("a new producer's first get() waits before its reply queue exists, and still reads the result", async () => {
      // get() does not wait for the publish confirm, so it starts before the transport declares the queue.
      const fresh = new Fennel({ broker: RABBIT_URL, backend: 'rpc://' });
      queues.push(fresh.oid);
      try {
        assert.equal(await fresh.sendTask('py.add', [1, 2], { queue }).get({ timeoutMs: 30_000 }), 3);
      } finally {
        await fresh.close();
      }
    });

    it('sendTask: kwargs, a Python exception as RemoteTaskError, and an expiry passed while waiting for a countdown', async () => {
      assert.equal(await app.sendTask('py.add', [2], { queue, kwargs: { b: 5 } }).get({ timeoutMs: 30_000 }), 7);
      await assert.rejects(app.sendTask('py.fail', [], { queue }).get({ timeoutMs: 30_000 }), (error: unknown) => {
        assert.ok(error instanceof RemoteTaskError);
        assert.equal(error.remoteName, 'ValueError');
        assert.equal(error.remoteModule, 'builtins');
        assert.equal(error.remoteMessage, 'boom, 42');
        assert.equal(error.state, 'FAILURE');
        assert.match(error.remoteStack ?? '', /ValueError: \('boom', 42\)/);
        return true;
      });
      const countdown = app.sendTask('py.add', [1, 1], { queue, countdown: 1 });
      const expired = app.sendTask('py.add', [1, 1], { queue, countdown: 2, expires: 1 });
      assert.equal(await countdown.get({ timeoutMs: 30_000 }), 2, 'a countdown through the delay levels reaches the Celery worker');
      await assert.rejects(expired.get({ timeoutMs: 30_000 }), (error: unknown) => {
        assert.ok(error instanceof RemoteTaskError);
        assert.equal(error.remoteName, 'TaskRevokedError');
        assert.equal(error.state, 'REVOKED');
        return true;
      });
    });
  });

  describe('Fennel producer → Python Celery worker (results: Redis)', () => {
    const queue = queueFor('fennel2py-redis');
    let app: Fennel;
    let celery: Proc | undefined;

    after(async () => {
      await stopPython(celery);
      await app?.close();
    });

    it('reads the Python results from the Redis store, failures included', async () => {
      app = new Fennel({ broker: RABBIT_URL, backend: REDIS_URL });
      celery = await startCeleryWorker(queue, REDIS_URL);
      assert.equal(await app.sendTask('py.add', [2, 3], { queue }).get({ timeoutMs: 30_000 }), 5);
      await assert.rejects(app.sendTask('py.fail', [], { queue }).get({ timeoutMs: 30_000 }), (error: unknown) => error instanceof RemoteTaskError && error.remoteName === 'ValueError');
    });
  });
  // Issue #17 on RabbitMQ: the broker differs, the join is the same, in the Redis result backend's Celery keys.
  describe('chords across Python Celery and Fennel workers (results: Redis)', () => {
    const fennelQueue = queueFor('chord-fennel');
    const pyQueue = queueFor('chord-py');
    let fennel: RunningWorker | undefined;
    let celery: Proc | undefined;
    let app: Fennel;
    let redis: Redis;

    before(async () => {
      redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      fennel = await startFennelWorker(fennelQueue, REDIS_URL, CHORD_TASKS);
      celery = await startCeleryWorker(pyQueue, REDIS_URL, 'chord_tasks');
      app = new Fennel({ broker: RABBIT_URL, backend: REDIS_URL });
    });

    after(async () => {
      await stopPython(celery);
      if (fennel) await stopProcess(fennel, 'SIGTERM');
      await app?.close();
      redis?.disconnect();
    });

    const sig = (task: string, args: unknown[], queue: string): Signature => new Signature(() => app, task, args, {}, { queue });
    const doubled = (n: number): number[] => Array.from({ length: n }, (_, i) => 2 * i);
    const doubledSum = (n: number): number => n * (n - 1);

    /** The callback's runs recorded in the ledger (interop.chord.runs) by either side: the results each run was given. */
    const runsOf = async (callbackId: string): Promise<unknown[]> =>
      (await redis.lrange('interop.chord.runs', 0, -1)).map((line) => line.split(' ')).filter(([, id]) => id === callbackId).map(([, , ...rest]) => JSON.parse(rest.join(' ')) as unknown);

    /** Starts a chord with Celery's canvas in a Python client (fixtures/interop/chord_client.py) and waits for it. */
    const pythonChord = async (header: Array<{ task: string; args: unknown[]; queue: string }>, body: { task: string; queue: string }): Promise<{ id: string; group_id: string; value?: unknown; error?: unknown }> => {
      const proc = startPython([join(PY_TASKS, 'chord_client.py'), 'chord', JSON.stringify({ header, body })], REDIS_URL);
      const timer = setTimeout(() => proc.child.kill('SIGKILL'), 120_000);
      const code = await proc.exited;
      clearTimeout(timer);
      assert.equal(code, 0, `chord_client.py failed:\n${proc.lines.join('\n')}`);
      return JSON.parse(proc.lines.filter((l) => l.startsWith('{')).at(-1) ?? '{}') as { id: string; group_id: string; value?: unknown; error?: unknown };
    };

    it('a chord started by a Python client completes on Fennel workers: the callback, Celery\'s or Fennel\'s, runs once with the results in order', async () => {
      const header = Array.from({ length: 20 }, (_, i) => ({ task: 'interop.add', args: [i, i], queue: fennelQueue }));
      for (const body of [{ task: 'py.tsum', queue: pyQueue }, { task: 'interop.tsum', queue: fennelQueue }]) {
        const report = await pythonChord(header, body);
        assert.equal(report.value, doubledSum(20), `${body.task}: ${JSON.stringify(report)}`);
        assert.deepEqual(await runsOf(report.id), [doubled(20)], `${body.task} ran once, with the results in group_index order`);
        assert.equal(await redis.get(`fennel.chord.${report.group_id}.done`), '20', 'a Fennel worker completed the join');
      }
    });

    it('a chord started by Fennel completes on Python workers, and one whose members run on both completes once', async () => {
      const onPython = chord(Array.from({ length: 20 }, (_, i) => sig('py.add', [i, i], pyQueue)), sig('interop.tsum', [], fennelQueue)).applyAsync();
      assert.equal(await onPython.get({ timeoutMs: 90_000 }), doubledSum(20));
      assert.deepEqual(await runsOf(onPython.id), [doubled(20)]);
      const where = (i: number): [string, string] => (i % 2 ? ['interop.add', fennelQueue] : ['py.add', pyQueue]);
      const mixed = chord(Array.from({ length: 40 }, (_, i) => sig(where(i)[0], [i, i], where(i)[1])), sig('py.tsum', [], pyQueue)).applyAsync();
      assert.equal(await mixed.get({ timeoutMs: 90_000 }), doubledSum(40));
      assert.deepEqual(await runsOf(mixed.id), [doubled(40)]);
      const fromPython = await pythonChord(Array.from({ length: 40 }, (_, i) => ({ task: where(i)[0], args: [i, i], queue: where(i)[1] })), { task: 'interop.tsum', queue: fennelQueue });
      assert.equal(fromPython.value, doubledSum(40), JSON.stringify(fromPython));
      assert.deepEqual(await runsOf(fromPython.id), [doubled(40)]);
    });
  });
});
