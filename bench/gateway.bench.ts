// The gateway benchmarks (issue #7), `npm run bench -- gateway`; writes the "gateway" section of BENCHMARKS.md.
//
//   submit-<engine>   POST /api/tasks/wyndor.solve with 100 concurrent connections (autocannon, 10 s) against a
//                     real `fennel gateway` process publishing to Redis and to RabbitMQ (a classic queue, and a quorum
//                     queue with ?queueType=quorum); no worker runs, so this is
//                     the accept-and-publish path alone (each 202 only after the broker confirmed the message).
//                     Aim: ≥ 5,000 requests/s with p99 < 100 ms on this 2-CPU machine.
//   submit-amqp-bare  RabbitMQ's own ceiling for that path: the message the gateway published, read back and published
//                     again unchanged by a bare amqplib confirm channel, 100 in flight, 10 s, no HTTP and no gateway.
//   wyndor-<engine>   1,000 Wyndor solves submitted over HTTP by 50 concurrent users (each submits, waits for its
//                     result, submits again; keep-alive), each result pushed back
//                     over one WebSocket; 2 worker processes (`fennel worker -P async -c 4 -E`, GLPK in the worker
//                     process itself). Solves per second (first submit → last pushed result) and p50/p99 submit → pushed.
//   wyndor-process-<engine>  the same with `npm start`'s worker, one `fennel worker -P process -c 2 -E` (issue #21's
//                     configuration; aim ≥ 2,000 solves/s), and the CPU each part spent per solve (driver, gateway,
//                     worker, pool slots, Redis). Every Wyndor run warms the path with 2,000 solves before the timed 2,000.
//
// autocannon and the driver run in this process, on the same 2 CPUs as the gateway, the broker and the workers:
// the numbers are what one machine does with everything on it. Knobs: FENNEL_BENCH_REDIS_URL (default
// redis://127.0.0.1:6379/15, as the Redis benchmarks) and FENNEL_BENCH_AMQP_URL; queues are unique per run and
// purged afterwards, and the database is not flushed.

import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import autocannon from 'autocannon';
import { connect as amqpConnect } from 'amqplib';
import { WebSocket } from 'ws';
import { Fennel } from 'fennel';
import { Redis } from 'ioredis';
import { childPids, FENNEL_BIN, median, percentile, processCpuSec, ROOT, startWorker, tempDatabase, type Metric, type WorkerProcess } from './support.ts';

const REDIS_URL = process.env['FENNEL_BENCH_REDIS_URL'] || 'redis://127.0.0.1:6379/15';
const AMQP_URL = process.env['FENNEL_BENCH_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672/';
const APP = 'examples/wyndor/tasks.ts';
export const GATEWAY_AIMS = { submitPerSec: 5000, submitP99Ms: 100 };
const SUBMIT = { connections: 100, durationSec: 10 };
const WYNDOR = { solves: 2000, warmUp: 2000, inFlight: 50, workers: 2, concurrency: 4 };
/** How the workers of a Wyndor run are started: #7's two async workers, or #21's one process-pool worker. */
interface WyndorWorkers {
  workers: number;
  pool: 'async' | 'process';
  concurrency: number;
}
const TWO_ASYNC: WyndorWorkers = { workers: WYNDOR.workers, pool: 'async', concurrency: WYNDOR.concurrency };
/** Issue #21's configuration: one worker, `-P process -c 2`. */
const ONE_PROCESS: WyndorWorkers = { workers: 1, pool: 'process', concurrency: 2 };
export const WYNDOR_AIM_SOLVES_PER_SEC = 2000;

interface Gateway {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts `fennel gateway --port 0` in its own process group and resolves with its URL. */
function startGateway(env: Record<string, string>): Promise<Gateway> {
  const child: ChildProcess = spawn(process.execPath, [FENNEL_BIN, 'gateway', '--app', APP, '--port', '0'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
    await exited;
    clearTimeout(timer);
  };
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`gateway not listening after 30 s:\n${output}`)), 30_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const url = /gateway listening on (http:\/\/[^\s;]+)/.exec(output)?.[1];
      if (url) {
        clearTimeout(timer);
        resolve({ url, pid: child.pid ?? -1, stop });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}):\n${output}`)));
  });
}

/** Removes a benchmark queue: its messages (purge), and on RabbitMQ the queue and its exchange. */
async function dropQueue(brokerUrl: string, queue: string): Promise<void> {
  const app = new Fennel({ broker: brokerUrl, defaultQueue: queue });
  try {
    await app.transport.purge(queue);
  } finally {
    await app.close();
  }
  if (brokerUrl.startsWith('amqp')) {
    const connection = await amqpConnect(brokerUrl);
    const channel = await connection.createChannel();
    await channel.deleteQueue(queue);
    await channel.deleteExchange(queue);
    await connection.close();
  }
}

async function submitRate(engine: string, brokerUrl: string): Promise<Record<string, Metric>> {
  const queue = `bench-gw-${randomUUID().slice(0, 8)}`;
  const gateway = await startGateway({ FENNEL_BROKER_URL: brokerUrl, FENNEL_DEFAULT_QUEUE: queue, FENNEL_RESULT_BACKEND: brokerUrl.startsWith('amqp') ? REDIS_URL : brokerUrl });
  try {
    const result = await autocannon({
      url: `${gateway.url}/api/tasks/wyndor.solve`,
      connections: SUBMIT.connections,
      duration: SUBMIT.durationSec,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ args: [500] }),
    });
    const accepted = result['2xx'];
    if (result.non2xx > 0 || result.errors > 0) console.warn(`submit-${engine}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
    return {
      'requests/s': { value: accepted / (result.duration || SUBMIT.durationSec), unit: 'tasks/s' },
      'p50 ms': { value: result.latency.p50, unit: 'ms' },
      'p99 ms': { value: result.latency.p99, unit: 'ms' },
      'non-2xx': { value: result.non2xx + result.errors, unit: 'tasks/s' },
    };
  } finally {
    await gateway.stop();
    await dropQueue(brokerUrl, queue);
  }
}

