// The producer side of live-consumer presence, on the memory engines with an in-process async worker: a get()
// that times out says when no worker consumes the task's queue (TimeoutError.hint, also in its message), and
// says nothing when one does, when the engine keeps no presence, or when the lookup fails or hangs.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pino from 'pino';
import { MemoryBackend } from '../../../src/backends/memory.ts';
import { noConsumerHint } from '../../../src/transports/presence.ts';
import type { Transport } from '../../../src/transports/transport.ts';
import { AsyncResult, Fennel, TimeoutError, Worker } from '../../../src/index.ts';

function memoryApp(): Fennel {
  return new Fennel({ broker: `memory://${randomUUID()}` });
}

async function withWorker<T>(app: Fennel, queues: string[], fn: () => Promise<T>): Promise<T> {
  const worker = new Worker(app, { pool: 'async', concurrency: 1, logger: pino({ level: 'silent' }), queues });
  await worker.start();
  try {
    return await fn();
  } finally {
    await worker.stop(1);
  }
}

/** A TimeoutError, with its hint as given. */
function timeoutWith(hint: string | undefined): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof TimeoutError, String(error));
    assert.equal(error.code, 'FENNEL_TIMEOUT');
    assert.equal(error.hint, hint);
    assert.ok(hint === undefined ? /not ready after \d+ ms$/.test(error.message) : error.message.endsWith(`: ${hint}`), error.message);
    return true;
  };
}

describe('get() that times out', () => {
  it('says no worker consumes the queue the task went to, and which queues workers do consume', async () => {
    const app = memoryApp();
    app.task('math.add', (a: number, b: number) => a + b);
    await withWorker(app, ['math', 'images'], async () => {
      const result = app.sendTask('math.add', [2, 3]);
      assert.equal(result.queue, 'celery');
      await assert.rejects(result.get({ timeoutMs: 100 }), timeoutWith("no worker is consuming queue 'celery'; workers consume: images, math"));
      const [batched] = app.sendMany('math.add', [[1, 1]], { queue: 'nowhere' });
      assert.equal(batched!.queue, 'nowhere');
      await assert.rejects(batched!.get({ timeoutMs: 100 }), timeoutWith("no worker is consuming queue 'nowhere'; workers consume: images, math"));
    });
  });

  it('says nothing more when a worker consumes the queue and the task is only slow', async () => {
    const app = memoryApp();
    app.task('slow', () => new Promise((resolve) => setTimeout(resolve, 1_000)));
    await withWorker(app, ['celery'], async () => {
      await assert.rejects(app.sendTask('slow').get({ timeoutMs: 100 }), timeoutWith(undefined));
    });
  });

  it('names no queue, and gives no hint, for a result it did not send (app.asyncResult)', async () => {
    const app = memoryApp();
    const handle = app.asyncResult(randomUUID());
    assert.equal(handle.queue, undefined);
    await assert.rejects(handle.get({ timeoutMs: 50 }), timeoutWith(undefined));
  });

  it('says only that no worker consumes the queue when no worker runs at all', async () => {
    const app = memoryApp();
    const result = app.sendTask('math.add', [2, 3], { queue: 'math' });
    await assert.rejects(result.get({ timeoutMs: 50 }), timeoutWith("no worker is consuming queue 'math'"));
  });
});

describe('noConsumerHint', () => {
  const backend = new MemoryBackend();
  const owner = (transport: Partial<Transport>): { revoke(): Promise<void>; queueHint(queue: string): Promise<string | undefined> } => ({
    revoke: async () => {},
    queueHint: (queue) => noConsumerHint(transport as Transport, queue),
  });

  it('gives no hint, and get() the plain TimeoutError, when the lookup fails', async () => {
    const failing = owner({ consumers: () => Promise.reject(new Error('broker away')) });
    await assert.rejects(new AsyncResult(randomUUID(), () => backend, undefined, 't', failing, 'q').get({ timeoutMs: 20 }), timeoutWith(undefined));
  });

  it('gives up on a lookup that does not answer (after about a second): get() still rejects, without a hint', async () => {
    const hanging = owner({ consumers: () => new Promise(() => {}) });
    await assert.rejects(new AsyncResult(randomUUID(), () => backend, undefined, 't', hanging, 'q').get({ timeoutMs: 20 }), timeoutWith(undefined));
  });

  it('gives no hint for an engine without presence', async () => {
    assert.equal(await noConsumerHint({} as Transport, 'q'), undefined);
  });

  it('counts a consumer the broker reports without a name (AMQP) as one', async () => {
    const counted = { consumers: async () => new Map([['q', { count: 1, names: [] }]]) };
    assert.equal(await noConsumerHint(counted as unknown as Transport, 'q'), undefined);
    const elsewhere = { consumers: async () => new Map([['q', { count: 0, names: [] }], ['other', { count: 2, names: [] }]]) };
    assert.equal(await noConsumerHint(elsewhere as unknown as Transport, 'q'), "no worker is consuming queue 'q'; workers consume: other");
  });
});
