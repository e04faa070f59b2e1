// Signed messages end to end (issue #18), with real `fennel worker` processes holding keys (FENNEL_SIGNING_KEY) on
// SQLite, Redis and RabbitMQ (results in Redis): signed calls run, retries and a chain's next step are signed
// again by the worker; an unsigned message, one signed with a key the worker does not hold, and a signed one whose
// body or eta was changed afterwards are dead-lettered with the reason, never run, nothing stored under their ids,
// and the worker logs the refusal with the sender's reply_to and keeps serving. Keys rotate: the worker accepts
// either of its two keys. Unit cases: test/unit/protocol/signing.test.ts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chain, Fennel, RemoteTaskError } from '../../src/index.ts';
import { buildTaskMessage, type WireMessage } from '../../src/protocol/message.ts';
import { Signer } from '../../src/protocol/signing.ts';
import { isRunning, startWorker, stopProcess, tempDb, waitFor, type RunningWorker } from '../support/process.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { engineSelection, flushRedisDb, RABBIT_URL, REDIS_DB, redisUrlForTest } from '../support/services.ts';

const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const WAIT_MS = 30_000;
const DB = REDIS_DB.semantics;
const REDIS_URL = redisUrlForTest(DB);
const KEY = 'signing-test-key-current-0123456789';
const OLD = 'signing-test-key-retired-0123456789';
const OTHER = 'signing-test-key-of-someone-else-99';
const sqlite = tempDb();
after(() => sqlite.cleanup());

const skip = await engineSelection();
const engines = [
  { name: 'sqlite', broker: sqlite.url, backend: sqlite.url, skip: false as string | false },
  { name: 'redis', broker: REDIS_URL, backend: REDIS_URL, skip: skip.redis },
  { name: 'amqp', broker: RABBIT_URL, backend: REDIS_URL, skip: skip.amqp },
];

