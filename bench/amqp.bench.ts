// The RabbitMQ comparison: Fennel and Python Celery 5 on the same RabbitMQ in the same run, results by rpc://
// for both (each producer's reply queue). Scenarios, each run `runs` times in rounds (every scenario once,
// then again), medians reported:
//   e2e-1 / e2e-2   SIZES.tasks no-op tasks end to end (published in batches, every result awaited; Fennel after
//                   one untimed pass of the same size, so V8 has optimised it) with 1 and
//                   2 worker processes: Fennel `fennel worker -P async -c 100`, Celery `celery worker -P prefork -c <CPUs>`
//   latency         one enqueue → result round trip at a time: p50 and p99; also for a bare amqplib echo
//                   (bench/peers/amqp-echo.ts), the floor any task queue built on amqplib starts from
// Both peers use the default queue `celery`, purged before each scenario. Environment knobs:
//   FENNEL_BENCH_AMQP_URL   the broker (default amqp://guest:guest@127.0.0.1:5672/)
//   FENNEL_BENCH_PYTHON     the Python with Celery 5 (default /usr/bin/python3)
// Run with `npm run bench -- amqp` (writes the AMQP section of BENCHMARKS.md).

import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { promisify } from 'node:util';
import { connect } from 'amqplib';
import { benchApp } from './tasks.ts';
import { CELERY_PYTHON as PYTHON, delayAllAndGet, median, percentile, runCeleryProducer, startCeleryWorker, startProcess, startWorker, type Metric, type WorkerProcess } from './support.ts';

export const AMQP_URL = process.env['FENNEL_BENCH_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672/';
// kombu spells the default vhost "/" as "//".
const CELERY_BROKER = AMQP_URL.replace(/\/$/, '//');
const CELERY_ENV = { CELERY_BENCH_BROKER: CELERY_BROKER, CELERY_BENCH_BACKEND: 'rpc://', PYTHONDONTWRITEBYTECODE: '1' };
// Round trips: steady state, after a warm-up long enough for V8 to optimise both Fennel processes' hot paths (with
// 30, most of the 200 measured ran in unoptimised code: p50 0.76 ms against 0.6 ms warm). Same counts for Celery.
export const AMQP_SIZES = { tasks: 5_000, batch: 500, roundTrips: 1_000, warmup: 1_000 } as const;
/** Issue #4: Fennel end to end at least 3 × Celery's, and a p50 round trip under half of Celery's. */
const AIMS = { e2eRatio: 3, p50Ratio: 0.5 };
const QUEUE = 'celery';

type Peer = 'fennel' | 'celery' | 'floor';
type Kind = 'e2e-1' | 'e2e-2' | 'latency';

interface Scenario {
  kind: Kind;
  peer: Peer;
  config: string;
  run(): Promise<Record<string, Metric>>;
}

const rate = (count: number, ms: number): Metric => ({ value: (count * 1000) / ms, unit: 'tasks/s' });
const ms = (value: number): Metric => ({ value, unit: 'ms' });

/** Empties the shared default queue, so no scenario inherits another's messages. */
async function purge(): Promise<void> {
  const conn = await connect(AMQP_URL);
  conn.on('error', () => {});
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => {}); // a queue not declared yet closes the channel (404): nothing to purge
    await ch.purgeQueue(QUEUE).catch(() => {});
  } finally {
    await conn.close().catch(() => {});
  }
}

