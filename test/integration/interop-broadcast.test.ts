// Broadcast queues shared with real Python Celery, both ways, on Redis and on RabbitMQ: a Python Celery producer
// broadcasts to two `fennel worker` processes (`--broadcast-queues <q>`), and a Fennel producer (`{ broadcast: true,
// queue: <q> }`) broadcasts to two Python Celery workers consuming `kombu.common.Broadcast(<q>)`. Every run of the
// task appends "<worker name> <marker>" to a file, so each worker's runs are counted; "exactly once" is checked
// behind a fence (a last broadcast each worker runs after the earlier ones), never by waiting a while. Results go
// to the Redis database on both engines and are read as they are stored (pub/sub on `celery-task-meta-<id>`): a
// broadcast from Python carries no fennel_broadcast header, so each Fennel worker stores its outcome under the plain
// task id, as Celery workers do.
//
// The wire (kombu 5.2.4, Celery 5.2.6): on Redis a fanout exchange is pub/sub on `/<db>.<exchange>` (routing key
// '') or `/<db>.<exchange>/<routing key>`; Celery gives `Broadcast(q)` in task_queues the default routing key
// 'celery', so a Python worker subscribes to `/<db>.<q>/celery`. A Python producer publishes there only once its
// channel has declared the exchange as a fanout (bcast_celery.py explains why the documented task_routes alone
// publishes nothing on Redis). On RabbitMQ the exchange is a durable fanout exchange named <q>, declared alike by
// kombu and Fennel, and routing keys do not matter.
//
// Fennel's producer therefore publishes a broadcast on `/<db>.<q>/celery` (src/transports/redis.ts
// BROADCAST_ROUTING_KEY), where the Python workers listen; Fennel's workers listen to both forms.
//
// Debian's /usr/bin/python3 with python3-celery and python3-redis. Redis database REDIS_DB.interopBroadcast,
// flushed before and after; names unique to the run; RabbitMQ exchanges and queues deleted at the end. Missing
// Redis, RabbitMQ or Celery skips with one line, except on CI (CI=true), where it fails.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Fennel } from 'fennel';
import { fileLines, runCli, stopProcess, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { celerySkipReason, startPython as startPythonIn, stopPython, type PythonProcess } from '../support/python.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisUrlForTest } from '../support/services.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures/interop-broadcast');
const TASKS = join(FIXTURES, 'bcast_tasks.ts');
const DB = REDIS_DB.interopBroadcast;
const REDIS_URL = redisUrlForTest(DB);
// kombu writes the default vhost "/" as "//"; Fennel's RABBIT_URL ("…:5672/") is the same vhost.
const PY_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672//';
/** Celery's default routing key (task_default_routing_key falls back to task_default_queue, 'celery'). */
const CELERY_ROUTING_KEY = 'celery';
/** The longest any one thing is waited for: a run, a result, a worker's start (a busy two-core machine). */
const WAIT_MS = 60_000;

const skip = await celerySkipReason();
const rabbitSkip = skip || (await rabbitSkipReason());

interface Engine {
  name: 'Redis' | 'RabbitMQ';
  skip: string | false;
  /** The broker URL as Fennel and as kombu write it. */
  fennelBroker: string;
  pythonBroker: string;
}

const ENGINES: Engine[] = [
  { name: 'Redis', skip, fennelBroker: REDIS_URL, pythonBroker: REDIS_URL },
  { name: 'RabbitMQ', skip: rabbitSkip, fennelBroker: RABBIT_URL, pythonBroker: PY_AMQP_URL },
];

type Proc = PythonProcess;

function startPython(args: string[], env: Record<string, string>): Proc {
  return startPythonIn(args, { cwd: FIXTURES, env: { ...process.env, PYTHONPATH: FIXTURES, ...env } });
}

/** Environment of bcast_celery.py for one broadcast queue on one engine; results always go to the Redis database. */
function pythonEnv(engine: Engine, queue: string): Record<string, string> {
  return { INTEROP_BROKER_URL: engine.pythonBroker, INTEROP_BROADCAST_QUEUE: queue, INTEROP_RESULT_BACKEND: REDIS_URL };
}

/** `bcast_celery.py <how> <task> <path> <marker> <id>`: one broadcast sent by a Python Celery producer. */
async function pythonSend(engine: Engine, queue: string, how: 'route' | 'declared' | 'declared-route', task: string, path: string, marker: string, id = randomUUID()): Promise<string> {
  const proc = startPython(['bcast_celery.py', how, task, path, marker, id], pythonEnv(engine, queue));
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 120_000);
  const code = await proc.exited;
  clearTimeout(timer);
  assert.equal(code, 0, `bcast_celery.py ${how} failed:\n${proc.lines.join('\n')}`);
  assert.ok(proc.lines.includes(id), `it printed the task id ${id}:\n${proc.lines.join('\n')}`);
  return id;
}

