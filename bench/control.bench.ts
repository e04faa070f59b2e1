// Remote control's round trip (issue #16), one section of BENCHMARKS.md (`npm run bench -- control`): how long one
// addressed ping takes, from the request's broadcast until the addressed worker's reply is gathered, for every pair
// of client and worker, Fennel's and Python Celery's, on each broker they share (Fennel alone on SQLite), in one run.
//
// Every pair meets a worker of its own, freshly started, alone and idle, consuming a queue nothing is sent to:
// `node bin/fennel.js worker --app bench/tasks.ts -P async -c 1 -n <node> -Q <queue>` (compiled, as users run it) or
// `python3 -m celery -A celery_control worker -P solo -n <node> -Q <queue>` (bench/peers/celery_control.py). Clients:
// Fennel's is this process, through the built package (`app.control.ping({ destination: [node], timeoutMs: 5000 })`),
// timed with performance.now() around each call; Celery's is `python3 celery_control.py ping <node> <n> <warm-up>`,
// timed inside Python with time.perf_counter() around each `app.control.ping(destination=[node], timeout=5)`. With a
// destination, both stop gathering at the reply, so neither waits out its timeout. Each client sends WARMUP untimed
// pings, then PINGS timed ones, one after another; a pair whose ping goes unanswered, or whose client or worker fails,
// stops there and is named in the document with the reason, and the other pairs still run. Then, on Redis, the
// command lines: `fennel inspect ping -d <node>` and `celery inspect ping -d <node>`, wall time from spawn to exit
// (process start-up included), against each worker. Redis database 15 (the benchmarks'), flushed before and after; on
// RabbitMQ each worker's queue (and the exchange and direct queue Fennel's declares) is deleted after it stops.

import { randomUUID } from 'node:crypto';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Fennel } from 'fennel';
import { AMQP_URL } from './amqp.bench.ts';
import { REDIS_URL, flush } from './redis.bench.ts';
import { CELERY_PYTHON, deleteAmqp, FENNEL_BIN, median, percentile, ROOT, runCeleryProducer, runProcess, startCeleryWorker, startWorker, tempDatabase, type WorkerProcess } from './support.ts';

/** Timed pings per pair and run, after WARMUP untimed ones; FENNEL_BENCH_CONTROL_PINGS for a quick look. */
const PINGS = Number(process.env['FENNEL_BENCH_CONTROL_PINGS'] || 300);
const WARMUP = 30;
/** Each command line, against each worker, per run (after one untimed call of each). */
const CLI_CALLS = 10;
/** How long a client gathers a reply: far above any round trip, so that it never ends a gathering. */
const TIMEOUT_MS = 5000;
// kombu spells the default vhost "/" as "//".
const CELERY_AMQP_URL = AMQP_URL.replace(/\/$/, '//');
const PEERS_DIR = join(ROOT, 'bench', 'peers');

type Side = 'fennel' | 'celery';
type Broker = 'sqlite' | 'redis' | 'amqp';
const SIDES: Record<Side, string> = { fennel: 'Fennel', celery: 'Celery 5' };
const BROKERS: Record<Broker, string> = { sqlite: 'SQLite', redis: 'Redis', amqp: 'RabbitMQ' };

const SIDE_LIST = ['fennel', 'celery'] as const;
/** Every pair, [client, worker, broker], in the order they run: each broker's own pairs first, then the cross ones. */
const PAIRS: ReadonlyArray<readonly [Side, Side, Broker]> = [
  ['fennel', 'fennel', 'sqlite'],
  ...(['redis', 'amqp'] as const).flatMap((broker) =>
    (
      [
        ['fennel', 'fennel'],
        ['celery', 'celery'],
        ['fennel', 'celery'],
        ['celery', 'fennel'],
      ] as const
    ).map(([client, worker]) => [client, worker, broker] as const),
  ),
];

