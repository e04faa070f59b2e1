// Actor method calls (issue #18), one section of BENCHMARKS.md (`npm run bench -- actors`): what one call of a
// remote object's method costs, Fennel's actors on each engine against Pyro4 on this machine (Debian's python3-pyro4),
// the same Counter (bench/actors-tasks.ts and bench/peers/pyro4_actor.py: incr(k) returns the new count, get() the
// count, echo(x) its argument) and the same calls:
//
//   round trip   `await c.echo(i)` one after another: WARMUP untimed, then ROUND_TRIPS timed; p50 and p99 of a run
//   in flight    IN_FLIGHT_CALLS × incr(1) with CONCURRENCY calls in flight: CONCURRENCY lanes, each awaiting its call
//                before it sends the next (Fennel `await c.incr.async(1)`; Pyro4 a thread with a proxy, so a TCP
//                connection, of its own per lane, `proxy.incr(1)`), after WARMUP untimed calls the same way; calls/s.
//                The actor runs them one at a time either way (Fennel: maxConcurrency 1; Pyro4: a lock).
//   oneway       ONEWAY_CALLS × incr(1) fire-and-forget (Fennel `c.incr.oneway(1)`, Pyro4 an @oneway method), then
//                get() until it returns them all applied; calls/s over that whole time, after WARMUP untimed the same way
//
// Fennel: per run, a fresh broker (SQLite: a temp file; Redis: database 15 flushed; RabbitMQ: the broker, with Redis
// database 15, flushed, as the result backend, since actors keep their name server in the result backend), one host
// worker `node bin/fennel.js worker --app bench/actors-tasks.ts -P async -c 4 --actors` (compiled, as users run it),
// one Counter created on it, and the caller in this process through the built package. Pyro4: per run, one daemon
// (`python3 pyro4_actor.py serve <port> thread|multiplex`) and a client process (`... client <uri> ...`) timing
// inside Python. Runs are rounds (every configuration once, then again; the order turns each round), so a busy minute
// on the shared machine is spread over all of them. After its measurements, each Fennel run also runs diagnostics
// (not in the main table): the same echo as an actor call and as a plain task (`bench.echo`, on the same worker), in
// alternating blocks, with CPU per call of the caller, the host worker and Redis and Redis's commands (INFO, server-wide),
// then, on Redis and RabbitMQ, a census of the commands one call and one task send to Redis (MONITOR, database 15 only).

import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { Redis } from 'ioredis';
import { actorsApp } from './actors-tasks.ts';
import { AMQP_URL } from './amqp.bench.ts';
import { flush, REDIS_URL, redisCounters } from './redis.bench.ts';
import { CELERY_PYTHON, commit, cpuModel, deleteAmqp, FENNEL_BIN, median, percentile, processCpuSec, ROOT, runProcess, startProcess, tempDatabase, type WorkerProcess } from './support.ts';

const scale = Number(process.env['FENNEL_BENCH_ACTORS_SCALE'] || 1);
/** Untimed calls before each measurement, the same for every configuration. */
const WARMUP = 200;
const ROUND_TRIPS = Math.round(2000 * scale);
const CONCURRENCY = 100;
const IN_FLIGHT_CALLS = Math.round(2000 * scale);
const ONEWAY_CALLS = Math.round(2000 * scale);
const TIMEOUT_MS = 120_000;
/** Diagnostics (Fennel): DIAG_BLOCKS × (DIAG_BLOCK actor calls, then DIAG_BLOCK plain tasks); CENSUS_CALLS of each under MONITOR. */
const DIAG_BLOCKS = 2;
const DIAG_BLOCK = Math.round(500 * scale);
const CENSUS_CALLS = 100;
const WORKER_ARGS = ['worker', '--app', 'bench/actors-tasks.ts', '-P', 'async', '-c', '4', '--actors', '--loglevel', 'warn'];
const PEERS_DIR = join(ROOT, 'bench', 'peers');