async function withWorkers<T>(count: number, start: (index: number) => Promise<WorkerProcess>, body: () => Promise<T>): Promise<T> {
  const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => start(i)));
  const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  try {
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    return await Promise.race([body(), ...workers.map((w) => w.died)]);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

// Fennel: the producer is this process (results by rpc://, the default with an amqp:// broker).

const fennelWorker = (): Promise<WorkerProcess> => startWorker({ brokerUrl: AMQP_URL, pool: 'async', concurrency: 100 });

function fennelEndToEnd(workers: number): () => Promise<Record<string, Metric>> {
  return async () => {
    await purge();
    const bench = benchApp({ broker: AMQP_URL });
    try {
      return await withWorkers(workers, fennelWorker, async () => {
        const pass = (): Promise<void> => delayAllAndGet(bench.noop, AMQP_SIZES.tasks, AMQP_SIZES.batch);
        await pass(); // warm-up, untimed: the timed pass measures warm code (Celery, CPython, has no JIT to warm)
        const t0 = performance.now();
        await pass();
        return { rate: rate(AMQP_SIZES.tasks, performance.now() - t0) };
      });
    } finally {
      await bench.app.close();
    }
  };
}

const fennelLatency = async (): Promise<Record<string, Metric>> => {
  await purge();
  const bench = benchApp({ broker: AMQP_URL });
  try {
    return await withWorkers(1, fennelWorker, async () => {
      for (let i = 0; i < AMQP_SIZES.warmup; i++) await bench.noop.delay().get({ timeoutMs: 60_000 });
      const times: number[] = [];
      for (let i = 0; i < AMQP_SIZES.roundTrips; i++) {
        const t0 = performance.now();
        await bench.noop.delay().get({ timeoutMs: 30_000 });
        times.push(performance.now() - t0);
      }
      return { p50: ms(percentile(times, 50)), p99: ms(percentile(times, 99)) };
    });
  } finally {
    await bench.app.close();
  }
};

// The floor: a bare amqplib echo process; this process publishes (persistent, confirmed) and awaits the reply.

const ECHO_QUEUE = 'fennel.bench.echo';

const floorLatency = async (): Promise<Record<string, Metric>> => {
  const echo = await startProcess({ command: process.execPath, args: ['--import', 'tsx', 'bench/peers/amqp-echo.ts', AMQP_URL, ECHO_QUEUE] });
  const conn = await connect(AMQP_URL, { noDelay: true });
  try {
    const publisher = await conn.createConfirmChannel();
    const reader = await conn.createChannel();
    const { queue: replyTo } = await reader.assertQueue('', { exclusive: true });
    const waiting = new Map<string, () => void>();
    await reader.consume(replyTo, (msg) => msg && waiting.get(String(msg.properties.correlationId))?.(), { noAck: true });
    const body = Buffer.from(JSON.stringify([[], {}, { callbacks: null, errbacks: null, chain: null, chord: null }]));
    const roundTrip = async (i: number): Promise<number> => {
      const id = `echo-${i}`;
      const t0 = performance.now();
      const replied = new Promise<void>((resolve) => waiting.set(id, resolve));
      publisher.publish('', ECHO_QUEUE, body, { persistent: true, replyTo, correlationId: id, contentType: 'application/json' });
      await replied;
      waiting.delete(id);
      return performance.now() - t0;
    };
    for (let i = 0; i < AMQP_SIZES.warmup; i++) await roundTrip(i);
    const times: number[] = [];
    for (let i = 0; i < AMQP_SIZES.roundTrips; i++) times.push(await roundTrip(AMQP_SIZES.warmup + i));
    await publisher.waitForConfirms();
    await reader.deleteQueue(ECHO_QUEUE).catch(() => {});
    return { p50: ms(percentile(times, 50)), p99: ms(percentile(times, 99)) };
  } finally {
    await conn.close().catch(() => {});
    await echo.stop();
  }
};

// Celery: `python3 -m celery -A celery_bench worker` processes; its producer (and clock) is celery_bench.py.

// Celery's defaults on this machine (prefork, one child per CPU). Its threads and solo pools stall with rpc://
// results on RabbitMQ here: 2,000 no-op tasks not done within 60 s (they reach ~650 tasks/s on Redis).
const CELERY_POOL = ['-P', 'prefork', '-c', String(availableParallelism())];

const celeryWorker = (index: number): Promise<WorkerProcess> => startCeleryWorker('celery_bench', CELERY_POOL, `amqpbench${index}@%h`, CELERY_ENV);

const celeryProducer = (args: Array<string | number>): Promise<Record<string, number | undefined>> => runCeleryProducer('celery_bench.py', args, CELERY_ENV);

function celeryEndToEnd(workers: number): () => Promise<Record<string, Metric>> {
  return async () => {
    await purge();
    return withWorkers(workers, celeryWorker, async () => {
      const { rate: r } = await celeryProducer(['e2e', AMQP_SIZES.tasks, AMQP_SIZES.batch]);
      return { rate: { value: r!, unit: 'tasks/s' } };
    });
  };
}

const celeryLatency = async (): Promise<Record<string, Metric>> => {
  await purge();
  return withWorkers(1, celeryWorker, async () => {
    const { p50, p99 } = await celeryProducer(['latency', AMQP_SIZES.roundTrips, AMQP_SIZES.warmup]);
    return { p50: ms(p50!), p99: ms(p99!) };
  });
};

const FENNEL_CONFIG = '`fennel worker -P async -c 100`';
const CELERY_CONFIG = `\`celery worker ${CELERY_POOL.join(' ')}\``;

function scenarios(): Scenario[] {
  return [
    { kind: 'e2e-1', peer: 'fennel', config: FENNEL_CONFIG, run: fennelEndToEnd(1) },
    { kind: 'e2e-1', peer: 'celery', config: CELERY_CONFIG, run: celeryEndToEnd(1) },
    { kind: 'e2e-2', peer: 'fennel', config: `2 × ${FENNEL_CONFIG}`, run: fennelEndToEnd(2) },
    { kind: 'e2e-2', peer: 'celery', config: `2 × ${CELERY_CONFIG}`, run: celeryEndToEnd(2) },
    { kind: 'latency', peer: 'fennel', config: `\`await task.delay().get()\`, ${FENNEL_CONFIG}`, run: fennelLatency },
    { kind: 'latency', peer: 'celery', config: `\`noop.delay().get()\`, ${CELERY_CONFIG}`, run: celeryLatency },
    { kind: 'latency', peer: 'floor', config: 'bench/peers/amqp-echo.ts', run: floorLatency },
  ];
}

const TITLES: Record<Kind, string> = {
  'e2e-1': `end to end, 1 worker process (${AMQP_SIZES.tasks.toLocaleString('en')} no-op tasks)`,
  'e2e-2': `end to end, 2 worker processes (${AMQP_SIZES.tasks.toLocaleString('en')} no-op tasks)`,
  latency: `round trip, one at a time (${AMQP_SIZES.roundTrips} after ${AMQP_SIZES.warmup} warm-up)`,
};

function fmt(value: number | undefined, unit: Metric['unit']): string {
  if (value === undefined || !Number.isFinite(value)) return '–';
  return unit === 'ms' ? value.toFixed(2) : Math.round(value).toLocaleString('en');
}

function version(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 30_000 }).trim();
  } catch {
    return 'unknown';
  }
}