/** A pair's key: `<client>-><worker>@<broker>`. */
const pairKey = (client: Side, worker: Side, broker: Broker): string => `${client}->${worker}@${broker}`;
const pairTitle = (client: Side, worker: Side, broker: Broker): string => `${SIDES[client]} → ${SIDES[worker]} on ${BROKERS[broker]}`;

/** A pair that could not finish a run, and why. */
interface Failure {
  key: string;
  text: string;
}

function celeryEnv(broker: Exclude<Broker, 'sqlite'>): Record<string, string> {
  return { CELERY_BENCH_BROKER: broker === 'redis' ? REDIS_URL : CELERY_AMQP_URL, PYTHONDONTWRITEBYTECODE: '1' };
}

/** A worker being measured: its node name, its broker, and the URL Fennel's clients use for it. */
interface Target {
  node: string;
  broker: Broker;
  fennelUrl: string;
}

/** Pings answered so far in a pair (warm-up included), for the reason given when the pair fails. */
interface Progress {
  answered: number;
}

/**
 * Starts `worker` on `broker` (a fresh node name and queue; a fresh database file on SQLite), runs `body` once it
 * answers a ping, then stops it and removes what it declared. A worker that dies meanwhile fails the body.
 */
async function withWorker<T>(worker: Side, broker: Broker, body: (target: Target) => Promise<T>): Promise<T> {
  const id = randomUUID().slice(0, 8);
  const node = `bench-control-${id}@${worker}`;
  const queue = `bench-control-${id}`;
  const db = broker === 'sqlite' ? tempDatabase() : undefined;
  const target: Target = { node, broker, fennelUrl: db?.url ?? (broker === 'redis' ? REDIS_URL : AMQP_URL) };
  let running: WorkerProcess | undefined;
  try {
    running =
      worker === 'fennel'
        ? await startWorker({ brokerUrl: target.fennelUrl, pool: 'async', concurrency: 1, flags: ['-n', node, '-Q', queue] })
        : await startCeleryWorker('celery_control', ['-P', 'solo', '-Q', queue], node, celeryEnv(broker as Exclude<Broker, 'sqlite'>));
    // Ready is printed once the worker consumes; its mailbox may be a moment behind (Celery's): wait for one answer.
    const work = answering(target).then(() => body(target));
    try {
      return await Promise.race([work, running.died]);
    } catch (error) {
      await Promise.allSettled([work]); // a client still waiting for a dead worker ends within its timeout
      throw error;
    }
  } finally {
    await running?.stop();
    if (broker === 'amqp') await deleteAmqp(AMQP_URL, [queue, `${node}.dq2`]);
    db?.cleanup();
  }
}

/** Resolves once the node answers a ping (1-second gatherings, for up to 30 s). */
async function answering(target: Target): Promise<void> {
  const app = new Fennel({ broker: target.fennelUrl });
  try {
    for (let attempt = 0; attempt < 30; attempt++) {
      const replies = await app.control.ping({ destination: [target.node], timeoutMs: 1000 });
      if (replies.some((reply) => target.node in reply)) return;
    }
    throw new Error(`${target.node} did not answer a ping within 30 s`);
  } finally {
    await app.close();
  }
}

/** Fennel's client: WARMUP, then PINGS timed round trips of `app.control.ping` (ms), one after another. */
async function fennelPings(target: Target, progress: Progress): Promise<number[]> {
  const app = new Fennel({ broker: target.fennelUrl });
  const once = async (): Promise<number> => {
    const t0 = performance.now();
    const replies = await app.control.ping({ destination: [target.node], timeoutMs: TIMEOUT_MS });
    const elapsed = performance.now() - t0;
    if (!replies.some((reply) => reply[target.node]?.ok === 'pong')) throw new Error(`no pong from ${target.node} within ${TIMEOUT_MS} ms: ${JSON.stringify(replies)}`);
    progress.answered++;
    return elapsed;
  };
  try {
    for (let i = 0; i < WARMUP; i++) await once();
    const samples: number[] = [];
    for (let i = 0; i < PINGS; i++) samples.push(await once());
    return samples;
  } finally {
    await app.close();
  }
}