type Engine = 'sqlite' | 'redis' | 'amqp';
type PyroServer = 'thread' | 'multiplex';
type Config = Engine | `pyro-${PyroServer}`;
const CONFIGS: readonly Config[] = ['sqlite', 'redis', 'amqp', 'pyro-thread', 'pyro-multiplex'];
const TITLES: Record<Config, string> = {
  sqlite: 'Fennel, SQLite (temp file)',
  redis: 'Fennel, Redis',
  amqp: 'Fennel, RabbitMQ (+ Redis results)',
  'pyro-thread': 'Pyro4, `thread` server (its default)',
  'pyro-multiplex': 'Pyro4, `multiplex` server',
};

/** Per call, over the round-trip phase. */
interface Cost {
  callerCpuUs: number;
  workerCpuUs: number;
  /** NaN on SQLite. */
  redisCpuUs: number;
  redisCommands: number;
}

/** What one run of one configuration measured. */
interface Sample {
  p50: number;
  p99: number;
  inFlightPerSec: number;
  onewayPerSec: number;
  /** get() calls until the oneway calls were all applied (1: the first get() saw them all). */
  onewayPolls: number;
  /** Fennel only, from the diagnostic blocks (actor calls and plain tasks, alternating, all warm): p50s and costs. */
  callP50?: number;
  taskP50?: number;
  callCost?: Cost | undefined;
  taskCost?: Cost | undefined;
  /** Fennel on Redis and RabbitMQ: Redis commands per call on database 15 (MONITOR), by command and key. */
  callCensus?: Map<string, number>;
  taskCensus?: Map<string, number>;
}

const perSec = (count: number, ms: number): number => (count * 1000) / ms;

// ---------------------------------------------------------------------------------------------------------
// Fennel

/** Counts CPU (this process, the worker, Redis) and Redis commands from now; the function returned gives them per call. */
async function startCost(engine: Engine, worker: WorkerProcess): Promise<(calls: number) => Promise<Cost>> {
  const usesRedis = engine !== 'sqlite';
  const redisBefore = usesRedis ? await redisCounters() : undefined;
  const workerBefore = processCpuSec(worker.pid);
  const callerBefore = process.cpuUsage();
  return async (calls) => {
    const caller = process.cpuUsage(callerBefore);
    const workerSec = processCpuSec(worker.pid) - workerBefore;
    let redisCpuUs = NaN;
    let redisCommands = NaN;
    if (redisBefore) {
      const after = await redisCounters();
      redisCommands = 0;
      for (const [name, n] of after.calls) {
        const delta = n - (redisBefore.calls.get(name) ?? 0);
        // The INFO call that reads the counters is not the call's.
        if (delta > 0 && name !== 'info') redisCommands += delta / calls;
      }
      redisCpuUs = ((after.cpuSec - redisBefore.cpuSec) * 1e6) / calls;
    }
    return { callerCpuUs: (caller.user + caller.system) / calls, workerCpuUs: (workerSec * 1e6) / calls, redisCpuUs, redisCommands };
  };
}

/** Adds two costs (of two blocks of `a` and `b` calls), per call of both. */
function addCosts(x: Cost, a: number, y: Cost, b: number): Cost {
  const mix = (f: (c: Cost) => number): number => (f(x) * a + f(y) * b) / (a + b);
  return { callerCpuUs: mix((c) => c.callerCpuUs), workerCpuUs: mix((c) => c.workerCpuUs), redisCpuUs: mix((c) => c.redisCpuUs), redisCommands: mix((c) => c.redisCommands) };
}

/** A command as the census names it: its name (lowercase), and its first key with ids replaced; `lua:` inside a script. */
function commandKey(args: readonly string[], source: string): string {
  const name = String(args[0]).toLowerCase();
  const key = /^(multi|exec|evalsha|eval|select|client|info|ping)$/.test(name) || args[1] === undefined ? '' : ` ${String(args[1])}`;
  const normal = key
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<id>')
    .replace(/bench-actors-[0-9a-f]{8}@bench/g, '<node>')
    .replace(/bench-actors-[0-9a-f]{8}/g, '<queue>')
    // A queue's priority lists (`<queue>\x06\x16<n>`, as MONITOR prints them) are counted as the queue.
    .replace(/(\\x06\\x16\d|\x06\x16\d)/g, '');
  return `${source === 'lua' ? 'lua: ' : ''}${name.toUpperCase()}${normal}`;
}

