// A task sent where no worker listens says so: README's tour routes `math.*` to queue `math` and runs its worker
// with `-Q math`, so `fennel call math.add 2 3` without `--app` (no route: queue `celery`) used to wait out its
// timeout and fail with no clue. Real `fennel worker` and `fennel call` processes on one SQLite file; a worker
// announces the queues it consumes on every heartbeat (Transport.announceConsumer) and withdraws them when it
// stops, and the producer side reads that when a get() times out or `fennel call` has sent.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Fennel, TimeoutError } from '../../src/index.ts';
import { runCliToEnd, startWorker, stopProcess, tempDb, uniqueQueue, type RunningWorker } from '../support/process.ts';

const db = tempDb();
const TOUR = join(import.meta.dirname, 'fixtures/tour-tasks.ts');
const env = { FENNEL_BROKER_URL: db.url };
const producer = new Fennel({ broker: db.url });
const workers: RunningWorker[] = [];

after(async () => {
  await Promise.all(workers.map((w) => stopProcess(w)));
  await producer.close();
  db.cleanup();
});

describe('no worker on the queue: the README tour without its route', () => {
  before(async () => {
    workers.push(await startWorker(TOUR, db.url, ['-Q', 'math', '-P', 'async', '-c', '1']));
  });

  it("`fennel call math.add 2 3 --wait --timeout 1500` without --app exits 1 naming queue 'celery' and the queue workers consume", async () => {
    const run = await runCliToEnd(['call', 'math.add', '2', '3', '--wait', '--timeout', '1500'], env);
    assert.equal(run.code, 1, run.stderr.join('\n'));
    assert.deepEqual(run.stdout, []);
    assert.deepEqual(run.stderr[0], "fennel: warning: no worker is consuming queue 'celery'; workers consume: math", 'warned as soon as it was sent');
    assert.match(run.stderr.at(-1)!, /^fennel: task math\.add [0-9a-f-]{36} not ready after 1500 ms: no worker is consuming queue 'celery'; workers consume: math$/);
  });

  it('`fennel call` without --wait still exits 0 and prints the id, with the warning on stderr', async () => {
    const run = await runCliToEnd(['call', 'math.add', '2', '3'], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.match(run.stdout[0] ?? '', /^[0-9a-f-]{36}$/);
    assert.deepEqual(run.stderr, ["fennel: warning: no worker is consuming queue 'celery'; workers consume: math"]);
  });

  it('`fennel call --app` with the route reaches the worker, with no warning', async () => {
    const run = await runCliToEnd(['call', '--app', TOUR, 'math.add', '2', '3', '--wait'], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.deepEqual(run.stdout, ['5']);
    assert.deepEqual(run.stderr, []);
  });

  it('get() from a producer without the route rejects with a TimeoutError whose message and hint say why', async () => {
    const result = producer.sendTask('math.add', [2, 3]);
    assert.equal(result.queue, 'celery');
    await assert.rejects(result.get({ timeoutMs: 1000 }), (error: unknown) => {
      assert.ok(error instanceof TimeoutError);
      assert.equal(error.code, 'FENNEL_TIMEOUT');
      assert.equal(error.hint, "no worker is consuming queue 'celery'; workers consume: math");
      assert.equal(error.message, `task math.add ${result.id} not ready after 1000 ms: ${error.hint}`);
      return true;
    });
    assert.equal(await producer.sendTask('math.add', [2, 3], { queue: 'math' }).get({ timeoutMs: 30_000 }), 5);
  });
});

describe('a worker that stops', () => {
  it('withdraws its queues on a warm shutdown (SIGTERM), without waiting for its announcement to expire', async () => {
    const queue = uniqueQueue('leaving');
    const worker = await startWorker(TOUR, db.url, ['-Q', queue, '-P', 'async', '-c', '1']);
    workers.push(worker);
    const listed = (await producer.transport.consumers!(queue)).get(queue);
    assert.equal(listed?.count, 1, 'listed while it runs');
    assert.match(listed.names[0]!, /^fennel\.\d+@/);
    worker.child.kill('SIGTERM');
    assert.equal((await worker.exited).code, 0);
    assert.deepEqual((await producer.transport.consumers!(queue)).get(queue), { count: 0, names: [] });
  });
});
