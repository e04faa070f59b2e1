// Clean-up for tests that use the local RabbitMQ: delete the queues a test file created (with their
// direct exchanges and delay-level queues) and take its dead letters out of `fennel.dead_letters`.

import { connect } from 'amqplib';
import { DEAD_LETTER_QUEUE } from '../../src/transports/amqp.ts';
import { LEVELS, levelQueue } from '../../src/transports/amqp/delay.ts';
import { RABBIT_URL } from './services.ts';

/** Deletes each queue, the exchange of the same name and its delay levels; then the dead letters of queues starting with `prefix`. */
export async function removeRabbitQueues(queues: Iterable<string>, deadLetterPrefix?: string): Promise<void> {
  const conn = await connect(RABBIT_URL);
  try {
    const ch = await conn.createChannel();
    for (const q of queues) {
      await ch.deleteQueue(q);
      await ch.deleteExchange(q);
      for (let level = 0; level < LEVELS; level++) await ch.deleteQueue(levelQueue(level, q));
    }
    await ch.close();
    if (deadLetterPrefix) {
      // Ack this file's letters; closing the channel gives the others back, in their order.
      const letters = await conn.createChannel();
      await letters.assertQueue(DEAD_LETTER_QUEUE, { durable: true });
      for (let msg = await letters.get(DEAD_LETTER_QUEUE); msg; msg = await letters.get(DEAD_LETTER_QUEUE)) {
        const meta = msg.properties.headers?.['x-fennel-dead-letter'] as { queue?: string } | undefined;
        if (meta?.queue?.startsWith(deadLetterPrefix)) letters.ack(msg);
      }
      await letters.close();
    }
  } finally {
    await conn.close();
  }
}
