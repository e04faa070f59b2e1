// Remote control across Fennel and Python Celery on Redis and RabbitMQ (issue #16), with a real worker of each
// side started together: a `fennel worker` (async pool, its own node name and queue, fixtures/control-interop/
// tasks.ts) and a Celery 5 worker (thread pool, so that it answers while a task runs; fixtures/control-interop/
// celery_control.py, the interop fixtures' app plus a sleep task). Both directions, with the real CLIs:
//   - `celery inspect` / `celery control` against the Fennel worker: ping (with the Celery node), active while a
//     task sleeps, registered, stats, active_queues, pool_grow, rate_limit, add_consumer, and last shutdown,
//     which the Fennel worker answers ("shutting down") before a warm shutdown that lets its running task finish;
//   - `fennel inspect` and Fennel's client (sendControl) against the Celery worker: ping, registered, active;
//   - what each side leaves in Redis: no reply list, no binding of a client or worker that has gone.
// The sleep tasks end when the test creates their release file, never by a clock. Celery CLI calls that name a
// destination pass `--timeout 10`: Celery stops gathering once every destination has answered.
// On RabbitMQ the results of both sides go to the Redis database below (Celery 5.2 has no amqp:// result store).
// Debian's /usr/bin/python3 with python3-celery and python3-redis. Redis database 14 (the interop fixtures' own),
// flushed before and after; test files run one at a time, so no other Celery worker listens on it meanwhile.
// RabbitMQ queues are unique to the run and deleted at the end. Missing Redis, RabbitMQ or Celery skips with one
// line, except on CI (CI=true), where it fails.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Fennel } from 'fennel';
import { sendControl } from '../../src/control/client.ts';
import { AmqpMailboxEngine } from '../../src/control/amqp.ts';
import type { MailboxEngine } from '../../src/control/mailbox.ts';
import { RedisMailboxEngine } from '../../src/control/redis.ts';
import { runCli, runCliToEnd, stopProcess, uniqueQueue, waitFor, type CliResult, type RunningWorker } from '../support/process.ts';
import { celerySkipReason, startPython, stopPython, type PythonProcess } from '../support/python.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';

const INTEROP = join(import.meta.dirname, 'fixtures/interop');
const FIXTURES = join(import.meta.dirname, 'fixtures/control-interop');
const TASKS = join(FIXTURES, 'tasks.ts');
/** The interop fixtures' database (their default): no other test file runs meanwhile. */
const DB = 14;
const REDIS_URL = redisUrlForTest(DB);
// kombu writes the default vhost "/" as "//"; Fennel's RABBIT_URL ("…:5672/") is the same vhost.
const PY_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672//';
/** A sleep task's longest sleep: each ends when its release file appears, long before this. */
const SLEEP_MAX_SEC = 240;

const skip = await celerySkipReason();
const rabbitSkip = skip || (await rabbitSkipReason());

const CASES = [
  { name: 'redis', skip, fennelBroker: REDIS_URL, pyBroker: REDIS_URL, open: (): MailboxEngine => new RedisMailboxEngine(REDIS_URL) },
  { name: 'amqp', skip: rabbitSkip, fennelBroker: RABBIT_URL, pyBroker: PY_AMQP_URL, open: (): MailboxEngine => new AmqpMailboxEngine(RABBIT_URL) },
] as const;

interface PyResult {
  code: number | null;
  lines: string[];
}

/** The last line a CLI printed that parses as JSON (`--json` prints one), parsed. */
function printedJson(lines: string[]): unknown {
  const line = lines.filter((l) => l.startsWith('{') || l.startsWith('[')).at(-1);
  assert.ok(line, `no JSON line in the output:\n${lines.join('\n')}`);
  return JSON.parse(line);
}

/** Repeats `attempt` until it returns a value, for up to `timeoutMs`; the last failure's reason if it never does. */
async function until<T>(what: string, attempt: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  let value: T | undefined;
  await waitFor(async () => (value = await attempt()) !== undefined, what, timeoutMs);
  return value!;
}