/**
 * The broker's own ceiling for a submission: the message the gateway published for one POST, read back from its
 * classic queue (basic.get), then published again and again, unchanged (body, basic properties, Celery's protocol
 * headers), into that queue (purged; declared by Fennel, so with the same arguments) by a bare amqplib confirm
 * channel: SUBMIT.connections publishes in flight, each awaiting its confirm, for SUBMIT.durationSec. No HTTP and no
 * gateway: what RabbitMQ confirms for this message shape with the rest of the machine free.
 */
async function bareAmqpRate(brokerUrl: string): Promise<Record<string, Metric>> {
  const queue = `bench-gw-${randomUUID().slice(0, 8)}`;
  const gateway = await startGateway({ FENNEL_BROKER_URL: brokerUrl, FENNEL_DEFAULT_QUEUE: queue, FENNEL_RESULT_BACKEND: REDIS_URL });
  const connection = await amqpConnect(brokerUrl);
  try {
    const response = await fetch(`${gateway.url}/api/tasks/wyndor.solve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ args: [500] }) });
    if (response.status !== 202) throw new Error(`the sample POST was answered ${response.status}`);
    await gateway.stop();
    const channel = await connection.createConfirmChannel();
    const sample = await channel.get(queue, { noAck: true });
    if (!sample) throw new Error(`the gateway's message is not in ${queue}`);
    const { content, properties } = sample;
    const options = Object.fromEntries(Object.entries(properties).filter(([, v]) => v !== undefined));
    const times: number[] = [];
    const deadline = performance.now() + SUBMIT.durationSec * 1000;
    const lane = async (): Promise<void> => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await new Promise<void>((resolve, reject) => channel.publish('', queue, content, options, (error: unknown) => (error ? reject(error instanceof Error ? error : new Error('the broker refused the publish (nack)')) : resolve())));
        times.push(performance.now() - t0);
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: SUBMIT.connections }, lane));
    const elapsed = performance.now() - t0;
    return {
      'requests/s': { value: times.length / (elapsed / 1000), unit: 'tasks/s' },
      'p50 ms': { value: percentile(times, 50), unit: 'ms' },
      'p99 ms': { value: percentile(times, 99), unit: 'ms' },
    };
  } finally {
    await gateway.stop();
    await connection.close();
    await dropQueue(brokerUrl, queue);
  }
}

