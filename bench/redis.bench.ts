// The Redis comparison: Fennel, bee-queue 2, BullMQ and Python Celery 5 on the same Redis database in the same run,
// one scenario at a time, the database flushed before each. Every worker is a separate process started as its
// users start it: `fennel worker` (bench/support.ts), a bee-queue worker queue (bench/peers/bee-queue-worker.ts), a
// BullMQ Worker (bench/peers/bullmq-worker.ts) and `python3 -m celery worker` (bench/peers/celery_bench.py, which
// is also Celery's producer and prints JSON). bench/run.ts repeats each scenario, interleaving the peers, and
// reports medians and ratios.
//
// The same rules for every peer (issue #21): the task takes one argument and returns it (the n-th call of a run
// is echo(n), n from 1); the producer awaits every result and checks that it is n; and each scenario first runs
// SIZES.warmup of its own calls untimed. What each peer's clock includes, from the first call to the last result:
//   Fennel     `echo.delayMany(batch)`, each batch's publish confirmed before the next; the worker
//              (`fennel worker -P async -c 100`, STARTED tracked) stores each result's meta `celery-task-meta-<id>`
//              (1 day expiry) and publishes it; the producer's `get()` subscribes to each result's channel and
//              reads its key (MGET), so a result stored before the subscription is found too.
//   bee-queue  `queue.saveAll(batch)` (one pipelined addJob script per job: the job's record in the jobs hash, its
//              id on the waiting list); the worker (bee-queue-worker.ts: sendEvents, removeOnSuccess, no getEvents,
//              no storeJobs) removes the finished job's record and publishes { id, event, data: result } on the queue's events
//              channel: the result is stored nowhere, and a producer not subscribed at that moment never sees it.
//              The producer (isWorker off, getEvents on, storeJobs off) matches its queue's 'job succeeded' events
//              to the ids saveAll gave it.
//   BullMQ     `queue.addBulk(batch)` (each job a hash and a place on the wait list); the worker (BullMQ's defaults)
//              keeps the completed job's hash with its return value and appends a `completed` event, with it, to
//              the queue's event stream; the producer's QueueEvents reads the stream (XREAD BLOCK) and matches the
//              events to the ids addBulk gave it; a round trip is `waitUntilFinished(queueEvents)`, which also asks
//              once whether the job has already finished.
//   Celery     `group(echo.s(n) × batch).apply_async()` per batch; the worker stores `celery-task-meta-<id>` (1 day
//              expiry) and publishes it; `ResultSet.join_native()` subscribes to each result's channel as its task
//              is sent, and reads it. Celery's clock is Python's, in celery_bench.py.
//
// Environment knobs:
//   FENNEL_BENCH_REDIS_URL   the database to use and FLUSHDB (default redis://127.0.0.1:6379/15; nothing else may use it)
//   FENNEL_BENCH_PYTHON      the Python that has Celery 5 and redis-py (default /usr/bin/python3); Celery's rows
//                            are skipped, with the reason, if `import celery, redis` fails there

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import BeeQueue from 'bee-queue';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { CELERY_PYTHON as PYTHON, percentile, processCpuSec, ROOT, runCeleryProducer, startCeleryWorker, startProcess, startWorker, type Metric, type WorkerProcess } from './support.ts';
import { benchApp } from './tasks.ts';

export const REDIS_URL = process.env['FENNEL_BENCH_REDIS_URL'] || 'redis://127.0.0.1:6379/15';

/** Tasks per end-to-end and enqueue run, the batch of the bulk APIs, the round trips timed, and the warm-up. */
// Every peer is measured warm, as a long-running service runs, and all alike (issue #21): before the timed part,
// each scenario runs SIZES.warmup of its own calls untimed: an end-to-end pass of that many tasks, in the same
// batches (a timed pass from cold measured V8 tiering up as much as the queue), that many enqueue calls, or that
// many round trips.
export const SIZES = { tasks: 10_000, batch: 500, roundTrips: 1_000, warmup: 1_000 } as const;

export type Peer = 'fennel' | 'beequeue' | 'bullmq' | 'celery';
export const PEERS: readonly Peer[] = ['fennel', 'beequeue', 'bullmq', 'celery'];

/** The rows of the side-by-side table; `e2e-1` is also swept over each peer's configurations (and `e2e-2` over bee-queue's concurrency). */
export type Kind = 'e2e-1' | 'e2e-2' | 'enqueue-single' | 'enqueue-bulk' | 'latency';

