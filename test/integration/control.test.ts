// Remote control of real `fennel worker` processes (issue #16): `fennel inspect` / `fennel control` and
// `app.control` against workers on sqlite:// (a temp file), redis:// (database REDIS_DB.semantics, flushed before and
// after; the file shares it with the other task-semantics files, which never run at the same time) and amqp://
// (RabbitMQ, results in that Redis database; queue and node names unique to the run, deleted afterwards). On each
// engine: ping with a worker SIGKILLed, active/reserved/query_task while tasks run, pool_grow and pool_shrink with
// stats, a remote shutdown of one of two workers, and the autoscaler growing under a backlog and shrinking after it.
// On sqlite:// only, what does not depend on the engine: bad control messages, the CLI's refusal of bad arguments,
// and the commands that change a running worker (consumers, rate and time limits, events, revoke). The four suites
// run side by side (each one's tests one after another), so the file takes about as long as its slowest suite.
//
// Tasks that must still be running when something is checked are `control.hold`, which ends when the test creates
// its gate file, so no assertion depends on how long anything took. Every wait polls with a generous deadline, and a
// gathering with destinations ends when they have all answered (its timeoutMs only bounds a test that fails).
// Missing Redis or RabbitMQ skips that engine with one line, except on CI (CI=true), where it fails.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { directQueue, Fennel, RemoteTaskError, type AsyncResult, type FennelEvent } from '../../src/index.ts';
import { SqliteChannelEngine } from '../../src/channels/sqlite.ts';
import type { ControlOptions, TaskInfo } from '../../src/control/control.ts';
import { createMailboxEngine } from '../../src/control/index.ts';
import { CONTROL_EXCHANGE, controlRequest, type ControlRequest } from '../../src/control/protocol.ts';
import { isRunning, runCliInOwnGroup, runCliToEnd, tempDb, waitFor, type CliResult, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const TASKS = join(import.meta.dirname, 'fixtures/control-app.ts');
/** How long a worker may take to print "worker ready" (tsx compiles the tasks module, pool slots start). */
const READY_MS = 120_000;
/** The bound of a gathering that names its destinations: it ends as soon as they have all answered. */
const GATHER_MS = 10_000;
/** How long a gathering waits for a destination that cannot answer (a SIGKILLed worker): all of it is spent. */
const DEAD_GATHER_MS = 6_000;
/** How long a task's outcome, a poll or a process's exit may take. */
const WAIT_MS = 60_000;

const redisSkip = await redisSkipReason();
// RabbitMQ keeps its results in Redis: rpc:// results go to the sender only.
const amqpSkip = (await rabbitSkipReason()) || redisSkip;
const run = randomUUID().slice(0, 8);
const REDIS_URL = redisUrlForTest(REDIS_DB.semantics);

/** What the tests read of `inspect stats` (Celery's shape). */
interface WorkerStats {
  pool: { 'max-concurrency': number; processes: number[]; autoscaler?: { max: number; min: number } };
  prefetch_count: number;
}

interface Engine {
  name: string;
  broker: string;
  backend: string;
  skip: string | false;
  /** After the suite: removes what it left on the broker, given the work queues it used and its workers' node names. */
  cleanup(queues: string[], nodes: string[]): Promise<void>;
}

/** The workers, queues and apps of one describe, all let go in its after() hook, whatever happened. */
class Harness {
  readonly workers: RunningWorker[] = [];
  readonly nodes: string[] = [];
  readonly queues: string[] = [];
  app!: Fennel;
  tmp!: TempDir;

  constructor(readonly engine: Engine) {}

  open(): void {
    this.tmp = makeTempDir('fennel-control-');
    this.app = new Fennel({ broker: this.engine.broker, backend: this.engine.backend, pollIntervalMs: 50 });
  }

  async close(): Promise<void> {
    await this.killAll();
    await this.app?.close();
    await this.engine.cleanup(this.queues, this.nodes);
    this.tmp?.remove();
  }

  /** A node name unique to the run (on the shared RabbitMQ each worker's `<node>.dq2` is a durable queue). */
  node(base: string): string {
    const node = `${base}-${run}@x`;
    this.nodes.push(node);
    return node;
  }

  queue(base: string): string {
    const queue = `control-${base}-${run}`;
    this.queues.push(queue);
    return queue;
  }

  /**
   * Starts `fennel worker -n <node> -Q <queue>` in a process group of its own (its pool slots in it), and waits
   * until it consumes. No broadcast queue: nothing here uses one, and the default one is shared on RabbitMQ.
   */
  async start(node: string, queue: string, flags: string[]): Promise<RunningWorker> {
    const worker = runCliInOwnGroup(['worker', '--app', TASKS, '-n', node, '-Q', queue, '--broadcast-queues', '', ...flags], {
      FENNEL_BROKER_URL: this.engine.broker,
      FENNEL_RESULT_BACKEND: this.engine.backend,
    });
    this.workers.push(worker);
    await worker.waitForLine(/worker ready/, READY_MS);
    return worker;
  }

  /** SIGKILLs every worker started so far, with its pool slots, and waits for each to exit. */
  async killAll(): Promise<void> {
    const workers = this.workers.splice(0);
    await Promise.all(workers.map((w) => kill(w)));
  }

  /** Runs `fennel <args> -b <broker>` to its end. */
  cli(args: string[]): Promise<CliResult> {
    return runCliToEnd([...args, '-b', this.engine.broker], { FENNEL_RESULT_BACKEND: this.engine.backend }, WAIT_MS);
  }

  /** Addressed to these nodes: the gathering ends when they have all answered. */
  to(...nodes: string[]): ControlOptions {
    return { destination: nodes, timeoutMs: GATHER_MS };
  }

  async stats(node: string): Promise<WorkerStats> {
    const stats = (await this.app.control.inspect(this.to(node)).stats())[node];
    assert.ok(stats, `${node} answered inspect stats`);
    return stats as unknown as WorkerStats;
  }

  async active(node: string): Promise<TaskInfo[]> {
    return (await this.app.control.inspect(this.to(node)).active())[node] ?? [];
  }

  async reserved(node: string): Promise<TaskInfo[]> {
    return (await this.app.control.inspect(this.to(node)).reserved())[node] ?? [];
  }

  /** Polls `inspect stats` until `predicate` holds; returns the stats that satisfied it. */
  async statsUntil(node: string, predicate: (stats: WorkerStats) => boolean, what: string): Promise<WorkerStats> {
    let last: WorkerStats | undefined;
    await waitFor(async () => predicate((last = await this.stats(node))), `${what} (last stats: ${JSON.stringify(last?.pool)})`, WAIT_MS).catch((error: Error) => {
      throw new Error(`${error.message}; last pool stats: ${JSON.stringify(last?.pool)}`);
    });
    return last!;
  }

  /** Polls `inspect active` until every id is listed; returns the list. */
  async activeUntil(node: string, ids: string[]): Promise<TaskInfo[]> {
    let active: TaskInfo[] = [];
    await waitFor(async () => {
      active = await this.active(node);
      return ids.every((id) => active.some((t) => t.id === id));
    }, `inspect active on ${node} to list ${ids.join(', ')}`, WAIT_MS);
    return active;
  }

  /** A gate file for `control.hold`: the tasks given it run until open() creates it. */
  gate(name: string): { path: string; open(): void } {
    const path = this.tmp.file(`gate-${name}`);
    return { path, open: () => writeFileSync(path, '') };
  }

  send<R>(name: string, args: unknown[], queue: string, taskId?: string): AsyncResult<R> {
    return this.app.sendTask<R>(name, args, { queue, ...(taskId ? { taskId } : {}) });
  }
}

/** SIGKILLs a worker's process group (it and its pool slots) unless it has exited, and waits for its exit. */
async function kill(worker: RunningWorker): Promise<void> {
  if (isRunning(worker)) {
    try {
      process.kill(-worker.child.pid!, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  await worker.exited;
}

/** Resolves with the exit of `worker`, or fails if it has not exited within `timeoutMs`. */
async function exitOf(worker: RunningWorker, what: string, timeoutMs = WAIT_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the worker did not exit ${what} within ${timeoutMs} ms; output:\n${worker.lines.slice(-20).join('\n')}`)), timeoutMs);
  });
  try {
    return await Promise.race([worker.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a CLI run printed, for assertion messages. */
const printed = (r: CliResult): string => `exit ${r.code}\nstdout:\n${r.stdout.join('\n')}\nstderr:\n${r.stderr.join('\n')}`;
const trimmed = (lines: string[]): string[] => lines.map((l) => l.trim());

/** The error a task's get() rejects with. */
async function failureOf(result: AsyncResult<unknown>): Promise<RemoteTaskError> {
  const error = await result.get({ timeoutMs: WAIT_MS }).then(
    (value) => assert.fail(`task ${result.id} succeeded (${JSON.stringify(value)}); it should not have`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RemoteTaskError, String(error));
  return error;
}

function engineSuite(engine: Engine): void {
  describe(`remote control of worker processes on ${engine.name}`, { skip: engine.skip, concurrency: false }, () => {
    const h = new Harness(engine);
    before(() => h.open());
    // Each test's workers go when it ends, pass or fail, so the next test has the machine to itself.
    afterEach(() => h.killAll());
    after(() => h.close());

    it('`fennel inspect ping -d a,b` exits 0 when both answer, and 69 naming b once b is SIGKILLed', async () => {
      const queue = h.queue(`${engine.name}-ping`);
      const [a, b] = [h.node('ping-a'), h.node('ping-b')];
      const [, workerB] = await Promise.all([h.start(a, queue, ['-P', 'async', '-c', '1']), h.start(b, queue, ['-P', 'async', '-c', '1'])]);

      const both = await h.cli(['inspect', 'ping', '-d', `${a},${b}`, '--timeout', String(GATHER_MS)]);
      assert.equal(both.code, 0, printed(both));
      const out = trimmed(both.stdout);
      for (const node of [a, b]) assert.equal(out[out.indexOf(`-> ${node}: OK`) + 1], 'pong', `${node}'s pong:\n${printed(both)}`);
      assert.ok(out.includes('2 nodes replied.'), printed(both));
      assert.deepEqual(both.stderr, []);

      await kill(workerB);
      const one = await h.cli(['inspect', 'ping', '-d', `${a},${b}`, '--timeout', String(DEAD_GATHER_MS)]);
      assert.equal(one.code, 69, printed(one));
      assert.deepEqual(trimmed(one.stdout), [`-> ${a}: OK`, 'pong', '1 node replied.'], printed(one));
      assert.deepEqual(one.stderr, [`no reply from ${b}`], printed(one));
    });

    it('inspect active lists the running tasks with their start, pool pid and args; reserved the one waiting for a slot; query_task tells which', async () => {
      const queue = h.queue(`${engine.name}-active`);
      const node = h.node('active');
      const worker = await h.start(node, queue, ['-P', 'process', '-c', '2']);
      const gate = h.gate(`${engine.name}-active`);
      const running = [h.send<number>('control.hold', [gate.path], queue), h.send<number>('control.hold', [gate.path], queue)];
      const active = await h.activeUntil(node, running.map((r) => r.id));
      const { pool } = await h.stats(node);
      for (const r of running) {
        const info = active.find((t) => t.id === r.id)!;
        assert.equal(info.name, 'control.hold');
        assert.deepEqual(info.args, [gate.path]);
        assert.equal(info.hostname, node);
        assert.equal(typeof info.time_start, 'number', `time_start of ${JSON.stringify(info)}`);
        assert.ok(info.time_start! > 0);
        assert.equal(typeof info.worker_pid, 'number', `worker_pid of ${JSON.stringify(info)}`);
        assert.notEqual(info.worker_pid, worker.child.pid, 'run in a pool slot, not in the worker process');
        assert.ok(pool.processes.includes(info.worker_pid!), `its slot ${info.worker_pid} is one of the pool's processes ${JSON.stringify(pool.processes)}`);
        assert.equal(info.delivery_info.routing_key, queue);
      }
      assert.notEqual(active.find((t) => t.id === running[0]!.id)!.worker_pid, active.find((t) => t.id === running[1]!.id)!.worker_pid, 'in two slots');

      // -c 2 × the default prefetch multiplier 4: the worker takes a third one, which waits for a slot.
      const third = h.send<number>('control.hold', [gate.path], queue);
      let reserved: TaskInfo[] = [];
      await waitFor(async () => (reserved = await h.reserved(node)).some((t) => t.id === third.id), 'inspect reserved to list the third task', WAIT_MS);
      assert.deepEqual(reserved.map((t) => t.id), [third.id], 'only the third is reserved');
      assert.equal(reserved[0]!.time_start, null);
      assert.equal(reserved[0]!.worker_pid, null);
      assert.deepEqual(reserved[0]!.args, [gate.path]);
      assert.ok(!(await h.active(node)).some((t) => t.id === third.id), 'and it is not active');

      const query = (await h.app.control.inspect(h.to(node)).queryTask(running[0]!.id, third.id, 'no-such-id'))[node];
      assert.ok(query, `${node} answered query_task`);
      assert.deepEqual(Object.keys(query).sort(), [running[0]!.id, third.id].sort(), 'an id it does not hold is left out');
      assert.equal(query[running[0]!.id]![0], 'active');
      assert.equal(query[running[0]!.id]![1].id, running[0]!.id);
      assert.equal(query[third.id]![0], 'reserved');

      gate.open();
      const pids = await Promise.all([...running, third].map((r) => r.get({ timeoutMs: WAIT_MS })));
      assert.ok(pids.every((pid) => pid !== worker.child.pid), 'all three ran in pool slots');
      await waitFor(async () => (await h.active(node)).length === 0 && (await h.reserved(node)).length === 0, 'the worker to hold nothing', WAIT_MS);
    });

    it('pool_grow 2 makes a 1-slot worker run three tasks at once; pool_shrink 5 is refused; pool_shrink 2 goes back to 1 slot and the running tasks still succeed', async () => {
      const queue = h.queue(`${engine.name}-grow`);
      const node = h.node('grow');
      await h.start(node, queue, ['-P', 'process', '-c', '1']);
      const before = await h.stats(node);
      assert.equal(before.pool['max-concurrency'], 1);
      assert.equal(before.pool.processes.length, 1);
      assert.equal(before.prefetch_count, 4);

      assert.deepEqual(await h.app.control.poolGrow(2, h.to(node)), [{ [node]: { ok: 'pool will grow' } }]);
      // Answered at once, as Celery's: the new slots are counted once they have started.
      const grown = await h.statsUntil(node, (st) => st.pool['max-concurrency'] === 3, 'the pool to grow to 3 slots');
      assert.equal(grown.pool.processes.length, 3, `three slots: ${JSON.stringify(grown.pool.processes)}`);
      assert.equal(grown.prefetch_count, 3 * 4);

      const gate = h.gate(`${engine.name}-grow`);
      const tasks = [0, 1, 2].map(() => h.send<number>('control.hold', [gate.path], queue));
      const active = await h.activeUntil(node, tasks.map((t) => t.id));
      assert.equal(new Set(active.map((t) => t.worker_pid)).size, 3, `all three at once, each in its own slot: ${JSON.stringify(active.map((t) => t.worker_pid))}`);

      // From the command line: an error reply exits 1 and says why.
      const refused = await h.cli(['control', 'pool-shrink', '5', '-d', node, '--timeout', String(GATHER_MS)]);
      assert.equal(refused.code, 1, printed(refused));
      assert.deepEqual(trimmed(refused.stdout), [`-> ${node}: ERROR`, 'cannot shrink the pool by 5: it has 3 slot(s), and keeps at least 1', '1 node replied.'], printed(refused));
      assert.equal((await h.stats(node)).pool['max-concurrency'], 3, 'the refused shrink changed nothing');

      assert.deepEqual(await h.app.control.poolShrink(2, h.to(node)), [{ [node]: { ok: 'pool will shrink' } }]);
      const shrunk = await h.statsUntil(node, (st) => st.pool['max-concurrency'] === 1, 'the pool to shrink to 1 slot');
      assert.equal(shrunk.prefetch_count, 4);
      assert.equal((await h.active(node)).length, 3, 'the busy slots go only after their task: all three still run');

      gate.open();
      const pids = await Promise.all(tasks.map((t) => t.get({ timeoutMs: WAIT_MS })));
      assert.equal(new Set(pids).size, 3, 'each succeeded in the slot it started in');
      await h.statsUntil(node, (s) => s.pool.processes.length === 1, 'the two retired slots to be gone');
      assert.equal(await h.send('control.echo', ['after the shrink'], queue).get({ timeoutMs: WAIT_MS }), 'after the shrink', 'the one slot left runs the next task');
    });

    it('`fennel control shutdown -d a` stops worker a warmly (exit 0) while b goes on; none of six tasks is lost', async () => {
      const queue = h.queue(`${engine.name}-shutdown`);
      const [a, b] = [h.node('down-a'), h.node('down-b')];
      const [workerA] = await Promise.all([a, b].map((node) => h.start(node, queue, ['-P', 'async', '-c', '1', '--grace', '30'])));
      const tasks = [0, 1, 2, 3, 4, 5].map(() => h.send<number>('control.sleep', [1500], queue));
      // a has started one (and holds more, prefetched): the shutdown finishes that one and hands the others back.
      await waitFor(async () => (await h.active(a)).length > 0, `${a} to run a task`, WAIT_MS);

      const shutdown = await h.cli(['control', 'shutdown', '-d', a, '--timeout', String(GATHER_MS)]);
      assert.equal(shutdown.code, 0, printed(shutdown));
      assert.deepEqual(trimmed(shutdown.stdout), [`-> ${a}: OK`, 'shutting down', '1 node replied.'], printed(shutdown));
      assert.deepEqual(await exitOf(workerA!, 'after a remote shutdown'), { code: 0, signal: null });
      assert.ok(workerA!.lines.some((l) => /warm shutdown/.test(l)), `a logged a warm shutdown:\n${workerA!.lines.slice(-20).join('\n')}`);

      assert.deepEqual(await Promise.all(tasks.map((t) => t.get({ timeoutMs: WAIT_MS }))), [1500, 1500, 1500, 1500, 1500, 1500], 'every task succeeded');
      assert.deepEqual(await h.app.control.ping(h.to(b)), [{ [b]: { ok: 'pong' } }], 'b still answers');
    });

    it('--autoscale 3,1 grows the pool to 3 under a backlog and back to 1 after it; autoscale changes the range; pool_grow is refused', async () => {
      const queue = h.queue(`${engine.name}-autoscale`);
      const node = h.node('autoscale');
      await h.start(node, queue, ['-P', 'process', '--autoscale', '3,1', '--autoscale-keepalive', '2']);
      const start = await h.stats(node);
      assert.equal(start.pool['max-concurrency'], 1, 'it starts with MIN slots');
      assert.equal(start.pool.processes.length, 1);
      assert.deepEqual({ max: start.pool.autoscaler?.max, min: start.pool.autoscaler?.min }, { max: 3, min: 1 });
      assert.equal(start.prefetch_count, 3 * 4, 'the prefetch window is MAX slots wide from the start');

      const tasks = Array.from({ length: 8 }, () => h.send<number>('control.sleep', [2000], queue));
      await h.statsUntil(node, (s) => s.pool['max-concurrency'] === 3 && s.pool.processes.length === 3, 'the pool to grow to 3 slots');
      assert.deepEqual(await Promise.all(tasks.map((t) => t.get({ timeoutMs: WAIT_MS }))), Array(8).fill(2000));
      await h.statsUntil(node, (s) => s.pool['max-concurrency'] === 1 && s.pool.processes.length === 1, 'the pool to shrink back to 1 slot once idle past the keepalive');

      assert.deepEqual(await h.app.control.autoscale(2, 1, h.to(node)), [{ [node]: { ok: 'autoscale now max=2 min=1' } }]);
      const changed = await h.stats(node);
      assert.deepEqual({ max: changed.pool.autoscaler?.max, min: changed.pool.autoscaler?.min }, { max: 2, min: 1 });
      assert.equal(changed.prefetch_count, 2 * 4);

      const [grow] = await h.app.control.poolGrow(1, h.to(node));
      assert.match((grow?.[node] as { error?: string } | undefined)?.error ?? JSON.stringify(grow), /pool_grow is not supported with autoscale/);
    });
  });
}