/**
 * POSTs a JSON body on a keep-alive connection and resolves with the JSON answer (rejects on a status other than 2xx).
 * node:http rather than fetch: the driver plays 50 users' browsers on the same 2 CPUs as the system it measures,
 * and fetch cost it about twice the CPU per request.
 */
function post(agent: http.Agent, url: string, body: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => {
        if ((response.statusCode ?? 0) >= 300) reject(new Error(`POST ${url}: ${response.statusCode} ${text}`));
        else resolve(JSON.parse(text));
      });
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** Redis's own CPU seconds so far (INFO cpu: server-wide, so another client of the server would add to it). */
async function redisCpuSec(url: string): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true });
  try {
    await redis.connect();
    const text = await redis.info('cpu');
    const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN);
    return field('used_cpu_user') + field('used_cpu_sys');
  } finally {
    redis.disconnect();
  }
}

/** CPU seconds of each part of a Wyndor run so far: the driver (this process), the gateway, the workers' main processes, their pool slots, Redis. */
async function wyndorCpu(gateway: Gateway, workers: readonly WorkerProcess[], brokerUrl: string): Promise<Record<string, number>> {
  const own = process.cpuUsage();
  const sum = (pids: number[]): number => pids.reduce((total, pid) => total + processCpuSec(pid), 0);
  return {
    driver: (own.user + own.system) / 1e6,
    gateway: processCpuSec(gateway.pid),
    worker: sum(workers.map((w) => w.pid)),
    slots: sum(workers.flatMap((w) => childPids(w.pid))),
    ...(brokerUrl.startsWith('redis') ? { redis: await redisCpuSec(brokerUrl) } : {}),
  };
}

async function wyndorEndToEnd(engine: string, brokerUrl: string, setup: WyndorWorkers): Promise<Record<string, Metric>> {
  const queue = `bench-wy-${randomUUID().slice(0, 8)}`;
  const env = { FENNEL_DEFAULT_QUEUE: queue };
  const workers: WorkerProcess[] = [];
  const gateway = await startGateway({ FENNEL_BROKER_URL: brokerUrl, ...env });
  try {
    for (let i = 0; i < setup.workers; i++) {
      workers.push(await startWorker({ brokerUrl, env, pool: setup.pool, concurrency: setup.concurrency, flags: ['--app', APP, '-Q', queue, '-E'] }));
    }
    const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/api/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const agent = new http.Agent({ keepAlive: true, maxSockets: WYNDOR.inFlight });
    const submittedAt = new Map<string, number>();
    const waiting = new Map<string, () => void>();
    let latencies: number[] = [];
    let lastPushed = 0;
    let failures = 0;
    ws.on('message', (data) => {
      const message = JSON.parse(Buffer.from(data as Buffer).toString()) as { type: string; task?: { id: string; state: string; result?: { objective?: number } } };
      const task = message.task;
      if (message.type !== 'task' || !task || !['SUCCESS', 'FAILURE', 'REVOKED'].includes(task.state)) return;
      const at = submittedAt.get(task.id);
      if (at === undefined) return;
      submittedAt.delete(task.id);
      lastPushed = performance.now();
      latencies.push(lastPushed - at);
      if (task.state !== 'SUCCESS' || task.result?.objective !== 3600) failures++;
      waiting.get(task.id)?.();
      waiting.delete(task.id);
    });
    // WYNDOR.inFlight users, each submitting a solve, waiting for its pushed result, and submitting the next.
    const solve = async (count: number): Promise<void> => {
      let remaining = count;
      const user = async (): Promise<void> => {
        while (remaining > 0) {
          remaining--;
          const t0 = performance.now();
          const { id } = (await post(agent, `${gateway.url}/api/tasks/wyndor.solve`, '{"args":[500]}')) as { id: string };
          submittedAt.set(id, t0);
          const pushed = new Promise<void>((resolve) => waiting.set(id, resolve));
          ws.send(JSON.stringify({ op: 'subscribe', ids: [id] }));
          await pushed;
        }
      };
      const done = Promise.all(Array.from({ length: WYNDOR.inFlight }, user));
      await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`wyndor-${engine}: ${submittedAt.size} results not pushed after 120 s`)), 120_000).unref())]);
    };
    // The same path warmed first, as every other benchmark here warms up: each process's JIT, and GLPK's WebAssembly
    // and JavaScript in each slot, which take 120–850 µs of CPU per solve over a process's first ~1,200 solves and
    // 30–50 µs after (measured in a loop of solves); with 300 solves of warm-up the rate was 0.6–0.7 of what it is after 2,000. A server runs
    // for longer than a few thousand requests.
    await solve(WYNDOR.warmUp);
    latencies = [];
    const cpuBefore = await wyndorCpu(gateway, workers, brokerUrl);
    const started = performance.now();
    await solve(WYNDOR.solves);
    const elapsedSec = (lastPushed - started) / 1000;
    const cpuAfter = await wyndorCpu(gateway, workers, brokerUrl);
    ws.close();
    agent.destroy();
    if (failures) console.warn(`wyndor-${engine}: ${failures} solves did not succeed with objective 3600`);
    const cpu: Record<string, Metric> = {};
    for (const part of Object.keys(cpuAfter)) cpu[`${part} CPU`] = { value: ((cpuAfter[part]! - cpuBefore[part]!) * 1e6) / WYNDOR.solves, unit: 'µs/task' };
    return {
      'solves/s': { value: WYNDOR.solves / elapsedSec, unit: 'tasks/s' },
      'p50 ms': { value: percentile(latencies, 50), unit: 'ms' },
      'p99 ms': { value: percentile(latencies, 99), unit: 'ms' },
      ...cpu,
    };
  } finally {
    await gateway.stop();
    for (const w of workers) await w.stop();
    await dropQueue(brokerUrl, queue);
  }
}