export interface RedisScenario {
  id: string;
  kind: Kind;
  peer: Peer;
  /** The worker configuration (or the producer call, for the enqueue rows), for the tables. */
  config: string;
  /** In the side-by-side table (otherwise only in the configuration sweep). */
  main: boolean;
  /** At most this many runs (a slow peer's extra configurations), whatever --runs says. */
  maxRuns?: number;
  run(): Promise<Record<string, Metric>>;
}

const afterWarmup = `after ${SIZES.warmup.toLocaleString('en')} warm-up`;
export const KINDS: Record<Kind, { title: string; size: string }> = {
  'e2e-1': { title: 'end to end, 1 worker process', size: `${SIZES.tasks.toLocaleString('en')} echo tasks ${afterWarmup}` },
  'e2e-2': { title: 'end to end, 2 worker processes', size: `${SIZES.tasks.toLocaleString('en')} echo tasks ${afterWarmup}` },
  'enqueue-single': { title: 'enqueue, one awaited call at a time', size: `${SIZES.tasks.toLocaleString('en')} tasks ${afterWarmup}` },
  'enqueue-bulk': { title: `enqueue, bulk (batches of ${SIZES.batch})`, size: `${SIZES.tasks.toLocaleString('en')} tasks ${afterWarmup}` },
  latency: { title: 'round trip, one enqueue → result at a time', size: `${SIZES.roundTrips.toLocaleString('en')} ${afterWarmup}` },
};

// ---------------------------------------------------------------------------------------------------------
// Shared

function rate(count: number, ms: number): Metric {
  return { value: (count * 1000) / ms, unit: 'tasks/s' };
}

function ms(value: number): Metric {
  return { value, unit: 'ms' };
}

/** The arguments of `count` calls from the `first`-th, in batches of SIZES.batch: first, first + 1, … */
function argumentBatches(first: number, count: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < count; i += SIZES.batch) out.push(Array.from({ length: Math.min(SIZES.batch, count - i) }, (_, k) => first + i + k));
  return out;
}

/**
 * Every peer's round trips, timed alike: SIZES.warmup untimed (echo(1) …), then SIZES.roundTrips timed one at a time;
 * `roundTrip(n, timeoutMs)` sends echo(n) and checks its result.
 */
async function timeRoundTrips(roundTrip: (n: number, timeoutMs: number) => Promise<void>): Promise<Record<string, Metric>> {
  for (let n = 1; n <= SIZES.warmup; n++) await roundTrip(n, 60_000);
  const times: number[] = [];
  for (let n = SIZES.warmup + 1; n <= SIZES.warmup + SIZES.roundTrips; n++) {
    const t0 = performance.now();
    await roundTrip(n, 30_000);
    times.push(performance.now() - t0);
  }
  return { p50: ms(percentile(times, 50)), p99: ms(percentile(times, 99)) };
}

/** The check every peer's producer makes of every result: echo(n) returned n. */
function expectEcho(peer: string, sent: number, got: unknown): void {
  if (got !== sent) throw new Error(`${peer}: echo(${sent}) returned ${JSON.stringify(got)}`);
}

/** Rejects if `promise` has not settled within `timeoutMs` (a peer's results that wait on events have no timeout of their own). */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)))]);
  } finally {
    clearTimeout(timer);
  }
}

type Outcome = { value: unknown } | { error: Error };

/**
 * The results a producer receives as events carrying a job's id (bee-queue's pub/sub messages, BullMQ's event
 * stream), each handed to the one who asks for that id. An event can be read before the reply that told the
 * producer the id (a fast worker, a long pipeline): it is kept until asked for.
 */
class ResultsById {
  private readonly waiting = new Map<string, (outcome: Outcome) => void>();
  private readonly arrived = new Map<string, Outcome>();

  settle(id: string, outcome: Outcome): void {
    const waiter = this.waiting.get(id);
    if (waiter) {
      this.waiting.delete(id);
      waiter(outcome);
    } else this.arrived.set(id, outcome);
  }

  of(id: string): Promise<unknown> {
    const outcome = this.arrived.get(id);
    if (outcome) this.arrived.delete(id);
    const settled = outcome ? Promise.resolve(outcome) : new Promise<Outcome>((resolve) => this.waiting.set(id, resolve));
    return settled.then((o) => {
      if ('error' in o) throw o.error;
      return o.value;
    });
  }
}