// What follows does not depend on the engine (the command table and the worker's checks are written once, above
// the mailbox engines), so it runs on sqlite:// only: one worker for all of it.
function sqliteOnlySuite(): void {
  describe('remote control on sqlite:// only: bad messages and the commands that change a running worker', { concurrency: false }, () => {
    const h = new Harness({ ...SQLITE, name: 'sqlite-only' });
    let node: string;
    let queue: string;
    let worker: RunningWorker;

    before(async () => {
      h.open();
      node = h.node('commands');
      queue = h.queue('commands');
      worker = await h.start(node, queue, ['-P', 'process', '-c', '2']);
    });
    after(() => h.close());

    it('a control message without a method, one that does not decode, an unknown command and a stale request never stop the worker', async () => {
      const mailbox = createMailboxEngine(sqlite.url);
      const channels = new SqliteChannelEngine(sqlite.url);
      try {
        await mailbox.broadcast({ arguments: {}, destination: [node] } as unknown as ControlRequest, { clock: 1, expires: 0 });
        await worker.waitForLine(/dropped a malformed control message: a control request needs a method name/, WAIT_MS);
        await mailbox.broadcast({ method: 'ping', arguments: 'none', destination: [node] } as unknown as ControlRequest, { clock: 2, expires: 0 });
        await worker.waitForLine(/dropped a malformed control message: control request 'ping': arguments must be an object/, WAIT_MS);
        await channels.publish(CONTROL_EXCHANGE, '{not json');
        await worker.waitForLine(/dropped a control message that does not decode/, WAIT_MS);

        const unknown = await h.app.control.broadcast('no_such_command', {}, h.to(node));
        assert.equal(unknown.replies.length, 1, JSON.stringify(unknown));
        assert.equal(unknown.replies[0]!.node, node);
        assert.match((unknown.replies[0]!.result as { error: string }).error, /^unknown command 'no_such_command'; a Fennel worker answers ping, /);

        // A ping whose expires time has passed, with a reply queue open for it: dropped and logged, never answered.
        const oid = randomUUID();
        const inbox = await mailbox.openReplies(oid);
        try {
          await mailbox.broadcast(controlRequest('ping', {}, { destination: [node] }, { ticket: randomUUID(), oid }), { clock: 3, expires: Date.now() / 1000 - 60 });
          await worker.waitForLine(/dropped a stale control request 'ping'/, WAIT_MS);
          assert.deepEqual(await h.app.control.ping(h.to(node)), [{ [node]: { ok: 'pong' } }], 'it still answers a fresh ping');
          assert.equal(await inbox.next(200), undefined, 'the stale ping got no reply');
        } finally {
          await inbox.close();
        }
        assert.ok(isRunning(worker), 'the worker is still running');
      } finally {
        await channels.close();
        await mailbox.close();
      }
    });

    it('`fennel control autoscale 1 2` is refused before anything is sent (exit 2), as is `fennel control pool-grow x`', async () => {
      const minOverMax = await h.cli(['control', 'autoscale', '1', '2']);
      assert.equal(minOverMax.code, 2, printed(minOverMax));
      assert.deepEqual(minOverMax.stderr, ['fennel: MIN (2) is greater than MAX (1)'], printed(minOverMax));
      const notANumber = await h.cli(['control', 'pool-grow', 'x']);
      assert.equal(notANumber.code, 2, printed(notANumber));
      assert.deepEqual(notANumber.stderr, ["fennel: N must be a positive integer (got 'x')"], printed(notANumber));
    });

    it('add_consumer starts consuming a queue at once; cancel_consumer stops it, and what is sent there waits until it is added again', async () => {
      const extra = h.queue('extra');
      assert.deepEqual(await h.app.control.addConsumer(extra, h.to(node)), [{ [node]: { ok: `add consumer ${extra}` } }]);
      assert.deepEqual(await h.app.control.addConsumer(extra, h.to(node)), [{ [node]: { ok: `already consuming from ${extra}` } }]);
      const queues = (await h.app.control.inspect(h.to(node)).activeQueues())[node]?.map((q) => q['name']);
      assert.ok(queues?.includes(extra) && queues.includes(queue), `active_queues lists both: ${JSON.stringify(queues)}`);
      assert.equal(await h.send('control.echo', ['on extra'], extra).get({ timeoutMs: WAIT_MS }), 'on extra');

      assert.deepEqual(await h.app.control.cancelConsumer(extra, h.to(node)), [{ [node]: { ok: `no longer consuming from ${extra}` } }]);
      assert.deepEqual(await h.app.control.cancelConsumer(extra, h.to(node)), [{ [node]: { error: `not consuming from ${extra}` } }]);
      const after = (await h.app.control.inspect(h.to(node)).activeQueues())[node]?.map((q) => q['name']);
      assert.ok(after && !after.includes(extra) && after.includes(queue), `active_queues without ${extra}: ${JSON.stringify(after)}`);

      const waiting = h.send<string>('control.echo', ['waited'], extra);
      await waiting.sent;
      // A task on the queue it still consumes, sent after: done, while the one on `extra` has not been taken.
      assert.equal(await h.send('control.echo', ['marker'], queue).get({ timeoutMs: WAIT_MS }), 'marker');
      assert.equal(await h.app.transport.depth(extra), 1, `the task waits in ${extra}`);
      assert.equal(await waiting.status(), 'PENDING');
      const status = await h.cli(['status', '--backend', sqlite.url]);
      assert.equal(status.code, 0, printed(status));
      assert.deepEqual(status.stdout.find((l) => l.startsWith(`${extra} `))?.trim().split(/\s+/), [extra, '1', '0', '0'], `fennel status: 1 ready in ${extra}:\n${status.stdout.join('\n')}`);

      await h.app.control.addConsumer(extra, h.to(node));
      assert.equal(await waiting.get({ timeoutMs: WAIT_MS }), 'waited', 'consumed again, it runs the waiting task');
    });

    it('rate_limit holds a task back until its turn (reserved meanwhile), refuses a bad rate or task, and is removed with null', async () => {
      assert.deepEqual(await h.app.control.rateLimit('control.echo', '1/h', h.to(node)), [{ [node]: { ok: 'new rate limit set successfully' } }]);
      assert.deepEqual(await h.app.control.rateLimit('no.such.task', '1/s', h.to(node)), [{ [node]: { error: 'unknown task' } }]);
      assert.deepEqual(await h.app.control.rateLimit('control.echo', 'fast', h.to(node)), [{ [node]: { error: 'Invalid rate limit string: fast' } }]);

      assert.equal(await h.send('control.echo', [1], queue).get({ timeoutMs: WAIT_MS }), 1, 'the first runs at once');
      const second = h.send('control.echo', [2], queue);
      await waitFor(async () => (await h.reserved(node)).some((t) => t.id === second.id), 'the second to wait its turn, reserved', WAIT_MS);
      assert.equal(await second.status(), 'PENDING');

      assert.deepEqual(await h.app.control.rateLimit('control.echo', null, h.to(node)), [{ [node]: { ok: 'rate limit disabled successfully' } }]);
      assert.equal(await h.send('control.echo', [3], queue).get({ timeoutMs: WAIT_MS }), 3, 'without the limit the next runs at once');
      // The second keeps the turn it was given (an hour away), as in Celery: the worker is killed before then.
    });

    it('time_limit gives a task a hard limit: a 5 s sleep fails with TimeLimitExceeded after 1 s; a soft limit above the hard one is refused', async () => {
      assert.deepEqual(await h.app.control.timeLimit('control.sleep', 3, 2, h.to(node)), [{ [node]: { error: 'the soft limit (3 s) is longer than the hard one (2 s)' } }]);
      assert.deepEqual(await h.app.control.timeLimit('no.such.task', null, 1, h.to(node)), [{ [node]: { error: 'unknown task' } }]);
      assert.deepEqual(await h.app.control.timeLimit('control.sleep', null, 1, h.to(node)), [{ [node]: { ok: 'time limits set successfully' } }]);
      const error = await failureOf(h.send('control.sleep', [5000], queue));
      assert.equal(error.state, 'FAILURE');
      assert.equal(error.remoteName, 'TimeLimitExceeded');
      assert.equal(error.remoteMessage, 'hard time limit (1 s) exceeded');
      // Removed again: the next sleep runs to its end.
      assert.deepEqual(await h.app.control.timeLimit('control.sleep', null, null, h.to(node)), [{ [node]: { ok: 'time limits set successfully' } }]);
      assert.equal(await h.send('control.sleep', [1200], queue).get({ timeoutMs: WAIT_MS }), 1200);
    });

    it('revoke keeps a task from running; with terminate it stops a running one (REVOKED); inspect revoked lists both', async () => {
      const early = randomUUID();
      assert.deepEqual(await h.app.control.revoke(early, h.to(node)), [{ [node]: { ok: `tasks ${early} flagged as revoked` } }]);
      const flagged = await failureOf(h.send('control.echo', ['never'], queue, early));
      assert.equal(flagged.state, 'REVOKED');
      assert.equal(flagged.remoteMessage, 'revoked');

      const gate = h.gate('revoke');
      const running = h.send<number>('control.hold', [gate.path], queue);
      await h.activeUntil(node, [running.id]);
      assert.deepEqual(await h.app.control.revoke(running.id, { ...h.to(node), terminate: true }), [{ [node]: { ok: `terminate: ${running.id}` } }]);
      const terminated = await failureOf(running);
      assert.equal(terminated.state, 'REVOKED');
      assert.equal(terminated.remoteName, 'TaskRevokedError');
      assert.equal(terminated.remoteMessage, 'terminated');

      const revoked = await h.cli(['inspect', 'revoked', '-d', node, '--timeout', String(GATHER_MS), '--json']);
      assert.equal(revoked.code, 0, printed(revoked));
      const ids = (JSON.parse(revoked.stdout[0] ?? '{}') as Record<string, string[]>)[node] ?? [];
      assert.ok(ids.includes(early) && ids.includes(running.id), `inspect revoked lists ${early} and ${running.id}: ${revoked.stdout.join('\n')}`);
      assert.equal(await h.send('control.echo', ['next'], queue).get({ timeoutMs: WAIT_MS }), 'next', 'the worker goes on');
    });

    it('enable_events starts task events at once and disable_events stops them', async () => {
      const seen: FennelEvent[] = [];
      const unsubscribe = await h.app.events.subscribe((event) => seen.push(event));
      try {
        const events = (id: string): string[] => seen.filter((e) => e['uuid'] === id).map((e) => e.type);
        assert.deepEqual(await h.app.control.enableEvents(h.to(node)), [{ [node]: { ok: 'task events enabled' } }]);
        assert.deepEqual(await h.app.control.enableEvents(h.to(node)), [{ [node]: { ok: 'task events already enabled' } }]);
        const first = h.send('control.echo', ['with events'], queue);
        await first.get({ timeoutMs: WAIT_MS });
        await waitFor(() => events(first.id).includes('task-succeeded'), "the first task's task-succeeded event", WAIT_MS);

        assert.deepEqual(await h.app.control.disableEvents(h.to(node)), [{ [node]: { ok: 'task events disabled' } }]);
        const quiet = h.send('control.echo', ['without'], queue);
        await quiet.get({ timeoutMs: WAIT_MS });
        // Events on again, and one more task: its events come after any the quiet one could have sent.
        await h.app.control.enableEvents(h.to(node));
        const last = h.send('control.echo', ['with events again'], queue);
        await last.get({ timeoutMs: WAIT_MS });
        await waitFor(() => events(last.id).includes('task-succeeded'), "the last task's task-succeeded event", WAIT_MS);
        assert.deepEqual(events(quiet.id), [], 'no event of the task run while events were off');
      } finally {
        await unsubscribe();
      }
    });

    it('a worker started with --without-control answers no remote control', async () => {
      const off = h.node('without-control');
      await h.start(off, h.queue('without-control'), ['-P', 'async', '-c', '1', '--without-control']);
      const ping = await h.cli(['inspect', 'ping', '-d', `${node},${off}`, '--timeout', String(DEAD_GATHER_MS)]);
      assert.equal(ping.code, 69, printed(ping));
      assert.deepEqual(trimmed(ping.stdout), [`-> ${node}: OK`, 'pong', '1 node replied.'], printed(ping));
      assert.deepEqual(ping.stderr, [`no reply from ${off}`], printed(ping));
    });
  });
}