interface Scenario {
  id: string;
  what: string;
  run: () => Promise<Record<string, Metric>>;
}

function scenarios(): Scenario[] {
  // Made when a SQLite scenario first runs (listing the scenarios makes nothing); both share it.
  let url: string | undefined;
  const sqliteUrl = (): string => (url ??= tempDatabase().url);
  return [
    { id: 'submit-redis', what: 'POST submit, 100 connections, publishing to Redis', run: () => submitRate('redis', REDIS_URL) },
    { id: 'submit-amqp', what: 'POST submit, 100 connections, publishing to RabbitMQ', run: () => submitRate('amqp', AMQP_URL) },
    { id: 'submit-amqp-bare', what: "a bare amqplib publisher, the gateway's RabbitMQ message, 100 in flight", run: () => bareAmqpRate(AMQP_URL) },
    { id: 'submit-amqp-quorum', what: 'POST submit, 100 connections, publishing to RabbitMQ quorum queues', run: () => submitRate('amqp-quorum', `${AMQP_URL}?queueType=quorum`) },
    { id: 'wyndor-redis', what: 'Wyndor solves over HTTP, 2 workers, Redis', run: () => wyndorEndToEnd('redis', REDIS_URL, TWO_ASYNC) },
    { id: 'wyndor-sqlite', what: 'Wyndor solves over HTTP, 2 workers, SQLite', run: () => wyndorEndToEnd('sqlite', sqliteUrl(), TWO_ASYNC) },
    { id: 'wyndor-process-redis', what: 'Wyndor solves over HTTP, 1 worker -P process -c 2, Redis', run: () => wyndorEndToEnd('redis', REDIS_URL, ONE_PROCESS) },
    { id: 'wyndor-process-sqlite', what: 'Wyndor solves over HTTP, 1 worker -P process -c 2, SQLite', run: () => wyndorEndToEnd('sqlite', sqliteUrl(), ONE_PROCESS) },
  ];
}

const fmt = (value: number | undefined, unit: Metric['unit']): string => (value === undefined || !Number.isFinite(value) ? '–' : unit === 'ms' ? value.toFixed(1) : Math.round(value).toLocaleString('en'));

/** The gateway part's scenario ids (bench/run.ts runs those a filter names, printing only). */
export function gatewayScenarioIds(): string[] {
  return scenarios().map((s) => s.id);
}

/**
 * Runs every scenario `runs` times and returns the BENCHMARKS.md section (medians, with the range of runs). With
 * `only`, just the scenarios whose id it accepts (bench/run.ts prints that run and writes nothing).
 */