/** Runs `body` with MONITOR on and returns the commands run on REDIS_URL's database per call, by commandKey(). */
async function census(calls: number, body: () => Promise<void>): Promise<Map<string, number>> {
  const db = new URL(REDIS_URL).pathname.slice(1) || '0';
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, retryStrategy: () => null, connectionName: 'fennel-bench-monitor' });
  client.on('error', () => {});
  const counts = new Map<string, number>();
  const monitor = await client.monitor();
  monitor.on('error', () => {});
  monitor.on('monitor', (_time: string, args: string[], source: string, database: string) => {
    if (database !== db) return;
    const key = commandKey(args, source);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 100));
    counts.clear();
    await body();
    await new Promise((resolve) => setTimeout(resolve, 100)); // the last commands' lines
  } finally {
    monitor.disconnect();
    client.disconnect();
  }
  return new Map([...counts].map(([key, n]) => [key, n / calls]));
}

/** `lanes` concurrent loops, each running `call()` and awaiting it before the next, until `count` calls have run. */
async function lanes(count: number, width: number, call: () => PromiseLike<unknown>): Promise<void> {
  let ticket = 0;
  const lane = async (): Promise<void> => {
    while (ticket++ < count) await call();
  };
  await Promise.all(Array.from({ length: width }, lane));
}

