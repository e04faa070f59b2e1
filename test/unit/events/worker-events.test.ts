// Worker and task events on the in-process bus (memory://): what a monitor subscribed through a second app
// on the same URL sees from a worker, in Celery's event format.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pino from 'pino';
import { Fennel, Worker } from '../../../src/index.ts';
import type { FennelEvent } from '../../../src/events/events.ts';

async function watch(url: string): Promise<{ events: FennelEvent[]; stop: () => Promise<void> }> {
  const monitor = new Fennel({ broker: url });
  const events: FennelEvent[] = [];
  const unsubscribe = await monitor.events.subscribe((e) => events.push(e));
  return { events, stop: unsubscribe };
}

describe('worker events', () => {
  it('with task events on (-E): online, then received, started, succeeded (with runtime) and failed per task; offline at stop', async () => {
    const url = `memory://${randomUUID()}`;
    const { events, stop } = await watch(url);
    const app = new Fennel({ broker: url });
    const add = app.task('t.add', (a: number, b: number) => a + b);
    const boom = app.task('t.boom', () => {
      throw new TypeError('no');
    });
    const worker = new Worker(app, { pool: 'async', concurrency: 2, logger: pino({ level: 'silent' }), taskEvents: true });
    await worker.start();
    const ok = add.delay(2, 3);
    assert.equal(await ok.get({ timeoutMs: 5_000 }), 5);
    const bad = boom.delay();
    await assert.rejects(bad.get({ timeoutMs: 5_000 }));
    await worker.stop(1);
    await stop();
    const types = (id: string): string[] => events.filter((e) => e['uuid'] === id).map((e) => e.type);
    assert.deepEqual(types(ok.id), ['task-received', 'task-started', 'task-succeeded']);
    assert.deepEqual(types(bad.id), ['task-received', 'task-started', 'task-failed']);
    const received = events.find((e) => e.type === 'task-received' && e['uuid'] === ok.id)!;
    assert.equal(received['name'], 't.add');
    assert.deepEqual(received['args'], [2, 3]);
    assert.equal(received.hostname, worker.name);
    assert.equal(typeof received.timestamp, 'number');
    const succeeded = events.find((e) => e.type === 'task-succeeded')!;
    assert.equal(succeeded['result'], '5');
    assert.equal(typeof succeeded['runtime'], 'number');
    assert.match(String(events.find((e) => e.type === 'task-failed')!['exception']), /TypeError/);
    const workerTypes = events.filter((e) => e.type.startsWith('worker-')).map((e) => e.type);
    assert.equal(workerTypes[0], 'worker-online');
    assert.equal(workerTypes.at(-1), 'worker-offline');
    const online = events.find((e) => e.type === 'worker-online')!;
    assert.equal(online['pool'], 'async');
    assert.equal(online['concurrency'], 2);
    assert.equal(events.find((e) => e.type === 'worker-offline')!['processed'], 2);
  });

  it('without -E: worker events only', async () => {
    const url = `memory://${randomUUID()}`;
    const { events, stop } = await watch(url);
    const app = new Fennel({ broker: url });
    const add = app.task('t.add', (a: number, b: number) => a + b);
    const worker = new Worker(app, { pool: 'async', concurrency: 1, logger: pino({ level: 'silent' }) });
    await worker.start();
    await add.delay(1, 1).get({ timeoutMs: 5_000 });
    await worker.stop(1);
    await stop();
    assert.deepEqual(events.map((e) => e.type), ['worker-online', 'worker-offline']);
  });
});
