// The Redis comparison: Fennel, BullMQ and Python Celery 5 on the same Redis database in the same run, one
// scenario at a time, the database flushed before each. Every worker is a separate process started as its
// users start it: `fennel worker` (bench/support.ts), a BullMQ Worker (bench/peers/bullmq-worker.ts) and
// `python3 -m celery worker` (bench/peers/celery_bench.py, which is also Celery's producer and prints JSON).
// bench/run.ts repeats each scenario, interleaving the peers, and reports medians and ratios.
//
// Environment knobs:
//   FENNEL_BENCH_REDIS_URL   the database to use and FLUSHDB (default redis://127.0.0.1:6379/15; nothing else may use it)
//   FENNEL_BENCH_PYTHON      the Python that has Celery 5 and redis-py (default /usr/bin/python3); Celery's rows
//                            are skipped, with the reason, if `import celery, redis` fails there

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { CELERY_PYTHON as PYTHON, delayAllAndGet, percentile, processCpuSec, ROOT, runCeleryProducer, startCeleryWorker, startProcess, startWorker, type Metric, type WorkerProcess } from './support.ts';
import { benchApp } from './tasks.ts';

export const REDIS_URL = process.env['FENNEL_BENCH_REDIS_URL'] || 'redis://127.0.0.1:6379/15';

/** Tasks per end-to-end and enqueue run, the batch of the bulk APIs, and the round trips timed. */
// Node peers are measured warm, as a long-running service runs: Fennel and BullMQ run one untimed end-to-end pass
// of SIZES.tasks before the timed one (a timed pass from cold measured V8 tiering up as much as the queue), and
// 1,000 untimed round trips before the timed ones. Celery (CPython, no JIT) gets the same round trips and one
// warm-up task.
export const SIZES = { tasks: 10_000, batch: 500, roundTrips: 1_000, warmup: 1_000 } as const;

export type Peer = 'fennel' | 'bullmq' | 'celery';
export const PEERS: readonly Peer[] = ['fennel', 'bullmq', 'celery'];

/** The rows of the side-by-side table; `e2e-1` is also swept over each peer's configurations. */
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

export const KINDS: Record<Kind, { title: string; size: string }> = {
  'e2e-1': { title: 'end to end, 1 worker process', size: `${SIZES.tasks.toLocaleString('en')} no-op tasks` },
  'e2e-2': { title: 'end to end, 2 worker processes', size: `${SIZES.tasks.toLocaleString('en')} no-op tasks` },
  'enqueue-single': { title: 'enqueue, one awaited call at a time', size: `${SIZES.tasks.toLocaleString('en')} tasks` },
  'enqueue-bulk': { title: `enqueue, bulk (batches of ${SIZES.batch})`, size: `${SIZES.tasks.toLocaleString('en')} tasks` },
  latency: { title: 'round trip, one enqueue → result at a time', size: `${SIZES.roundTrips} after ${SIZES.warmup} warm-up` },
};

// ---------------------------------------------------------------------------------------------------------
// Shared

function rate(count: number, ms: number): Metric {
  return { value: (count * 1000) / ms, unit: 'tasks/s' };
}

function ms(value: number): Metric {
  return { value, unit: 'ms' };
}

