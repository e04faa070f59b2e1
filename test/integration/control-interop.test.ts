// Remote control across Fennel and Python Celery on Redis (issue #16, in progress): Fennel's redis:// mailbox
// engine (src/control/redis.ts) speaks kombu's pidbox layout, so
//   - Fennel's client (sendControl) pings a real Celery 5 worker and reads its registered tasks, naming a
//     destination that did not answer;
//   - the real `celery inspect ping -d <node>` is answered by a Fennel listener (the worker side as the command
//     table will run it: parse, check the addressing, reply), and Celery's CLI prints its answer;
//   - what each side leaves in Redis afterwards: no reply list, no binding of a client that has gone.
// Debian's /usr/bin/python3 with python3-celery and python3-redis, the interop fixtures' Celery app
// (fixtures/interop/celery_tasks.py). Redis database REDIS_DB.conformance's neighbour for interop, 14 (the
// interop fixtures' own), flushed before and after; test files run one at a time, so no other Celery worker
// listens on it meanwhile. Missing Redis or Celery skips with one line, except on CI (CI=true), where it fails.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sendControl } from '../../src/control/client.ts';
import { RedisMailboxEngine } from '../../src/control/redis.ts';
import { controlReply, isAddressedTo, isStale, parseControlRequest, replyHeaders } from '../../src/control/protocol.ts';
import { PYTHON, startPython, stopPython, type PythonProcess } from '../support/python.ts';
import { flushRedisDb, redisSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures/interop');
/** The interop fixtures' database (their default): no other test file runs meanwhile. */
const DB = 14;
const REDIS_URL = redisUrlForTest(DB);
const PY_ENV = { ...process.env, PYTHONPATH: FIXTURES, PYTHONDONTWRITEBYTECODE: '1', INTEROP_BROKER_URL: REDIS_URL };
const CELERY_NODE = 'pidbox-interop@celery';
const FENNEL_NODE = 'pidbox-interop@fennel';

async function missing(): Promise<string | false> {
  const redis = await redisSkipReason();
  if (redis) return redis;
  const python = spawnSync(PYTHON, ['-c', 'import celery, redis'], { encoding: 'utf8' });
  if (python.status !== 0) {
    const reason = `${PYTHON} cannot import celery and redis (apt-get install python3-celery python3-redis)`;
    if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: Debian's Celery is required)`);
    return reason;
  }
  return false;
}

const skip = await missing();

describe('remote control between Fennel and Python Celery on redis://', { skip }, () => {
  let celery: PythonProcess | undefined;
  const engines: RedisMailboxEngine[] = [];
  const engine = (): RedisMailboxEngine => {
    const e = new RedisMailboxEngine(REDIS_URL);
    engines.push(e);
    return e;
  };

  before(async () => {
    await flushRedisDb(DB);
    celery = startPython(['-m', 'celery', '-A', 'celery_tasks', 'worker', '-Q', 'pidbox-interop', '-c', '1', '-P', 'solo', '--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'info', '-n', CELERY_NODE], { cwd: FIXTURES, env: PY_ENV });
    await celery.waitForLine(/ready\./, 60_000);
  });

  after(async () => {
    await stopPython(celery);
    for (const e of engines) await e.close();
    await flushRedisDb(DB);
  });

  it("Fennel's client pings a Celery worker and reads its registered tasks; a destination that did not answer is named", async () => {
    const client = engine();
    const ping = await sendControl(client, { method: 'ping', destination: [CELERY_NODE, 'nobody@nowhere'], timeoutMs: 5000 });
    assert.deepEqual(ping, { replies: [{ node: CELERY_NODE, result: { ok: 'pong' } }], missing: ['nobody@nowhere'] });
    const registered = await sendControl(client, { method: 'registered', arguments: { taskinfoitems: [] }, destination: [CELERY_NODE], timeoutMs: 5000 });
    assert.equal(registered.replies.length, 1);
    assert.ok(Array.isArray(registered.replies[0]!.result) && (registered.replies[0]!.result as string[]).includes('py.add'), JSON.stringify(registered.replies));
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
      const inspect = startPython(['-m', 'celery', '-A', 'celery_tasks', 'inspect', 'ping', '-d', FENNEL_NODE, '--timeout', '10', '--json'], { cwd: FIXTURES, env: PY_ENV });
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