for (const engine of engines) {
  describe(`signed messages on ${engine.name}://`, { skip: engine.skip }, () => {
    const queue = `signing-${engine.name}-${randomUUID().slice(0, 8)}`;
    const node = `${queue}@test`;
    let worker: RunningWorker;
    const apps: Fennel[] = [];
    /** A producer on this engine, signing with `keys` (none: unsigned). */
    const producer = (keys?: string[]): Fennel => {
      const app = new Fennel({ broker: engine.broker, backend: engine.backend, defaultQueue: queue, ...(keys ? { signingKey: keys } : {}) });
      apps.push(app);
      return app;
    };

    before(async () => {
      if (engine.backend === REDIS_URL) await flushRedisDb(DB);
      // Two keys: it signs with the first and accepts both (a rotation in progress).
      worker = await startWorker(TASKS, engine.broker, ['-P', 'async', '-c', '4', '-Q', queue, '-n', node], { FENNEL_RESULT_BACKEND: engine.backend, FENNEL_DEFAULT_QUEUE: queue, FENNEL_SIGNING_KEY: `${KEY},${OLD}` });
    });
    after(async () => {
      await stopProcess(worker);
      for (const app of apps) await app.close();
      if (engine.name === 'amqp') await removeRabbitQueues([queue]);
    });

    it('runs calls signed with either of its keys, and signs the retries and the chain steps it sends', async () => {
      const app = producer([KEY]);
      assert.equal(await app.sendTask('test.add', [2, 3]).get({ timeoutMs: WAIT_MS }), 5);
      // A producer midway through a rotation: it signs with the old key and reads results signed with the new one.
      assert.equal(await producer([OLD, KEY]).sendTask('test.add', [20, 22]).get({ timeoutMs: WAIT_MS }), 42, 'the retired key is still accepted');
      assert.equal(await app.sendTask('test.flaky', [2]).get({ timeoutMs: WAIT_MS }), 'ok after 2 retries', 'each retry, republished by the worker, is signed again');
      // The producer declares the worker's tasks by name, for their signatures (it never runs them).
      const add = app.task('test.add', (a: number, b: number) => a + b);
      const mul = app.task('test.mul', (a: number, b: number) => a * b);
      assert.equal(await chain(add.s(1, 2), mul.s(10)).applyAsync().get({ timeoutMs: WAIT_MS }), 30, "the chain's next step, sent by the worker, is signed");
    });

    it('dead-letters unsigned, foreign-key and tampered messages with the reason, runs none, stores nothing under their ids, and keeps serving', async () => {
      const app = producer([KEY]);
      const mine = new Signer([KEY]);
      const forged = (make: (m: WireMessage) => void): { id: string; message: WireMessage } => {
        const id = randomUUID();
        const message = buildTaskMessage({ id, name: 'test.add', args: [1, 1], queue, replyTo: 'forger-reply-to' });
        make(message);
        return { id, message };
      };
      const cases = [
        { what: 'unsigned', reason: /^SignatureError: the message is not signed$/, ...forged(() => {}) },
        { what: 'another key', reason: /^SignatureError: it is signed with a key this worker does not hold/, ...forged((m) => new Signer([OTHER]).sign(m)) },
        {
          what: 'a tampered body',
          reason: /^SignatureError: its signature does not match its body and headers/,
          ...forged((m) => {
            mine.sign(m);
            m.body = m.body.replace('[1,1]', '[1,2]');
          }),
        },
        {
          what: 'a tampered eta',
          reason: /^SignatureError: its signature does not match its body and headers/,
          ...forged((m) => {
            mine.sign(m);
            m.headers['eta'] = new Date(Date.now() - 1000).toISOString();
          }),
        },
      ];
      for (const c of cases) await app.transport.publish(c.message, { queue });
      const letterOf = async (id: string) => (await app.transport.listDeadLetters({ limit: 10_000 })).find((d) => d.taskId === id);
      await waitFor(async () => (await Promise.all(cases.map((c) => letterOf(c.id)))).every(Boolean), 'the four messages to reach the dead letters', WAIT_MS);
      for (const c of cases) {
        const letter = (await letterOf(c.id))!;
        assert.match(letter.reason, c.reason, c.what);
        assert.equal(await app.backend.get(c.id), undefined, `${c.what}: nothing is stored under its id`);
      }
      const logged = await worker.waitForLine(/refused a message on queue .* reply_to forger-reply-to\): the message is not signed; moved to dead letters/, 5_000);
      assert.match(logged, /test\.add/);
      assert.ok(isRunning(worker), 'the worker is still running');
      assert.equal(await app.sendTask('test.add', [4, 4]).get({ timeoutMs: WAIT_MS }), 8, 'and it runs the next signed call');
    });

    it('results are signed: a result the worker stored reads back, a forged one (stored without the key) is refused as SignatureError', async () => {
      const app = producer([KEY]);
      const ran = app.sendTask('test.add', [3, 4]);
      assert.equal(await ran.get({ timeoutMs: WAIT_MS }), 7, 'the worker signs what it stores');
      // Someone with write access to the result store but not the key answers for a task.
      const forged = producer();
      const id = randomUUID();
      await forged.backend.store({ status: 'SUCCESS', result: 'forged', traceback: null, children: [], date_done: new Date().toISOString(), task_id: id });
      const error = await app.asyncResult(id).get({ timeoutMs: WAIT_MS }).then(
        (value) => assert.fail(`a forged result was read: ${JSON.stringify(value)}`),
        (e: unknown) => e,
      );
      assert.ok(error instanceof RemoteTaskError, String(error));
      assert.equal(error.remoteName, 'SignatureError');
      assert.match(error.remoteMessage, new RegExp(`the stored result of task ${id} was refused: it is not signed`));
    });

    it('remote control: a signed request is answered; an unsigned or foreign-key one (a forged shutdown included) is dropped with a warning', async () => {
      const signed = await producer([KEY]).control.ping({ destination: [node], timeoutMs: 5_000 });
      assert.deepEqual(signed, [{ [node]: { ok: 'pong' } }]);
      const refusedShutdowns = (): number => worker.lines.filter((l) => /refused a control request 'shutdown'/.test(l)).length;
      for (const [i, [keys, reason]] of ([[undefined, /it is not signed/], [[OTHER], /key this worker does not hold/]] as const).entries()) {
        const app = producer(keys ? [...keys] : undefined);
        const outcome = await app.control.broadcast('ping', {}, { destination: [node], timeoutMs: 1_000 });
        assert.deepEqual(outcome, { replies: [], missing: [node] }, 'no reply');
        await worker.waitForLine(new RegExp(`refused a control request 'ping': .*${reason.source}`), 5_000);
        // A cast: nobody answers it either way, and the worker must not act on it.
        await app.control.broadcast('shutdown', {}, { destination: [node], reply: false });
        await waitFor(() => refusedShutdowns() === i + 1, `the worker to refuse shutdown number ${i + 1}`, 5_000);
      }
      assert.ok(isRunning(worker), 'the forged shutdowns did not stop the worker');
      assert.deepEqual(await producer([OLD, KEY]).control.ping({ destination: [node], timeoutMs: 5_000 }), [{ [node]: { ok: 'pong' } }], 'and it still answers signed requests');
    });

    it('a producer without a key gets nothing run: its call waits, dead-lettered, until get() times out', async () => {
      const result = producer().sendTask('test.add', [5, 5]);
      await result.sent;
      const app = producer([KEY]);
      await waitFor(async () => (await app.transport.listDeadLetters({ limit: 10_000 })).some((d) => d.taskId === result.id), 'the unsigned call to be dead-lettered', WAIT_MS);
      const error = await result.get({ timeoutMs: 500 }).then(
        () => assert.fail('an unsigned call ran'),
        (e: unknown) => e,
      );
      assert.ok(!(error instanceof RemoteTaskError), 'no outcome is stored for it');
      assert.equal((error as Error).name, 'TimeoutError');
    });
  });
}