async function fennelRun(engine: Engine): Promise<Sample> {
  const id = randomUUID().slice(0, 8);
  const node = `bench-actors-${id}@bench`;
  const queue = `bench-actors-${id}`;
  const db = engine === 'sqlite' ? tempDatabase() : undefined;
  const broker = db?.url ?? (engine === 'redis' ? REDIS_URL : AMQP_URL);
  const backend = engine === 'amqp' ? REDIS_URL : undefined;
  if (engine !== 'sqlite') await flush();
  let worker: WorkerProcess | undefined;
  let actorQueue: string | undefined;
  const { app, counter, echo } = actorsApp({ broker, ...(backend ? { backend } : {}) });
  try {
    worker = await startProcess({ command: process.execPath, args: [FENNEL_BIN, ...WORKER_ARGS, '-n', node, '-Q', queue], env: { FENNEL_BROKER_URL: broker, FENNEL_RESULT_BACKEND: backend ?? '' } });
    const host = worker;
    const work = async (): Promise<Sample> => {
      const c = await counter.create({ worker: node, timeoutMs: 30_000 });
      actorQueue = `fennel.actor.${c.id}`;

      // Round trips of a call.
      for (let i = 0; i < WARMUP; i++) await c.echo(i);
      const rtt: number[] = [];
      for (let i = 0; i < ROUND_TRIPS; i++) {
        const t0 = performance.now();
        const value = await c.echo(i);
        rtt.push(performance.now() - t0);
        if (value !== i) throw new Error(`echo(${i}) returned ${JSON.stringify(value)}`);
      }

      // Calls in flight.
      await lanes(WARMUP, CONCURRENCY, () => c.incr.async(1));
      let before = await c.get();
      let t0 = performance.now();
      await lanes(IN_FLIGHT_CALLS, CONCURRENCY, () => c.incr.async(1));
      const inFlightMs = performance.now() - t0;
      const counted = (await c.get()) - before;
      if (counted !== IN_FLIGHT_CALLS) throw new Error(`after ${IN_FLIGHT_CALLS} incr(1) in flight the count grew by ${counted}`);

      // Oneway calls, until applied.
      const oneway = async (count: number): Promise<{ ms: number; polls: number }> => {
        before = await c.get();
        t0 = performance.now();
        for (let i = 0; i < count; i++) c.incr.oneway(1);
        let polls = 0;
        for (;;) {
          polls++;
          const now = await c.get();
          if (now === before + count) break;
          if (now > before + count || performance.now() - t0 > TIMEOUT_MS) throw new Error(`after ${count} oneway incr(1) the count grew by ${now - before}`);
        }
        return { ms: performance.now() - t0, polls };
      };
      await oneway(WARMUP);
      const ow = await oneway(ONEWAY_CALLS);

      // Diagnostics, after the measurements above (so all of it is warm): the same echo as an actor call and as a
      // plain task on the same worker, in alternating blocks, with what each costs; then a census of Redis's commands.
      const blocks: Record<'call' | 'task', { rtt: number[]; cost: Cost | undefined }> = { call: { rtt: [], cost: undefined }, task: { rtt: [], cost: undefined } };
      const viaActor = (i: number): Promise<unknown> => c.echo(i);
      const viaTask = (i: number): Promise<unknown> => echo.applyAsync([i], { queue }).get({ timeoutMs: TIMEOUT_MS });
      for (let i = 0; i < WARMUP; i++) await viaTask(i);
      for (let b = 0; b < DIAG_BLOCKS; b++) {
        for (const kind of ['call', 'task'] as const) {
          const block = blocks[kind];
          const costOf = await startCost(engine, host);
          for (let i = 0; i < DIAG_BLOCK; i++) {
            const t1 = performance.now();
            await (kind === 'call' ? viaActor : viaTask)(i);
            block.rtt.push(performance.now() - t1);
          }
          const cost = await costOf(DIAG_BLOCK);
          block.cost = block.cost ? addCosts(block.cost, b * DIAG_BLOCK, cost, DIAG_BLOCK) : cost;
        }
      }
      let callCensus: Map<string, number> | undefined;
      let taskCensus: Map<string, number> | undefined;
      if (engine !== 'sqlite') {
        callCensus = await census(CENSUS_CALLS, async () => {
          for (let i = 0; i < CENSUS_CALLS; i++) await viaActor(i);
        });
        taskCensus = await census(CENSUS_CALLS, async () => {
          for (let i = 0; i < CENSUS_CALLS; i++) await viaTask(i);
        });
      }

      await c.destroy();
      return {
        p50: percentile(rtt, 50),
        p99: percentile(rtt, 99),
        inFlightPerSec: perSec(IN_FLIGHT_CALLS, inFlightMs),
        onewayPerSec: perSec(ONEWAY_CALLS, ow.ms),
        onewayPolls: ow.polls,
        callP50: percentile(blocks.call.rtt, 50),
        taskP50: percentile(blocks.task.rtt, 50),
        callCost: blocks.call.cost,
        taskCost: blocks.task.cost,
        ...(callCensus ? { callCensus } : {}),
        ...(taskCensus ? { taskCensus } : {}),
      };
    };
    const sample = await Promise.race([work(), host.died]);
    if (host.complaints.length) {
      const first = host.complaints[0]!;
      let text = first;
      try {
        const { msg } = JSON.parse(first) as { msg?: unknown };
        if (typeof msg === 'string') text = msg;
      } catch {
        // Not JSON: the line as it is.
      }
      throw new Error(`the host worker logged ${host.complaints.length} warning(s), the first: ${text}`);
    }
    return sample;
  } finally {
    await app.close().catch(() => {});
    await worker?.stop();
    if (engine === 'amqp') await deleteAmqp(AMQP_URL, [queue, `${node}.dq2`, ...(actorQueue ? [actorQueue] : [])]);
    if (engine !== 'sqlite') await flush();
    db?.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pyro4

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const PYRO_ENV = { PYTHONDONTWRITEBYTECODE: '1' };

async function pyroRun(server: PyroServer): Promise<Sample> {
  const port = await freePort();
  const daemon = await startProcess({ command: CELERY_PYTHON, args: ['pyro4_actor.py', 'serve', String(port), server], cwd: PEERS_DIR, env: PYRO_ENV });
  try {
    const uri = `PYRO:bench.counter@127.0.0.1:${port}`;
    const client = runProcess(CELERY_PYTHON, ['pyro4_actor.py', 'client', uri, String(ROUND_TRIPS), String(WARMUP), String(IN_FLIGHT_CALLS), String(CONCURRENCY), String(ONEWAY_CALLS)], { cwd: PEERS_DIR, env: PYRO_ENV, timeoutMs: 300_000 });
    const stdout = await Promise.race([client, daemon.died]);
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as { rtt_ms: number[]; inflight_sec: number; oneway_sec: number; oneway_polls: number };
    if (out.rtt_ms.length !== ROUND_TRIPS) throw new Error(`pyro4_actor.py returned ${out.rtt_ms.length} round trips, not ${ROUND_TRIPS}`);
    return {
      p50: percentile(out.rtt_ms, 50),
      p99: percentile(out.rtt_ms, 99),
      inFlightPerSec: IN_FLIGHT_CALLS / out.inflight_sec,
      onewayPerSec: ONEWAY_CALLS / out.oneway_sec,
      onewayPolls: out.oneway_polls,
    };
  } finally {
    await daemon.stop(2000);
  }
}

const runOnce = (config: Config): Promise<Sample> => (config === 'pyro-thread' ? pyroRun('thread') : config === 'pyro-multiplex' ? pyroRun('multiplex') : fennelRun(config));

// ---------------------------------------------------------------------------------------------------------
// Versions

async function versions(): Promise<{ python: string; pyro4: string; redis: string; rabbitmq: string }> {
  const py = await runProcess(CELERY_PYTHON, ['-c', 'import sys, Pyro4; print(sys.version.split()[0], Pyro4.__version__)'], { timeoutMs: 30_000 }).catch((error: unknown) => {
    throw new Error(`${CELERY_PYTHON} cannot import Pyro4 (apt-get install python3-pyro4): ${String((error as Error).message).split('\n').at(-2) ?? ''}`);
  });
  const [python = '?', pyro4 = '?'] = py.trim().split(' ');
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, retryStrategy: () => null, connectionName: 'fennel-bench' });
  client.on('error', () => {});
  const redis = await client.info('server').then(
    (text) => /redis_version:(\S+)/.exec(text)?.[1] ?? '?',
    (error: unknown) => {
      throw new Error(`Redis is not reachable at ${REDIS_URL}: ${(error as Error).message}`);
    },
  ).finally(() => client.disconnect());
  let rabbitmq = '?';
  const connection = await connect(AMQP_URL);
  try {
    const properties = (connection as unknown as { connection?: { serverProperties?: { version?: string } } }).connection?.serverProperties;
    rabbitmq = properties?.version ?? '?';
  } finally {
    await connection.close().catch(() => {});
  }
  return { python, pyro4, redis, rabbitmq };
}