/** Host, port and database of REDIS_URL, as the Node peers' clients (BullMQ's ioredis, bee-queue's node-redis) take them. */
function redisTarget(): { host: string; port: number; db: number } {
  const url = new URL(REDIS_URL);
  return { host: url.hostname, port: Number(url.port || 6379), db: Number(url.pathname.slice(1) || 0) };
}

async function withClient<T>(body: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, retryStrategy: () => null, connectionName: 'fennel-bench' });
  client.on('error', () => {});
  try {
    return await body(client);
  } finally {
    client.disconnect();
  }
}

/** Empties the benchmark database, so every scenario starts from nothing. */
export async function flush(): Promise<void> {
  await withClient(async (client) => void (await client.flushdb()));
}

/** Redis's own counters: commands called (by name) and CPU seconds used, server-wide. */
export async function redisCounters(): Promise<{ calls: Map<string, number>; cpuSec: number }> {
  const text = await withClient((client) => client.info('cpu', 'commandstats'));
  const calls = new Map<string, number>();
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1]!, Number(match[2]));
  const cpu = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN);
  return { calls, cpuSec: cpu('used_cpu_user') + cpu('used_cpu_sys') };
}

/**
 * Starts counting what the timed part costs; the function returned gives it per task: the CPU used by this
 * (producer) process, by the worker processes (their main process, from /proc; pool children are not
 * counted) and by Redis, and the commands Redis ran. Redis's counters are server-wide (INFO), so another
 * client of the same server would inflate them. A peer whose producer is another process (Celery's) passes
 * that process's own CPU seconds and the tasks they were spent on.
 */
async function startCost(workers: readonly WorkerProcess[]): Promise<(tasks: number, producer?: { cpuSec: number; tasks: number }) => Promise<Record<string, Metric>>> {
  const before = await redisCounters();
  const workersBefore = workers.map((w) => processCpuSec(w.pid));
  const producerBefore = process.cpuUsage();
  return async (tasks, producerOwn) => {
    const producer = process.cpuUsage(producerBefore);
    const workersSec = workers.reduce((sum, w, i) => sum + processCpuSec(w.pid) - workersBefore[i]!, 0);
    const after = await redisCounters();
    let calls = 0;
    for (const [name, n] of after.calls) calls += n - (before.calls.get(name) ?? 0);
    const perTask = (sec: number, count = tasks): Metric => ({ value: (sec * 1e6) / count, unit: 'µs/task' });
    return {
      'producer CPU': producerOwn ? perTask(producerOwn.cpuSec, producerOwn.tasks) : perTask((producer.user + producer.system) / 1e6),
      'workers CPU': perTask(workersSec),
      'Redis CPU': perTask(after.cpuSec - before.cpuSec),
      'Redis commands': { value: calls / tasks, unit: 'cmds/task' },
    };
  };
}

