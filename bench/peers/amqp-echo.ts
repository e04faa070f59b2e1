// The floor of the RabbitMQ round trip: what amqplib alone, with no task queue on top, takes to carry a
// persistent message to another process and a reply back. bench/amqp.bench.ts spawns this echo consumer
// and times publish → reply from its own process; Fennel's and Celery's round trips are measured against it.
//
//   node --import tsx bench/peers/amqp-echo.ts <amqp url> <queue>
//
// It consumes <queue> (durable; prefetch 100), publishes each message's body back to its reply_to with its
// correlation_id through a confirm channel, and acks the message once the reply is confirmed — the order a
// worker that stores before it acks keeps. SIGTERM or SIGINT closes the connection and exits 0.

import { connect } from 'amqplib';

const [url = 'amqp://guest:guest@127.0.0.1:5672/', queue = 'fennel.bench.echo'] = process.argv.slice(2);

// noDelay as in Fennel's connections: Nagle's algorithm would hold back a lone reply.
const connection = await connect(url, { noDelay: true });
const consumer = await connection.createChannel();
const replies = await connection.createConfirmChannel();
await consumer.assertQueue(queue, { durable: true });
await consumer.prefetch(100);
await consumer.consume(queue, (msg) => {
  if (!msg) return;
  const { replyTo, correlationId } = msg.properties as { replyTo: string; correlationId: string };
  replies.publish('', replyTo, msg.content, { correlationId }, () => consumer.ack(msg));
});
console.log(JSON.stringify({ level: 30, msg: `worker ready: amqplib echo on ${queue}`, pid: process.pid }));

const close = (): void => {
  connection.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', close);
process.on('SIGINT', close);