// ---------------------------------------------------------------------------------------------------------
// The section

const fmtMs = (value: number): string => (Number.isFinite(value) ? value.toFixed(2) : '–');
const fmtRate = (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString('en') : '–');
const fmtUs = (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString('en') : '–');

function cell(values: readonly number[], fmt: (v: number) => string, bold = true): string {
  if (values.length === 0) return '–';
  const m = fmt(median(values));
  return `${bold ? `**${m}**` : m}${values.length > 1 ? ` (${fmt(Math.min(...values))}–${fmt(Math.max(...values))})` : ''}`;
}

function costRows(samples: Map<Config, Sample[]>, engines: readonly Engine[]): string[] {
  const rows: string[] = [];
  for (const engine of engines) {
    const runs = samples.get(engine) ?? [];
    if (!runs.length) continue;
    for (const [what, pick, p50] of [
      ['actor call `await c.echo(i)`', (s: Sample) => s.callCost, (s: Sample) => s.callP50 ?? NaN],
      ['plain task `await echo.applyAsync([i], { queue }).get()`', (s: Sample) => s.taskCost, (s: Sample) => s.taskP50 ?? NaN],
    ] as const) {
      const costs = runs.map(pick).filter((c): c is Cost => c !== undefined);
      const m = (f: (c: Cost) => number): string => fmtUs(median(costs.map(f)));
      const commands = median(costs.map((c) => c.redisCommands));
      rows.push(`| ${TITLES[engine]} | ${what} | ${fmtMs(median(runs.map(p50)))} | ${m((c) => c.callerCpuUs)} | ${m((c) => c.workerCpuUs)} | ${m((c) => c.redisCpuUs)} | ${Number.isFinite(commands) ? commands.toFixed(1) : '–'} |`);
    }
  }
  return rows;
}