/** Runs the AMQP part `runs` times and returns its BENCHMARKS.md section (also printed). */
export async function amqpSection(runs = 3): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const celeryVersion = (await promisify(execFile)(PYTHON, ['-c', 'import celery, kombu, amqp; print(celery.__version__, kombu.__version__, amqp.__version__)'], { timeout: 30_000 })).stdout.trim().split(' ');
  const rabbit = /RabbitMQ version: (\S+)/.exec(version('rabbitmqctl', ['status']))?.[1] ?? 'unknown';
  const list = scenarios();
  const values = new Map<Scenario, Map<string, { unit: Metric['unit']; values: number[] }>>();
  for (let round = 1; round <= runs; round++) {
    for (const s of list) {
      const t0 = Date.now();
      const metrics = await s.run();
      const byMetric = values.get(s) ?? new Map<string, { unit: Metric['unit']; values: number[] }>();
      for (const [name, m] of Object.entries(metrics)) {
        const entry = byMetric.get(name) ?? { unit: m.unit, values: [] };
        entry.values.push(m.value);
        byMetric.set(name, entry);
      }
      values.set(s, byMetric);
      console.log(`amqp ${s.kind} ${s.peer} run ${round}/${runs}: ${Object.entries(metrics).map(([k, m]) => `${k} ${fmt(m.value, m.unit)} ${m.unit}`).join(', ')} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
  }
  const med = (kind: Kind, peer: Peer, metric: string): number | undefined => {
    const s = list.find((x) => x.kind === kind && x.peer === peer);
    const v = s ? values.get(s)?.get(metric)?.values : undefined;
    return v?.length ? median(v) : undefined;
  };
  const cell = (kind: Kind, peer: Peer, metric: string, unit: Metric['unit']): string => {
    const s = list.find((x) => x.kind === kind && x.peer === peer)!;
    const v = values.get(s)?.get(metric)?.values ?? [];
    return `${fmt(med(kind, peer, metric), unit)}${v.length > 1 ? ` (${fmt(Math.min(...v), unit)}–${fmt(Math.max(...v), unit)})` : ''}`;
  };
  const rows = ['| Scenario | Metric | Fennel | Celery | Fennel ÷ Celery | bare amqplib echo (floor) |', '| --- | --- | ---: | ---: | ---: | ---: |'];
  for (const kind of ['e2e-1', 'e2e-2'] as const) {
    const f = med(kind, 'fennel', 'rate');
    const c = med(kind, 'celery', 'rate');
    rows.push(`| ${TITLES[kind]} | tasks/s | ${cell(kind, 'fennel', 'rate', 'tasks/s')} | ${cell(kind, 'celery', 'rate', 'tasks/s')} | ${f && c ? `${(f / c).toFixed(2)}×` : '–'} | – |`);
  }
  for (const metric of ['p50', 'p99']) {
    const f = med('latency', 'fennel', metric);
    const c = med('latency', 'celery', metric);
    rows.push(`| ${TITLES.latency} | ${metric} ms | ${cell('latency', 'fennel', metric, 'ms')} | ${cell('latency', 'celery', metric, 'ms')} | ${f && c ? `${(f / c).toFixed(2)}×` : '–'} | ${cell('latency', 'floor', metric, 'ms')} |`);
  }
  const e2e = (['e2e-1', 'e2e-2'] as const).map((k) => (med(k, 'fennel', 'rate') ?? 0) / (med(k, 'celery', 'rate') ?? Infinity));
  const p50 = (med('latency', 'fennel', 'p50') ?? Infinity) / (med('latency', 'celery', 'p50') ?? 0);
  const floorOfCelery = (med('latency', 'floor', 'p50') ?? Infinity) / (med('latency', 'celery', 'p50') ?? 0);
  const room = (med('latency', 'celery', 'p50') ?? 0) * AIMS.p50Ratio - (med('latency', 'floor', 'p50') ?? Infinity);
  const verdict = (ok: boolean): string => (ok ? '**met**' : '**not met**');
  const cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const section = `## RabbitMQ: Fennel vs Celery

- Command: \`npm run bench -- amqp\` (${runs} runs of each scenario, in rounds; medians, with min–max)
- Machine: ${availableParallelism()} CPUs (nproc), ${cpu}, Node ${process.version}; load average ${load(load0)} at the start and ${load(loadavg())} at the end (1, 5, 15 min)
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${version('git', ['rev-parse', '--short', 'HEAD'])}
- Broker: RabbitMQ ${rabbit} on 127.0.0.1, classic durable queue \`celery\`, persistent messages; results by rpc:// for both peers
- Peers: Fennel (amqplib, publisher confirms) and Celery ${celeryVersion[0]} (kombu ${celeryVersion[1]}, py-amqp ${celeryVersion[2]}); Fennel's producer is this process, Celery's is \`bench/peers/celery_bench.py\`

${rows.join('\n')}

Aims (issue #4): end to end at least ${AIMS.e2eRatio}× Celery's throughput — ${verdict(e2e.every((r) => r >= AIMS.e2eRatio))} (${e2e.map((r) => `${r.toFixed(2)}×`).join(' with 1 worker, ')} with 2); p50 round trip under half of Celery's — ${verdict(p50 < AIMS.p50Ratio)} (${p50.toFixed(2)}×).

The last column is the floor: a bare amqplib echo process (\`bench/peers/amqp-echo.ts\`: no task queue at all, only
publish, deliver, reply, ack) takes a p50 of ${fmt(med('latency', 'floor', 'p50'), 'ms')} ms, ${floorOfCelery.toFixed(2)}× Celery's. A p50 under half of Celery's
${room > 0 ? `leaves ${fmt(room, 'ms')} ms over the floor for everything a task queue adds` : 'is below that floor: out of reach of any task queue built on amqplib'}. Fennel publishes with
confirms (Celery does not), but \`get()\` waits for the result while the confirm is on its way, so confirms cost the round
trip nothing.

Celery runs with its default pool (prefork, one child per CPU): with \`-P threads -c 8\` or \`-P solo\` and rpc:// results
it stalls here (2,000 tasks not done in 60 s; it had varied from 50 to 760 tasks/s in earlier runs).`;
  console.log(`\n${section}\n`);
  return section;
}
