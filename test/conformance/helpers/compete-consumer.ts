// Child process for the transport suite's claim-once tests: consumes one queue and reports every delivery it is
// handed, so the parent can count each message's hand-outs across processes.
//   DELIVERED <task id> <redelivered 0|1>   as the delivery is handed out (in the transport's callback)
//   ACKED <task id> / REQUEUED <task id>    once its ack, or its reject with requeue, has resolved
//   SETTLEFAIL <task id> <error>            if that failed
// Each delivery is settled on a later turn, as a worker would: `ack` acks it; `requeue-first` rejects with requeue
// a delivery not marked redelivered and acks one that is. On SIGTERM it stops as a worker's warm shutdown does:
// cancels, waits for what it holds to be settled, closes the transport, prints "STOPPED" and exits 0.
// Usage: node --conditions=development --import tsx test/conformance/helpers/compete-consumer.ts <url> <queue> <prefetch> <ack|requeue-first> [visibilityTimeoutSec=30]

import { createTransport } from '../../../src/transports/index.ts';
import type { Delivery } from '../../../src/transports/transport.ts';

const [url, queue, prefetch, mode, visibility = '30'] = process.argv.slice(2);
if (!url || !queue || !prefetch || (mode !== 'ack' && mode !== 'requeue-first')) {
  process.stderr.write('usage: compete-consumer.ts <url> <queue> <prefetch> <ack|requeue-first> [visibilityTimeoutSec]\n');
  process.exit(2);
}

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const transport = createTransport(url, { visibilityTimeoutSec: Number(visibility), pollIntervalMs: 50 });
const settling = new Set<Promise<void>>();

function settle(delivery: Delivery, id: string): Promise<void> {
  const requeue = mode === 'requeue-first' && !delivery.redelivered;
  return (requeue ? delivery.reject({ requeue: true }) : delivery.ack()).then(
    () => out(`${requeue ? 'REQUEUED' : 'ACKED'} ${id}`),
    (error: unknown) => out(`SETTLEFAIL ${id} ${String(error)}`),
  );
}

const subscription = await transport.consume({ queues: [queue], prefetch: Number(prefetch) }, (delivery) => {
  const id = String(delivery.message.headers['id']);
  out(`DELIVERED ${id} ${delivery.redelivered ? 1 : 0}`);
  const done = new Promise<void>((resolve) => setImmediate(() => void settle(delivery, id).finally(resolve)));
  settling.add(done);
  void done.then(() => settling.delete(done));
});
out('READY');
const keepAlive = setInterval(() => {}, 60_000);
process.once('SIGTERM', () => {
  void (async () => {
    await subscription.cancel();
    while (settling.size) await Promise.all([...settling]);
    await transport.close();
    clearInterval(keepAlive);
    // Exits once everything written has reached the pipe (an exit with writes still queued drops them).
    process.stdout.write('STOPPED\n', () => process.exit(0));
  })().catch((error: unknown) => {
    process.stderr.write(`stopping failed: ${String(error)}\n`);
    process.exit(1);
  });
});
