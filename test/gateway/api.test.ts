// The gateway's HTTP and WebSocket API against a real `fennel gateway` process and a real `fennel worker -E`
// process, on each engine: sqlite:// always, redis:// when Redis is up (this file owns Redis db 9), amqp:// when
// RabbitMQ is up too.
// Submit → 202 with the id once the broker has it; the outcome pushed over the WebSocket; the error answers
// (400/404/413/401/503); revoke (waiting, and running with terminate).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { runCli, stopProcess, tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { connect as amqpConnect } from 'amqplib';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { connect, post, request, startGateway, taskMessage, TASKS, type RunningGateway } from './support.ts';
import { Fennel } from '../../src/index.ts';
import { GatewayMetrics } from '../../src/gateway/metrics.ts';
import { Monitor } from '../../src/gateway/monitor.ts';
import { natsSkipReason, natsUrlForTest } from '../support/nats.ts';

const BODY_LIMIT = 4096;

interface Engine {
  url: string;
  /** More environment for the gateway and the worker (a result backend of its own, say). */
  env?: Record<string, string>;
  cleanup: (queue: string) => Promise<void> | void;
}

function apiSuite(engine: string, skip: string | false, setup: () => Promise<Engine>): void {
  describe(`gateway API on ${engine}`, { skip }, () => {
    let env: Record<string, string>;
    let gateway: RunningGateway;
    let worker: RunningWorker;
    let cleanup: () => Promise<void> | void = () => {};

    before(async () => {
      const made = await setup();
      const queue = uniqueQueue('gw');
      cleanup = () => made.cleanup(queue);
      env = { FENNEL_BROKER_URL: made.url, FENNEL_DEFAULT_QUEUE: queue, ...made.env };
      worker = runCli(['worker', '--app', TASKS, '-E', '-P', 'async', '-c', '2', '-Q', queue], env);
      await worker.waitForLine(/worker ready/);
      gateway = await startGateway(env, ['--body-limit', String(BODY_LIMIT)]);
    });
    after(async () => {
      if (gateway) await stopProcess(gateway.process, 'SIGTERM');
      if (worker) await stopProcess(worker, 'SIGTERM');
      await cleanup();
    });

    it('answers 202 with the id, then pushes the outcome over the WebSocket; GET reads it', async () => {
      const ws = await connect(gateway.url);
      try {
        const submitted = await post(gateway.url, '/api/tasks/gw.add', { args: [2, 3] });
        assert.equal(submitted.status, 202);
        const id = submitted.body['id'] as string;
        assert.match(id, /^[0-9a-f-]{36}$/);
        assert.equal(submitted.headers.get('location'), `/api/tasks/${id}`);
        ws.send({ op: 'subscribe', ids: [id] });
        const pushed = await ws.next(taskMessage(id, 'SUCCESS'), 'gw.add succeeded');
        assert.deepEqual((pushed['task'] as Record<string, unknown>)['result'], 5);
        const read = await request(gateway.url, 'GET', `/api/tasks/${id}`);
        assert.equal(read.status, 200);
        assert.equal(read.body['state'], 'SUCCESS');
        assert.equal(read.body['result'], 5);
        assert.equal(read.body['name'], 'gw.add');
      } finally {
        ws.close();
      }
    });

    it('pushes the states in between (from worker events) before the outcome, in order', async () => {
      const ws = await connect(gateway.url);
      try {
        const { body } = await post(gateway.url, '/api/tasks/gw.sleep', { args: [300] });
        const id = body['id'] as string;
        ws.send({ op: 'subscribe', ids: [id] });
        await ws.next(taskMessage(id, 'SUCCESS'), 'gw.sleep succeeded');
        const states = ws.messages.filter(taskMessage(id)).map((m) => (m['task'] as { state: string }).state);
        const order = ['RECEIVED', 'STARTED', 'PROGRESS', 'SUCCESS'];
        assert.deepEqual([...states].sort((a, b) => order.indexOf(a) - order.indexOf(b)), states, `states in order: ${states.join(' → ')}`);
        assert.equal(states.at(-1), 'SUCCESS');
        assert.equal(states.filter((s) => s === 'SUCCESS').length, 1);
      } finally {
        ws.close();
      }
    });

    it('pushes a failure with the remote error type and message', async () => {
      const ws = await connect(gateway.url);
      try {
        const { body } = await post(gateway.url, '/api/tasks/gw.boom', { args: ['out of range'] });
        ws.send({ op: 'subscribe', ids: [body['id']] });
        const pushed = await ws.next(taskMessage(body['id'] as string, 'FAILURE'), 'gw.boom failed');
        const error = (pushed['task'] as { error: Record<string, unknown> }).error;
        assert.equal(error['type'], 'RangeError');
        assert.equal(error['message'], 'out of range');
      } finally {
        ws.close();
      }
    });

    it('answers 400 with the reason for malformed JSON, a bad body, and arguments that fail the task\'s schema', async () => {
      const malformed = await post(gateway.url, '/api/tasks/gw.add', '{"args": [1,');
      assert.equal(malformed.status, 400);
      assert.match(String(malformed.body['error']), /JSON/);
      const schema = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 'two'] });
      assert.equal(schema.status, 400);
      assert.equal(schema.body['code'], 'INVALID_ARGUMENTS');
      assert.match(String(schema.body['error']), /args\.1: .*number/);
      const extra = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 2], options: { queue: 'elsewhere' } });
      assert.equal(extra.status, 400);
      assert.match(String(extra.body['error']), /queue/);
      const notArray = await post(gateway.url, '/api/tasks/gw.sleep', { args: 'x' });
      assert.equal(notArray.status, 400);
      assert.match(String(notArray.body['error']), /args/);
    });

    it('refuses kwargs a tuple schema has no place for (400, naming kwargs); an object schema takes them by name', async () => {
      const extra = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 2], kwargs: { c: 3 } });
      assert.equal(extra.status, 400, JSON.stringify(extra.body));
      assert.equal(extra.body['code'], 'INVALID_ARGUMENTS');
      assert.match(String(extra.body['error']), /kwargs: not accepted: this task takes positional arguments only/);
      const empty = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 2], kwargs: {} });
      assert.equal(empty.status, 202, 'an empty kwargs object is no kwargs');

      const ws = await connect(gateway.url);
      try {
        const named = await post(gateway.url, '/api/tasks/gw.greet', { kwargs: { name: 'Ada' } });
        assert.equal(named.status, 202, JSON.stringify(named.body));
        const id = named.body['id'] as string;
        ws.send({ op: 'subscribe', ids: [id] });
        const pushed = await ws.next(taskMessage(id, 'SUCCESS'), 'gw.greet succeeded');
        assert.equal((pushed['task'] as Record<string, unknown>)['result'], 'hello Ada!');
        // No schema: nothing to check against, so kwargs reach the task (as its trailing argument).
        const free = await post(gateway.url, '/api/tasks/gw.sleep', { args: [1], kwargs: { why: 'no schema' } });
        assert.equal(free.status, 202, JSON.stringify(free.body));
        ws.send({ op: 'subscribe', ids: [free.body['id']] });
        await ws.next(taskMessage(free.body['id'] as string, 'SUCCESS'), 'gw.sleep with kwargs succeeded');
      } finally {
        ws.close();
      }
      const wrongField = await post(gateway.url, '/api/tasks/gw.greet', { kwargs: { name: 5 } });
      assert.equal(wrongField.status, 400);
      assert.match(String(wrongField.body['error']), /kwargs\.name: .*string/);
      const both = await post(gateway.url, '/api/tasks/gw.greet', { args: [1], kwargs: { name: 'Ada' } });
      assert.equal(both.status, 400);
      assert.match(String(both.body['error']), /args: not accepted: this task takes its arguments by name/);
      const none = await post(gateway.url, '/api/tasks/gw.greet', {});
      assert.equal(none.status, 400);
      assert.match(String(none.body['error']), /kwargs: required/);
    });

    it('answers 404 for a task that is not exposed and for one that does not exist, alike', async () => {
      const hidden = await post(gateway.url, '/api/tasks/gw.hidden', {});
      const unknown = await post(gateway.url, '/api/tasks/no.such.task', {});
      assert.equal(hidden.status, 404);
      assert.equal(unknown.status, 404);
      assert.equal(hidden.body['code'], unknown.body['code']);
    });

    it('answers 413 for a body over the limit, and stays up', async () => {
      const big = await post(gateway.url, '/api/tasks/gw.sleep', { args: ['x'.repeat(BODY_LIMIT * 2)] });
      assert.equal(big.status, 413);
      const after = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 1] });
      assert.equal(after.status, 202);
    });

    it('answers a WebSocket frame it cannot use with an error message, and keeps the connection', async () => {
      const ws = await connect(gateway.url);
      try {
        ws.sendRaw('not json at all');
        await ws.next((m) => m['type'] === 'error' && /JSON/.test(String(m['error'])), 'an error for bad JSON');
        ws.send({ op: 'explode' });
        await ws.next((m) => m['type'] === 'error' && /op/.test(String(m['error'])), 'an error for an unknown op');
        const { body } = await post(gateway.url, '/api/tasks/gw.add', { args: [20, 22] });
        ws.send({ op: 'subscribe', ids: [body['id']] });
        await ws.next(taskMessage(body['id'] as string, 'SUCCESS'), 'still pushing');
      } finally {
        ws.close();
      }
    });

    it('revokes a task that is waiting (DELETE → 202; the REVOKED state is pushed)', async () => {
      const ws = await connect(gateway.url);
      try {
        const { body } = await post(gateway.url, '/api/tasks/gw.sleep', { args: [10], options: { countdown: 3600 } });
        const id = body['id'] as string;
        ws.send({ op: 'subscribe', ids: [id] });
        const revoked = await request(gateway.url, 'DELETE', `/api/tasks/${id}`);
        assert.equal(revoked.status, 202);
        assert.equal(revoked.body['revoked'], true);
        assert.equal(revoked.body['state'], 'REVOKED');
        await ws.next(taskMessage(id, 'REVOKED'), 'REVOKED pushed');
        assert.equal((await request(gateway.url, 'GET', `/api/tasks/${id}`)).body['state'], 'REVOKED');
        // Revoked is a final state too: a second revoke says so instead of revoking again.
        const again = await request(gateway.url, 'DELETE', `/api/tasks/${id}`);
        assert.equal(again.status, 409);
        assert.equal(again.body['state'], 'REVOKED');
      } finally {
        ws.close();
      }
    });

    it('answers 409 with the state to a revoke of a task that has finished, and leaves it as it was', async () => {
      const ws = await connect(gateway.url);
      try {
        const added = await post(gateway.url, '/api/tasks/gw.add', { args: [2, 3] });
        const failed = await post(gateway.url, '/api/tasks/gw.boom', { args: ['on purpose'] });
        const addId = added.body['id'] as string;
        const failId = failed.body['id'] as string;
        ws.send({ op: 'subscribe', ids: [addId, failId] });
        await ws.next(taskMessage(addId, 'SUCCESS'), 'gw.add succeeded');
        await ws.next(taskMessage(failId, 'FAILURE'), 'gw.boom failed');
        for (const [id, state] of [[addId, 'SUCCESS'], [failId, 'FAILURE']] as const) {
          for (const query of ['', '?terminate=true']) {
            const revoke = await request(gateway.url, 'DELETE', `/api/tasks/${id}${query}`);
            assert.equal(revoke.status, 409, JSON.stringify(revoke.body));
            assert.equal(revoke.body['code'], 'TASK_ALREADY_FINISHED');
            assert.equal(revoke.body['state'], state);
            assert.equal(revoke.body['id'], id);
            assert.match(String(revoke.body['error']), new RegExp(`already finished \\(${state}\\)`));
            assert.equal(revoke.body['revoked'], undefined);
          }
        }
        const read = await request(gateway.url, 'GET', `/api/tasks/${addId}`);
        assert.equal(read.body['state'], 'SUCCESS');
        assert.equal(read.body['result'], 5);
        assert.equal((await request(gateway.url, 'GET', `/api/tasks/${failId}`)).body['state'], 'FAILURE');
      } finally {
        ws.close();
      }
    });

    it('revokes an id nothing is stored for (202), saying that it is PENDING and will be discarded if it arrives', async () => {
      const id = randomUUID();
      const revoke = await request(gateway.url, 'DELETE', `/api/tasks/${id}`);
      assert.equal(revoke.status, 202, JSON.stringify(revoke.body));
      assert.equal(revoke.body['revoked'], true);
      assert.equal(revoke.body['previousState'], 'PENDING');
      assert.equal(revoke.body['state'], 'REVOKED');
      assert.match(String(revoke.body['note']), /nothing is stored for this id yet: the task may still be waiting in a queue \(a worker that receives it within \d+ s discards it\)/);
      assert.equal((await request(gateway.url, 'GET', `/api/tasks/${id}`)).body['state'], 'REVOKED');
    });

    it('revokes a running task with ?terminate=true', async () => {
      const ws = await connect(gateway.url);
      try {
        const { body } = await post(gateway.url, '/api/tasks/gw.sleep', { args: [120_000] });
        const id = body['id'] as string;
        ws.send({ op: 'subscribe', ids: [id] });
        await ws.next((m) => taskMessage(id, 'STARTED')(m) || taskMessage(id, 'PROGRESS')(m), 'the task running');
        const revoke = await request(gateway.url, 'DELETE', `/api/tasks/${id}?terminate=true`);
        assert.equal(revoke.status, 202);
        assert.equal(revoke.body['terminate'], true);
        await ws.next(taskMessage(id, 'REVOKED'), 'REVOKED pushed');
      } finally {
        ws.close();
      }
    });

    it('says a revoke without terminate does not stop a running task; ?terminate=true then still stops it', async () => {
      const { body } = await post(gateway.url, '/api/tasks/gw.sleep', { args: [120_000] });
      const id = body['id'] as string;
      await waitFor(async () => (await request(gateway.url, 'GET', `/api/tasks/${id}`)).body['state'] === 'PROGRESS', 'the task running (PROGRESS stored)');
      const revoke = await request(gateway.url, 'DELETE', `/api/tasks/${id}`);
      assert.equal(revoke.status, 202, JSON.stringify(revoke.body));
      assert.equal(revoke.body['previousState'], 'PROGRESS');
      assert.match(String(revoke.body['note']), /the task is running: a revoke without \?terminate=true does not stop it/);
      const terminate = await request(gateway.url, 'DELETE', `/api/tasks/${id}?terminate=true`);
      assert.equal(terminate.status, 202, JSON.stringify(terminate.body));
      assert.equal(terminate.body['previousState'], 'REVOKED');
      await worker.waitForLine(new RegExp(`gw\\.sleep\\[${id}\\] terminated`));
    });

    it('serves /healthz, /metrics (fed from events) and the dashboard', async () => {
      const health = await request(gateway.url, 'GET', '/healthz');
      assert.equal(health.status, 200);
      assert.equal(health.body['broker'], 'up');
      // The worker is known from its task events or its next heartbeat (it came online before the gateway).
      let metrics = await request(gateway.url, 'GET', '/metrics');
      await waitFor(async () => /fennel_workers\{state="online"\} 1/.test((metrics = await request(gateway.url, 'GET', '/metrics')).text), 'the worker in /metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.text, /fennel_tasks_total\{name="gw.add",state="SUCCESS"\} \d+/);
      assert.match(metrics.text, /fennel_task_runtime_seconds_count\{name="gw.add"\} \d+/);
      assert.match(metrics.text, /fennel_workers\{state="online"\} 1/);
      assert.match(metrics.text, /fennel_queue_depth\{queue="gw-/);
      assert.match(metrics.text, /fennel_gateway_submissions_total\{name="gw.add"\} \d+/);
      const page = await request(gateway.url, 'GET', '/dashboard/');
      assert.equal(page.status, 200);
      assert.match(page.text, /<html|<!doctype/i);
    });
  });
}