/** Starts `count` worker processes at once, runs `body` (failing fast if one dies or complains), and stops them all. */
async function withWorkers<T>(count: number, start: (index: number) => Promise<WorkerProcess>, body: (workers: WorkerProcess[]) => Promise<T>): Promise<T> {
  const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => start(i)));
  const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  try {
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const out = await Promise.race([body(workers), ...workers.map((w) => w.died)]);
    const complaints = workers.flatMap((w) => w.complaints);
    if (complaints.length) throw new Error(`the workers logged ${complaints.length} warning(s), e.g. ${complaints[0]}`);
    return out;
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** What each peer is, for the document: versions, or why a peer is skipped. */
export interface Environment {
  redis: string;
  beeQueue: string;
  bullmq: string;
  celery: { version: string } | { skipped: string };
}

export async function environment(): Promise<Environment> {
  const redis = await withClient((client) => client.info('server')).then(
    (text) => `Redis ${/redis_version:(\S+)/.exec(text)?.[1] ?? '?'}`,
    (error: unknown) => {
      throw new Error(`Redis is not reachable at ${REDIS_URL}: ${(error as Error).message}`);
    },
  );
  const version = (name: string): string => (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  let celery: Environment['celery'];
  try {
    const { stdout } = await promisify(execFile)(PYTHON, ['-c', 'import celery, redis, sys; print(celery.__version__, redis.__version__, sys.version.split()[0])'], { timeout: 30_000 });
    const [version, redisPy, python] = stdout.trim().split(' ');
    celery = { version: `Celery ${version} (redis-py ${redisPy}, Python ${python})` };
  } catch (error) {
    celery = { skipped: `\`${PYTHON} -c "import celery, redis"\` failed: ${((error as Error).message.split('\n').find((l) => /Error/.test(l)) ?? (error as Error).message).trim()}` };
  }
  return { redis, beeQueue: `bee-queue ${version('bee-queue')}`, bullmq: `BullMQ ${version('bullmq')}`, celery };
}

// ---------------------------------------------------------------------------------------------------------
// Fennel: `fennel worker -P async -c N` processes; producer delayMany / delay, results through get().

type FennelBench = ReturnType<typeof benchApp>;
/** The worker's pool: async (the tasks run in the worker process), or process (each in one of `-c` child processes). */
type FennelPool = 'async' | 'process';
type Echo = FennelBench['echo'];

async function withFennel<T>(body: (bench: FennelBench) => Promise<T>): Promise<T> {
  await flush();
  const bench = benchApp({ broker: REDIS_URL });
  try {
    return await body(bench);
  } finally {
    await bench.app.close();
  }
}

function fennelWorkers(concurrency: number, env: Record<string, string> = {}, pool: FennelPool = 'async'): (index: number) => Promise<WorkerProcess> {
  return () => startWorker({ brokerUrl: REDIS_URL, pool, concurrency, env });
}

/**
 * One end-to-end pass: `count` calls from echo(first), published with `delayMany` in batches (each batch's
 * publish confirmed before the next is sent), then every result awaited with `get()` and checked.
 */
async function fennelPass(echo: Echo, first: number, count: number): Promise<void> {
  const checked: Array<Promise<void>> = [];
  for (const args of argumentBatches(first, count)) {
    const results = echo.delayMany(args.map((n): [number] => [n]));
    await results[0]!.sent;
    results.forEach((result, k) => checked.push(result.get({ timeoutMs: 300_000 }).then((value) => expectEcho('Fennel', args[k]!, value))));
  }
  await Promise.all(checked);
}

function fennelEndToEnd(workers: number, concurrency: number, env: Record<string, string> = {}, pool: FennelPool = 'async'): () => Promise<Record<string, Metric>> {
  return () =>
    withFennel((bench) =>
      withWorkers(workers, fennelWorkers(concurrency, env, pool), async (processes) => {
        await fennelPass(bench.echo, 1, SIZES.warmup); // untimed (see SIZES)
        const cost = await startCost(processes);
        const t0 = performance.now();
        await fennelPass(bench.echo, SIZES.warmup + 1, SIZES.tasks);
        return { rate: rate(SIZES.tasks, performance.now() - t0), ...(await cost(SIZES.tasks)) };
      }),
    );
}

const fennelEnqueueSingle = (): Promise<Record<string, Metric>> =>
  withFennel(async ({ echo }) => {
    // The warm-up also connects and loads the scripts outside the timing.
    for (let n = 1; n <= SIZES.warmup; n++) await echo.delay(n).sent;
    const t0 = performance.now();
    for (let n = SIZES.warmup + 1; n <= SIZES.warmup + SIZES.tasks; n++) await echo.delay(n).sent;
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const fennelEnqueueBulk = (): Promise<Record<string, Metric>> =>
  withFennel(async ({ echo }) => {
    const send = async (first: number, count: number): Promise<void> => {
      for (const args of argumentBatches(first, count)) await echo.delayMany(args.map((n): [number] => [n]))[0]!.sent;
    };
    await send(1, SIZES.warmup);
    const t0 = performance.now();
    await send(SIZES.warmup + 1, SIZES.tasks);
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const fennelLatency = (): Promise<Record<string, Metric>> =>
  withFennel(({ echo }) =>
    withWorkers(1, fennelWorkers(100), async () => {
      const roundTrip = async (n: number, timeoutMs: number): Promise<void> => expectEcho('Fennel', n, await echo.delay(n).get({ timeoutMs }));
      return timeRoundTrips(roundTrip);
    }),
  );

// ---------------------------------------------------------------------------------------------------------
// bee-queue: worker processes (bench/peers/bee-queue-worker.ts); producer saveAll / save, results through its
// queue's 'job succeeded' pub/sub events.

const BEE_QUEUE = 'bench';

/**
 * The producer's queue: no worker (isWorker off: no blocking connection), getEvents on (its subscriber connection
 * receives every job's outcome), storeJobs off (bee-queue's table of Job objects, for `job.on('succeeded')`, is
 * replaced by ResultsById, which also keeps an outcome that comes before saveAll's reply, where a job's own
 * listener would miss it). sendEvents matters only to workers.
 */
async function withBeeQueue<T>(body: (queue: BeeQueue<number>, results: ResultsById) => Promise<T>): Promise<T> {
  await flush();
  const queue = new BeeQueue<number>(BEE_QUEUE, { redis: redisTarget(), isWorker: false, getEvents: true, sendEvents: false, storeJobs: false });
  const results = new ResultsById();
  queue.on('job succeeded', (id, value) => results.settle(id, { value }));
  queue.on('job failed', (id, error) => results.settle(id, { error: new Error(`bee-queue job ${id} failed: ${error.message}`) }));
  const broken = new Promise<never>((_, reject) => queue.on('error', reject));
  broken.catch(() => {});
  try {
    await Promise.race([queue.ready(), broken]);
    return await Promise.race([body(queue, results), broken]);
  } finally {
    await queue.close();
  }
}

function beeWorkers(concurrency: number, keep = false): (index: number) => Promise<WorkerProcess> {
  return () =>
    startProcess({
      command: process.execPath,
      args: ['--import', 'tsx', 'bench/peers/bee-queue-worker.ts', REDIS_URL, BEE_QUEUE, String(concurrency), ...(keep ? ['keep'] : [])],
    });
}

/** Saves each batch with one pipelined saveAll (which gives each job its id), then awaits every result and checks it. */
async function beePass(queue: BeeQueue<number>, results: ResultsById, first: number, count: number): Promise<void> {
  const checked: Array<Promise<void>> = [];
  for (const args of argumentBatches(first, count)) {
    const jobs = args.map((n) => queue.createJob(n));
    const failed = await queue.saveAll(jobs);
    if (failed.size) throw new Error(`bee-queue saveAll: ${failed.size} job(s) not saved, e.g. ${[...failed.values()][0]!.message}`);
    for (const job of jobs) checked.push(results.of(job.id).then((value) => expectEcho('bee-queue', job.data, value)));
  }
  await within(Promise.all(checked), 300_000, `bee-queue's ${count} results`);
}

function beeEndToEnd(workers: number, concurrency: number, keep = false): () => Promise<Record<string, Metric>> {
  return () =>
    withBeeQueue((queue, results) =>
      withWorkers(workers, beeWorkers(concurrency, keep), async (processes) => {
        await beePass(queue, results, 1, SIZES.warmup); // untimed (see SIZES)
        const cost = await startCost(processes);
        const t0 = performance.now();
        await beePass(queue, results, SIZES.warmup + 1, SIZES.tasks);
        return { rate: rate(SIZES.tasks, performance.now() - t0), ...(await cost(SIZES.tasks)) };
      }),
    );
}

const beeEnqueueSingle = (): Promise<Record<string, Metric>> =>
  withBeeQueue(async (queue) => {
    for (let n = 1; n <= SIZES.warmup; n++) await queue.createJob(n).save();
    const t0 = performance.now();
    for (let n = SIZES.warmup + 1; n <= SIZES.warmup + SIZES.tasks; n++) await queue.createJob(n).save();
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const beeEnqueueBulk = (): Promise<Record<string, Metric>> =>
  withBeeQueue(async (queue) => {
    const send = async (first: number, count: number): Promise<void> => {
      for (const args of argumentBatches(first, count)) {
        const failed = await queue.saveAll(args.map((n) => queue.createJob(n)));
        if (failed.size) throw new Error(`bee-queue saveAll: ${failed.size} job(s) not saved`);
      }
    };
    await send(1, SIZES.warmup);
    const t0 = performance.now();
    await send(SIZES.warmup + 1, SIZES.tasks);
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const beeLatency = (): Promise<Record<string, Metric>> =>
  withBeeQueue((queue, results) =>
    withWorkers(1, beeWorkers(100), async () => {
      const roundTrip = async (n: number, timeoutMs: number): Promise<void> => {
        const job = await queue.createJob(n).save();
        expectEcho('bee-queue', n, await within(results.of(job.id), timeoutMs, `bee-queue's job ${job.id}`));
      };
      return timeRoundTrips(roundTrip);
    }),
  );

// ---------------------------------------------------------------------------------------------------------
// BullMQ: Worker processes (bench/peers/bullmq-worker.ts); producer addBulk / add, results through QueueEvents.

const BULL_QUEUE = 'bench';

async function withBullmq<T>(body: (queue: Queue<number, number>, events: QueueEvents) => Promise<T>): Promise<T> {
  await flush();
  const queue = new Queue<number, number>(BULL_QUEUE, { connection: redisTarget() });
  // QueueEvents blocks on XREAD; BullMQ wants maxRetriesPerRequest: null on blocking connections.
  const events = new QueueEvents(BULL_QUEUE, { connection: { ...redisTarget(), maxRetriesPerRequest: null } });
  try {
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    return await body(queue, events);
  } finally {
    await events.close();
    await queue.close();
  }
}

function bullWorkers(concurrency: number): (index: number) => Promise<WorkerProcess> {
  return () =>
    startProcess({
      command: process.execPath,
      args: ['--import', 'tsx', 'bench/peers/bullmq-worker.ts', REDIS_URL, BULL_QUEUE, String(concurrency)],
    });
}

const echoJobs = (args: readonly number[]): Array<{ name: string; data: number }> => args.map((n) => ({ name: 'echo', data: n }));

/** Adds each batch with addBulk (which gives each job its id), then awaits every result from the `completed` events and checks it. */
async function bullPass(queue: Queue<number, number>, events: QueueEvents, first: number, count: number): Promise<void> {
  const results = new ResultsById();
  const onCompleted = ({ jobId, returnvalue }: { jobId: string; returnvalue: unknown }): void => results.settle(jobId, { value: returnvalue });
  const onFailed = ({ jobId, failedReason }: { jobId: string; failedReason: string }): void => results.settle(jobId, { error: new Error(`BullMQ job ${jobId} failed: ${failedReason}`) });
  events.on('completed', onCompleted);
  events.on('failed', onFailed);
  try {
    const checked: Array<Promise<void>> = [];
    for (const args of argumentBatches(first, count)) {
      const jobs = await queue.addBulk(echoJobs(args));
      jobs.forEach((job, k) => checked.push(results.of(job.id!).then((value) => expectEcho('BullMQ', args[k]!, value))));
    }
    await within(Promise.all(checked), 300_000, `BullMQ's ${count} results`);
  } finally {
    events.off('completed', onCompleted);
    events.off('failed', onFailed);
  }
}

function bullEndToEnd(workers: number, concurrency: number): () => Promise<Record<string, Metric>> {
  return () =>
    withBullmq((queue, events) =>
      withWorkers(workers, bullWorkers(concurrency), async (processes) => {
        await bullPass(queue, events, 1, SIZES.warmup); // untimed (see SIZES)
        const cost = await startCost(processes);
        const t0 = performance.now();
        await bullPass(queue, events, SIZES.warmup + 1, SIZES.tasks);
        return { rate: rate(SIZES.tasks, performance.now() - t0), ...(await cost(SIZES.tasks)) };
      }),
    );
}

const bullEnqueueSingle = (): Promise<Record<string, Metric>> =>
  withBullmq(async (queue) => {
    for (let n = 1; n <= SIZES.warmup; n++) await queue.add('echo', n);
    const t0 = performance.now();
    for (let n = SIZES.warmup + 1; n <= SIZES.warmup + SIZES.tasks; n++) await queue.add('echo', n);
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const bullEnqueueBulk = (): Promise<Record<string, Metric>> =>
  withBullmq(async (queue) => {
    const send = async (first: number, count: number): Promise<void> => {
      for (const args of argumentBatches(first, count)) await queue.addBulk(echoJobs(args));
    };
    await send(1, SIZES.warmup);
    const t0 = performance.now();
    await send(SIZES.warmup + 1, SIZES.tasks);
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const bullLatency = (): Promise<Record<string, Metric>> =>
  withBullmq((queue, events) =>
    withWorkers(1, bullWorkers(100), async () => {
      const roundTrip = async (n: number, timeoutMs: number): Promise<void> => expectEcho('BullMQ', n, await (await queue.add('echo', n)).waitUntilFinished(events, timeoutMs));
      return timeRoundTrips(roundTrip);
    }),
  );

// ---------------------------------------------------------------------------------------------------------
// Celery: `python3 -m celery -A celery_bench worker` processes; the producer and its clock are in Python.

const CELERY_ENV = { CELERY_BENCH_URL: REDIS_URL, PYTHONDONTWRITEBYTECODE: '1' };

function celeryWorkers(poolArgs: string[]): (index: number) => Promise<WorkerProcess> {
  return (index) => startCeleryWorker('celery_bench', poolArgs, `bench${index}@%h`, CELERY_ENV);
}

/**
 * Runs celery_bench.py's producer in one mode with its echo task (--echo: every result checked), the warm-up last
 * (its timeout, 180 s, outlasts the script's own 120 s wait for results).
 */
function celeryProducer(args: Array<string | number>): Promise<Record<string, number | undefined>> {
  return runCeleryProducer('celery_bench.py', ['--echo', ...args], CELERY_ENV);
}

function celeryEndToEnd(workers: number, poolArgs: string[]): () => Promise<Record<string, Metric>> {
  return async () => {
    await flush();
    return withWorkers(workers, celeryWorkers(poolArgs), async (processes) => {
      // The workers' and Redis's counts are taken around the whole producer script (Python cannot pause for them
      // between its warm-up and its timed pass), so they are divided by all the tasks it ran, warm-up included;
      // Python's start-up adds a handful of commands. The producer's CPU is its own timed pass's.
      const cost = await startCost(processes);
      const { rate: r, producer_cpu_sec: producerCpuSec } = await celeryProducer(['e2e', SIZES.tasks, SIZES.batch, SIZES.warmup]);
      return { rate: { value: r!, unit: 'tasks/s' }, ...(await cost(SIZES.warmup + SIZES.tasks, { cpuSec: producerCpuSec!, tasks: SIZES.tasks })) };
    });
  };
}

const celeryEnqueue =
  (mode: 'enqueue-single' | 'enqueue-bulk'): (() => Promise<Record<string, Metric>>) =>
  async () => {
    await flush();
    const { rate: r } = await celeryProducer(mode === 'enqueue-single' ? [mode, SIZES.tasks, SIZES.warmup] : [mode, SIZES.tasks, SIZES.batch, SIZES.warmup]);
    return { rate: { value: r!, unit: 'tasks/s' } };
  };

const celeryLatency = async (): Promise<Record<string, Metric>> => {
  await flush();
  return withWorkers(1, celeryWorkers(CELERY_MAIN), async () => {
    const { p50, p99 } = await celeryProducer(['latency', SIZES.roundTrips, SIZES.warmup]);
    return { p50: ms(p50!), p99: ms(p99!) };
  });
};

// ---------------------------------------------------------------------------------------------------------
// The scenarios

/** Each peer's configurations for one worker process; the first is the one used in the other rows. */
const FENNEL_CONFIGS: Array<{ concurrency: number; env?: Record<string, string>; pool?: FennelPool }> = [
  { concurrency: 100 },
  { concurrency: 50 },
  { concurrency: 200 },
  // Celery's default: no STARTED state stored (and published) before each task runs.
  { concurrency: 100, env: { FENNEL_TRACK_STARTED: 'false' } },
  // Issue #21: the process pool (`npm start`'s worker), each task in one of 2 child processes, against the async pool.
  { concurrency: 2, pool: 'process' },
];
// Issue #21 asks for bee-queue's best of concurrency 1 and 100; `keep` is bee-queue's default removeOnSuccess: false
// (the finished job's record stays, as BullMQ's completed job does), for what storing less is worth to it.
const BEE_CONFIGS: Array<{ concurrency: number; keep?: boolean }> = [{ concurrency: 100 }, { concurrency: 1 }, { concurrency: 100, keep: true }];
const BULLMQ_CONCURRENCY = [100, 50, 200];
// Celery's pools differ little on short tasks; the two extra ones get one run each, so that the whole run stays short.
const CELERY_POOLS: string[][] = [
  ['-P', 'threads', '-c', '8'],
  ['-P', 'prefork', '-c', '2'],
  ['-P', 'solo'],
];
const CELERY_MAIN = CELERY_POOLS[0]!;

const fennelConfig = (c: number, env: Record<string, string> = {}, pool: FennelPool = 'async'): string =>
  `\`${Object.entries(env).map(([k, v]) => `${k}=${v} `).join('')}fennel worker -P ${pool} -c ${c}\``;
const beeConfig = (c: number, keep = false): string => `\`queue.process(${c}, …)\`${keep ? ', `removeOnSuccess: false`' : ''}`;
const bullConfig = (c: number): string => `\`new Worker(…, { concurrency: ${c} })\``;
const celeryConfig = (pool: string[]): string => `\`celery worker ${pool.join(' ')}\``;

export function redisScenarios(): RedisScenario[] {
  const list: RedisScenario[] = [];
  const add = (kind: Kind, peer: Peer, config: string, main: boolean, run: () => Promise<Record<string, Metric>>, key = '', maxRuns?: number): void => {
    list.push({ id: `redis-${kind}-${peer}${key ? `-${key}` : ''}`, kind, peer, config, main, run, ...(maxRuns ? { maxRuns } : {}) });
  };
  FENNEL_CONFIGS.forEach(({ concurrency: c, env, pool }, i) =>
    add('e2e-1', 'fennel', fennelConfig(c, env, pool), i === 0, fennelEndToEnd(1, c, env, pool), `${pool === 'process' ? 'process-' : ''}c${c}${env ? '-untracked' : ''}`),
  );
  BEE_CONFIGS.forEach(({ concurrency: c, keep }, i) => add('e2e-1', 'beequeue', beeConfig(c, keep), i === 0, beeEndToEnd(1, c, keep), `c${c}${keep ? '-kept' : ''}`));
  BULLMQ_CONCURRENCY.forEach((c, i) => add('e2e-1', 'bullmq', bullConfig(c), i === 0, bullEndToEnd(1, c), `c${c}`));
  CELERY_POOLS.forEach((pool, i) => add('e2e-1', 'celery', celeryConfig(pool), i === 0, celeryEndToEnd(1, pool), pool.slice(1).join(''), i === 0 ? undefined : 1));
  add('e2e-2', 'fennel', `2 × ${fennelConfig(100)}`, true, fennelEndToEnd(2, 100));
  add('e2e-2', 'beequeue', `2 × ${beeConfig(100)}`, true, beeEndToEnd(2, 100), 'c100');
  add('e2e-2', 'beequeue', `2 × ${beeConfig(1)}`, false, beeEndToEnd(2, 1), 'c1');
  add('e2e-2', 'bullmq', `2 × ${bullConfig(100)}`, true, bullEndToEnd(2, 100));
  add('e2e-2', 'celery', `2 × ${celeryConfig(CELERY_MAIN)}`, true, celeryEndToEnd(2, CELERY_MAIN));
  add('enqueue-single', 'fennel', '`await task.delay(n).sent`', true, fennelEnqueueSingle);
  add('enqueue-single', 'beequeue', '`await queue.createJob(n).save()`', true, beeEnqueueSingle);
  add('enqueue-single', 'bullmq', "`await queue.add('echo', n)`", true, bullEnqueueSingle);
  add('enqueue-single', 'celery', '`echo.delay(n)`', true, celeryEnqueue('enqueue-single'));
  add('enqueue-bulk', 'fennel', '`await task.delayMany(batch)[0].sent`', true, fennelEnqueueBulk);
  add('enqueue-bulk', 'beequeue', '`await queue.saveAll(batch)`', true, beeEnqueueBulk);
  add('enqueue-bulk', 'bullmq', '`await queue.addBulk(batch)`', true, bullEnqueueBulk);
  add('enqueue-bulk', 'celery', `\`group(echo.s(n) × ${SIZES.batch}).apply_async()\``, true, celeryEnqueue('enqueue-bulk'));
  add('latency', 'fennel', `\`await task.delay(n).get()\`, ${fennelConfig(100)}`, true, fennelLatency);
  add('latency', 'beequeue', `\`await queue.createJob(n).save()\`, then its \`job succeeded\` event, ${beeConfig(100)}`, true, beeLatency);
  add('latency', 'bullmq', `\`(await queue.add('echo', n)).waitUntilFinished(events)\`, ${bullConfig(100)}`, true, bullLatency);
  add('latency', 'celery', `\`echo.delay(n).get()\`, ${celeryConfig(CELERY_MAIN)}`, true, celeryLatency);
  return list;
}
