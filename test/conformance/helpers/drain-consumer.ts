// Child process for the transport suite's competing-consumers test: consumes one queue, acknowledges every
// delivery and prints "GOT <task id>" once the ack has resolved. Exits cleanly on SIGTERM.
// Usage: node --conditions=development --import tsx test/conformance/helpers/drain-consumer.ts <url> <queue> [visibilityTimeoutSec=30]

import { createTransport } from '../../../src/transports/index.ts';

const [url, queue, visibility = '30'] = process.argv.slice(2);
if (!url || !queue) {
  process.stderr.write('usage: drain-consumer.ts <url> <queue> [visibilityTimeoutSec]\n');
  process.exit(2);
}

const transport = createTransport(url, { visibilityTimeoutSec: Number(visibility), pollIntervalMs: 50 });
const subscription = await transport.consume({ queues: [queue], prefetch: 10 }, (delivery) => {
  // Settle on a later turn so the two processes' claims interleave as a real worker's would.
  setImmediate(() => {
    delivery.ack().then(
      () => process.stdout.write(`GOT ${String(delivery.message.headers['id'])}\n`),
      (error: unknown) => process.stdout.write(`ACKFAIL ${String(error)}\n`),
    );
  });
});
process.stdout.write('READY\n');
const keepAlive = setInterval(() => {}, 60_000);
process.on('SIGTERM', () => {
  clearInterval(keepAlive);
  void subscription
    .cancel()
    .then(() => transport.close())
    .finally(() => process.exit(0));
});