apiSuite('sqlite://', false, async () => {
  const db = tempDb();
  return { url: db.url, cleanup: () => db.cleanup() };
});

const redisSkip = await redisSkipReason();
apiSuite('redis://', redisSkip, async () => {
  await flushRedisDb(REDIS_DB.gateway);
  return { url: redisUrlForTest(REDIS_DB.gateway), cleanup: () => flushRedisDb(REDIS_DB.gateway) };
});

// RabbitMQ as the broker, with Redis (this file's db 9) as the result store that workers and the gateway share
// (rpc:// results go only to the process that sent the task, and revoke needs a shared store).
const amqpSkip = (await rabbitSkipReason()) || redisSkip;
apiSuite('amqp:// (results in redis://)', amqpSkip, async () => {
  await flushRedisDb(REDIS_DB.gateway);
  return {
    url: RABBIT_URL,
    env: { FENNEL_RESULT_BACKEND: redisUrlForTest(REDIS_DB.gateway) },
    cleanup: async (queue) => {
      await flushRedisDb(REDIS_DB.gateway);
      // The worker declared the queue and its direct exchange, as Celery does; remove them.
      const connection = await amqpConnect(RABBIT_URL);
      const channel = await connection.createChannel();
      await channel.deleteQueue(queue);
      await channel.deleteExchange(queue);
      await connection.close();
    },
  };
});