/** The census: Redis commands per call on the bench database, by command and key, medians over the runs. */
function censusTable(samples: Map<Config, Sample[]>, engines: readonly Engine[]): string {
  const columns = engines.flatMap((engine) =>
    (['call', 'task'] as const).map((kind) => ({
      title: `${engine === 'redis' ? 'Redis' : 'RabbitMQ'}: ${kind === 'call' ? 'actor call' : 'plain task'}`,
      maps: (samples.get(engine) ?? []).map((s) => (kind === 'call' ? s.callCensus : s.taskCensus)).filter((m): m is Map<string, number> => m !== undefined),
    })),
  );
  const keys = new Set<string>();
  for (const column of columns) for (const map of column.maps) for (const key of map.keys()) keys.add(key);
  const value = (column: (typeof columns)[number], key: string): number => (column.maps.length ? median(column.maps.map((m) => m.get(key) ?? 0)) : NaN);
  const shown = [...keys].filter((key) => columns.some((column) => value(column, key) >= 0.05));
  // In the order a call meets them: by the first column, then by name.
  shown.sort((a, b) => value(columns[0]!, b) - value(columns[0]!, a) || a.localeCompare(b));
  const total = (column: (typeof columns)[number], lua: boolean): string => {
    const sum = column.maps.length ? median(column.maps.map((m) => [...m].reduce((acc, [key, n]) => acc + (key.startsWith('lua: ') === lua ? n : 0), 0))) : NaN;
    return Number.isFinite(sum) ? sum.toFixed(1) : '–';
  };
  const lines = [`| command, key | ${columns.map((c) => c.title).join(' | ')} |`, `| --- | ${columns.map(() => '---:').join(' | ')} |`];
  for (const key of shown) lines.push(`| \`${key}\` | ${columns.map((c) => { const v = value(c, key); return Number.isFinite(v) && v >= 0.005 ? v.toFixed(2) : ''; }).join(' | ')} |`);
  lines.push(`| **commands sent by clients** | ${columns.map((c) => `**${total(c, false)}**`).join(' | ')} |`);
  lines.push(`| commands run inside scripts (\`lua:\`) | ${columns.map((c) => total(c, true)).join(' | ')} |`);
  return lines.join('\n');
}

export async function actorsSection(runs = 3): Promise<string> {
  const startedAt = new Date();
  const sha = commit();
  const load0 = loadavg();
  const v = await versions();
  const samples = new Map<Config, Sample[]>();
  const retried: string[] = [];
  for (let round = 0; round < runs; round++) {
    const order = [...CONFIGS.slice(round % CONFIGS.length), ...CONFIGS.slice(0, round % CONFIGS.length)];
    for (const config of order) {
      const t0 = performance.now();
      let sample: Sample;
      try {
        sample = await runOnce(config);
      } catch (error) {
        // One failed run (a hiccup on a shared machine) is retried once and named in the document; a second failure stops.
        const first = String((error as Error).message ?? error).split('\n')[0]!;
        console.error(`actors: ${config} run ${round + 1} failed, retrying once: ${first}`);
        retried.push(`${config} (round ${round + 1}): ${first}`);
        sample = await runOnce(config);
      }
      samples.set(config, [...(samples.get(config) ?? []), sample]);
      console.error(
        `actors: ${config} run ${round + 1}/${runs}: p50 ${fmtMs(sample.p50)} ms, p99 ${fmtMs(sample.p99)} ms, ${fmtRate(sample.inFlightPerSec)} calls/s in flight, ${fmtRate(sample.onewayPerSec)} oneway calls/s (${sample.onewayPolls} get)${sample.taskP50 !== undefined ? `; diagnostics: call p50 ${fmtMs(sample.callP50!)} ms, plain task p50 ${fmtMs(sample.taskP50)} ms` : ''} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
  }
  const load1 = loadavg();

  const of = (config: Config, pick: (s: Sample) => number): number[] => (samples.get(config) ?? []).map(pick);
  const rows = CONFIGS.map(
    (config) =>
      `| ${TITLES[config]} | ${cell(of(config, (s) => s.p50), fmtMs)} | ${cell(of(config, (s) => s.p99), fmtMs, false)} | ${cell(of(config, (s) => s.inFlightPerSec), fmtRate)} | ${cell(of(config, (s) => s.onewayPerSec), fmtRate)} |`,
  );
  const pyro = (pick: (s: Sample) => number): number => median(of('pyro-thread', pick));
  const ratioLines = (['sqlite', 'redis', 'amqp'] as const).map((engine) => {
    const m = (pick: (s: Sample) => number): number => median(of(engine, pick));
    const x = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(1)}×` : '–');
    return `| ${TITLES[engine]} | ${x(m((s) => s.p50), pyro((s) => s.p50))} | ${x(pyro((s) => s.inFlightPerSec), m((s) => s.inFlightPerSec))} | ${x(pyro((s) => s.onewayPerSec), m((s) => s.onewayPerSec))} |`;
  });
  const polls = CONFIGS.map((config) => `${TITLES[config].replace(/`/g, '')}: ${of(config, (s) => s.onewayPolls).join(', ')}`).join('; ');
  const fennelEngines = ['sqlite', 'redis', 'amqp'] as const;

  return `## Actors: method calls, Fennel vs Pyro4