async function startCeleryWorker(engine: Engine, queue: string, node: string): Promise<Proc> {
  const worker = startPython(
    ['-m', 'celery', '-A', 'bcast_celery', 'worker', '-Q', queue, '-c', '1', '-P', 'solo', '--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'info', '-n', node],
    pythonEnv(engine, queue),
  );
  await waitFor(() => worker.lines.some((l) => /ready\./.test(l)) || worker.child.exitCode !== null, `the Celery worker ${node} to be ready`, WAIT_MS).catch((error: Error) => {
    throw new Error(`${error.message}; output:\n${worker.lines.slice(-30).join('\n')}`);
  });
  assert.equal(worker.child.exitCode, null, `the Celery worker exited:\n${worker.lines.join('\n')}`);
  return worker;
}

async function startFennelWorker(engine: Engine, queue: string, work: string, node: string): Promise<RunningWorker> {
  // A work queue of its own, so that it declares no shared queue ('celery') on RabbitMQ; async pool: no pool processes.
  const worker = runCli(['worker', '--app', TASKS, '-Q', work, '--broadcast-queues', queue, '-n', node, '-P', 'async', '-c', '1'], {
    FENNEL_BROKER_URL: engine.fennelBroker,
    FENNEL_RESULT_BACKEND: REDIS_URL,
    INTEROP_WORKER_LABEL: node,
  });
  await worker.waitForLine(/worker ready/, WAIT_MS);
  return worker;
}

/** How many times each worker ran the task with `marker` (lines "<worker> <marker>" of the side-effect file). */
function runsOf(path: string, marker: string, workers: readonly string[]): Record<string, number> {
  const lines = fileLines(path);
  return Object.fromEntries(workers.map((w) => [w, lines.filter((l) => l === `${w} ${marker}`).length]));
}

/** Waits until every worker has run the task with `marker` at least once. */
async function waitForRuns(path: string, marker: string, workers: readonly string[], timeoutMs = WAIT_MS): Promise<void> {
  await waitFor(() => Object.values(runsOf(path, marker, workers)).every((n) => n >= 1), `each of ${workers.join(', ')} to run '${marker}'`, timeoutMs).catch((error: Error) => {
    throw new Error(`${error.message}; runs: ${JSON.stringify(runsOf(path, marker, workers))}; the file:\n${fileLines(path).join('\n')}`);
  });
}

interface Heard {
  channel: string;
  raw: string;
  envelope: { body: string; headers: Record<string, unknown>; properties: Record<string, unknown> };
}

/**
 * A Redis pub/sub listener for the evidence: the fanout channels of broadcast queues (what a producer published,
 * byte for byte, and on which channel) and the result channels `celery-task-meta-<id>` (every store of a result,
 * by either kind of worker: Celery's and Fennel's Redis backends publish each one there).
 */
class Tap {
  private readonly fanout: Array<{ channel: string; raw: string }> = [];
  private readonly stored = new Map<string, Array<Record<string, unknown>>>();

  private constructor(private readonly sub: Redis) {}

  static async open(): Promise<Tap> {
    const sub = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    sub.on('error', () => {});
    const tap = new Tap(sub);
    sub.on('pmessage', (_pattern: string, channel: string, raw: string) => tap.fanout.push({ channel, raw }));
    sub.on('message', (channel: string, raw: string) => tap.stored.get(channel)?.push(JSON.parse(raw) as Record<string, unknown>));
    return tap;
  }

  /** Listens to kombu's fanout channels of `queue` (exchange): `/<db>.<queue>` and `/<db>.<queue>/<routing key>`. */
  async fanoutOf(queue: string): Promise<void> {
    await this.sub.psubscribe(`/${DB}.${queue}`, `/${DB}.${queue}/*`);
  }

  /** Listens to the stores of task `id`'s result. */
  async results(id: string): Promise<void> {
    this.stored.set(`celery-task-meta-${id}`, []);
    await this.sub.subscribe(`celery-task-meta-${id}`);
  }

  /** What was published on the fanout channels with task id `id`. */
  published(id: string): Heard[] {
    return this.fanout.map(({ channel, raw }) => ({ channel, raw, envelope: JSON.parse(raw) as Heard['envelope'] })).filter((h) => h.envelope.headers['id'] === id);
  }

  /** The SUCCESS results stored under task id `id` so far. */
  successes(id: string): Array<Record<string, unknown>> {
    return (this.stored.get(`celery-task-meta-${id}`) ?? []).filter((meta) => meta['status'] === 'SUCCESS');
  }

  /** Waits until `count` SUCCESS results were stored under `id`; returns them. */
  async waitForSuccesses(id: string, count = 1): Promise<Array<Record<string, unknown>>> {
    await waitFor(() => this.successes(id).length >= count, `${count} results stored under ${id}`, WAIT_MS).catch((error: Error) => {
      throw new Error(`${error.message}; stored: ${JSON.stringify(this.stored.get(`celery-task-meta-${id}`))}`);
    });
    return this.successes(id);
  }

  close(): void {
    this.sub.disconnect();
  }
}

describe('broadcast queues shared with Python Celery 5', { skip }, () => {
  let tmp: TempDir;
  let redis: Redis;

  before(async () => {
    await flushRedisDb(DB);
    tmp = makeTempDir('fennel-interop-bcast-');
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  });

  after(async () => {
    redis?.disconnect();
    tmp?.remove();
    await flushRedisDb(DB);
  });

  for (const engine of ENGINES) {
    const onRedis = engine.name === 'Redis';

    describe(`on ${engine.name}`, { skip: engine.skip }, () => {
      // RabbitMQ: every queue and exchange these tests make (the copy queues are exclusive: gone with their worker).
      const rabbitLeftovers: string[] = [];

      after(async () => {
        if (!onRedis && rabbitLeftovers.length) await removeRabbitQueues(rabbitLeftovers);
      });

      describe('Python Celery producer → two Fennel workers', () => {
        const queue = uniqueQueue(`interop-bcast-py2fennel-${engine.name.toLowerCase()}`);
        const work = `${queue}.work`;
        const suffix = queue.slice(-8);
        const workers = [`fennel-a-${suffix}@interop`, `fennel-b-${suffix}@interop`];
        const task = 'interop.bcast.record';
        const markers: string[] = [];
        const ids: string[] = [];
        let log = '';
        let running: RunningWorker[] = [];
        let tap: Tap;

        before(async () => {
          rabbitLeftovers.push(queue, work, ...workers.map((w) => `${w}.dq2`));
          log = tmp.file(`${engine.name}-fennel.log`);
          tap = await Tap.open();
          if (onRedis) await tap.fanoutOf(queue);
          await Promise.all(workers.map(async (node) => running.push(await startFennelWorker(engine, queue, work, node))));
        });

        after(async () => {
          for (const worker of running) await stopProcess(worker, 'SIGTERM');
          running = [];
          tap?.close();
        });

        /** Sends one broadcast from Python, waits until both Fennel workers ran it, and checks the results stored. */
        async function broadcastFromPython(how: 'route' | 'declared' | 'declared-route', marker: string): Promise<string> {
          const id = randomUUID();
          await tap.results(id);
          await pythonSend(engine, queue, how, task, log, marker, id);
          markers.push(marker);
          await waitForRuns(log, marker, workers);
          // No fennel_broadcast header: each Fennel worker stores its outcome under the plain id, as a Celery worker does.
          const [stored] = await tap.waitForSuccesses(id);
          assert.ok(workers.includes(String(stored!['worker'])), `stored by one of the workers: ${JSON.stringify(stored)}`);
          assert.equal(stored!['result'], stored!['worker'], 'the task returned the name of the worker that ran it');
          ids.push(id);
          return id;
        }

        it(`runs a broadcast sent to queue=<name> on a channel that declared the fanout exchange (routing key '${CELERY_ROUTING_KEY}'): once on each worker`, async () => {
          const id = await broadcastFromPython('declared', 'declared');
          if (onRedis) {
            const heard = tap.published(id);
            assert.deepEqual(heard.map((h) => h.channel), [`/${DB}.${queue}/${CELERY_ROUTING_KEY}`], "kombu's fanout channel /<db>.<exchange>/<routing key>, published once");
            const { envelope } = heard[0]!;
            assert.deepEqual(envelope.properties['delivery_info'], { exchange: queue, routing_key: CELERY_ROUTING_KEY });
            assert.equal(envelope.properties['body_encoding'], 'base64');
            assert.equal(envelope.headers['task'], task);
            assert.equal(envelope.headers['fennel_broadcast'], undefined, 'a Python broadcast carries no fennel_broadcast header');
            assert.deepEqual(JSON.parse(Buffer.from(envelope.body, 'base64').toString('utf8')), [[log, 'declared'], {}, { callbacks: null, errbacks: null, chain: null, chord: null }]);
          }
        });

        it("runs a broadcast sent by the documented task_routes route ({'queue': q, 'exchange': q}, routing key ''), the exchange declared: once on each worker", async () => {
          const id = await broadcastFromPython('declared-route', 'declared-route');
          if (onRedis) assert.deepEqual(tap.published(id).map((h) => h.channel), [`/${DB}.${queue}`], "kombu's fanout channel /<db>.<exchange> (no routing key)");
        });

        // On Redis kombu's channel would take the undeclared exchange for a direct one and publish nothing (Python
        // workers do not get it either); on RabbitMQ the message goes to the fanout exchange Fennel's workers declared.
        it('runs a broadcast sent by the documented route alone (nothing declared by the producer): once on each worker', { skip: onRedis ? 'on Redis kombu 5.2 publishes nothing for it, to Python workers as to Fennel ones (bcast_celery.py)' : false }, async () => {
          await broadcastFromPython('route', 'route');
        });

        it('ran each broadcast exactly once on each worker (counted behind a fence broadcast)', async () => {
          await broadcastFromPython('declared', 'fence');
          for (const marker of markers) assert.deepEqual(runsOf(log, marker, workers), Object.fromEntries(workers.map((w) => [w, 1])), `runs of '${marker}'`);
          // Not one result stored under a per-worker id (<id>/<worker>, Fennel's own broadcasts' layout).
          for (const id of ids) assert.deepEqual(await redis.keys(`celery-task-meta-${id}/*`), []);
          if (onRedis) {
            // Each worker acknowledged its copy: nothing is left in kombu's unacked hash or in the copy queues.
            await waitFor(async () => (await redis.hlen('unacked')) === 0, 'the unacked hash to empty');
            for (const node of workers) assert.equal(await redis.llen(`bcast.${queue}.${node}`), 0);
          }
        });
      });

      describe('Fennel producer → two Python Celery workers', () => {
        const queue = uniqueQueue(`interop-bcast-fennel2py-${engine.name.toLowerCase()}`);
        const suffix = queue.slice(-8);
        const workers = [`py-a-${suffix}@interop`, `py-b-${suffix}@interop`];
        const task = 'py.bcast.record';
        /** Markers every worker must have run exactly once by the end. */
        const exactlyOnce: string[] = [];
        let log = '';
        let running: Proc[] = [];
        let app: Fennel;
        let tap: Tap;

        before(async () => {
          rabbitLeftovers.push(queue);
          log = tmp.file(`${engine.name}-python.log`);
          tap = await Tap.open();
          if (onRedis) await tap.fanoutOf(queue);
          await Promise.all(workers.map(async (node) => running.push(await startCeleryWorker(engine, queue, node))));
          // "ready." comes before a Celery worker on Redis has subscribed to the fanout channel (it does so when it
          // first polls), so broadcast probes from Python until each worker has run one: then both listen.
          for (let attempt = 1; ; attempt++) {
            await pythonSend(engine, queue, 'declared', task, log, `probe-${attempt}`);
            try {
              await waitForRuns(log, `probe-${attempt}`, workers, 10_000);
              break;
            } catch (error) {
              if (attempt >= 5) throw error;
            }
          }
          app = new Fennel({ broker: engine.fennelBroker, backend: REDIS_URL });
        });

        after(async () => {
          for (const worker of running) await stopPython(worker);
          running = [];
          await app?.close();
          tap?.close();
        });

        it('control: a broadcast from a Python Celery producer (fanout exchange declared) runs once on each Python worker', async () => {
          const id = randomUUID();
          await tap.results(id);
          await pythonSend(engine, queue, 'declared', task, log, 'control', id);
          exactlyOnce.push('control');
          await waitForRuns(log, 'control', workers);
          const [stored] = await tap.waitForSuccesses(id);
          assert.ok(workers.includes(String(stored!['result'])), `stored by one of the workers: ${JSON.stringify(stored)}`);
        });

        it("sendTask(name, args, { broadcast: true, queue }) runs once on each Python worker, which store their results under the task id", async () => {
          const id = randomUUID();
          await tap.results(id);
          const sent = app.sendTask<string>(task, [log, 'fennel'], { broadcast: true, queue, taskId: id });
          await sent.sent;
          await waitForRuns(log, 'fennel', workers);
          exactlyOnce.push('fennel');
          // Celery workers know nothing of fennel_broadcast: both store under the plain task id (Celery's Redis backend
          // checks, then sets: either may be the one left there), so get() reads one Python worker's result.
          const [stored] = await tap.waitForSuccesses(id);
          assert.ok(workers.includes(String(stored!['result'])), `stored by one of the workers: ${JSON.stringify(stored)}`);
          assert.ok(workers.includes(await app.asyncResult<string>(id).get({ timeoutMs: WAIT_MS })));
        });

        if (onRedis) {
          it(`Fennel publishes on /${DB}.<queue>/${CELERY_ROUTING_KEY}, the channel of the routing key the Python workers bind with`, async () => {
            // kombu's _queue_bind: member "<routing key>␆␖␆␖bcast.<uuid>" of _kombu.binding.<exchange>, one per worker;
            // the same routing key makes the worker's subscription /<db>.<exchange>/<routing key>.
            const bindings = await redis.smembers(`_kombu.binding.${queue}`);
            assert.equal(bindings.length, 2, `one binding per Python worker: ${JSON.stringify(bindings)}`);
            for (const member of bindings) assert.match(member, new RegExp(`^${CELERY_ROUTING_KEY}\\x06\\x16\\x06\\x16bcast\\.[0-9a-f-]{36}$`));

            const sent = app.sendTask<string>(task, [log, 'republished'], { broadcast: true, queue });
            await sent.sent;
            await waitFor(() => tap.published(sent.id).length > 0, "Fennel's publish on the fanout channel");
            const [heard] = tap.published(sent.id);
            assert.equal(heard!.envelope.headers['task'], task);
            assert.equal(heard!.envelope.headers['fennel_broadcast'], true);
            assert.deepEqual((JSON.parse(Buffer.from(heard!.envelope.body, 'base64').toString('utf8')) as unknown[])[0], [log, 'republished']);
            assert.equal(heard!.channel, `/${DB}.${queue}/${CELERY_ROUTING_KEY}`);
            await waitForRuns(log, 'republished', workers);
          });
        }

        it('ran each broadcast exactly once on each Python worker (counted behind a fence broadcast)', async () => {
          await pythonSend(engine, queue, 'declared', task, log, 'fence');
          await waitForRuns(log, 'fence', workers);
          for (const marker of exactlyOnce) assert.deepEqual(runsOf(log, marker, workers), Object.fromEntries(workers.map((w) => [w, 1])), `runs of '${marker}'`);
        });
      });
    });
  }
});