// NATS JetStream as broker and result store (issue #20), on this file's own prefix of the shared server.
const natsSkip = await natsSkipReason();
apiSuite('nats://', natsSkip, () => Promise.resolve({ url: natsUrlForTest('fennel-test-gateway'), cleanup: () => {} }));

describe('gateway monitor on nats://', { skip: natsSkip }, () => {
  it("receives a worker's events from the nats:// event bus: online, its tasks, offline", async () => {
    const url = natsUrlForTest('fennel-test-gateway-monitor');
    const gatewayApp = new Fennel({ broker: url });
    const workerApp = new Fennel({ broker: url });
    const monitor = new Monitor(gatewayApp, new GatewayMetrics());
    try {
      await monitor.start();
      assert.equal(monitor.eventsError, null);
      const base = { hostname: 'w@nats', pid: 4242, timestamp: Date.now() / 1000 };
      workerApp.events.publish({ ...base, type: 'worker-online', pool: 'async', queues: ['on-nats'] });
      workerApp.events.publish({ ...base, type: 'task-started', uuid: 'nats-task-1' });
      await waitFor(() => monitor.workers.get('w@nats:4242')?.online === true && monitor.tasks.get('nats-task-1')?.state === 'STARTED', 'the worker online and its task started');
      assert.deepEqual(monitor.workers.get('w@nats:4242')?.queues, ['on-nats']);
      workerApp.events.publish({ ...base, type: 'worker-offline' });
      await waitFor(() => monitor.workers.get('w@nats:4242')?.online === false, 'the worker offline');
    } finally {
      await monitor.stop();
      await Promise.all([gatewayApp.close(), workerApp.close()]);
    }
  });
});

