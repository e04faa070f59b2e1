// The rpc:// backend against the real RabbitMQ: a caller receives a task's states in the order they were
// stored, a STARTED before the PROGRESS stored in the same turn. (That a fast task stores no STARTED at all
// is the executor's doing: test/unit/app/app.test.ts.)

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { connect } from 'amqplib';
import { RpcBackend } from '../../../src/backends/rpc.ts';
import type { TaskMeta } from '../../../src/protocol/result.ts';
import { RABBIT_URL, rabbitSkipReason } from '../../support/services.ts';

const skip = await rabbitSkipReason();

const meta = (taskId: string, status: string): TaskMeta => ({ task_id: taskId, status, result: null, traceback: null, children: [], date_done: null });

describe('rpc:// states', { skip }, () => {
  it('reach the caller in the order they were stored', async () => {
    const callerQueue = `unit-rpc-caller-${randomUUID()}`;
    const ownQueue = `unit-rpc-own-${randomUUID()}`;
    // A worker's backend whose results, for tasks it holds no delivery of, go to `callerQueue`.
    const backend = new RpcBackend('rpc://', { broker: RABBIT_URL, replyQueue: ownQueue, fallbackReplyTo: callerQueue });
    const conn = await connect(RABBIT_URL);
    try {
      await backend.store(meta('slow', 'STARTED'));
      await backend.store(meta('slow', 'SUCCESS'));
      await Promise.all([backend.store(meta('progress', 'STARTED')), backend.store(meta('progress', 'PROGRESS'))]);
      const ch = await conn.createChannel();
      const received: string[] = [];
      for (let msg = await ch.get(callerQueue, { noAck: true }); msg; msg = await ch.get(callerQueue, { noAck: true })) {
        const m = JSON.parse(msg.content.toString('utf8')) as TaskMeta;
        received.push(`${m.task_id} ${m.status}`);
      }
      assert.deepEqual(received, ['slow STARTED', 'slow SUCCESS', 'progress STARTED', 'progress PROGRESS']);
      await ch.deleteQueue(callerQueue);
      await ch.deleteQueue(ownQueue).catch(() => {});
    } finally {
      await conn.close();
      await backend.close();
    }
  });
});