for (const { name, skip: skipCase, fennelBroker, pyBroker, open } of CASES) describe(`remote control between a Fennel worker and a Celery worker on ${name}://`, { skip: skipCase }, () => {
  // Unique to the run: the RabbitMQ vhost is shared with whatever else runs on this machine.
  const run = randomUUID().slice(0, 6);
  const CELERY_NODE = `ctl-${name}-${run}@celery`;
  const FENNEL_NODE = `ctl-${name}-${run}@fennel`;
  const CELERY_QUEUE = uniqueQueue(`ctl-celery-${name}`);
  const FENNEL_QUEUE = uniqueQueue(`ctl-fennel-${name}`);
  const ADDED_QUEUE = uniqueQueue(`ctl-added-${name}`);
  const PY_ENV = { ...process.env, PYTHONPATH: [FIXTURES, INTEROP].join(delimiter), PYTHONDONTWRITEBYTECODE: '1', INTEROP_BROKER_URL: pyBroker, INTEROP_RESULT_BACKEND: REDIS_URL };
  let celery: PythonProcess | undefined;
  let fennel: RunningWorker | undefined;
  let app: Fennel | undefined;
  let tmp: TempDir | undefined;
  const releases: string[] = [];
  const engines: MailboxEngine[] = [];
  const engine = (): MailboxEngine => {
    const e = open();
    engines.push(e);
    return e;
  };

  /** A fresh release file's path for a sleep task (created by release()). */
  const releasePath = (): string => {
    const path = tmp!.file(`release-${releases.length}`);
    releases.push(path);
    return path;
  };
  const release = (path: string): void => writeFileSync(path, '');

  /** `celery -A celery_tasks <args>` to its end: exit code and every line it printed (both streams). */
  async function celeryCli(...args: string[]): Promise<PyResult> {
    const proc = startPython(['-m', 'celery', '-A', 'celery_tasks', ...args], { cwd: INTEROP, env: PY_ENV });
    // 'exit' can come before the last output has been read; 'close' comes after it.
    const closed = new Promise((resolve) => proc.child.once('close', resolve));
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 120_000);
    const code = await proc.exited;
    await closed;
    clearTimeout(timer);
    return { code, lines: proc.lines };
  }

  /** `fennel <args> -b <this case's broker>` to its end. */
  const fennelCli = (...args: string[]): Promise<CliResult> => runCliToEnd([...args, '-b', fennelBroker], {}, 120_000);

  const show = (r: PyResult | CliResult): string => ('lines' in r ? r.lines : [...r.stdout, ...r.stderr]).join('\n');

  before(async () => {
    await flushRedisDb(DB);
    tmp = makeTempDir('fennel-control-interop-');
    app = new Fennel({ broker: fennelBroker, backend: REDIS_URL });
    fennel = runCli(['worker', '--app', TASKS, '-n', FENNEL_NODE, '-b', fennelBroker, '--backend', REDIS_URL, '-Q', FENNEL_QUEUE, '-P', 'async', '-c', '2', '--log-format', 'json']);
    await fennel.waitForLine(/worker ready/, 60_000);
    // Started after the Fennel worker, with mingle on: its `hello` to every node reaches the Fennel worker too.
    celery = startPython(['-m', 'celery', '-A', 'celery_control', 'worker', '-Q', CELERY_QUEUE, '-c', '2', '-P', 'threads', '--without-heartbeat', '--without-gossip', '-l', 'info', '-n', CELERY_NODE], { cwd: FIXTURES, env: PY_ENV });
    await celery.waitForLine(/ready\./, 60_000);
  });

  after(async () => {
    // Whatever still sleeps (a test that failed half-way) ends, so each worker stops at once.
    for (const path of releases) release(path);
    if (fennel) await stopProcess(fennel, 'SIGKILL');
    await stopPython(celery);
    await app?.close();
    for (const e of engines) await e.close();
    if (name === 'amqp') await removeRabbitQueues([FENNEL_QUEUE, ADDED_QUEUE, CELERY_QUEUE, `${FENNEL_NODE}.dq2`]);
    await flushRedisDb(DB);
    tmp?.remove();
  });

  it("takes the Celery worker's mingle hello in its stride: no sync failure on the Celery side, no warning on Fennel's", () => {
    // Whether the answer made it within mingle's one second ("sync complete" rather than "all alone") is timing,
    // not asserted; an answer Celery cannot read is logged "mingle: sync with <node> failed".
    assert.ok(celery!.lines.some((l) => /mingle: (sync complete|all alone)/.test(l)), celery!.lines.join('\n'));
    assert.ok(!celery!.lines.some((l) => /mingle: sync with .* failed/.test(l)), celery!.lines.join('\n'));
    assert.deepEqual(fennel!.lines.filter((l) => /"level":(40|50|60)/.test(l) && /control/.test(l)), []);
  });

  it('`celery inspect ping` (every node) lists the Fennel worker and the Celery worker, each with pong', async () => {
    // Without a destination Celery gathers until a second passes with no reply; a reply later than that is
    // missed by that call, so the call is repeated until both nodes are in one answer.
    const printed = await until('both nodes in one `celery inspect ping`', async () => {
      const ping = await celeryCli('inspect', 'ping', '--json');
      assert.equal(ping.code, 0, show(ping));
      const answer = printedJson(ping.lines) as Record<string, unknown>;
      return FENNEL_NODE in answer && CELERY_NODE in answer ? answer : undefined;
    });
    assert.deepEqual(printed[FENNEL_NODE], { ok: 'pong' });
    assert.deepEqual(printed[CELERY_NODE], { ok: 'pong' });
  });

  it('`celery inspect active -d <fennel node>` lists a sleeping Fennel task as Celery prints it: id, name, args, time_start', async () => {
    const path = releasePath();
    const sentAtSec = Date.now() / 1000;
    const task = app!.sendTask('ctl.sleep', [SLEEP_MAX_SEC * 1000, path], { queue: FENNEL_QUEUE });
    await task.sent;
    const entry = await until('the task in `celery inspect active`', async () => {
      const active = await celeryCli('inspect', 'active', '-d', FENNEL_NODE, '--timeout', '10', '--json');
      assert.equal(active.code, 0, show(active));
      const answer = printedJson(active.lines) as Record<string, Array<Record<string, unknown>>>;
      assert.deepEqual(Object.keys(answer), [FENNEL_NODE]);
      return answer[FENNEL_NODE]!.find((t) => t['id'] === task.id);
    });
    assert.equal(entry['name'], 'ctl.sleep');
    assert.equal(entry['type'], 'ctl.sleep');
    assert.deepEqual(entry['args'], [SLEEP_MAX_SEC * 1000, path]);
    assert.deepEqual(entry['kwargs'], {});
    assert.equal(entry['hostname'], FENNEL_NODE);
    assert.equal(entry['worker_pid'], fennel!.child.pid, 'an async pool runs tasks in the worker process');
    const timeStart = entry['time_start'];
    assert.ok(typeof timeStart === 'number' && timeStart >= sentAtSec - 5 && timeStart <= Date.now() / 1000 + 5, `time_start ${String(timeStart)} is epoch seconds`);
    assert.deepEqual((entry['delivery_info'] as Record<string, unknown>)['routing_key'], FENNEL_QUEUE);
    // The text form goes through Celery's own printer (one `* {…}` line per task).
    const text = await celeryCli('inspect', 'active', '-d', FENNEL_NODE, '--timeout', '10');
    assert.equal(text.code, 0, show(text));
    assert.ok(text.lines.some((l) => l.includes(FENNEL_NODE) && l.includes('OK')), show(text));
    assert.ok(text.lines.some((l) => l.includes(`'id': '${task.id}'`) && l.includes("'name': 'ctl.sleep'")), show(text));
    release(path);
    assert.equal(await task.get({ timeoutMs: 60_000 }), 'released');
  });

  it('`celery inspect registered`, `stats --json` and `active_queues` -d <fennel node> are answered and printed', async () => {
    const registered = await celeryCli('inspect', 'registered', '-d', FENNEL_NODE, '--timeout', '10');
    assert.equal(registered.code, 0, show(registered));
    for (const task of ['ctl.add', 'ctl.sleep']) assert.ok(registered.lines.some((l) => l.trim() === `* ${task}`), show(registered));

    // `total` counts a task once it is done (just after its result is stored): asked again until it is there.
    const stats = await until('ctl.sleep in the totals of `celery inspect stats`', async () => {
      const result = await celeryCli('inspect', 'stats', '-d', FENNEL_NODE, '--timeout', '10', '--json');
      assert.equal(result.code, 0, show(result));
      const answer = printedJson(result.lines) as Record<string, Record<string, unknown>>;
      const mine = answer[FENNEL_NODE];
      assert.ok(mine, show(result));
      return (mine['total'] as Record<string, number>)['ctl.sleep'] === 1 ? mine : undefined;
    });
    assert.equal(stats['pid'], fennel!.child.pid);
    assert.equal((stats['pool'] as Record<string, unknown>)['max-concurrency'], 2);
    const broker = stats['broker'] as Record<string, unknown>;
    assert.equal(broker['transport'], name);
    assert.equal(broker['hostname'], '127.0.0.1');
    assert.ok(!JSON.stringify(stats).includes(':guest@'), `no password anywhere in stats: ${JSON.stringify(broker)}`);

    const queues = await celeryCli('inspect', 'active_queues', '-d', FENNEL_NODE, '--timeout', '10');
    assert.equal(queues.code, 0, show(queues));
    assert.ok(queues.lines.some((l) => l.includes(`'name': '${FENNEL_QUEUE}'`)), show(queues));
  });

  it("Fennel's client pings the Celery worker and reads its registered tasks; a destination that did not answer is named", async () => {
    const client = engine();
    // limit 1: the gathering ends with the Celery worker's answer (the time only bounds a test that fails).
    const ping = await sendControl(client, { method: 'ping', destination: [CELERY_NODE, 'nobody@nowhere'], limit: 1, timeoutMs: 30_000 });
    assert.deepEqual(ping, { replies: [{ node: CELERY_NODE, result: { ok: 'pong' } }], missing: ['nobody@nowhere'] });
    const registered = await sendControl(client, { method: 'registered', arguments: { taskinfoitems: [] }, destination: [CELERY_NODE], timeoutMs: 30_000 });
    assert.equal(registered.replies.length, 1);
    assert.ok(Array.isArray(registered.replies[0]!.result) && (registered.replies[0]!.result as string[]).includes('py.add'), JSON.stringify(registered.replies));
    if (name !== 'redis') return;
    const redis = testRedisClient(DB);
    try {
      assert.deepEqual(await redis.smembers('_kombu.binding.reply.celery.pidbox'), [], "the client's reply binding is gone once it is done");
      assert.deepEqual(await redis.keys('*.reply.celery.pidbox*'), [], 'and its reply list');
      const workers = await redis.smembers('_kombu.binding.celery.pidbox');
      assert.ok(workers.includes(`\x06\x16\x06\x16${CELERY_NODE}.celery.pidbox`), "the Celery worker's mailbox binding");
      assert.ok(workers.includes(`\x06\x16\x06\x16${FENNEL_NODE}.celery.pidbox`), "and the Fennel worker's, the same shape");
    } finally {
      redis.disconnect();
    }
  });

  // A long-lived client's Lamport clock passes 127 soon. amqplib would write such an integer header with the tag 's',
  // which py-amqp reads as a string: the Celery worker died decoding the request, and Celery's client its reply.
  it('clocks past 127 on both sides: Fennel pings the Celery worker with clock 5000, and `celery inspect ping` reads the Fennel worker, which then answers with a clock past 5000', async () => {
    const client = engine();
    for (const clock of [200, 5000, 70_000]) {
      const ping = await sendControl(client, { method: 'ping', destination: [CELERY_NODE, FENNEL_NODE], timeoutMs: 30_000 }, clock);
      assert.deepEqual(ping.replies.map((r) => r.node).sort(), [CELERY_NODE, FENNEL_NODE].sort(), `clock ${clock}: both answered`);
    }
    // The Fennel worker has seen clock 70,000: its replies carry a larger one, which Celery's client must read.
    const celery = await celeryCli('inspect', 'ping', '-d', FENNEL_NODE, '--timeout', '10', '--json');
    assert.equal(celery.code, 0, show(celery));
    assert.deepEqual(printedJson(celery.lines), { [FENNEL_NODE]: { ok: 'pong' } });
    const again = await sendControl(client, { method: 'ping', destination: [CELERY_NODE], timeoutMs: 30_000 });
    assert.deepEqual(again.replies, [{ node: CELERY_NODE, result: { ok: 'pong' } }], 'the Celery worker is still up');
  });

  it('`fennel inspect ping`, `registered` and `active` -d <celery node> are answered by the Celery worker', async () => {
    const ping = await fennelCli('inspect', 'ping', '-d', `${CELERY_NODE},${FENNEL_NODE}`, '--timeout', '30000', '--json');
    assert.equal(ping.code, 0, show(ping));
    assert.deepEqual(printedJson(ping.stdout), { [CELERY_NODE]: { ok: 'pong' }, [FENNEL_NODE]: { ok: 'pong' } });

    const registered = await fennelCli('inspect', 'registered', '-d', CELERY_NODE, '--timeout', '30000', '--json');
    assert.equal(registered.code, 0, show(registered));
    assert.deepEqual(printedJson(registered.stdout), { [CELERY_NODE]: ['py.add', 'py.fail', 'py.sleep'] });

    // Sent by Fennel to the Celery worker's queue, under the Celery task's name.
    const path = releasePath();
    const task = app!.sendTask('py.sleep', [SLEEP_MAX_SEC, path], { queue: CELERY_QUEUE });
    await task.sent;
    const entry = await until('the Celery task in `fennel inspect active`', async () => {
      const active = await fennelCli('inspect', 'active', '-d', CELERY_NODE, '--timeout', '30000', '--json');
      assert.equal(active.code, 0, show(active));
      const answer = printedJson(active.stdout) as Record<string, Array<Record<string, unknown>>>;
      return answer[CELERY_NODE]?.find((t) => t['id'] === task.id);
    });
    assert.equal(entry['name'], 'py.sleep');
    assert.deepEqual(entry['args'], [SLEEP_MAX_SEC, path]);
    assert.equal(entry['hostname'], CELERY_NODE);
    const text = await fennelCli('inspect', 'active', '-d', CELERY_NODE, '--timeout', '30000');
    assert.equal(text.code, 0, show(text));
    assert.ok(text.stdout.includes(`-> ${CELERY_NODE}: OK`), show(text));
    assert.ok(text.stdout.some((l) => l.includes(task.id) && l.includes('py.sleep')), show(text));
    release(path);
    assert.equal(await task.get({ timeoutMs: 60_000 }), 'released');
  });

  it('`celery control pool_grow`, `rate_limit` and `add_consumer` -d <fennel node> are carried out and answered ok', async () => {
    const grow = await celeryCli('control', 'pool_grow', '1', '-d', FENNEL_NODE, '--timeout', '10', '--json');
    assert.equal(grow.code, 0, show(grow));
    assert.deepEqual(printedJson(grow.lines), [{ [FENNEL_NODE]: { ok: 'pool will grow' } }]);
    // Answered at once, as Celery's; `stats` counts the new slot once it has started.
    let pool: Record<string, unknown> = {};
    await waitFor(async () => {
      const stats = await fennelCli('inspect', 'stats', '-d', FENNEL_NODE, '--timeout', '30000', '--json');
      assert.equal(stats.code, 0, show(stats));
      pool = (printedJson(stats.stdout) as Record<string, { pool: Record<string, unknown> }>)[FENNEL_NODE]!.pool;
      return pool['max-concurrency'] === 3;
    }, 'the pool to grow from 2 to 3 slots', 60_000).catch((error: Error) => {
      throw new Error(`${error.message}; last pool stats: ${JSON.stringify(pool)}`);
    });

    const rate = await celeryCli('control', 'rate_limit', 'ctl.add', '10/m', '-d', FENNEL_NODE, '--timeout', '10', '--json');
    assert.equal(rate.code, 0, show(rate));
    assert.deepEqual(printedJson(rate.lines), [{ [FENNEL_NODE]: { ok: 'new rate limit set successfully' } }]);
    // As on a Celery worker, whose handler sets the task's rate_limit: `registered` shows the new limit.
    const registered = await celeryCli('inspect', 'registered', 'rate_limit', '-d', FENNEL_NODE, '--timeout', '10', '--json');
    assert.equal(registered.code, 0, show(registered));
    assert.ok((printedJson(registered.lines) as Record<string, string[]>)[FENNEL_NODE]!.includes('ctl.add [rate_limit=10/m]'), show(registered));

    const add = await celeryCli('control', 'add_consumer', ADDED_QUEUE, '-d', FENNEL_NODE, '--timeout', '10', '--json');
    assert.equal(add.code, 0, show(add));
    assert.deepEqual(printedJson(add.lines), [{ [FENNEL_NODE]: { ok: `add consumer ${ADDED_QUEUE}` } }]);
    const queues = await celeryCli('inspect', 'active_queues', '-d', FENNEL_NODE, '--timeout', '10', '--json');
    assert.equal(queues.code, 0, show(queues));
    const names = (printedJson(queues.lines) as Record<string, Array<{ name: string }>>)[FENNEL_NODE]!.map((q) => q.name);
    assert.ok(names.includes(ADDED_QUEUE) && names.includes(FENNEL_QUEUE), JSON.stringify(names));
    // And it consumes it: a task sent there runs.
    assert.equal(await app!.sendTask('ctl.sleep', [0], { queue: ADDED_QUEUE }).get({ timeoutMs: 60_000 }), 'slept');
  });

  // Last: the Fennel worker is gone afterwards.
  it('`celery control shutdown -d <fennel node>` is answered "shutting down"; the worker finishes its task and exits 0', async () => {
    const path = releasePath();
    const task = app!.sendTask('ctl.sleep', [SLEEP_MAX_SEC * 1000, path], { queue: FENNEL_QUEUE });
    await task.sent;
    const activeIds = async (): Promise<string[] | undefined> => {
      const active = await celeryCli('inspect', 'active', '-d', FENNEL_NODE, '--timeout', '10', '--json');
      if (active.code !== 0) return undefined;
      return ((printedJson(active.lines) as Record<string, Array<{ id: string }>>)[FENNEL_NODE] ?? []).map((t) => t.id);
    };
    await until('the task running', async () => ((await activeIds())?.includes(task.id) ? true : undefined));

    // Unlike a Celery worker's (no reply: the CLI exits 69), the Fennel worker's answer is printed.
    const shutdown = await celeryCli('control', 'shutdown', '-d', FENNEL_NODE, '--timeout', '10', '--json');
    assert.equal(shutdown.code, 0, show(shutdown));
    assert.deepEqual(printedJson(shutdown.lines), [{ [FENNEL_NODE]: { ok: 'shutting down' } }]);
    await fennel!.waitForLine(/warm shutdown/, 30_000);
    // Draining: it still answers, and still runs the task, which ends only when released.
    assert.deepEqual(await activeIds(), [task.id], 'the running task is still running during the warm shutdown');
    release(path);
    const exit = await fennel!.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, fennel!.lines.slice(-20).join('\n'));
    assert.equal(await task.status(), 'SUCCESS');
    assert.equal(await task.get({ timeoutMs: 10_000 }), 'released');
    const finished = fennel!.lines.findIndex((l) => l.includes(`ctl.sleep[${task.id}] succeeded`));
    const stopped = fennel!.lines.findIndex((l) => l.includes('worker stopped'));
    assert.ok(finished >= 0 && stopped > finished, `the task finished before the worker stopped:\n${fennel!.lines.slice(-20).join('\n')}`);

    if (name !== 'redis') return;
    const redis = testRedisClient(DB);
    try {
      const workers = await redis.smembers('_kombu.binding.celery.pidbox');
      assert.ok(!workers.includes(`\x06\x16\x06\x16${FENNEL_NODE}.celery.pidbox`), "the Fennel worker's mailbox binding is gone with it");
      assert.ok(workers.includes(`\x06\x16\x06\x16${CELERY_NODE}.celery.pidbox`), "the Celery worker's stays");
      assert.deepEqual(await redis.smembers('_kombu.binding.reply.celery.pidbox'), [], 'no client left a reply binding');
      assert.deepEqual(await redis.keys('*.reply.celery.pidbox*'), [], 'no reply list was left behind (no reply was pushed after its client had gone)');
    } finally {
      redis.disconnect();
    }
  });
});