function batches(count: number): number[] {
  const sizes: number[] = [];
  for (let i = 0; i < count; i += SIZES.batch) sizes.push(Math.min(SIZES.batch, count - i));
  return sizes;
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
 * that process's own CPU seconds.
 */
async function startCost(workers: readonly WorkerProcess[]): Promise<(tasks: number, producerCpuSec?: number) => Promise<Record<string, Metric>>> {
  const before = await redisCounters();
  const workersBefore = workers.map((w) => processCpuSec(w.pid));
  const producerBefore = process.cpuUsage();
  return async (tasks, producerCpuSec) => {
    const producer = process.cpuUsage(producerBefore);
    const workersSec = workers.reduce((sum, w, i) => sum + processCpuSec(w.pid) - workersBefore[i]!, 0);
    const after = await redisCounters();
    let calls = 0;
    for (const [name, n] of after.calls) calls += n - (before.calls.get(name) ?? 0);
    const perTask = (sec: number): Metric => ({ value: (sec * 1e6) / tasks, unit: 'µs/task' });
    return {
      'producer CPU': perTask(producerCpuSec ?? (producer.user + producer.system) / 1e6),
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
  const bullmq = (JSON.parse(readFileSync(join(ROOT, 'node_modules', 'bullmq', 'package.json'), 'utf8')) as { version: string }).version;
  let celery: Environment['celery'];
  try {
    const { stdout } = await promisify(execFile)(PYTHON, ['-c', 'import celery, redis, sys; print(celery.__version__, redis.__version__, sys.version.split()[0])'], { timeout: 30_000 });
    const [version, redisPy, python] = stdout.trim().split(' ');
    celery = { version: `Celery ${version} (redis-py ${redisPy}, Python ${python})` };
  } catch (error) {
    celery = { skipped: `\`${PYTHON} -c "import celery, redis"\` failed: ${((error as Error).message.split('\n').find((l) => /Error/.test(l)) ?? (error as Error).message).trim()}` };
  }
  return { redis, bullmq: `BullMQ ${bullmq}`, celery };
}

// ---------------------------------------------------------------------------------------------------------
// Fennel: `fennel worker -P async -c N` processes; producer delayMany / delay, results through get().

type FennelBench = ReturnType<typeof benchApp>;

async function withFennel<T>(body: (bench: FennelBench) => Promise<T>): Promise<T> {
  await flush();
  const bench = benchApp({ broker: REDIS_URL });
  try {
    return await body(bench);
  } finally {
    await bench.app.close();
  }
}

function fennelWorkers(concurrency: number, env: Record<string, string> = {}): (index: number) => Promise<WorkerProcess> {
  return () => startWorker({ brokerUrl: REDIS_URL, pool: 'async', concurrency, env });
}

function fennelEndToEnd(workers: number, concurrency: number, env: Record<string, string> = {}): () => Promise<Record<string, Metric>> {
  return () =>
    withFennel((bench) =>
      withWorkers(workers, fennelWorkers(concurrency, env), async (processes) => {
        const pass = (): Promise<void> => delayAllAndGet(bench.noop, SIZES.tasks, SIZES.batch);
        await pass(); // warm-up, untimed (see SIZES)
        const cost = await startCost(processes);
        const t0 = performance.now();
        await pass();
        return { rate: rate(SIZES.tasks, performance.now() - t0), ...(await cost(SIZES.tasks)) };
      }),
    );
}

const fennelEnqueueSingle = (): Promise<Record<string, Metric>> =>
  withFennel(async ({ noop }) => {
    await noop.delay().sent; // connects and loads the scripts outside the timing
    const t0 = performance.now();
    for (let i = 0; i < SIZES.tasks; i++) await noop.delay().sent;
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const fennelEnqueueBulk = (): Promise<Record<string, Metric>> =>
  withFennel(async ({ noop }) => {
    await noop.delay().sent;
    const t0 = performance.now();
    for (const size of batches(SIZES.tasks)) await noop.delayMany(Array.from({ length: size }, (): [] => []))[0]!.sent;
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const fennelLatency = (): Promise<Record<string, Metric>> =>
  withFennel((bench) =>
    withWorkers(1, fennelWorkers(100), async () => {
      for (let i = 0; i < SIZES.warmup; i++) await bench.noop.delay().get({ timeoutMs: 60_000 });
      const times: number[] = [];
      for (let i = 0; i < SIZES.roundTrips; i++) {
        const t0 = performance.now();
        await bench.noop.delay().get({ timeoutMs: 30_000 });
        times.push(performance.now() - t0);
      }
      return { p50: ms(percentile(times, 50)), p99: ms(percentile(times, 99)) };
    }),
  );

// ---------------------------------------------------------------------------------------------------------
// BullMQ: Worker processes (bench/peers/bullmq-worker.ts); producer addBulk / add, results through QueueEvents.

const BULL_QUEUE = 'bench';

function bullConnection(): { host: string; port: number; db: number } {
  const url = new URL(REDIS_URL);
  return { host: url.hostname, port: Number(url.port || 6379), db: Number(url.pathname.slice(1) || 0) };
}

async function withBullmq<T>(body: (queue: Queue, events: QueueEvents) => Promise<T>): Promise<T> {
  await flush();
  const queue = new Queue(BULL_QUEUE, { connection: bullConnection() });
  // QueueEvents blocks on XREAD; BullMQ wants maxRetriesPerRequest: null on blocking connections.
  const events = new QueueEvents(BULL_QUEUE, { connection: { ...bullConnection(), maxRetriesPerRequest: null } });
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

const noJobs = (size: number): Array<{ name: string; data: Record<string, never> }> => Array.from({ length: size }, () => ({ name: 'noop', data: {} }));

function bullEndToEnd(workers: number, concurrency: number): () => Promise<Record<string, Metric>> {
  return () =>
    withBullmq((queue, events) =>
      withWorkers(workers, bullWorkers(concurrency), async (processes) => {
        const warm = await queue.add('noop', {});
        await warm.waitUntilFinished(events, 60_000);
        /** Adds SIZES.tasks jobs in batches and resolves when every one has completed. */
        const pass = async (): Promise<void> => {
          // A 'completed' event can be read before addBulk's reply: count ids on whichever side comes second.
          const ours = new Set<string>();
          const early = new Set<string>();
          let done = 0;
          let finish: () => void = () => {};
          let fail: (error: Error) => void = () => {};
          const all = new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject)));
          const check = (): void => {
            if (done === SIZES.tasks) finish();
          };
          const onCompleted = ({ jobId }: { jobId: string }): void => {
            if (ours.has(jobId)) done++;
            else early.add(jobId);
            check();
          };
          const onFailed = ({ jobId, failedReason }: { jobId: string; failedReason: string }): void => fail(new Error(`BullMQ job ${jobId} failed: ${failedReason}`));
          events.on('completed', onCompleted);
          events.on('failed', onFailed);
          try {
            for (const size of batches(SIZES.tasks)) {
              for (const job of await queue.addBulk(noJobs(size))) {
                ours.add(job.id!);
                if (early.delete(job.id!)) done++;
              }
            }
            check();
            await all;
          } finally {
            events.off('completed', onCompleted);
            events.off('failed', onFailed);
          }
        };
        await pass(); // warm-up, untimed (see SIZES)
        const cost = await startCost(processes);
        const t0 = performance.now();
        await pass();
        return { rate: rate(SIZES.tasks, performance.now() - t0), ...(await cost(SIZES.tasks)) };
      }),
    );
}

const bullEnqueueSingle = (): Promise<Record<string, Metric>> =>
  withBullmq(async (queue) => {
    await queue.add('noop', {});
    const t0 = performance.now();
    for (let i = 0; i < SIZES.tasks; i++) await queue.add('noop', {});
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const bullEnqueueBulk = (): Promise<Record<string, Metric>> =>
  withBullmq(async (queue) => {
    await queue.add('noop', {});
    const t0 = performance.now();
    for (const size of batches(SIZES.tasks)) await queue.addBulk(noJobs(size));
    return { rate: rate(SIZES.tasks, performance.now() - t0) };
  });

const bullLatency = (): Promise<Record<string, Metric>> =>
  withBullmq((queue, events) =>
    withWorkers(1, bullWorkers(100), async () => {
      for (let i = 0; i < SIZES.warmup; i++) await (await queue.add('noop', {})).waitUntilFinished(events, 60_000);
      const times: number[] = [];
      for (let i = 0; i < SIZES.roundTrips; i++) {
        const t0 = performance.now();
        await (await queue.add('noop', {})).waitUntilFinished(events, 30_000);
        times.push(performance.now() - t0);
      }
      return { p50: ms(percentile(times, 50)), p99: ms(percentile(times, 99)) };
    }),
  );

// ---------------------------------------------------------------------------------------------------------
// Celery: `python3 -m celery -A celery_bench worker` processes; the producer and its clock are in Python.

const CELERY_ENV = { CELERY_BENCH_URL: REDIS_URL, PYTHONDONTWRITEBYTECODE: '1' };

function celeryWorkers(poolArgs: string[]): (index: number) => Promise<WorkerProcess> {
  return (index) => startCeleryWorker('celery_bench', poolArgs, `bench${index}@%h`, CELERY_ENV);
}

/** Runs celery_bench.py's producer in one mode (its timeout, 180 s, outlasts the script's own 120 s wait for results). */
function celeryProducer(args: Array<string | number>): Promise<Record<string, number | undefined>> {
  return runCeleryProducer('celery_bench.py', args, CELERY_ENV);
}

function celeryEndToEnd(workers: number, poolArgs: string[]): () => Promise<Record<string, Metric>> {
  return async () => {
    await flush();
    return withWorkers(workers, celeryWorkers(poolArgs), async (processes) => {
      // Counted around the whole producer script, so Python's start-up and warm-up round trip are in the
      // workers' and Redis's counts (a handful of commands); the producer's CPU is its own timed part's.
      const cost = await startCost(processes);
      const { rate: r, producer_cpu_sec: producerCpuSec } = await celeryProducer(['e2e', SIZES.tasks, SIZES.batch]);
      return { rate: { value: r!, unit: 'tasks/s' }, ...(await cost(SIZES.tasks, producerCpuSec)) };
    });
  };
}

const celeryEnqueue =
  (mode: 'enqueue-single' | 'enqueue-bulk'): (() => Promise<Record<string, Metric>>) =>
  async () => {
    await flush();
    const { rate: r } = await celeryProducer([mode, SIZES.tasks, SIZES.batch]);
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
const FENNEL_CONFIGS: Array<{ concurrency: number; env?: Record<string, string> }> = [
  { concurrency: 100 },
  { concurrency: 50 },
  { concurrency: 200 },
  // Celery's default: no STARTED state stored (and published) before each task runs.
  { concurrency: 100, env: { FENNEL_TRACK_STARTED: 'false' } },
];
const BULLMQ_CONCURRENCY = [100, 50, 200];
// Celery's pools differ little on no-ops; the two extra ones get one run each, so that the whole run stays short.
const CELERY_POOLS: string[][] = [
  ['-P', 'threads', '-c', '8'],
  ['-P', 'prefork', '-c', '2'],
  ['-P', 'solo'],
];
const CELERY_MAIN = CELERY_POOLS[0]!;

const fennelConfig = (c: number, env: Record<string, string> = {}): string =>
  `\`${Object.entries(env).map(([k, v]) => `${k}=${v} `).join('')}fennel worker -P async -c ${c}\``;
const bullConfig = (c: number): string => `\`new Worker(…, { concurrency: ${c} })\``;
const celeryConfig = (pool: string[]): string => `\`celery worker ${pool.join(' ')}\``;

export function redisScenarios(): RedisScenario[] {
  const list: RedisScenario[] = [];
  const add = (kind: Kind, peer: Peer, config: string, main: boolean, run: () => Promise<Record<string, Metric>>, key = '', maxRuns?: number): void => {
    list.push({ id: `redis-${kind}-${peer}${key ? `-${key}` : ''}`, kind, peer, config, main, run, ...(maxRuns ? { maxRuns } : {}) });
  };
  FENNEL_CONFIGS.forEach(({ concurrency: c, env }, i) =>
    add('e2e-1', 'fennel', fennelConfig(c, env), i === 0, fennelEndToEnd(1, c, env), `c${c}${env ? '-untracked' : ''}`),
  );
  BULLMQ_CONCURRENCY.forEach((c, i) => add('e2e-1', 'bullmq', bullConfig(c), i === 0, bullEndToEnd(1, c), `c${c}`));
  CELERY_POOLS.forEach((pool, i) => add('e2e-1', 'celery', celeryConfig(pool), i === 0, celeryEndToEnd(1, pool), pool.slice(1).join(''), i === 0 ? undefined : 1));
  add('e2e-2', 'fennel', `2 × ${fennelConfig(100)}`, true, fennelEndToEnd(2, 100));
  add('e2e-2', 'bullmq', `2 × ${bullConfig(100)}`, true, bullEndToEnd(2, 100));
  add('e2e-2', 'celery', `2 × ${celeryConfig(CELERY_MAIN)}`, true, celeryEndToEnd(2, CELERY_MAIN));
  add('enqueue-single', 'fennel', '`await task.delay().sent`', true, fennelEnqueueSingle);
  add('enqueue-single', 'bullmq', "`await queue.add('noop', {})`", true, bullEnqueueSingle);
  add('enqueue-single', 'celery', '`noop.delay()`', true, celeryEnqueue('enqueue-single'));
  add('enqueue-bulk', 'fennel', '`await task.delayMany(batch)[0].sent`', true, fennelEnqueueBulk);
  add('enqueue-bulk', 'bullmq', '`await queue.addBulk(batch)`', true, bullEnqueueBulk);
  add('enqueue-bulk', 'celery', '`group(noop.s() × 500).apply_async()`', true, celeryEnqueue('enqueue-bulk'));
  add('latency', 'fennel', `\`await task.delay().get()\`, ${fennelConfig(100)}`, true, fennelLatency);
  add('latency', 'bullmq', `\`(await queue.add()).waitUntilFinished(events)\`, ${bullConfig(100)}`, true, bullLatency);
  add('latency', 'celery', `\`noop.delay().get()\`, ${celeryConfig(CELERY_MAIN)}`, true, celeryLatency);
  return list;
}