Issue #18. One call of a remote object's method: Fennel's actors on each engine against Pyro4 on this machine,
the same Counter (\`incr(k)\` returns the new count, \`get()\` the count, \`echo(x)\` its argument:
bench/actors-tasks.ts, bench/peers/pyro4_actor.py) and the same calls. Fennel: one host worker,
\`node bin/fennel.js worker --app bench/actors-tasks.ts -P async -c 4 --actors\` (compiled, as users run it), one
\`single\` Counter on it with \`maxConcurrency\` 1 (the defaults: one call at a time, in arrival order), no
\`snapshot()\`; the caller is this process, through the built package. Pyro4 ${v.pyro4} (Python ${v.python}): one daemon, one
\`single\`-mode Counter whose methods take a lock (so it too runs one call at a time), its default \`thread\` server
(a thread per client connection, the pool raised from 40 to 200 threads so that the 100 connections below are all
served) and its \`multiplex\` server (one thread, \`select()\`), the serpent serializer (its default); the client is
a Python process. Every configuration gets the same warm-up: ${WARMUP} untimed calls of the same kind before each
measurement. ${runs} runs, in rounds (every configuration once, then again; the order turns each round); each run
has its own broker state (a temp SQLite file, Redis database 15 flushed), host worker or daemon, and Counter.
Cells: median of the runs (min–max).

- Command: \`npm run bench -- actors\` (bench/actors.bench.ts, bench/actors-tasks.ts, bench/peers/pyro4_actor.py)
- Machine: ${availableParallelism()} CPUs (nproc), ${cpuModel()}, Node ${process.version}; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at the start and ${load1.map((l) => l.toFixed(2)).join(' ')} at the end (1, 5, 15 min)
- Engines: \`sqlite://\` a temp file; Redis ${v.redis} \`${REDIS_URL}\`; RabbitMQ ${v.rabbitmq} \`${AMQP_URL.replace(/\/\/[^@/]*@/, '//')}\` with \`${REDIS_URL}\` as the result backend; Pyro4 on 127.0.0.1 (TCP, no broker)
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${sha}
- Runs that failed and were run again: ${retried.length ? retried.map((r) => `\`${r}\``).join('; ') : 'none'}

| | round trip p50, ms | p99, ms | calls/s, ${CONCURRENCY} in flight | oneway calls/s |
| --- | ---: | ---: | ---: | ---: |
${rows.join('\n')}

How far Fennel is from Pyro4's default server (medians; above 1 means Pyro4 is faster):

| | round trip p50, Fennel ÷ Pyro4 | calls/s in flight, Pyro4 ÷ Fennel | oneway calls/s, Pyro4 ÷ Fennel |
| --- | ---: | ---: | ---: |
${ratioLines.join('\n')}

### What each number is

