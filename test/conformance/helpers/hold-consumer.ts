// Child process for the transport suite's crash test: consumes one queue, prints "HELD <task id>" for each
// delivery and never settles it, so the parent can SIGKILL this process while it holds a message.
// Usage: node --conditions=development --import tsx test/conformance/helpers/hold-consumer.ts <url> <queue> [visibilityTimeoutSec=1]

import { createTransport } from '../../../src/transports/index.ts';

const [url, queue, visibility = '1'] = process.argv.slice(2);
if (!url || !queue) {
  process.stderr.write('usage: hold-consumer.ts <url> <queue> [visibilityTimeoutSec]\n');
  process.exit(2);
}

const transport = createTransport(url, { visibilityTimeoutSec: Number(visibility), pollIntervalMs: 100 });
await transport.consume({ queues: [queue], prefetch: 1 }, (delivery) => {
  process.stdout.write(`HELD ${String(delivery.message.headers['id'])}\n`);
});
process.stdout.write('READY\n');
// The transport's own timers are unref'd; this keeps the process (and its lease renewals) alive until killed.
setInterval(() => {}, 60_000);