/** Celery's client, in its own Python process: the same counts, timed inside Python. */
async function celeryPings(target: Target, progress: Progress): Promise<number[]> {
  if (target.broker === 'sqlite') throw new Error('Celery has no SQLite broker');
  const result = await runCeleryProducer<{ samples_ms: number[]; answered: number; error?: string }>('celery_control.py', ['ping', target.node, PINGS, WARMUP], celeryEnv(target.broker));
  progress.answered = result.answered;
  if (result.error !== undefined) throw new Error(`Celery's client: ${result.error}`);
  if (result.samples_ms.length !== PINGS) throw new Error(`celery_control.py returned ${result.samples_ms.length} samples, not ${PINGS}`);
  return result.samples_ms;
}

const pings = (client: Side, target: Target, progress: Progress): Promise<number[]> => (client === 'fennel' ? fennelPings(target, progress) : celeryPings(target, progress));

/** Wall time (ms) of one `inspect ping -d <node>` command line, from spawn to exit; it exits non-zero if the node did not answer. */
async function cliWallMs(client: Side, target: Target): Promise<number> {
  const t0 = performance.now();
  if (client === 'fennel') {
    await runProcess(process.execPath, [FENNEL_BIN, 'inspect', 'ping', '-d', target.node, '-b', REDIS_URL, '--timeout', String(TIMEOUT_MS)], { timeoutMs: 60_000 });
  } else {
    await runProcess(CELERY_PYTHON, ['-m', 'celery', '-A', 'celery_control', 'inspect', 'ping', '-d', target.node, '--timeout', String(TIMEOUT_MS / 1000)], {
      cwd: PEERS_DIR,
      env: celeryEnv('redis'),
      timeoutMs: 60_000,
    });
  }
  return performance.now() - t0;
}

/** The last line of an error's message (a Python traceback's ends with the exception), shortened for a table. */
function lastLine(error: unknown): string {
  const lines = String((error as Error).message ?? error)
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const line = lines.at(-1) ?? 'unknown error';
  return line.length > 240 ? `${line.slice(0, 240)}…` : line;
}

function celeryAvailable(): Promise<boolean> {
  return runProcess(CELERY_PYTHON, ['-c', 'import celery, redis, amqp'], { timeoutMs: 30_000 }).then(
    () => true,
    () => false,
  );
}

const ms = (value: number): string => (Number.isFinite(value) ? value.toFixed(2) : '–');

