// Revoke on the memory engines with an in-process async worker: the async pool cannot kill a task, so
// terminate aborts its signal and discards its outcome; a revocation of a finished task changes nothing.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pino from 'pino';
import { Fennel, type RemoteTaskError, Worker, currentTask } from '../../../src/index.ts';

describe('revoke (memory, async pool)', () => {
  it('terminate aborts a running task signal and stores REVOKED terminated; its late outcome is not stored', async () => {
    const app = new Fennel({ broker: `memory://${randomUUID()}` });
    let aborted = false;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const slow = app.task('t.slow', async () => {
      started();
      await new Promise<void>((resolve) => currentTask().signal.addEventListener('abort', () => resolve()));
      aborted = true;
      return 'finished anyway';
    });
    const worker = new Worker(app, { pool: 'async', concurrency: 1, logger: pino({ level: 'silent' }) });
    await worker.start();
    try {
      const result = slow.delay();
      await running;
      await result.revoke({ terminate: true });
      const error = await result.get({ timeoutMs: 5_000 }).then(() => assert.fail('revoked'), (e: unknown) => e as RemoteTaskError);
      assert.equal(error.state, 'REVOKED');
      assert.equal(error.remoteMessage, 'terminated');
      assert.ok(aborted, 'the task saw its signal abort');
    } finally {
      await worker.stop(1);
    }
  });

  it('revoking a task that already succeeded leaves its result', async () => {
    const app = new Fennel({ broker: `memory://${randomUUID()}` });
    const add = app.task('t.add', (a: number, b: number) => a + b);
    const worker = new Worker(app, { pool: 'async', concurrency: 1, logger: pino({ level: 'silent' }) });
    await worker.start();
    try {
      const result = add.delay(1, 2);
      assert.equal(await result.get({ timeoutMs: 5_000 }), 3);
      await result.revoke();
      assert.equal(await result.status(), 'SUCCESS');
    } finally {
      await worker.stop(1);
    }
  });
});
