// The NATS JetStream benchmark (issue #20), one section of BENCHMARKS.md (`npm run bench -- nats`): Fennel on nats://
// (one private node, and a private 3-node cluster with `?replicas=3`) beside Fennel on redis:// and amqp://, measured
// in the same run, with the same task, the same warm-up and the same clock (performance.now() here).
//
//   engines        nats-1   one private `nats-server -js` started here on a free port, its store in a temp dir
//                  nats-r3  three private nodes routed into a cluster on loopback, `nats://a,b,c?replicas=3`
//                  redis    the shared Redis 127.0.0.1:6379, database 15 only (FENNEL_BENCH_REDIS_URL), flushed
//                           before and after every run
//                  amqp     the shared RabbitMQ (FENNEL_BENCH_AMQP_URL), results in Redis database 15; each run's
//                           queue has a name of its own, deleted after it
//                  Each NATS run has a prefix of its own (`?prefix=b<n>`): fresh streams and buckets, deleted after it.
//   the task       `bench.leaf` of bench/refs-tasks.ts, `(i) => i`: a no-op that takes one argument and returns it;
//                  every value that comes back is checked
//   workers        `fennel worker --app bench/refs-tasks.ts -P async -c 100` (bin/fennel.js, the built package), the
//                  configuration of the Redis and RabbitMQ parts' Fennel rows, broker and backend from the environment
//   kinds          enqueue-single  `await leaf.delay(i).sent`, one at a time, no worker running
//                  enqueue-bulk    `await leaf.delayMany(batch)[0].sent`, batches of SIZES.batch, no worker running
//                  e2e-1 / e2e-2   SIZES.tasks tasks published with delayMany in batches, get() on every result, with
//                                  1 and 2 worker processes running
//                  latency         `await leaf.delay(i).get()` one at a time, 1 worker: p50 and p99
//                  Every measurement is preceded by SIZES.warmup untimed operations of the same kind, on the same
//                  producer and workers.
// Runs are rounds (every scenario once, then again), the engines' order turning each round; medians of the runs.

import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { commit, cpuModel, deleteAmqp, FENNEL_BIN, median, percentile, processCpuSec, ROOT, startProcess, type Metric, type WorkerProcess } from './support.ts';
import { refsApp } from './refs-tasks.ts';
import type { PrivateNats } from '../test/support/nats.ts';

const REDIS_URL = process.env['FENNEL_BENCH_REDIS_URL'] || 'redis://127.0.0.1:6379/15';
const AMQP_URL = process.env['FENNEL_BENCH_AMQP_URL'] || 'amqp://guest:guest@127.0.0.1:5672/';

/** Tasks per end-to-end and enqueue run, the bulk batch, round trips timed, and the untimed warm-up of every measurement. */
// FENNEL_BENCH_NATS_QUICK=1 shrinks them for a smoke check of the benchmark itself (never for the document).
export const NATS_SIZES = process.env['FENNEL_BENCH_NATS_QUICK'] === '1' ? { tasks: 600, batch: 100, roundTrips: 50, warmup: 100, window: 200, windowBatch: 50 } : ({ tasks: 10_000, batch: 500, roundTrips: 1_000, warmup: 1_000, window: 500, windowBatch: 100 } as const);
/** Issue #20: one node at least this many no-op tasks/s end to end. */
const AIM_E2E = 10_000;
const CONCURRENCY = 100;
const GET_TIMEOUT_MS = 120_000;

type EngineId = 'nats1' | 'nats3' | 'redis' | 'amqp';
const ENGINES: readonly EngineId[] = ['nats1', 'nats3', 'redis', 'amqp'];
const ENGINE_NAMES: Record<EngineId, string> = {
  nats1: 'NATS, one node',
  nats3: 'NATS, R3 cluster',
  redis: 'Redis',
  amqp: 'RabbitMQ (results in Redis)',
};

type Kind = 'e2e-1' | 'e2e-2' | 'window-1' | 'window-2' | 'enqueue-single' | 'enqueue-bulk' | 'latency' | 'steps';
const KINDS: readonly Kind[] = ['e2e-1', 'e2e-2', 'window-1', 'window-2', 'enqueue-single', 'enqueue-bulk', 'latency', 'steps'];
/** The kinds each engine runs: the step-by-step measurement is nats:// only. */
const runsKind = (kind: Kind, engine: EngineId): boolean => kind !== 'steps' || engine === 'nats1' || engine === 'nats3';

