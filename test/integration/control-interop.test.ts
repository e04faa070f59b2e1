// Remote control across Fennel and Python Celery on Redis and RabbitMQ (issue #16, in progress): Fennel's redis://
// and amqp:// mailbox engines (src/control/redis.ts, amqp.ts) speak kombu's pidbox layouts, so
//   - Fennel's client (sendControl) pings a real Celery 5 worker and reads its registered tasks, naming a
//     destination that did not answer;
//   - the real `celery inspect ping -d <node>` is answered by a Fennel listener (the worker side as the command
//     table will run it: parse, check the addressing, reply), and Celery's CLI prints its answer;
//   - what each side leaves in Redis afterwards: no reply list, no binding of a client that has gone.
// On RabbitMQ the Celery side's results go to the Redis database below (Celery 5.2 has no amqp:// result store).
// Debian's /usr/bin/python3 with python3-celery and python3-redis, the interop fixtures' Celery app
// (fixtures/interop/celery_tasks.py). Redis database REDIS_DB.conformance's neighbour for interop, 14 (the
// interop fixtures' own), flushed before and after; test files run one at a time, so no other Celery worker
// listens on it meanwhile. Missing Redis or Celery skips with one line, except on CI (CI=true), where it fails.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sendControl } from '../../src/control/client.ts';
import { AmqpMailboxEngine } from '../../src/control/amqp.ts';
import type { MailboxEngine } from '../../src/control/mailbox.ts';
import { RedisMailboxEngine } from '../../src/control/redis.ts';
import { controlReply, isAddressedTo, isStale, parseControlRequest, replyHeaders } from '../../src/control/protocol.ts';
import { celerySkipReason, startPython, stopPython, type PythonProcess } from '../support/python.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures/interop');
/** The interop fixtures' database (their default): no other test file runs meanwhile. */
const DB = 14;
const REDIS_URL = redisUrlForTest(DB);
// kombu writes the default vhost "/" as "//"; Fennel's RABBIT_URL ("…:5672/") is the same vhost.
const PY_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672//';

const skip = await celerySkipReason();
const rabbitSkip = skip || (await rabbitSkipReason());

const CASES = [
  { name: 'redis', skip, pyBroker: REDIS_URL, open: (): MailboxEngine => new RedisMailboxEngine(REDIS_URL) },
  { name: 'amqp', skip: rabbitSkip, pyBroker: PY_AMQP_URL, open: (): MailboxEngine => new AmqpMailboxEngine(RABBIT_URL) },
] as const;

for (const { name, skip: skipCase, pyBroker, open } of CASES) describe(`remote control between Fennel and Python Celery on ${name}://`, { skip: skipCase }, () => {
  const CELERY_NODE = `pidbox-${name}@celery`;
  const FENNEL_NODE = `pidbox-${name}@fennel`;
  const PY_ENV = { ...process.env, PYTHONPATH: FIXTURES, PYTHONDONTWRITEBYTECODE: '1', INTEROP_BROKER_URL: pyBroker, INTEROP_RESULT_BACKEND: REDIS_URL };
  let celery: PythonProcess | undefined;
  const engines: MailboxEngine[] = [];
  const engine = (): MailboxEngine => {
    const e = open();
    engines.push(e);
    return e;
  };

  before(async () => {
    await flushRedisDb(DB);
    celery = startPython(['-m', 'celery', '-A', 'celery_tasks', 'worker', '-Q', `pidbox-interop-${name}`, '-c', '1', '-P', 'solo', '--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'info', '-n', CELERY_NODE], { cwd: FIXTURES, env: PY_ENV });
    await celery.waitForLine(/ready\./, 60_000);
  });

  after(async () => {
    await stopPython(celery);
    for (const e of engines) await e.close();
    await flushRedisDb(DB);
  });

  it("Fennel's client pings a Celery worker and reads its registered tasks; a destination that did not answer is named", async () => {
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
      const bindings = await redis.smembers('_kombu.binding.reply.celery.pidbox');
      assert.deepEqual(bindings, [], "the client's reply binding is gone once it is done");
      assert.deepEqual(await redis.keys('*.reply.celery.pidbox*'), [], 'and its reply list');
      assert.ok((await redis.smembers('_kombu.binding.celery.pidbox')).includes(`\x06\x16\x06\x16${CELERY_NODE}.celery.pidbox`), "the Celery worker's mailbox binding, the shape Fennel's writes");
    } finally {
      redis.disconnect();
    }
  });

  it('`celery inspect ping -d <node>` is answered by a Fennel listener, and Celery prints the answer', async () => {
    const worker = engine();
    const seen: string[] = [];
    const stop = await worker.listen(FENNEL_NODE, ({ body, headers, undecodable }) => {
      if (undecodable) return;
      const request = parseControlRequest(body);
      if (!isAddressedTo(request, FENNEL_NODE) || isStale(headers) || !request.reply_to) return;
      seen.push(request.method);
      void worker.reply(request.reply_to, controlReply(FENNEL_NODE, request.method === 'ping' ? { ok: 'pong' } : { error: 'unknown command' }), replyHeaders(request.ticket, 1));
    });
    try {
      const inspect = startPython(['-m', 'celery', '-A', 'celery_tasks', 'inspect', 'ping', '-d', FENNEL_NODE, '--timeout', '30', '--json'], { cwd: FIXTURES, env: PY_ENV });
      const code = await inspect.exited;
      assert.equal(code, 0, inspect.lines.join('\n'));
      const printed = inspect.lines.find((l) => l.startsWith('{'));
      assert.deepEqual(JSON.parse(printed ?? 'null'), { [FENNEL_NODE]: { ok: 'pong' } });
      assert.deepEqual(seen, ['ping']);
    } finally {
      await stop();
    }
  });
});
