// AmqpConnection against the real RabbitMQ: the frames one event-loop turn writes leave in one socket write.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { AmqpConnection } from '../../../src/clients/amqp/connection.ts';
import { RABBIT_URL, rabbitSkipReason } from '../../support/services.ts';

const skip = await rabbitSkipReason();

describe('AmqpConnection', { skip }, () => {
  it('sends 100 publishes made in one turn in a few socket writes, not one each', async () => {
    const connection = new AmqpConnection(RABBIT_URL, 'amqp://127.0.0.1');
    const queue = `unit-coalesce-${randomUUID()}`;
    try {
      await connection.withChannel((ch) => ch.assertQueue(queue, { autoDelete: false }));
      const { session, channel } = await connection.confirmChannel();
      const socket = (session.model as unknown as { connection: { stream: Socket } }).connection.stream;
      let writes = 0;
      const one = socket._write.bind(socket);
      const many = socket._writev!.bind(socket);
      socket._write = (...args: Parameters<Socket['_write']>) => {
        writes++;
        one(...args);
      };
      socket._writev = (...args: Parameters<NonNullable<Socket['_writev']>>) => {
        writes++;
        many(...args);
      };
      const confirms = Array.from(
        { length: 100 },
        (_, i) => new Promise<void>((resolve, reject) => channel.publish('', queue, Buffer.from(String(i)), {}, (error: unknown) => (error ? reject(error instanceof Error ? error : new Error('nack')) : resolve()))),
      );
      await Promise.all(confirms);
      assert.ok(writes <= 5, `100 publishes in one turn took ${writes} socket writes`);
      const { messageCount } = await connection.withChannel((ch) => ch.checkQueue(queue));
      assert.equal(messageCount, 100, 'and every one of them arrived');
    } finally {
      await connection.withChannel((ch) => ch.deleteQueue(queue)).catch(() => {});
      await connection.close();
    }
  });
});
