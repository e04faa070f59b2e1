// bee-queue's side of the Redis comparison: one worker process running the echo handler (it returns the job's
// data, the one argument), as a bee-queue user would deploy it. bench/redis.bench.ts spawns it and waits for the
// JSON "worker ready" line.
//
//   node --import tsx bench/peers/bee-queue-worker.ts <redis url> <queue> <concurrency> [keep]
//
// Its settings: isWorker (the default), sendEvents (the default: the result reaches the producer only in the
// 'succeeded' pub/sub message), getEvents off and storeJobs off (a worker that listens to no event needs neither
// the subscriber connection nor the table of jobs), removeOnSuccess on (a finished job's record is deleted, so
// nothing of it stays in Redis) unless `keep` is given, which keeps bee-queue's default (the job's record stays in
// the jobs hash and its id in the succeeded set). No stall checks are scheduled (bee-queue leaves them to the
// user; a bench worker is never stopped mid-job).
//
// SIGTERM or SIGINT closes the queue (waiting for its running jobs) and exits 0.

import BeeQueue from 'bee-queue';

const [url = 'redis://127.0.0.1:6379/15', name = 'bench', concurrencyText = '100', keep] = process.argv.slice(2);
const concurrency = Number(concurrencyText);
if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer (got ${concurrencyText})`);
if (keep !== undefined && keep !== 'keep') throw new RangeError(`the fourth argument may only be "keep" (got ${keep})`);

const { hostname, port, pathname } = new URL(url);
const queue = new BeeQueue<number>(name, {
  redis: { host: hostname, port: Number(port || 6379), db: Number(pathname.slice(1) || 0) },
  isWorker: true,
  getEvents: false,
  sendEvents: true,
  storeJobs: false,
  removeOnSuccess: keep === undefined,
});
// On stdout, as JSON at error level: the driver counts such lines as complaints and fails the run.
const complain = (what: string): void => console.log(JSON.stringify({ level: 50, msg: `bee-queue worker ${what}` }));
queue.on('error', (error) => complain(`error: ${error.message}`));
queue.on('failed', (job, error) => complain(`job ${job.id} failed: ${error.message}`));
await queue.ready();
queue.process(concurrency, (job) => Promise.resolve(job.data));
console.log(JSON.stringify({ level: 30, msg: `worker ready: bee-queue × ${concurrency}, queue ${name}${keep ? ', jobs kept' : ''}`, pid: process.pid }));

let closing = false;
const close = (): void => {
  if (closing) return;
  closing = true;
  queue.close(10_000).then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', close);
process.on('SIGINT', close);