const sqlite = tempDb();
const SQLITE: Engine = { name: 'sqlite', broker: sqlite.url, backend: sqlite.url, skip: false, cleanup: async () => {} };
const REDIS: Engine = { name: 'redis', broker: REDIS_URL, backend: REDIS_URL, skip: redisSkip, cleanup: async () => {} };
const AMQP: Engine = {
  name: 'amqp',
  broker: RABBIT_URL,
  backend: REDIS_URL,
  skip: amqpSkip,
  // The work queues and every worker's durable direct queue; the mailbox queues went with their connections.
  cleanup: (queues, nodes) => removeRabbitQueues([...queues, ...nodes.map(directQueue)]),
};

// The Redis and RabbitMQ suites share the database (their keys are apart: queue names, node names and task ids are
// unique), so it is flushed once around all of them, not by each while the other runs.
before(async () => {
  if (!redisSkip) await flushRedisDb(REDIS_DB.semantics);
});
after(async () => {
  if (!redisSkip) await flushRedisDb(REDIS_DB.semantics);
  sqlite.cleanup();
});

// The suites run side by side (each one's tests one after another), so the file takes about as long as the slowest.
describe('remote control', { concurrency: true }, () => {
  engineSuite(SQLITE);
  engineSuite(REDIS);
  engineSuite(AMQP);
  sqliteOnlySuite();
});
