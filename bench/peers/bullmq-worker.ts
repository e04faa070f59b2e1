// BullMQ's side of the Redis comparison: one worker process running the echo processor (it returns the job's
// data, the one argument), as a BullMQ user would deploy it, with BullMQ's defaults otherwise (a completed job is
// kept, with its return value). bench/redis.bench.ts spawns it and waits for the JSON "worker ready" line.
//
//   node --import tsx bench/peers/bullmq-worker.ts <redis url> <queue> <concurrency>
//
// SIGTERM or SIGINT closes the worker (waiting for its running jobs) and exits 0.

import { Worker } from 'bullmq';

const [url = 'redis://127.0.0.1:6379/15', queue = 'bench', concurrencyText = '100'] = process.argv.slice(2);
const concurrency = Number(concurrencyText);
if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer (got ${concurrencyText})`);

const { hostname, port, pathname } = new URL(url);
// maxRetriesPerRequest: null is what BullMQ requires of a worker's connection.
const connection = { host: hostname, port: Number(port || 6379), db: Number(pathname.slice(1) || 0), maxRetriesPerRequest: null };

const worker = new Worker<number, number>(queue, (job) => Promise.resolve(job.data), { connection, concurrency });
// On stdout, as JSON at error level: the driver counts such lines as complaints and fails the run.
worker.on('error', (error) => console.log(JSON.stringify({ level: 50, msg: `bullmq worker error: ${error.message}` })));
await worker.waitUntilReady();
console.log(JSON.stringify({ level: 30, msg: `worker ready: bullmq × ${concurrency}, queue ${queue}`, pid: process.pid }));

let closing = false;
const close = (): void => {
  if (closing) return;
  closing = true;
  worker.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', close);
process.on('SIGINT', close);
