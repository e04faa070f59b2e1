// Direct and broadcast queues with real `fennel worker` processes (async pool, distinct node names), on sqlite:// (a
// temp file), redis:// (database REDIS_DB.directBroadcast, flushed before and after) and amqp:// (RabbitMQ, with a
// Redis result store; queue names unique to the run, deleted afterwards): a broadcast while one of three workers
// has been SIGKILLed, a worker started after a broadcast, a direct task for a worker that is not running (it waits
// in `<name>.dq2`, as `fennel status` shows, until that worker starts), and direct tasks among two live workers.
// The in-process side is test/unit/app/direct-broadcast.test.ts; the engines' own, test/conformance/messaging.suite.ts.
//
// Every wait is bounded and generous (a busy two-core machine); no assertion is about how long something took.
// Runs are read from the log `test.record` appends to at the start of each run: `<task id> <pid>`, where the task
// id of a broadcast copy is `<broadcast id>/<worker name>` (broadcastResultId), and with `-P async` the pid is the
// worker's own.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BroadcastResult, directQueue, Fennel, type AsyncResult, type FennelOptions } from '../../src/index.ts';
import { broadcastCopyQueue } from '../../src/protocol/queues.ts';
import { fileLines, runCli, runCliToEnd, stopProcess, tempDb, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
/** How long a worker may take to print "worker ready" (tsx compiles the tasks module first). */
const READY_MS = 120_000;
/** How long a live worker may take to store a task's outcome. */
const RESULT_MS = 90_000;
/** The other bound of a collect() whose live workers have stored their outcomes already: how long the dead one is waited for. */
const MISSING_MS = 2_000;
/**
 * A SIGKILLed worker's presence (which a broadcast's recipients are read from) lasts 10 s from its last renewal, at
 * most 2 s before the kill. A broadcast sent sooner than this after the kill must list the dead worker.
 */
const PRESENCE_SURELY_LIVE_MS = 5_000;

const redisSkip = await redisSkipReason();
// The AMQP suite keeps its results in Redis: RabbitMQ's rpc:// results go to the sender only.
const amqpSkip = (await rabbitSkipReason()) || redisSkip;
const run = randomUUID().slice(0, 8);

interface Engine {
  name: string;
  broker: string;
  backend: string;
  skip: string | false;
  /** Node names unique on the broker: on the shared RabbitMQ every worker's `<name>.dq2` is a durable queue. */
  node(base: string): string;
  /** Added to every worker's command line. */
  workerFlags: string[];
  /** Added to the producer's options (the same broadcast queue as the workers'). */
  appOptions: FennelOptions;
  /** Engines whose workers announce themselves by name: BroadcastResult.workers() names them. */
  knowsNames: boolean;
  /** `fennel status` lists every queue with messages (not on AMQP, which cannot list a broker's queues). */
  statusListsQueues: boolean;
  /** A broadcast's per-worker copies wait in queues any connection can count (on AMQP they are exclusive to their worker's). */
  countsCopies: boolean;
  prepare(): Promise<void>;
  cleanup(nodes: string[]): Promise<void>;
}

function engineSuite(engine: Engine): void {
  describe(`direct and broadcast queues with worker processes on ${engine.name}`, { skip: engine.skip }, () => {
    let tmp: TempDir;
    const workers: RunningWorker[] = [];
    const nodes: string[] = [];
    let app: Fennel;
    let broadcastQueue: string;
    const a = engine.node('a');
    const b = engine.node('b');
    let workerA: RunningWorker;
    let workerB: RunningWorker;

    /** Starts `fennel worker -n <node>` and waits until it consumes; tracked (runCli) and killed in after() whatever happens. */
    async function startWorker(node: string): Promise<RunningWorker> {
      nodes.push(node);
      const worker = runCli(['worker', '--app', TASKS, '-P', 'async', '-c', '2', '-n', node, '--loglevel', 'warn', ...engine.workerFlags], {
        FENNEL_BROKER_URL: engine.broker,
        FENNEL_RESULT_BACKEND: engine.backend,
      });
      workers.push(worker);
      await worker.waitForLine(/worker ready/, READY_MS);
      return worker;
    }

    /** The runs `test.record` logged in `log`, as `<task id> <pid>` lines, of the tasks whose id starts with `prefix`. */
    const runsOf = (log: string, prefix: string): string[] => fileLines(log).filter((line) => line.startsWith(prefix)).sort();

    const broadcast = (args: [number, string]): BroadcastResult<number> => app.sendTask<number>('test.record', args, { broadcast: true });

    before(async () => {
      tmp = makeTempDir('fennel-direct-broadcast-');
      await engine.prepare();
      app = new Fennel({ broker: engine.broker, backend: engine.backend, ...engine.appOptions });
      broadcastQueue = app.config.broadcastQueue;
      [workerA, workerB] = await Promise.all([startWorker(a), startWorker(b)]);
    });

    after(async () => {
      await Promise.all(workers.map((w) => stopProcess(w)));
      await app?.close();
      await engine.cleanup(nodes);
      tmp?.remove();
    });

    it('a broadcast sent after one of three workers was SIGKILLed runs once on each live worker, and collect() names the dead one as missing', async (t) => {
      const c = engine.node('c');
      const workerC = await startWorker(c);
      const log = tmp.file('killed.log');
      const killedAt = Date.now();
      workerC.child.kill('SIGKILL');
      assert.equal((await workerC.exited).signal, 'SIGKILL');

      const handle = broadcast([21, log]);
      assert.ok(handle instanceof BroadcastResult);
      const recipients = await handle.workers();
      const readAfterMs = Date.now() - killedAt;
      if (engine.knowsNames) {
        assert.ok(recipients, 'this engine names the recipients');
        assert.ok(recipients.includes(a) && recipients.includes(b), `both live workers are recipients (${recipients.join(', ')})`);
        assert.ok(recipients.every((w) => [a, b, c].includes(w)), `no other recipients (${recipients.join(', ')})`);
        // Its presence outlives it (up to its TTL): the broker still lists it, so the broadcast was sent to it.
        if (readAfterMs < PRESENCE_SURELY_LIVE_MS) assert.ok(recipients.includes(c), `the killed worker ${c} is still listed ${readAfterMs} ms after the kill (${recipients.join(', ')})`);
        else t.diagnostic(`recipients read ${readAfterMs} ms after the kill (a busy machine): the killed worker's presence ${recipients.includes(c) ? 'was still' : 'was no longer'} live`);
      } else {
        assert.equal(recipients, undefined, 'amqp:// counts its consumers without names');
      }

      // The live workers' outcomes first, with a generous bound: collect()'s own timeout then only bounds its wait for the dead one.
      for (const w of [a, b]) assert.equal(await handle.result(w).get({ timeoutMs: RESULT_MS }), 42, `${w} stored its outcome`);
      const asSent = engine.knowsNames ? await handle.collect({ timeoutMs: MISSING_MS }) : undefined;
      const named = await handle.collect({ timeoutMs: MISSING_MS, workers: [a, b, c] });
      for (const outcome of [asSent, named]) {
        if (!outcome) continue;
        assert.deepEqual([...outcome.results.entries()].sort(), [[a, 42], [b, 42]].sort());
        assert.equal(outcome.errors.size, 0);
      }
      assert.deepEqual(named.missing, [c], 'the killed worker is named as missing');
      if (asSent) assert.deepEqual(asSent.missing, recipients!.includes(c) ? [c] : [], 'collect() without workers: the recipients as sent, the killed one missing');

      // Each live worker ran it exactly once, under its own result id, in its own process; the killed one never did.
      assert.deepEqual(runsOf(log, handle.id), [`${handle.id}/${a} ${workerA.child.pid}`, `${handle.id}/${b} ${workerB.child.pid}`].sort());
    });

    it('a worker started after a broadcast does not run it (and runs the next one)', async () => {
      const log = tmp.file('late.log');
      const first = broadcast([1, log]);
      for (const w of [a, b]) assert.equal(await first.result(w).get({ timeoutMs: RESULT_MS }), 2);

      const late = engine.node('late');
      const workerLate = await startWorker(late);
      const second = broadcast([2, log]);
      for (const w of [a, b, late]) assert.equal(await second.result(w).get({ timeoutMs: RESULT_MS }), 4, `${w} ran the second broadcast`);

      if (engine.knowsNames) {
        assert.ok(!(await first.workers())!.includes(late), 'the first broadcast was not sent to the worker that was not running');
        assert.ok((await second.workers())!.includes(late), 'the second one was');
      }
      // A copy of the first broadcast for `late`, had there been one, would have been ahead of the second in its queue.
      if (engine.countsCopies) assert.equal(await app.transport.depth(broadcastCopyQueue(broadcastQueue, late)), 0, 'nothing waits for the late worker');
      assert.deepEqual(runsOf(log, first.id), [`${first.id}/${a} ${workerA.child.pid}`, `${first.id}/${b} ${workerB.child.pid}`].sort(), 'the first broadcast ran on the two workers that were running, once each');
      assert.deepEqual(
        runsOf(log, second.id),
        [`${second.id}/${a} ${workerA.child.pid}`, `${second.id}/${b} ${workerB.child.pid}`, `${second.id}/${late} ${workerLate.child.pid}`].sort(),
        'the second ran on all three, once each',
      );
    });

    it('a direct task for a worker that is not running waits in its queue, as `fennel status` shows, and runs when that worker starts', async () => {
      const gone = engine.node('gone');
      const queue = directQueue(gone);
      const result = app.sendTask<{ queue: string; pid: number }>('test.context', [], { worker: gone });
      await result.sent;
      assert.equal(result.queue, queue);
      // Two other workers are running meanwhile: neither takes it.
      assert.equal(await app.transport.depth(queue), 1, `one message waits in ${queue}`);
      if (engine.statusListsQueues) {
        const status = await runCliToEnd(['status', '-b', engine.broker, '--backend', engine.backend], {}, 60_000);
        assert.equal(status.code, 0, status.stderr.join('\n'));
        const line = status.stdout.find((l) => l.startsWith(`${queue} `));
        assert.ok(line, `fennel status lists ${queue}:\n${status.stdout.join('\n')}`);
        assert.deepEqual(line.trim().split(/\s+/), [queue, '1', '0', '0'], `1 ready, 0 scheduled, 0 unacked:\n${status.stdout.join('\n')}`);
      }
      // On amqp:// `fennel status` lists only the queues its own transport has used (AMQP 0-9-1 cannot list a broker's
      // queues), so a fresh `fennel status` process cannot show the direct queue: the depth above is what is checked.

      const worker = await startWorker(gone);
      const ran = await result.get({ timeoutMs: RESULT_MS });
      assert.equal(ran.queue, queue, 'delivered through its direct queue');
      assert.equal(ran.pid, worker.child.pid, `run by the worker named ${gone}`);
    });

    it('a direct task reaches only its worker, with two workers running', async () => {
      const log = tmp.file('direct.log');
      const sent: Array<{ result: AsyncResult<number>; worker: RunningWorker; value: number }> = [];
      for (let i = 0; i < 6; i++) {
        for (const [node, worker] of [[b, workerB], [a, workerA]] as const) {
          const result = app.sendTask<number>('test.record', [i, log], { worker: node });
          assert.equal(result.queue, directQueue(node));
          sent.push({ result, worker, value: i * 2 });
        }
      }
      for (const { result, value } of sent) assert.equal(await result.get({ timeoutMs: RESULT_MS }), value);
      assert.deepEqual(fileLines(log).sort(), sent.map(({ result, worker }) => `${result.id} ${worker.child.pid}`).sort(), 'each ran once, on the worker it was sent to');
    });
  });
}

const sqlite = tempDb();
after(() => sqlite.cleanup());
engineSuite({
  name: 'sqlite://',
  broker: sqlite.url,
  backend: sqlite.url,
  skip: false,
  node: (base) => `${base}@host`,
  workerFlags: [],
  appOptions: {},
  knowsNames: true,
  statusListsQueues: true,
  countsCopies: true,
  prepare: async () => {},
  cleanup: async () => {},
});

const REDIS_URL = redisUrlForTest(REDIS_DB.directBroadcast);
engineSuite({
  name: 'redis://',
  broker: REDIS_URL,
  backend: REDIS_URL,
  skip: redisSkip,
  node: (base) => `${base}@host`,
  workerFlags: [],
  appOptions: {},
  knowsNames: true,
  statusListsQueues: true,
  countsCopies: true,
  prepare: () => flushRedisDb(REDIS_DB.directBroadcast),
  cleanup: () => flushRedisDb(REDIS_DB.directBroadcast),
});

const amqpQueue = `direct-broadcast-${run}`;
const amqpBroadcast = `direct-broadcast-${run}.bcast`;
engineSuite({
  name: 'amqp://',
  broker: RABBIT_URL,
  backend: REDIS_URL,
  skip: amqpSkip,
  node: (base) => `${base}-${run}@host`,
  // Queues of this run only: not `celery` or `fennel.broadcast`, which other runs on this RabbitMQ may use.
  workerFlags: ['-Q', amqpQueue, '--broadcast-queues', amqpBroadcast],
  appOptions: { defaultQueue: amqpQueue, broadcastQueue: amqpBroadcast },
  knowsNames: false,
  statusListsQueues: false,
  countsCopies: false,
  prepare: () => flushRedisDb(REDIS_DB.directBroadcast),
  cleanup: async (nodes) => {
    // The work queue, the broadcast queue's fanout exchange (its per-worker copy queues went with their connections),
    // and every worker's durable direct queue.
    await removeRabbitQueues([amqpQueue, amqpBroadcast, ...nodes.map(directQueue)], amqpQueue);
    await flushRedisDb(REDIS_DB.directBroadcast);
  },
});