export async function controlSection(runs = 1): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const celery = await celeryAvailable();
  if (!celery) console.error(`${CELERY_PYTHON} cannot import celery, redis and amqp: Celery's pairs are left out`);
  // Every pair meets a worker of its own, freshly started: no pair inherits another's state (or its failure).
  const pairs = PAIRS.filter(([client, worker, broker]) => broker === 'sqlite' || celery || (client === 'fennel' && worker === 'fennel'));
  const samples = new Map<string, number[]>();
  const failures: Failure[] = [];
  const cli = new Map<string, number[]>();
  const add = (map: Map<string, number[]>, key: string, values: readonly number[]): void => void map.set(key, [...(map.get(key) ?? []), ...values]);
  await flush();
  try {
    for (let round = 1; round <= runs; round++) {
      for (const [client, worker, broker] of pairs) {
        const t0 = performance.now();
        const progress: Progress = { answered: 0 };
        const what = pairTitle(client, worker, broker);
        try {
          const values = await withWorker(worker, broker, (target) => pings(client, target, progress));
          add(samples, pairKey(client, worker, broker), values);
          console.error(`control: ${what}, run ${round}/${runs}: median ${ms(median(values))} ms, p99 ${ms(percentile(values, 99))} ms (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
        } catch (error) {
          // A pair that fails is named in the document with its reason; the other pairs are still measured.
          const text = `${what}, run ${round}: failed after ${progress.answered} answered pings (the first ${WARMUP} untimed): ${lastLine(error)}`;
          failures.push({ key: pairKey(client, worker, broker), text });
          console.error(`control: ${text}`);
        }
      }
      // The command lines, on Redis, against each worker in turn (the two commands taking turns).
      for (const worker of celery ? SIDE_LIST : (['fennel'] as const)) {
        const clients = celery ? SIDE_LIST : (['fennel'] as const);
        await withWorker(worker, 'redis', async (target) => {
          for (const client of clients) await cliWallMs(client, target); // untimed: the files' first read
          for (let i = 0; i < CLI_CALLS; i++) for (const client of clients) add(cli, pairKey(client, worker, 'redis'), [await cliWallMs(client, target)]);
        });
        for (const client of clients) console.error(`control: ${client} inspect ping → ${SIDES[worker]}, run ${round}/${runs}: median ${ms(median(cli.get(pairKey(client, worker, 'redis'))!))} ms`);
      }
    }
  } finally {
    await flush();
  }
  const load1 = loadavg();

  const rows = pairs.map(([client, worker, broker]) => {
    const values = samples.get(pairKey(client, worker, broker)) ?? [];
    const failed = failures.some((f) => f.key === pairKey(client, worker, broker));
    const cells = values.length ? [`**${ms(median(values))}**`, ms(percentile(values, 99)), ms(Math.min(...values)), ms(Math.max(...values))] : ['–', '–', '–', '–'];
    return `| ${SIDES[client]} → ${SIDES[worker]} | ${BROKERS[broker]} | ${cells.join(' | ')} | ${values.length}${failed ? ' (**failed**, below)' : ''} |`;
  });
  const ratios = (['redis', 'amqp'] as const).flatMap((broker) => {
    const fennel = samples.get(pairKey('fennel', 'fennel', broker));
    const peer = samples.get(pairKey('celery', 'celery', broker));
    if (!fennel || !peer) return [`- ${BROKERS[broker]}: – (a pair is missing)`];
    const r = median(fennel) / median(peer);
    return [`- ${BROKERS[broker]}: Fennel → Fennel ${ms(median(fennel))} ms ÷ Celery → Celery ${ms(median(peer))} ms = **${r.toFixed(2)}×** (${r < 1 ? "below 1: Fennel's round trip is shorter" : r > 1 ? "above 1: Celery's round trip is shorter" : 'the same'}).`];
  });
  const crossBrokers = (['redis', 'amqp'] as const).filter((broker) => pairs.some(([c, w, b]) => b === broker && c !== w));
  const crossFailed = crossBrokers.filter((broker) => failures.some((f) => f.key === pairKey('fennel', 'celery', broker) || f.key === pairKey('celery', 'fennel', broker)));
  const interop = !crossBrokers.length
    ? 'No cross pairs ran (Celery is not available).'
    : crossFailed.length
      ? `The cross pairs are the interop claim, and it **does not hold** on ${crossFailed.map((b) => BROKERS[b]).join(' and ')}: see the failures below.${crossBrokers.length > crossFailed.length ? ` On ${crossBrokers.filter((b) => !crossFailed.includes(b)).map((b) => BROKERS[b]).join(' and ')} every cross ping was answered.` : ''}`
      : `The cross pairs are the interop claim: Fennel's client got every answer from Celery's worker, and Celery's client from Fennel's, on ${crossBrokers.map((b) => BROKERS[b]).join(' and ')}.`;
  const cliCell = (client: Side, worker: Side): string => {
    const values = cli.get(pairKey(client, worker, 'redis'));
    return values ? `**${median(values).toFixed(0)}** (${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)})` : '–';
  };
  const cliRows = (celery ? SIDE_LIST : (['fennel'] as const)).map(
    (client) =>
      `| ${client === 'fennel' ? '`node bin/fennel.js inspect ping -d <node> -b <redis> --timeout 5000`' : '`python3 -m celery -A celery_control inspect ping -d <node> --timeout 5`'} | ${cliCell(client, 'fennel')} | ${cliCell(client, 'celery')} |`,
  );

  return `## Remote control: round trip of an addressed ping

Issue #16. How long one \`ping\` addressed to one worker takes, for every pair of client and worker, Fennel's and
Python Celery's, on each broker they share (Fennel alone on SQLite, as Celery has no SQLite broker). The worker is
idle (nothing is sent to its queue) and alone on the broker: Fennel's \`fennel worker -P async -c 1\`, Celery's
\`celery worker -P solo\`; every pair meets a worker of its own, freshly started with a fresh node name. The
client sends ${WARMUP} untimed pings, then ${PINGS} timed ones one after another, each gathering until the addressed worker's
reply arrives (a destination is given, so neither waits out its ${TIMEOUT_MS / 1000} s timeout). A pair whose ping goes
unanswered, or whose client or worker fails, stops there and is listed under *Failures* with the reason (the last
line its failing process printed). ${runs} run(s); cells are over all timed pings of all runs.

- Command: \`npm run bench -- control\` (bench/control.bench.ts, bench/peers/celery_control.py)
- Machine: ${availableParallelism()} CPUs (nproc), ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at the start and ${load1.map((l) => l.toFixed(2)).join(' ')} at the end (1, 5, 15 min)
- Brokers: \`sqlite://\` a temp file; \`${REDIS_URL}\`; \`${AMQP_URL.replace(/\/\/[^@/]*@/, '//')}\`
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC

| client → worker | broker | round trip: median, ms | p99, ms | min, ms | max, ms | pings |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

Fennel → Fennel's median ÷ Celery → Celery's, on the same broker:

${ratios.join('\n')}

${interop}

### Failures

${failures.length ? failures.map((f) => `- ${f.text}`).join('\n') : '- None: every ping of every pair was answered.'}

### The command line, on Redis

Wall time of one \`inspect ping -d <node>\` command, from spawn to exit: **process start-up included** (Node loading
bin/fennel.js and the built package, Python importing Celery and the app), then connecting, the ping, and exit.
Median (min–max) of ${CLI_CALLS} calls per run of each, in ms, the two commands taking turns, after one untimed call of each.

| command | → Fennel worker | → Celery worker |
| --- | ---: | ---: |
${cliRows.join('\n')}

### What each clock includes

- **Fennel's client** (this process, the built package): \`performance.now()\` around \`await app.control.ping({ destination:
  [node], timeoutMs: ${TIMEOUT_MS} })\`. That is: opening a reply queue for this call (Redis: SADD of its binding and a
  connection of its own for BRPOP; RabbitMQ: declare, bind and consume an exclusive queue; SQLite: a channel
  subscription), broadcasting the request (Redis PUBLISH; RabbitMQ a publish confirmed by the broker; SQLite a row
  committed), the worker receiving it, checking the address, answering, the reply read, and closing the reply queue
  (Redis: SREM, DEL and the connection closed; RabbitMQ: cancel and delete). The app's command connection is open
  from the warm-up on.
- **Celery's client** (\`python3 celery_control.py ping\`, a process of its own): \`time.perf_counter()\` around
  \`app.control.ping(destination=[node], timeout=${TIMEOUT_MS / 1000})\`: taking the app's pooled connection, declaring the
  reply queue unless kombu's cache says this connection has (its name comes from the id of a Mailbox copied for
  each call, so it may be new), publishing the request, consuming the reply queue, reading until the reply,
  cancelling the consumer (on Redis kombu then also drops the reply queue's binding). Python's start-up and its
  first connection are outside the clock (the warm-up opens it).
- **Command line**: the whole process, as above.`;
}
