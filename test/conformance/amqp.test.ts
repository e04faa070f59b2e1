// Runs the transport conformance suite against the amqp:// engine on a real RabbitMQ (127.0.0.1:5672,
// guest/guest), twice: classic queues with x-max-priority (priorities, higher first, as sqlite:// orders
// them) and quorum queues (no priorities); and the backend suite against rpc://. Every queue name is
// unique to the test (the suite's randomUUID names); when this file ends it deletes the queues its
// transports and backends used, their delay levels and exchanges, and the dead letters its tests left in
// `fennel.dead_letters`.
//
// rpc:// (`callerOnly`): each backend instance has its own reply queue; the peer is a second instance
// whose results for tasks it does not hold go to the first one's queue, as a worker replies to a caller.
//
// Suite options: `routedProperties: ['delivery_info']` — AMQP reports where the broker routed a message,
// not what the publisher wrote there. Redelivery is the AMQP `redelivered` flag, so no redelivery headers.
// The visibility timeout does not apply: RabbitMQ hands back a dead connection's messages at once.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { RpcBackend } from '../../src/backends/rpc.ts';
import { AmqpTransport } from '../../src/transports/amqp.ts';
import type { Delivery, Transport } from '../../src/transports/transport.ts';
import { BrokerUnavailableError } from '../../src/errors.ts';
import { buildTaskMessage } from '../../src/protocol/message.ts';
import { waitFor, within } from './helpers/wait.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { RABBIT_URL, rabbitSkipReason } from '../support/services.ts';
import { backendSuite } from './backend.suite.ts';
import { transportSuite } from './transport.suite.ts';

const skip = await rabbitSkipReason();
const opened: AmqpTransport[] = [];
const replyQueues: string[] = [];

function rpcBackend(fallbackReplyTo?: string): RpcBackend & { replyQueue: string } {
  const replyQueue = `conformance-reply-${randomUUID()}`;
  replyQueues.push(replyQueue);
  const backend = new RpcBackend('rpc://', { broker: RABBIT_URL, replyQueue, ...(fallbackReplyTo ? { fallbackReplyTo } : {}) });
  return Object.assign(backend, { replyQueue });
}

function open(url: string): AmqpTransport {
  const t = new AmqpTransport(url);
  opened.push(t);
  return t;
}

/** Deletes what this file's tests created on the broker (their queues all start with "conformance-"). */
async function cleanUp(): Promise<void> {
  const queues = new Set<string>(replyQueues);
  for (const t of opened) for (const q of t.usedQueues) if (q.startsWith('conformance-')) queues.add(q);
  await removeRabbitQueues(queues, 'conformance-');
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
    presence: 'broker' as const,
  };

  transportSuite('amqp (classic queues, maxPriority=10)', () => open(`${RABBIT_URL}?maxPriority=10`), { delayedDelivery: true, priorities: true, crossProcess: true, broadcast: true }, options);
  transportSuite('amqp (quorum queues)', () => open(`${RABBIT_URL}?queueType=quorum`), { delayedDelivery: true, priorities: false, crossProcess: true, broadcast: true }, options);

  it('settles a delivery whose connection was lost: a requeue is done (RabbitMQ requeued it), an ack fails', async () => {
    const t = open(RABBIT_URL);
    const queue = `conformance-lost-${randomUUID()}`;
    try {
      await t.publish(buildTaskMessage({ id: randomUUID(), name: 'test.add', args: [1, 2], queue }), { queue });
      const deliveries: Delivery[] = [];
      const subscription = await t.consume({ queues: [queue], prefetch: 1 }, (d) => deliveries.push(d));
      await waitFor(() => deliveries.length === 1, { what: 'the first delivery' });
      // The connection goes (a broker restart, a dropped socket): RabbitMQ puts the unacked message back.
      await (await t.connection.session()).model.close();
      await assert.rejects(deliveries[0]!.ack(), BrokerUnavailableError, 'an ack on a lost channel cannot be done');
      await deliveries[0]!.reject({ requeue: true }); // already done by RabbitMQ: resolves, so nobody waits on it
      // The subscription consumes again on a new connection, and the message comes back, marked redelivered.
      await waitFor(() => deliveries.length === 2, { what: 'the message handed out again', timeoutMs: 20_000 });
      assert.equal(deliveries[1]!.redelivered, true);
      await deliveries[1]!.ack();
      await subscription.cancel();
    } finally {
      await t.close();
      await removeRabbitQueues([queue], queue);
    }
  });

  it('sends a publish again on a new connection when the one it went out on stops answering', async () => {
    const t = new AmqpTransport(RABBIT_URL, { publishAttemptMs: 1_000 });
    opened.push(t);
    const queue = `conformance-wedged-${randomUUID()}`;
    try {
      await t.publish(buildTaskMessage({ id: randomUUID(), name: 'test.add', args: [1], queue }), { queue });
      const first = await t.connection.session();
      // Nothing written to the socket arrives any more, as on a connection that hangs: no confirm can come.
      (first.model as unknown as { connection: { stream: { write: () => boolean } } }).connection.stream.write = () => true;
      await within(t.publish(buildTaskMessage({ id: randomUUID(), name: 'test.add', args: [2], queue }), { queue }), 20_000, 'the publish on a wedged connection');
      assert.notEqual((await t.connection.session()).generation, first.generation, 'it went out again on a new connection');
      assert.equal(await t.depth(queue), 2, 'both messages are in the queue');
    } finally {
      await t.close();
      await removeRabbitQueues([queue], queue);
    }
  });

  backendSuite('rpc', () => rpcBackend(), {
    peer: (backend) => rpcBackend((backend as RpcBackend & { replyQueue: string }).replyQueue),
    callerOnly: true,
  });
});