describe('gateway with FENNEL_GATEWAY_TOKEN', () => {
  const TOKEN = 's3cret-token';
  let gateway: RunningGateway;
  const db = tempDb();
  before(async () => {
    gateway = await startGateway({ FENNEL_BROKER_URL: db.url, FENNEL_GATEWAY_TOKEN: TOKEN });
  });
  after(async () => {
    if (gateway) await stopProcess(gateway.process, 'SIGTERM');
    db.cleanup();
  });

  it('answers 401 without the bearer token or with a wrong one, on the API, /metrics and the WebSocket', async () => {
    assert.equal((await post(gateway.url, '/api/tasks/gw.add', { args: [1, 2] })).status, 401);
    const wrong = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 2] }, { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('www-authenticate'), 'Bearer');
    assert.equal((await request(gateway.url, 'GET', '/api/tasks/x')).status, 401);
    assert.equal((await request(gateway.url, 'GET', '/metrics')).status, 401);
    await assert.rejects(connect(gateway.url), /401/);
    await assert.rejects(connect(gateway.url, '?token=nope'), /401/);
  });

  it('accepts the token as a bearer header, and as ?token= on the WebSocket', async () => {
    const ok = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 2] }, { authorization: `Bearer ${TOKEN}` });
    assert.equal(ok.status, 202);
    assert.equal((await request(gateway.url, 'GET', '/metrics', { authorization: `Bearer ${TOKEN}` })).status, 200);
    const ws = await connect(gateway.url, `?token=${TOKEN}`);
    ws.close();
  });
});

