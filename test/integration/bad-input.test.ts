// Bad input, end to end with real `fennel worker` processes: malformed messages and undecodable rows go to
// the dead letters (the worker keeps running), an unknown task name fails fast and can be requeued once a
// worker that knows it is deployed, and arguments JSON cannot carry (or too many bytes of them) are refused
// at the call, before anything is enqueued.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { WireMessage } from '../../src/protocol/message.ts';
import { isRunning, runCliToEnd, startWorker, stopProcess, tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';

const db = tempDb();
process.env['FENNEL_BROKER_URL'] = db.url;
process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = '2';
const { app, add } = await import('./fixtures/tasks.ts');
const { Fennel, RemoteTaskError, SerializationError, PayloadTooLargeError } = await import('fennel');
const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const TASKS_V2 = join(import.meta.dirname, 'fixtures/tasks-v2.ts');
const workers: RunningWorker[] = [];
const apps: Array<{ close(): Promise<void> }> = [];
const env = { FENNEL_BROKER_URL: db.url };

after(async () => {
  await Promise.all(workers.map((w) => stopProcess(w)));
  for (const a of apps) await a.close();
  await app.close();
  db.cleanup();
});

/** A message with a valid id and task name whose body is `body`, as a buggy or foreign producer might send. */
function rawMessage(id: string, body: string, contentType = 'application/json'): WireMessage {
  return {
    headers: { lang: 'py', task: 'test.add', id, retries: 0 },
    properties: { correlation_id: id, reply_to: '', delivery_mode: 2, delivery_info: { exchange: '', routing_key: 'celery' }, priority: 0 },
    body,
    contentType,
    contentEncoding: 'utf-8',
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (error: unknown) => error,
  );
}

async function deadLetterFor(taskId: string | null, match?: RegExp) {
  const letters = await app.transport.listDeadLetters({ limit: 1000 });
  return letters.find((d) => (taskId === null ? d.taskId === null : d.taskId === taskId) && (!match || match.test(d.reason)));
}

describe('malformed messages and unknown tasks, on a live worker', () => {
  let v1: RunningWorker;
  before(async () => {
    v1 = await startWorker(TASKS, db.url, ['-P', 'async', '-c', '2']);
    workers.push(v1);
  });

  for (const [what, body, reason, contentType] of [
    ['a body that is not JSON', '[1,2', /^ProtocolError: body is not valid JSON/, undefined],
    ['a two-element body', '[[1,2],{}]', /^ProtocolError: body must be a three-element array/, undefined],
    ['a pickle content type', '[[1,2],{},{}]', /^ProtocolError: content type "application\/x-python-serialize" is not accepted/, 'application/x-python-serialize'],
  ] as const) {
    it(`dead-letters a message with ${what}, fails its caller with ProtocolError, and keeps serving`, async () => {
      const id = randomUUID();
      await app.transport.publish(rawMessage(id, body, contentType), { queue: 'celery' });
      const error = await rejection(app.asyncResult(id).get({ timeoutMs: 30_000 }));
      assert.ok(error instanceof RemoteTaskError, `a RemoteTaskError (got ${String(error)})`);
      assert.equal(error.remoteName, 'ProtocolError');
      // The failure is stored before the delivery is settled (store, then ack), so the dead letter may follow it.
      await waitFor(async () => (await deadLetterFor(id)) !== undefined, 'the message to reach the dead letters');
      const letter = await deadLetterFor(id);
      assert.ok(letter, 'the message is in the dead letters');
      assert.match(letter.reason, reason);
      assert.equal(letter.message.body, body, 'the dead letter keeps the message as it came');
      assert.ok(isRunning(v1), 'the worker is still running');
      assert.equal(await add.delay(2, 3).get({ timeoutMs: 30_000 }), 5, 'and it runs the next good task');
    });
  }

  it('dead-letters a row whose envelope is not JSON at all, without crashing', async () => {
    const raw = new Database(db.path);
    try {
      raw.prepare("INSERT INTO fennel_messages (queue, priority, visible_at, envelope) VALUES ('celery', 0, 0, 'not json')").run();
    } finally {
      raw.close();
    }
    await waitFor(async () => (await deadLetterFor(null, /^ProtocolError: undecodable envelope/)) !== undefined, 'the row to be dead-lettered');
    assert.equal(await app.transport.depth('celery'), 0, 'it left the queue');
    const letter = await deadLetterFor(null, /^ProtocolError: undecodable envelope/);
    assert.equal(letter?.message.body, 'not json', 'the dead letter keeps the raw text');
    assert.ok(isRunning(v1), 'the worker is still running');
    assert.equal(await add.delay(20, 22).get({ timeoutMs: 30_000 }), 42, 'and it runs the next good task');
  });

  it('fails an unregistered task fast with NotRegistered, suggests the near name, and runs it once a worker that knows it is deployed and it is requeued', async () => {
    const result = app.sendTask<number>('test.ad', [2, 3]);
    const error = await rejection(result.get({ timeoutMs: 30_000 }));
    assert.ok(error instanceof RemoteTaskError, `a RemoteTaskError (got ${String(error)})`);
    assert.equal(error.remoteName, 'NotRegistered');
    assert.equal(error.remoteMessage, 'test.ad');
    const logged = await v1.waitForLine(new RegExp(`unregistered task test\\.ad\\[${result.id}\\]`), 5_000);
    assert.match(logged, /did you mean 'test\.add'/);

    await waitFor(async () => (await deadLetterFor(result.id)) !== undefined, 'the message to reach the dead letters');
    const listed = await runCliToEnd(['dead-letters'], env);
    assert.equal(listed.code, 0, listed.stderr.join('\n'));
    const line = listed.stdout.find((l) => l.includes(`test.ad[${result.id}]`));
    assert.ok(line, `fennel dead-letters lists it:\n${listed.stdout.join('\n')}`);
    assert.match(line, /NotRegistered: test\.ad — did you mean 'test\.add'\?/);
    const letterId = line.split('\t')[0]!;

    // Deploy: the old worker goes, a worker with the new task module comes.
    await stopProcess(v1, 'SIGTERM');
    const v2 = await startWorker(TASKS_V2, db.url, ['-P', 'async', '-c', '2']);
    workers.push(v2);
    const requeued = await runCliToEnd(['dead-letters', '--requeue', letterId], env);
    assert.equal(requeued.code, 0, requeued.stderr.join('\n'));
    assert.deepEqual(requeued.stdout, [`requeued dead letter ${letterId}`]);

    // The stored FAILURE is replaced (only SUCCESS is final for the store); read fresh each time.
    await waitFor(async () => (await app.backend.get(result.id))?.status === 'SUCCESS', 'the requeued task to succeed');
    assert.equal(await app.asyncResult<number>(result.id).get({ timeoutMs: 5_000 }), 5);
    assert.equal(await deadLetterFor(result.id), undefined, 'it is no longer a dead letter');
  });
});

describe('arguments refused at the call', () => {
  const cycle: Record<string, unknown> = { name: 'loop' };
  cycle['self'] = cycle;
  for (const [what, value] of [
    ['a function', () => 1],
    ['a BigInt', 10n],
    ['an object with a cycle', cycle],
    ['a Map', new Map([['a', 1]])],
  ] as const) {
    it(`throws SerializationError at the call for ${what}, and enqueues nothing`, async () => {
      const queue = uniqueQueue('unserialisable');
      assert.throws(() => app.sendTask('test.add', [1, value], { queue }), SerializationError);
      assert.equal(await app.transport.depth(queue), 0);
      assert.equal((await app.transport.stats()).some((s) => s.queue === queue), false, 'no row at all for the queue');
    });
  }

  it('enqueues none of a sendMany batch when one call in it cannot be serialised', async () => {
    const queue = uniqueQueue('batch');
    assert.throws(() => app.sendMany('test.add', [[1, 2], [3, 4], [5, () => 6]], { queue }), SerializationError);
    assert.equal(await app.transport.depth(queue), 0);
  });

  it('throws PayloadTooLargeError at the call for arguments over maxPayloadBytes, and enqueues nothing', async () => {
    const small = new Fennel({ maxPayloadBytes: 1024 });
    apps.push(small);
    const queue = uniqueQueue('too-large');
    assert.throws(
      () => small.sendTask('test.add', ['x'.repeat(4096), 1], { queue }),
      (error: unknown) => error instanceof PayloadTooLargeError && error.limit === 1024 && error.bytes > 4096,
    );
    assert.equal(await small.transport.depth(queue), 0);
    // Under the limit, the same app sends.
    await small.sendTask('test.add', ['x'.repeat(100), 1], { queue }).sent;
    assert.equal(await small.transport.depth(queue), 1);
  });
});