/** Where one run goes: URLs, queue, and what to remove after it. */
interface Target {
  broker: string;
  backend: string;
  queue: string;
  /** The PIDs of the servers it uses that this process can read (/proc), for their CPU. */
  serverPids: () => number[];
  /** nats:// only: the number of messages in the run's tasks stream. */
  streamMessages?: () => Promise<number>;
  /** Redis's server-wide CPU counts too (redis, and amqp's results). */
  redisCpu: boolean;
  cleanup(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// Servers

interface NatsServers {
  url: (prefix: string) => string;
  pids: () => number[];
  stop(): Promise<void>;
}


async function startNatsServers(nodes: 1 | 3): Promise<NatsServers> {
  // Test support, imported only here: every other part of the benchmark runs without it.
  const { startNats } = await import('../test/support/nats.ts');
  const { freePort } = await import('../test/support/services.ts');
  const dirs = Array.from({ length: nodes }, () => mkdtempSync(join(tmpdir(), 'fennel-bench-nats-')));
  const servers: PrivateNats[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (nodes === 1) servers.push(await startNats({ storeDir: dirs[0]! }));
    else {
      const clusterPorts = [await freePort(), await freePort(), await freePort()];
      servers.push(
        ...(await Promise.all(
          clusterPorts.map((port, i) => startNats({ storeDir: dirs[i]!, cluster: { name: `bench-${i}`, port, routes: clusterPorts.filter((p) => p !== port) } })),
        )),
      );
    }
    const hosts = servers.map((s) => `127.0.0.1:${s.port}`).join(',');
    const url = (prefix: string): string => `nats://${hosts}?${nodes === 3 ? 'replicas=3&' : ''}prefix=${prefix}`;
    await jetStreamReady(url('warmup'), nodes);
    return { url, pids: () => servers.map((s) => s.child().pid ?? -1), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Waits until the servers take a stream of `nodes` replicas (a cluster elects its meta leader first), then deletes it. */
async function jetStreamReady(url: string, nodes: number): Promise<void> {
  const nc = await connect({ servers: url.slice('nats://'.length).split('?')[0]!.split(',') });
  try {
    const deadline = performance.now() + 60_000;
    for (;;) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 5_000 });
        await jsm.streams.add({ name: 'BENCH_READY', subjects: ['bench.ready'], num_replicas: nodes });
        await jsm.streams.delete('BENCH_READY');
        return;
      } catch (error) {
        if (performance.now() > deadline) throw new Error(`JetStream on ${url} not ready after 60 s: ${(error as Error).message}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await nc.close();
  }
}

/** Deletes every stream a run's prefix made (tasks, dead letters, key-value buckets). */
async function dropPrefix(url: string, prefix: string): Promise<void> {
  const nc = await connect({ servers: url.slice('nats://'.length).split('?')[0]!.split(',') });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 10_000 });
    const ours = new Set([`${prefix.toUpperCase()}_TASKS`, `${prefix.toUpperCase()}_DEAD`]);
    const names: string[] = [];
    for await (const name of jsm.streams.names()) if (ours.has(name) || name.startsWith(`KV_${prefix}_`)) names.push(name);
    for (const name of names) await jsm.streams.delete(name).catch(() => false);
  } finally {
    await nc.close();
  }
}

async function streamMessages(url: string, stream: string): Promise<number> {
  const nc = await connect({ servers: url.slice('nats://'.length).split('?')[0]!.split(',') });
  try {
    return (await (await jetstreamManager(nc, { timeout: 10_000 })).streams.info(stream)).state.messages;
  } finally {
    await nc.close();
  }
}

async function withRedis<T>(body: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, retryStrategy: () => null, connectionName: 'fennel-bench-nats' });
  client.on('error', () => {});
  try {
    return await body(client);
  } finally {
    client.disconnect();
  }
}

const flushRedis = (): Promise<void> => withRedis(async (c) => void (await c.flushdb()));
const redisCpuSec = (): Promise<number> =>
  withRedis(async (c) => {
    const text = await c.info('cpu');
    const cpu = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN);
    return cpu('used_cpu_user') + cpu('used_cpu_sys');
  });

/** RabbitMQ's Erlang VM (beam.smp), if it runs on this machine and /proc shows it. */
function rabbitPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'beam.smp') pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

let runNumber = 0;

function target(engine: EngineId, nats: Record<'nats1' | 'nats3', NatsServers>): () => Promise<Target> {
  return async () => {
    const n = ++runNumber;
    if (engine === 'nats1' || engine === 'nats3') {
      const servers = nats[engine];
      const prefix = `b${n}`;
      const url = servers.url(prefix);
      return { broker: url, backend: url, queue: 'bench', serverPids: servers.pids, redisCpu: false, streamMessages: () => streamMessages(url, `${prefix.toUpperCase()}_TASKS`), cleanup: () => dropPrefix(url, prefix) };
    }
    await flushRedis();
    if (engine === 'redis') return { broker: REDIS_URL, backend: REDIS_URL, queue: 'bench', serverPids: () => [], redisCpu: true, cleanup: flushRedis };
    const queue = `fennel-nats-bench-${randomUUID().slice(0, 8)}`;
    const pids = rabbitPids();
    return {
      broker: AMQP_URL,
      backend: REDIS_URL,
      queue,
      serverPids: () => pids,
      redisCpu: true,
      cleanup: async () => {
        await deleteAmqp(AMQP_URL, [queue]);
        await flushRedis();
      },
    };
  };
}

// ---------------------------------------------------------------------------------------------------------
// Measuring

type Bench = ReturnType<typeof refsApp>;
type Leaf = Bench['leaf'];

function startFennelWorker(t: Target): Promise<WorkerProcess> {
  return startProcess({
    command: process.execPath,
    args: [FENNEL_BIN, 'worker', '--app', 'bench/refs-tasks.ts', '-P', 'async', '-c', String(CONCURRENCY), '--loglevel', 'warn'],
    env: { FENNEL_BROKER_URL: t.broker, FENNEL_RESULT_BACKEND: t.backend, FENNEL_DEFAULT_QUEUE: t.queue },
  });
}

async function withWorkers<T>(t: Target, count: number, body: (workers: WorkerProcess[]) => Promise<T>): Promise<T> {
  const started = await Promise.allSettled(Array.from({ length: count }, () => startFennelWorker(t)));
  const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  try {
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    // A worker that dies says why in its log (stdout, JSON), not on stderr: its last lines go with the error.
    const died = workers.map((w) => w.died.catch((error: unknown) => Promise.reject(new Error(`${(error as Error).message.split('\n')[0]} ${w.complaints.slice(-3).join(' | ').slice(0, 600)}`))));
    const out = await Promise.race([body(workers), ...died]);
    const complaints = workers.flatMap((w) => w.complaints);
    if (complaints.length) throw new Error(`the workers logged ${complaints.length} warning(s), e.g. ${complaints[0]}`);
    return out;
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

async function withTarget<T>(make: () => Promise<Target>, body: (t: Target, bench: Bench) => Promise<T>): Promise<T> {
  const t = await make();
  try {
    const bench = refsApp({ broker: t.broker, backend: t.backend, defaultQueue: t.queue });
    try {
      return await body(t, bench);
    } finally {
      await bench.app.close();
    }
  } finally {
    await t.cleanup().catch((error: unknown) => console.warn(`cleanup: ${(error as Error).message}`));
  }
}

const rate = (count: number, ms: number): Metric => ({ value: (count * 1000) / ms, unit: 'tasks/s' });
const msOf = (value: number): Metric => ({ value, unit: 'ms' });
const usPerTask = (sec: number, tasks: number): Metric => ({ value: (sec * 1e6) / tasks, unit: 'µs/task' });

function check(value: unknown, expected: number): void {
  if (value !== expected) throw new Error(`bench.leaf(${expected}) answered ${JSON.stringify(value)}`);
}

/**
 * `count` calls from `base`, published with delayMany in batches (each confirmed before the next), every result awaited
 * (get() called as soon as its batch is sent) and checked. With `window`, a batch is published only while at most
 * `window` tasks are awaited, counting it.
 */
async function endToEnd(leaf: Leaf, base: number, count: number, window = Number.POSITIVE_INFINITY, batch: number = NATS_SIZES.batch): Promise<void> {
  const gets: Array<Promise<void>> = [];
  let awaited = 0;
  let onDone: (() => void) | undefined;
  let failure: unknown;
  let fail: (error: unknown) => void = () => {};
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => {});
  for (let i = 0; i < count; i += batch) {
    const args = Array.from({ length: Math.min(batch, count - i) }, (_, j): [number] => [base + i + j]);
    if (failure !== undefined) break; // a get() failed: the pass fails with it (below), nothing more is sent
    while (awaited + args.length > window) await Promise.race([new Promise<void>((resolve) => (onDone = resolve)), failed]);
    const results = leaf.delayMany(args);
    await results[0]!.sent;
    awaited += args.length;
    results.forEach((r, j) => {
      const got = r.get({ timeoutMs: GET_TIMEOUT_MS }).then(
        (v) => {
          check(v, args[j]![0]);
          awaited--;
          onDone?.();
        },
        (error: unknown) => {
          if (failure === undefined) fail((failure = error));
          throw error;
        },
      );
      got.catch(() => {}); // handled by Promise.all below, or by `failed` if the loop is still sending
      gets.push(got);
    });
  }
  await Promise.race([Promise.all(gets), failed]);
}

/** CPU seconds from now to the call of the function returned: this process, the workers (main processes), the servers. */
async function startCost(t: Target, workers: readonly WorkerProcess[]): Promise<(tasks: number) => Promise<Record<string, Metric>>> {
  const producer0 = process.cpuUsage();
  const workers0 = workers.map((w) => processCpuSec(w.pid));
  const pids = t.serverPids();
  const servers0 = pids.map(processCpuSec);
  const redis0 = t.redisCpu ? await redisCpuSec() : 0;
  return async (tasks) => {
    const producer = process.cpuUsage(producer0);
    const workersSec = workers.reduce((sum, w, i) => sum + processCpuSec(w.pid) - workers0[i]!, 0);
    const serversSec = pids.reduce((sum, pid, i) => sum + processCpuSec(pid) - servers0[i]!, 0) + (t.redisCpu ? (await redisCpuSec()) - redis0 : 0);
    return {
      'producer CPU': usPerTask((producer.user + producer.system) / 1e6, tasks),
      'workers CPU': usPerTask(workersSec, tasks),
      'servers CPU': usPerTask(serversSec, tasks),
    };
  };
}

function scenario(kind: Kind, make: () => Promise<Target>): () => Promise<Record<string, Metric>> {
  const { tasks, warmup, batch, roundTrips } = NATS_SIZES;
  switch (kind) {
    case 'e2e-1':
    case 'e2e-2':
    case 'window-1':
    case 'window-2': {
      const windowed = kind.startsWith('window');
      const window = windowed ? NATS_SIZES.window : Number.POSITIVE_INFINITY;
      const size = windowed ? NATS_SIZES.windowBatch : NATS_SIZES.batch;
      return () =>
        withTarget(make, (t, { leaf }) =>
          withWorkers(t, kind.endsWith('1') ? 1 : 2, async (workers) => {
            await endToEnd(leaf, 0, warmup, window, size);
            const cost = await startCost(t, workers);
            const t0 = performance.now();
            await endToEnd(leaf, warmup, tasks, window, size);
            const elapsed = performance.now() - t0;
            return { rate: rate(tasks, elapsed), ...(await cost(tasks)) };
          }),
        );
    }
    case 'enqueue-single':
      return () =>
        withTarget(make, async (_t, { leaf }) => {
          for (let i = 0; i < warmup; i++) await leaf.delay(i).sent;
          const t0 = performance.now();
          for (let i = 0; i < tasks; i++) await leaf.delay(i).sent;
          return { rate: rate(tasks, performance.now() - t0) };
        });
    case 'enqueue-bulk':
      return () =>
        withTarget(make, async (_t, { leaf }) => {
          const bulk = async (count: number): Promise<void> => {
            for (let i = 0; i < count; i += batch) await leaf.delayMany(Array.from({ length: Math.min(batch, count - i) }, (_, j): [number] => [i + j]))[0]!.sent;
          };
          await bulk(warmup);
          const t0 = performance.now();
          await bulk(tasks);
          return { rate: rate(tasks, performance.now() - t0) };
        });
    case 'steps':
      // nats:// step by step: the queue filled (bulk enqueue), then drained by one worker with no one waiting (pull,
      // run, store, ack: the clock stops when the tasks stream is empty, every message acked after its outcome was
      // stored), then every stored result awaited at once by a fresh producer (get(): the process's one key-value
      // watch, and a read of each key, since these ids were not sent by this producer).
      return () =>
        withTarget(make, async (t, { leaf }) => {
          const count = NATS_SIZES.tasks / 2;
          const ids: string[] = [];
          for (let i = 0; i < count; i += batch) {
            const results = leaf.delayMany(Array.from({ length: Math.min(batch, count - i) }, (_, j): [number] => [i + j]));
            await results[0]!.sent;
            ids.push(...results.map((r) => r.id));
          }
          const drain = await withWorkers(t, 1, async (workers) => {
            // The worker takes its first messages before its "worker ready" line is read: the clock counts those left then.
            const cost = await startCost(t, workers);
            const t0 = performance.now();
            const left = await t.streamMessages!();
            while ((await t.streamMessages!()) > 0) await new Promise((r) => setTimeout(r, 20));
            const elapsed = performance.now() - t0;
            const c = await cost(left);
            return { 'drain rate': rate(left, elapsed), 'drain workers CPU': c['workers CPU']!, 'drain servers CPU': c['servers CPU']! };
          });
          const waiters = NATS_SIZES.window;
          const reader = refsApp({ broker: t.broker, backend: t.backend, defaultQueue: t.queue });
          try {
            const cost = await startCost(t, []);
            const t0 = performance.now();
            await Promise.all(ids.slice(0, waiters).map((id, i) => reader.app.asyncResult(id).get({ timeoutMs: GET_TIMEOUT_MS }).then((v) => check(v, i))));
            const elapsed = performance.now() - t0;
            const c = await cost(waiters);
            return { ...drain, 'wait rate': rate(waiters, elapsed), 'wait producer CPU': c['producer CPU']!, 'wait servers CPU': c['servers CPU']! };
          } finally {
            await reader.app.close();
          }
        });
    case 'latency':
      return () =>
        withTarget(make, (t, { leaf }) =>
          withWorkers(t, 1, async () => {
            for (let i = 0; i < warmup; i++) check(await leaf.delay(i).get({ timeoutMs: GET_TIMEOUT_MS }), i);
            const times: number[] = [];
            for (let i = 0; i < roundTrips; i++) {
              const t0 = performance.now();
              const value = await leaf.delay(i).get({ timeoutMs: GET_TIMEOUT_MS });
              times.push(performance.now() - t0);
              check(value, i);
            }
            return { p50: msOf(percentile(times, 50)), p99: msOf(percentile(times, 99)) };
          }),
        );
  }
}

// ---------------------------------------------------------------------------------------------------------
// The section

type Samples = Map<string, { unit: Metric['unit']; values: number[] }>;
/** Per kind and engine (`key(kind, engine, '')`): the first line of each run's error, for a run that failed twice. */
type Failures = Map<string, string[]>;
const key = (kind: Kind, engine: EngineId, metric: string): string => `${kind} ${engine} ${metric}`;

function fmt(value: number | undefined, unit: Metric['unit']): string {
  if (value === undefined || !Number.isFinite(value)) return '–';
  if (unit === 'ms') return value.toFixed(2);
  return Math.round(value).toLocaleString('en');
}

const TITLES: Record<Kind, string> = {
  'e2e-1': `end to end, 1 worker process (${NATS_SIZES.tasks.toLocaleString('en')} tasks)`,
  'e2e-2': `end to end, 2 worker processes (${NATS_SIZES.tasks.toLocaleString('en')} tasks)`,
  'window-1': `end to end, 1 worker process, batches of ${NATS_SIZES.windowBatch}, at most ${NATS_SIZES.window.toLocaleString('en')} tasks awaited at once (${NATS_SIZES.tasks.toLocaleString('en')})`,
  'window-2': `end to end, 2 worker processes, batches of ${NATS_SIZES.windowBatch}, at most ${NATS_SIZES.window.toLocaleString('en')} tasks awaited at once (${NATS_SIZES.tasks.toLocaleString('en')})`,
  'enqueue-single': `enqueue, one awaited \`delay(i).sent\` at a time (${NATS_SIZES.tasks.toLocaleString('en')})`,
  'enqueue-bulk': `enqueue, \`delayMany\` batches of ${NATS_SIZES.batch} (${NATS_SIZES.tasks.toLocaleString('en')})`,
  latency: `round trip, \`await delay(i).get()\` one at a time (${NATS_SIZES.roundTrips.toLocaleString('en')})`,
  steps: 'nats:// step by step',
};

const ROWS: Array<{ kind: Kind; metric: string; unit: Metric['unit'] }> = [
  { kind: 'e2e-1', metric: 'rate', unit: 'tasks/s' },
  { kind: 'e2e-2', metric: 'rate', unit: 'tasks/s' },
  { kind: 'window-1', metric: 'rate', unit: 'tasks/s' },
  { kind: 'window-2', metric: 'rate', unit: 'tasks/s' },
  { kind: 'enqueue-single', metric: 'rate', unit: 'tasks/s' },
  { kind: 'enqueue-bulk', metric: 'rate', unit: 'tasks/s' },
  { kind: 'latency', metric: 'p50', unit: 'ms' },
  { kind: 'latency', metric: 'p99', unit: 'ms' },
];

function tables(samples: Samples, failures: Failures): { main: string; cost: string; steps: string } {
  const med = (kind: Kind, engine: EngineId, metric: string): number | undefined => {
    const v = samples.get(key(kind, engine, metric))?.values;
    return v?.length ? median(v) : undefined;
  };
  const cell = (kind: Kind, engine: EngineId, metric: string, unit: Metric['unit']): string => {
    const v = samples.get(key(kind, engine, metric))?.values ?? [];
    const failed = failures.get(key(kind, engine, ''))?.length ?? 0;
    const note = failed ? `${v.length ? ', ' : ''}failed (twice in a round, then not run again; below)` : '';
    if (!v.length) return failed ? `**${note}**` : '–';
    return `**${fmt(median(v), unit)}**${v.length > 1 ? ` (${fmt(Math.min(...v), unit)}–${fmt(Math.max(...v), unit)})` : ''}${note}`;
  };
  const ratio = (kind: Kind, engine: EngineId, metric: string): string => {
    const a = med(kind, engine, metric);
    const b = med(kind, 'redis', metric);
    return a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}×` : '–';
  };
  const main = [
    `| Scenario | Metric | ${ENGINES.map((e) => ENGINE_NAMES[e]).join(' | ')} | NATS one node ÷ Redis | NATS R3 ÷ Redis | RabbitMQ ÷ Redis |`,
    `| --- | --- | ${ENGINES.map(() => '---:').join(' | ')} | ---: | ---: | ---: |`,
  ];
  for (const { kind, metric, unit } of ROWS) {
    main.push(`| ${TITLES[kind]} | ${metric === 'rate' ? 'tasks/s' : `${metric}, ms`} | ${ENGINES.map((e) => cell(kind, e, metric, unit)).join(' | ')} | ${ratio(kind, 'nats1', metric)} | ${ratio(kind, 'nats3', metric)} | ${ratio(kind, 'amqp', metric)} |`);
  }
  const cost = ['| Engine | workers | tasks/s | producer CPU, µs/task | workers CPU, µs/task | servers CPU, µs/task | total, µs/task | CPUs busy |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'];
  for (const engine of ENGINES) {
    for (const kind of ['e2e-1', 'e2e-2', 'window-1', 'window-2'] as const) {
      const r = med(kind, engine, 'rate');
      const parts = ['producer CPU', 'workers CPU', 'servers CPU'].map((m) => med(kind, engine, m));
      const total = parts.reduce<number>((s, x) => s + (x ?? NaN), 0);
      cost.push(`| ${ENGINE_NAMES[engine]} | ${kind.endsWith('1') ? 1 : 2}${kind.startsWith('window') ? `, ≤ ${NATS_SIZES.window.toLocaleString('en')} awaited` : ''} | ${fmt(r, 'tasks/s')} | ${parts.map((p) => fmt(p, 'µs/task')).join(' | ')} | ${fmt(total, 'µs/task')} | ${r !== undefined && Number.isFinite(total) ? ((total * r) / 1e6).toFixed(2) : '–'} |`);
    }
  }
  const steps = [
    `| Engine | drain: tasks/s, 1 worker, no one waiting | drain: worker CPU, µs/task | drain: server CPU, µs/task | wait: results/s, ${NATS_SIZES.window.toLocaleString('en')} stored results awaited at once | wait: producer CPU, µs/result | wait: server CPU, µs/result |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const engine of ['nats1', 'nats3'] as const) {
    const c = (metric: string, unit: Metric['unit']): string => cell('steps', engine, metric, unit);
    steps.push(`| ${ENGINE_NAMES[engine]} | ${c('drain rate', 'tasks/s')} | ${c('drain workers CPU', 'µs/task')} | ${c('drain servers CPU', 'µs/task')} | ${c('wait rate', 'tasks/s')} | ${c('wait producer CPU', 'µs/task')} | ${c('wait servers CPU', 'µs/task')} |`);
  }
  return { main: main.join('\n'), cost: cost.join('\n'), steps: steps.join('\n') };
}

function version(command: string, args: string[], pattern: RegExp): string {
  try {
    return pattern.exec(execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 }))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** A scenario's id for bench/run.ts's filters: `nats-<kind>-<engine>`, e.g. nats-e2e-1-nats1, nats-steps-nats3. */
const scenarioId = (kind: Kind, engine: EngineId): string => `nats-${kind}-${engine}`;

/** Every scenario id of the NATS part. */
export function natsScenarioIds(): string[] {
  return KINDS.flatMap((kind) => ENGINES.filter((engine) => runsKind(kind, engine)).map((engine) => scenarioId(kind, engine)));
}

/**
 * Runs the NATS part `runs` times and returns its BENCHMARKS.md section (also printed). With `only`, just the
 * scenarios whose id it accepts (bench/run.ts prints that run and writes nothing).
 */
export async function natsSection(runs = 3, only?: (id: string) => boolean): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const natsVersion = version('nats-server', ['--version'], /v(\d\S*)/);
  const redisVersion = await withRedis((c) => c.info('server')).then((text) => /redis_version:(\S+)/.exec(text)?.[1] ?? '?');
  const rabbitVersion = version('rabbitmqctl', ['status'], /RabbitMQ version: (\S+)/);
  const clientVersion = (JSON.parse(readFileSync(join(ROOT, 'node_modules/@nats-io/jetstream/package.json'), 'utf8')) as { version: string }).version;
  const started: NatsServers[] = [];
  const samples: Samples = new Map();
  const retried: string[] = [];
  const failures: Failures = new Map();
  try {
    const nats1 = await startNatsServers(1);
    started.push(nats1);
    const nats3 = await startNatsServers(3);
    started.push(nats3);
    const nats = { nats1, nats3 };
    for (let round = 0; round < runs; round++) {
      const engines = [...ENGINES.slice(round % ENGINES.length), ...ENGINES.slice(0, round % ENGINES.length)];
      for (const kind of KINDS) {
        for (const engine of engines.filter((e) => runsKind(kind, e) && (!only || only(scenarioId(kind, e))))) {
          // A scenario that failed twice in a round is not run again (each failure costs its timeouts twice over).
          if (failures.has(key(kind, engine, ''))) {
            console.warn(`nats ${kind} ${engine} run ${round + 1}: skipped (failed twice before)`);
            continue;
          }
          const run = scenario(kind, target(engine, nats));
          const t0 = performance.now();
          let metrics: Record<string, Metric>;
          const firstLine = (error: unknown): string => String((error as Error)?.message ?? error).split('\n')[0]!;
          try {
            metrics = await run();
          } catch (error) {
            console.warn(`nats ${kind} ${engine} run ${round + 1} failed, retrying once: ${firstLine(error)}`);
            retried.push(`${kind} ${engine} (round ${round + 1}): ${firstLine(error)}`);
            try {
              metrics = await run();
            } catch (again) {
              // A second failure is recorded in the section (the cell says so), and the benchmark goes on.
              console.warn(`nats ${kind} ${engine} run ${round + 1} failed again: ${firstLine(again)}`);
              const k = key(kind, engine, '');
              failures.set(k, [...(failures.get(k) ?? []), `${firstLine(again)} (${((performance.now() - t0) / 1000).toFixed(0)} s for both attempts)`]);
              continue;
            }
          }
          for (const [name, m] of Object.entries(metrics)) {
            const k = key(kind, engine, name);
            const entry = samples.get(k) ?? { unit: m.unit, values: [] };
            entry.values.push(m.value);
            samples.set(k, entry);
          }
          console.log(`nats ${kind} ${engine} run ${round + 1}/${runs}: ${Object.entries(metrics).map(([n, m]) => `${n} ${fmt(m.value, m.unit)} ${m.unit}`).join(', ')} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
        }
      }
    }
  } finally {
    for (const s of started) await s.stop();
  }
  const load1 = loadavg();
  const { main, cost, steps } = tables(samples, failures);
  const failureLines = [...failures].map(([k, reasons]) => `- ${k.trim()}: ${reasons.map((r) => `\`${r}\``).join('; ')}`);
  const e2e = (kind: Kind): number => median(samples.get(key(kind, 'nats1', 'rate'))?.values ?? []);
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const verdict = (v: number): string => (v >= AIM_E2E ? '**met**' : '**not met**');
  const section = `## NATS JetStream: Fennel on nats://, beside Redis and RabbitMQ

Issue #20. Fennel on NATS JetStream (nats-server ${natsVersion}, @nats-io/jetstream ${clientVersion}) on one private node and on a
private three-node cluster with \`?replicas=3\` (both started by the benchmark on loopback, free ports, stores in temp
dirs), beside Fennel on the shared Redis ${redisVersion} (\`${REDIS_URL}\`, flushed before and after each run) and on
the shared RabbitMQ ${rabbitVersion} (results in the same Redis database; a queue of its own per run, deleted after it),
measured in the same run with the same task, the same warm-up and the same clock. The task is \`bench.leaf\` of
bench/refs-tasks.ts, \`(i) => i\`: a no-op that takes one argument and returns it; every value that comes back is
checked. Workers are \`fennel worker --app bench/refs-tasks.ts -P async -c ${CONCURRENCY} --loglevel warn\` processes (the
configuration of the Redis and RabbitMQ parts' Fennel rows), run as users run them (bin/fennel.js, the built
package), with the broker and result backend from FENNEL_BROKER_URL and FENNEL_RESULT_BACKEND: on nats:// the
result backend is the broker's URL (results in JetStream key-value). Each NATS run has a \`prefix\` of its own
(fresh streams and buckets, deleted after it). ${runs} runs, in rounds (every scenario once, then again; the engines'
order turning each round); cells give the median (min–max).

- Command: \`npm run bench -- nats\` (bench/nats.bench.ts), under \`flock /tmp/fennel-bench.lock\`
- Machine: ${availableParallelism()} CPUs (nproc), ${cpuModel()}, Node ${process.version}, ${process.platform} ${process.arch}; load average ${load(load0)} at the start and ${load(load1)} at the end (1, 5, 15 min); the machine is shared (other test runs may use it), and on ${availableParallelism()} CPUs the R3 cluster's three servers, the workers and the producer share them
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${commit()}
- Runs that failed and were run again: ${retried.length ? retried.map((r) => `\`${r}\``).join('; ') : 'none'}
- Scenarios that failed twice in a round (no figure; not run in later rounds; the benchmark went on): ${failureLines.length ? `\n${failureLines.map((l) => `  ${l}`).join('\n')}` : 'none'}

${main}

Ratios are of medians: for rates, above 1 means faster than Redis; for round trips, below 1 means faster.

### Aim

- One node, end to end ≥ ${AIM_E2E.toLocaleString('en')} no-op tasks/s: ${(['e2e-1', 'e2e-2', 'window-1', 'window-2'] as const).map((k) => `${TITLES[k].replace(/ \(.*\)$/, '')}: ${fmt(e2e(k), 'tasks/s')}, ${verdict(e2e(k))}`).join('; ')}.

### What one task costs, end to end

CPU time over the timed pass, per task: this (producer) process's (\`process.cpuUsage()\`), the worker processes'
(\`/proc/<pid>/stat\`) and the servers': the NATS nodes' (\`/proc\`), Redis's (\`INFO cpu\`, server-wide: anything else
using it then counts too), and for RabbitMQ its Erlang VM's (\`beam.smp\`, \`/proc\`) plus Redis's for the results.
*CPUs busy* is the total × the rate: near ${availableParallelism()} (the machine's CPUs), the run is CPU-bound.

${cost}

### nats:// step by step

The steps of an end-to-end pass apart, on the same servers in the same rounds: ${(NATS_SIZES.tasks / 2).toLocaleString('en')} tasks enqueued in
batches (no worker running), then **drained** by one worker with no producer waiting (pull, run, store the result,
ack; the clock starts once the worker is ready, over the messages still in the tasks stream then, and stops when the
stream is empty: WorkQueue retention deletes a message when its ack is applied, and a message is acked after its
outcome is stored), then the first ${NATS_SIZES.window.toLocaleString('en')} of their stored results **awaited** at once by a
fresh producer (\`app.asyncResult(id).get()\` on each: on nats:// the process's one key-value watch of every
result key, and one read of each awaited key, as these ids were not sent by this producer). CPU per task or per
result as above.

${steps}

### How each number is taken

- **warm-up**: before every measurement, ${NATS_SIZES.warmup.toLocaleString('en')} untimed operations of the same kind on the same producer and
  workers (end to end: ${NATS_SIZES.warmup.toLocaleString('en')} tasks through the running workers; round trips: ${NATS_SIZES.warmup.toLocaleString('en')} round trips; enqueue: ${NATS_SIZES.warmup.toLocaleString('en')} enqueues).
- **end to end**: the workers are started and ready; the clock runs from the first \`delayMany\` (batches of ${NATS_SIZES.batch}, each
  batch's \`sent\` awaited before the next is published, \`get()\` called on each result as soon as its batch is sent)
  until every \`get()\` has resolved (on nats://, \`get()\` waits by the process's one key-value watch of every result
  key, with no read for the ids it sent while the watch was up; on Redis, by pub/sub). *At most ${NATS_SIZES.window.toLocaleString('en')} awaited at once*: the same in batches of ${NATS_SIZES.windowBatch}, but a batch is published only while at most
  ${NATS_SIZES.window.toLocaleString('en')} tasks, counting it, are awaited (a producer with a bounded window, as a service that must not queue
  without limit has).
- **enqueue**: no worker running; \`await leaf.delay(i).sent\` one at a time (on nats://, resolved on the stream's
  PubAck), or \`await leaf.delayMany(batch)[0].sent\` per batch of ${NATS_SIZES.batch} (every message of the batch sent, then the acks awaited).
- **round trip**: one worker; \`await leaf.delay(i).get()\` one at a time; p50 and p99 of one run's ${NATS_SIZES.roundTrips.toLocaleString('en')}.`;
  console.log(`\n${section}\n`);
  return section;
}