describe('gateway with its broker down', () => {
  it('answers 503 with Retry-After (sqlite://: the file is not a database), and /healthz says why', async () => {
    const db = tempDb();
    writeFileSync(db.path, 'this is not a SQLite database, and it is long enough to have a header'.repeat(20));
    const gateway = await startGateway({ FENNEL_BROKER_URL: db.url });
    try {
      const down = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 2] });
      assert.equal(down.status, 503);
      assert.equal(down.headers.get('retry-after'), '5');
      assert.match(String(down.body['error']), /broker unavailable/);
      const health = await request(gateway.url, 'GET', '/healthz');
      assert.equal(health.status, 503);
    } finally {
      await stopProcess(gateway.process, 'SIGTERM');
      db.cleanup();
    }
  });

  it('answers 503 when the broker does not confirm in time (redis:// with nothing listening)', async () => {
    const gateway = await startGateway({ FENNEL_BROKER_URL: 'redis://127.0.0.1:1/0' }, ['--publish-timeout-ms', '500']);
    try {
      const down = await post(gateway.url, '/api/tasks/gw.add', { args: [1, 2] });
      assert.equal(down.status, 503);
      assert.equal(down.headers.get('retry-after'), '5');
      assert.match(String(down.body['error']), /did not confirm|broker unavailable/);
    } finally {
      await stopProcess(gateway.process, 'SIGTERM');
    }
  });
});
