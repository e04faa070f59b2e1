// The scenarios on the embedded SQLite engine (sqlite://, one WAL file). Each run gets a fresh temp database,
// and every worker is a separate `fennel worker` process (bench/support.ts). A run returns its metrics;
// bench/run.ts repeats it and reports medians.

import { benchApp } from './tasks.ts';
import { percentile, startWorker, tempDatabase, waitUntil, type Metric, type WorkerProcess } from './support.ts';

export interface Scenario {
  id: string;
  title: string;
  /** What one run does, for the table. */
  size: string;
  run(): Promise<Record<string, Metric>>;
}

const BULK_BATCH = 500;

type Bench = ReturnType<typeof benchApp>;

/** A producer app on a fresh database file; closed and removed afterwards. */
async function withDatabase<T>(body: (bench: Bench, url: string) => Promise<T>): Promise<T> {
  const db = tempDatabase();
  const bench = benchApp({ broker: db.url });
  try {
    return await body(bench, db.url);
  } finally {
    await bench.app.close();
    db.cleanup();
  }
}

/** Runs `body` against a running worker, failing fast if the worker dies or complains, and stops it. */
async function withWorker<T>(url: string, pool: 'async' | 'process', concurrency: number, body: (worker: WorkerProcess) => Promise<T>): Promise<T> {
  const worker = await startWorker({ brokerUrl: url, pool, concurrency });
  try {
    const out = await Promise.race([body(worker), worker.died]);
    if (worker.complaints.length) throw new Error(`the worker logged ${worker.complaints.length} warning(s), e.g. ${worker.complaints[0]}`);
    return out;
  } finally {
    await worker.stop();
  }
}

/** One round trip, so the worker has shown it consumes and the queue is empty before the clock starts. */
async function warmUp(bench: Bench, count = 1): Promise<void> {
  for (let i = 0; i < count; i++) await bench.noop.delay().get({ timeoutMs: 60_000 });
}

function batches(count: number): number[] {
  const sizes: number[] = [];
  for (let i = 0; i < count; i += BULK_BATCH) sizes.push(Math.min(BULK_BATCH, count - i));
  return sizes;
}

function noArgs(size: number): Array<[]> {
  return Array.from({ length: size }, (): [] => []);
}

function rate(count: number, ms: number): Metric {
  return { value: (count * 1000) / ms, unit: 'tasks/s' };
}

/** `task.delay` awaited one by one through `result.sent`. */
function enqueueSingle(count: number): Scenario {
  return {
    id: 'enqueue-single',
    title: 'enqueue, one by one (`await task.delay().sent`)',
    size: `${count.toLocaleString('en')} tasks`,
    run: () =>
      withDatabase(async ({ noop }) => {
        await noop.delay().sent; // opens the file and creates the schema outside the timing
        const t0 = performance.now();
        for (let i = 0; i < count; i++) await noop.delay().sent;
        return { rate: rate(count, performance.now() - t0) };
      }),
  };
}

/** `task.delayMany` in batches, each batch one transaction. */
function enqueueBulk(count: number): Scenario {
  return {
    id: 'enqueue-bulk',
    title: `enqueue, bulk (\`task.delayMany\`, batches of ${BULK_BATCH})`,
    size: `${count.toLocaleString('en')} tasks`,
    run: () =>
      withDatabase(async ({ noop }) => {
        await noop.delay().sent;
        const t0 = performance.now();
        for (const size of batches(count)) await noop.delayMany(noArgs(size))[0]!.sent;
        return { rate: rate(count, performance.now() - t0) };
      }),
  };
}

/**
 * A pre-filled queue, then one worker started on it. The clock starts when the worker prints "worker
 * ready" (start-up, mostly loading TypeScript, is reported apart) and stops when every SUCCESS is stored,
 * polled by key for the last task and then with backend.countByState(), which costs the worker little.
 */
function processing(count: number): Scenario {
  return {
    id: 'process-async',
    title: 'processing a pre-filled queue (`-P async -c 100`)',
    size: `${count.toLocaleString('en')} tasks`,
    run: () =>
      withDatabase(async ({ app, noop }, url) => {
        const ids: string[] = [];
        for (const size of batches(count)) {
          const batch = noop.delayMany(noArgs(size));
          await batch[0]!.sent;
          ids.push(...batch.map((r) => r.id));
        }
        const spawned = performance.now();
        return withWorker(url, 'async', 100, async (worker) => {
          await waitUntil(async () => (await app.backend.get(ids[count - 1]!))?.status === 'SUCCESS', 5, 300_000, 'the last result');
          await waitUntil(async () => (await app.backend.countByState())['SUCCESS'] === count, 5, 300_000, 'every result');
          return {
            rate: rate(count, performance.now() - worker.readyAt),
            startup: { value: worker.readyAt - spawned, unit: 'ms' },
          };
        });
      }),
  };
}

/** Produce (bulk) and consume at once against a running worker; the clock stops when get() has every result. */
function endToEnd(pool: 'async' | 'process', concurrency: number, count: number): Scenario {
  return {
    id: `e2e-${pool}`,
    title: `end to end, delayMany + get() (\`-P ${pool} -c ${concurrency}\`)`,
    size: `${count.toLocaleString('en')} tasks`,
    run: () =>
      withDatabase((bench, url) =>
        withWorker(url, pool, concurrency, async () => {
          await warmUp(bench);
          const t0 = performance.now();
          const gets: Array<Promise<unknown>> = [];
          for (const size of batches(count)) {
            const batch = bench.noop.delayMany(noArgs(size));
            await batch[0]!.sent;
            for (const result of batch) gets.push(result.get({ timeoutMs: 300_000 }));
          }
          await Promise.all(gets);
          return { rate: rate(count, performance.now() - t0) };
        }),
      ),
  };
}

/** Sequential `await task.delay().get()` against a running worker (`-P async`), after a warm-up. */
function roundTrip(count: number, warmup: number): Scenario {
  return {
    id: 'latency',
    title: 'round trip, one `delay()` → `get()` at a time (`-P async -c 100`)',
    size: `${count} round trips after ${warmup} warm-up`,
    run: () =>
      withDatabase((bench, url) =>
        withWorker(url, 'async', 100, async () => {
          await warmUp(bench, warmup);
          const times: number[] = [];
          for (let i = 0; i < count; i++) {
            const t0 = performance.now();
            await bench.noop.delay().get({ timeoutMs: 30_000 });
            times.push(performance.now() - t0);
          }
          return {
            p50: { value: percentile(times, 50), unit: 'ms' },
            p99: { value: percentile(times, 99), unit: 'ms' },
          };
        }),
      ),
  };
}

export const scenarios: Scenario[] = [
  enqueueSingle(10_000),
  enqueueBulk(20_000),
  processing(20_000),
  endToEnd('async', 100, 10_000),
  endToEnd('process', 2, 10_000),
  roundTrip(500, 50),
];