export async function gatewaySection(runs = 3, only?: (id: string) => boolean): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const list = scenarios().filter((s) => !only || only(s.id));
  const values = new Map<string, Map<string, { unit: Metric['unit']; values: number[] }>>();
  for (let round = 1; round <= runs; round++) {
    for (const s of list) {
      const metrics = await s.run();
      const byMetric = values.get(s.id) ?? new Map<string, { unit: Metric['unit']; values: number[] }>();
      for (const [name, m] of Object.entries(metrics)) {
        const entry = byMetric.get(name) ?? { unit: m.unit, values: [] };
        entry.values.push(m.value);
        byMetric.set(name, entry);
      }
      values.set(s.id, byMetric);
      console.log(`gateway ${s.id} run ${round}/${runs}: ${Object.entries(metrics).map(([k, m]) => `${k} ${fmt(m.value, m.unit)}`).join(', ')}`);
    }
  }
  const med = (id: string, metric: string): number | undefined => {
    const v = values.get(id)?.get(metric)?.values;
    return v?.length ? median(v) : undefined;
  };
  const cell = (id: string, metric: string): string => {
    const entry = values.get(id)?.get(metric);
    if (!entry?.values.length) return '–';
    const v = entry.values;
    return `${fmt(median(v), entry.unit)}${v.length > 1 ? ` (${fmt(Math.min(...v), entry.unit)}–${fmt(Math.max(...v), entry.unit)})` : ''}`;
  };
  const aim = (ok: boolean | undefined): string => (ok === undefined ? 'not measured' : ok ? '**met**' : '**not met**');
  const ENGINE_NAMES: Record<string, string> = { redis: 'Redis', amqp: 'RabbitMQ, classic queue', 'amqp-quorum': 'RabbitMQ, quorum queue' };
  const submitLines = ['redis', 'amqp', 'amqp-quorum'].map((engine) => {
    const rate = med(`submit-${engine}`, 'requests/s');
    const p99 = med(`submit-${engine}`, 'p99 ms');
    return `- ${ENGINE_NAMES[engine]}: ${fmt(rate, 'tasks/s')} requests/s (aim ≥ ${GATEWAY_AIMS.submitPerSec.toLocaleString('en')}: ${aim(rate === undefined ? undefined : rate >= GATEWAY_AIMS.submitPerSec)}), p99 ${fmt(p99, 'ms')} ms (aim < ${GATEWAY_AIMS.submitP99Ms}: ${aim(p99 === undefined ? undefined : p99 < GATEWAY_AIMS.submitP99Ms)})`;
  });
  const load1 = loadavg();
  return `## Gateway: HTTP submissions and the Wyndor app end to end

Command: \`npm run bench -- gateway\` (${runs} run${runs === 1 ? '' : 's'} of each scenario; medians, with the range of the runs in brackets). Machine: ${availableParallelism()} CPUs, Node ${process.version}; ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC; load average ${load0.map((l) => l.toFixed(2)).join(' ')} before, ${load1.map((l) => l.toFixed(2)).join(' ')} after (the machine is shared). autocannon, the driver, the gateway, the broker and the workers all share these CPUs.

| scenario | requests/s | p50 ms | p99 ms |
| --- | --- | --- | --- |
| POST /api/tasks/wyndor.solve → Redis (${SUBMIT.connections} connections, ${SUBMIT.durationSec} s, 202 after the broker confirmed) | ${cell('submit-redis', 'requests/s')} | ${cell('submit-redis', 'p50 ms')} | ${cell('submit-redis', 'p99 ms')} |
| POST /api/tasks/wyndor.solve → RabbitMQ (same; publisher confirms; a classic durable queue, Celery's default) | ${cell('submit-amqp', 'requests/s')} | ${cell('submit-amqp', 'p50 ms')} | ${cell('submit-amqp', 'p99 ms')} |
| the same message to the same classic queue by a bare amqplib publisher (${SUBMIT.connections} confirms awaited at once, ${SUBMIT.durationSec} s; no HTTP, no gateway): RabbitMQ's own ceiling | ${cell('submit-amqp-bare', 'requests/s')} | ${cell('submit-amqp-bare', 'p50 ms')} | ${cell('submit-amqp-bare', 'p99 ms')} |
| POST /api/tasks/wyndor.solve → RabbitMQ (same, \`?queueType=quorum\`: the queue type RabbitMQ recommends for durable work) | ${cell('submit-amqp-quorum', 'requests/s')} | ${cell('submit-amqp-quorum', 'p50 ms')} | ${cell('submit-amqp-quorum', 'p99 ms')} |

| scenario | solves/s | p50 submit → pushed, ms | p99 submit → pushed, ms |
| --- | --- | --- | --- |
| Wyndor, ${WYNDOR.solves.toLocaleString('en')} solves over HTTP, ${WYNDOR.inFlight} in flight, ${WYNDOR.workers} worker processes (async pool × ${WYNDOR.concurrency}, -E), Redis | ${cell('wyndor-redis', 'solves/s')} | ${cell('wyndor-redis', 'p50 ms')} | ${cell('wyndor-redis', 'p99 ms')} |
| same, on the embedded SQLite broker | ${cell('wyndor-sqlite', 'solves/s')} | ${cell('wyndor-sqlite', 'p50 ms')} | ${cell('wyndor-sqlite', 'p99 ms')} |

### The seed system: one worker with \`-P process -c 2\` (issue #21)

\`npm start\`'s configuration: the gateway and one \`fennel worker -P process -c 2 -E\`. ${WYNDOR.inFlight} users each submit a
solve over HTTP (node:http, keep-alive), subscribe to it on one WebSocket and submit the next once its result is pushed;
${WYNDOR.warmUp.toLocaleString('en')} solves warm the path first, then ${WYNDOR.solves.toLocaleString('en')} are timed. Where the time goes: the CPU
each part spent per solve over the timed part (\`/proc/<pid>/stat\` for the gateway, the worker's main process and
its pool slots; \`process.cpuUsage()\` for the driver playing the users; \`INFO cpu\` for Redis, server-wide). Two CPUs
give 2,000,000 µs a second, so ${WYNDOR_AIM_SOLVES_PER_SEC.toLocaleString('en')} solves/s leaves 1,000 µs of CPU per solve for everything.

| engine | solves/s | p50 ms | p99 ms | CPU µs per solve: driver | gateway | worker | pool slots (GLPK) | Redis | total |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${['sqlite', 'redis'].map((engine) => {
  const id = `wyndor-process-${engine}`;
  const parts = ['driver', 'gateway', 'worker', 'slots', 'redis'];
  const total = parts.reduce((sum, part) => sum + (med(id, `${part} CPU`) ?? 0), 0);
  return `| ${engine === 'sqlite' ? 'SQLite' : 'Redis'} | ${cell(id, 'solves/s')} | ${cell(id, 'p50 ms')} | ${cell(id, 'p99 ms')} | ${parts.map((part) => (engine === 'sqlite' && part === 'redis' ? '–' : fmt(med(id, `${part} CPU`), 'µs/task'))).join(' | ')} | ${fmt(total, 'µs/task')} |`;
}).join('\n')}

Aim (issue #21), ≥ ${WYNDOR_AIM_SOLVES_PER_SEC.toLocaleString('en')} solves/s with one worker \`-P process -c 2\`:
${['sqlite', 'redis'].map((engine) => {
  const rate = med(`wyndor-process-${engine}`, 'solves/s');
  return `- ${engine === 'sqlite' ? 'SQLite' : 'Redis'}: ${fmt(rate, 'tasks/s')} solves/s, ${aim(rate === undefined ? undefined : rate >= WYNDOR_AIM_SOLVES_PER_SEC)}`;
}).join('\n')}

Aims (issue #7), submissions with ${SUBMIT.connections} connections:
${submitLines.join('\n')}

Nobody consumes during a submission run, so each queue grows by the 10 s of submissions (70,000 to 130,000 messages): a classic queue confirms a
persistent message once its index is synced to disk, in batches, which is where its p99 comes from; a quorum queue
confirms after its log's own, more frequent fsync. A classic queue is one Erlang process, so one queue's confirms
are bound by about one CPU of RabbitMQ's: the bare publisher's row is that bound for the gateway's message (a Celery
message: its protocol headers, some twenty fields, are an AMQP table RabbitMQ decodes and stores with each message;
the same publisher with a bare 900-byte body and no headers confirmed about 7,000–8,000 a second here). The
gateway's row is below it because autocannon, the gateway and RabbitMQ then share the two CPUs.

The Wyndor latency is what a user of the page waits: POST, broker, worker, GLPK (well under 1 ms), result store, and the push over the WebSocket; with ${WYNDOR.inFlight} solves in flight it includes queueing behind the others.`;
}