- **round trip**: \`await c.echo(i)\` (Pyro4: \`proxy.echo(i)\`), one after another: ${WARMUP} untimed, then ${ROUND_TRIPS.toLocaleString('en')} timed; p50 and p99 of one run's ${ROUND_TRIPS.toLocaleString('en')}.
- **calls/s, ${CONCURRENCY} in flight**: ${IN_FLIGHT_CALLS.toLocaleString('en')} \`incr(1)\` through ${CONCURRENCY} lanes, each awaiting its call before sending the next, so ${CONCURRENCY} calls are in
  flight until the last ones: Fennel \`await c.incr.async(1)\` in ${CONCURRENCY} concurrent loops of this process; Pyro4 ${CONCURRENCY} threads, each with
  its own proxy (so its own TCP connection, opened before the clock starts), calling \`proxy.incr(1)\`. This, not Pyro4's
  \`Pyro4.asyncproxy\`, is its closest honest equivalent: an async proxy's call starts a new thread **and opens a new
  connection** (it copies the proxy, so that calls are not serialised on one connection), so it would time TCP
  set-up and Pyro4's handshake, and beyond the server's thread pool its connections are refused and retried after
  sleeps. The actor runs the calls one at a time either way; the count is checked afterwards (it grew by exactly ${IN_FLIGHT_CALLS.toLocaleString('en')}).
- **oneway calls/s**: ${ONEWAY_CALLS.toLocaleString('en')} \`c.incr.oneway(1)\` (Pyro4: an \`@Pyro4.oneway\` method, \`proxy.incr_oneway(1)\`), sent one after
  another without waiting, then \`get()\` repeated until it returns them all applied; the clock stops at that answer.
  Fennel's actor runs its queue in order, so the first \`get()\` already sees them all; Pyro4 runs each oneway call in a
  thread of its own (ONEWAY_THREADED, its default), so its order is not kept, and \`get()\` takes the lock after them.
  \`get()\` calls until the count was complete, per run: ${polls}.

### What each clock includes

- **Fennel** (\`performance.now()\` in the caller): a call is a task message. \`await c.echo(i)\`: the caller encodes
  it and publishes it to the actor's queue (SQLite: a row committed to the file; Redis: a list push; RabbitMQ: a
  publish confirmed by the broker) and waits for the result (SQLite: a file-change notification or poll; Redis:
  pub/sub); the host worker receives it, runs the method in its own process, **stores the outcome in the result
  backend** (a durable row in SQLite; a key with a 1-day expiry, published, in Redis) and acknowledges the message;
  the caller reads the stored result. So every call is a broker round trip and a result-backend round trip, and every
  call and result is persisted: a call survives the caller's, the broker connection's and (with \`snapshot()\`) the
  host's failure, and any process can read a result by id. \`.oneway\` stores no result (the message is still queued,
  received and acknowledged).
- **Pyro4** (\`time.perf_counter()\` in the client process): one TCP connection straight to the daemon, per proxy,
  opened before the clock. A call is one request frame written to the socket (serpent-encoded), the daemon's thread
  reads it, runs the method and writes the reply frame. No broker, no persistence, no acknowledgement: a call in
  flight when either side dies is lost, and the caller must reach the daemon's address itself.
- Both: caller and callee on this machine (loopback), each a single process (Fennel's worker also runs its task pool,
  idle here); the Fennel caller shares Node's event loop with its ${CONCURRENCY} lanes, the Pyro4 client its ${CONCURRENCY} threads with the GIL.

### Where a Fennel call's time goes

Diagnostics, run after the measurements above in each Fennel run, so all of it is warm: the same echo as an actor call
and as a plain task on the same worker (\`bench.echo\`, on the worker's own queue), in alternating blocks
(${DIAG_BLOCKS} × ${DIAG_BLOCK} calls, then ${DIAG_BLOCK} tasks), one at a time. A plain task is the floor an actor call starts from: a call
is a task message on a queue of its own. Per call (medians of the runs): the round trip (p50 of the blocks), CPU time
of the caller (this process, \`process.cpuUsage()\`), of the host worker (\`/proc/<pid>/stat\`, its main process, where
actor calls and \`-P async\` tasks run) and of Redis (\`INFO cpu\`), and the commands Redis ran (\`INFO commandstats\`,
commands inside scripts included). Redis's counters are **server-wide**: anything else using that Redis server at the
time is counted too (the census below is not).

| engine | what | round trip p50, ms | caller CPU, µs | host CPU, µs | Redis CPU, µs | Redis commands |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
${costRows(samples, fennelEngines).join('\n')}

Redis's commands per call, by command and key (ids written \`<id>\`), counted with \`MONITOR\` on database 15 only, over
${CENSUS_CALLS} more actor calls and then ${CENSUS_CALLS} plain tasks, untimed (MONITOR slows Redis down); \`lua:\` marks a command run
inside a script (\`EVALSHA\`); a queue's commands include those on its priority lists (kombu's \`<queue>\\x06\\x16<n>\`). On
RabbitMQ only the result backend is on Redis.

${censusTable(samples, fennelEngines.filter((e) => e !== 'sqlite' && samples.has(e)))}`;
}
