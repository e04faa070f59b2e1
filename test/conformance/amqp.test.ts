// Runs the transport conformance suite against the amqp:// engine on a real RabbitMQ (127.0.0.1:5672,
// guest/guest), twice: classic queues with x-max-priority (priorities, higher first, as sqlite:// orders
// them) and quorum queues (no priorities). Every queue name is unique to the test (the suite's
// randomUUID names); when this file ends it deletes the queues its transports used, their delay levels and
// exchanges, and the dead letters its tests left in `fennel.dead_letters`.
//
// Suite options: `routedProperties: ['delivery_info']` — AMQP reports where the broker routed a message,
// not what the publisher wrote there. Redelivery is the AMQP `redelivered` flag, so no redelivery headers.
// The visibility timeout does not apply: RabbitMQ hands back a dead connection's messages at once.

import assert from 'node:assert/strict';
import { after, describe } from 'node:test';
import { connect } from 'amqplib';
import { AmqpTransport, DEAD_LETTER_QUEUE } from '../../src/transports/amqp.ts';
import { LEVELS, levelQueue } from '../../src/transports/amqp/delay.ts';
import type { Transport } from '../../src/transports/transport.ts';
import { RABBIT_URL, rabbitSkipReason } from '../support/services.ts';
import { transportSuite } from './transport.suite.ts';

const skip = await rabbitSkipReason();
const opened: AmqpTransport[] = [];

function open(url: string): AmqpTransport {
  const t = new AmqpTransport(url);
  opened.push(t);
  return t;
}

/** Deletes what this file's tests created on the broker (their queues all start with "conformance-"). */
async function cleanUp(): Promise<void> {
  const queues = new Set<string>();
  for (const t of opened) for (const q of t.usedQueues) if (q.startsWith('conformance-')) queues.add(q);
  const conn = await connect(RABBIT_URL);
  try {
    const ch = await conn.createChannel();
    for (const q of queues) {
      await ch.deleteQueue(q);
      await ch.deleteExchange(q);
      for (let level = 0; level < LEVELS; level++) await ch.deleteQueue(levelQueue(level, q));
    }
    // Take this file's dead letters out for good; closing the channel gives the others back.
    const letters = await conn.createChannel();
    await letters.assertQueue(DEAD_LETTER_QUEUE, { durable: true });
    for (let msg = await letters.get(DEAD_LETTER_QUEUE); msg; msg = await letters.get(DEAD_LETTER_QUEUE)) {
      const meta = msg.properties.headers?.['x-fennel-dead-letter'] as { queue?: string } | undefined;
      if (meta?.queue?.startsWith('conformance-')) letters.ack(msg);
    }
    await letters.close();
    await ch.close();
  } finally {
    await conn.close();
  }
}

describe('amqp://', { skip }, () => {
  after(async () => {
    if (!skip) await cleanUp();
  });

  const options = {
    reopen: (transport: Transport) => {
      const second = open(transport.url);
      assert.notEqual(second.connection, (transport as AmqpTransport).connection, 'the second transport has its own connection');
      return second;
    },
    routedProperties: ['delivery_info'],
  };

  transportSuite('amqp (classic queues, maxPriority=10)', () => open(`${RABBIT_URL}?maxPriority=10`), { delayedDelivery: true, priorities: true, crossProcess: true }, options);
  transportSuite('amqp (quorum queues)', () => open(`${RABBIT_URL}?queueType=quorum`), { delayedDelivery: true, priorities: false, crossProcess: true }, options);
});
