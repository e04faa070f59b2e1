// Channel throughput per engine (issue #14), one section of BENCHMARKS.md (`npm run bench -- channels`): one publisher
// sends N small messages `{ seq, t }` as fast as it can on `app.channel(name)`, to one subscriber and to ten, on
// memory://, sqlite:// (a temp file), redis:// and amqp://; beside Fennel on Redis and RabbitMQ, the bare client
// doing the same (ioredis PUBLISH/SUBSCRIBE; an amqplib fanout exchange with a queue per subscriber, publisher
// confirms as Fennel's), with the same messages, the same subscriber processes and the same publishing loop, so
// Fennel's own cost shows as a ratio.
//
// Layout: the publisher is this process (Fennel imported as built, from dist/). Each subscriber is a process of its
// own (bench/peers/channel-subscriber.ts, one subscription each), so the broker does the fan-out and no event loop
// is shared; on memory:// (nothing crosses a process) the subscriptions are in this process, on a second app.
// A run: start the subscribers and wait for every `ready`; a warm-up of WARMUP messages (seq −WARMUP … −1), the same
// publishing loop, until every subscriber has the last one; then the timed pass: the clock starts before the first
// publish and stops at the last message received by the slowest subscriber (each subscriber stamps its last arrival
// with `performance.timeOrigin + performance.now()`, the clock used here). Publishing is pipelined: WINDOW calls are
// made, then awaited together (Promise.all), then the next WINDOW; the one-by-one layout awaits each call.
// Subscriptions have a buffer large enough for the whole run (bufferSize = N + WARMUP), so a subscription can lose a
// message only where the engine does: each subscriber counts what arrived, duplicates and out-of-order messages.
// Runs go in rounds (every scenario once, then again), `runs` rounds (3 unless --runs); cells are medians.
// Knobs: FENNEL_BENCH_CHANNELS_REDIS_URL (default redis://127.0.0.1:6379/1: a database no test or other benchmark
// uses, test/support/services.ts; nothing is stored in it, and as pub/sub is server-wide the channel names are
// unique per run too) and FENNEL_BENCH_AMQP_URL (as bench/amqp.bench.ts; a run's exchanges are deleted after it).

import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { connect, type ConfirmChannel } from 'amqplib';
import { Fennel } from 'fennel';
import { Redis } from 'ioredis';
import { AMQP_URL } from './amqp.bench.ts';
import { cpuModel, median, ROOT, tempDatabase } from './support.ts';

export const CHANNELS_REDIS_URL = process.env['FENNEL_BENCH_CHANNELS_REDIS_URL'] || 'redis://127.0.0.1:6379/1';

/**
 * Messages per timed pass, per engine and layout: about a second or two of each on a 2-CPU machine (fewer with ten
 * subscribers, as the broker delivers ten times as many; fewer awaited one by one, a round trip each).
 */
const SIZES: Record<Engine, Record<LayoutId, number>> = {
  memory: { one: 100_000, ten: 100_000, serial: 20_000 },
  sqlite: { one: 50_000, ten: 20_000, serial: 5_000 },
  redis: { one: 50_000, ten: 20_000, serial: 5_000 },
  amqp: { one: 20_000, ten: 5_000, serial: 2_000 },
};
/** Publishes in flight: this many calls, then awaited together. */
const WINDOW = 1_000;
/** Untimed messages before each timed pass, with the same loop. */
const WARMUP = 1_000;

type Engine = 'memory' | 'sqlite' | 'redis' | 'amqp';
type Peer = 'fennel' | 'raw';
type LayoutId = 'one' | 'ten' | 'serial';

interface Layout {
  id: LayoutId;
  subscribers: number;
  window: number;
  title: string;
}

const LAYOUTS: Layout[] = [
  { id: 'one', subscribers: 1, window: WINDOW, title: `1 subscriber, ${WINDOW.toLocaleString('en')} publishes in flight` },
  { id: 'ten', subscribers: 10, window: WINDOW, title: `10 subscribers, ${WINDOW.toLocaleString('en')} publishes in flight` },
  { id: 'serial', subscribers: 1, window: 1, title: '1 subscriber, each publish awaited' },
];

const ENGINE_TITLE: Record<Engine, string> = { memory: '`memory://`', sqlite: '`sqlite://` (temp file)', redis: '`redis://`', amqp: '`amqp://` (RabbitMQ)' };
const RAW_TITLE: Partial<Record<Engine, string>> = { redis: 'bare ioredis', amqp: 'bare amqplib' };

interface Message {
  seq: number;
  t: number;
}

/** One run's numbers. */
interface RunResult {
  /** Timed messages ÷ (last message at the slowest subscriber − first publish), per subscriber. */
  rate: number;
  /** Timed messages ÷ (all publishes resolved − first publish). */
  publishRate: number;
  /** Messages sent × subscribers, and what arrived (each message counted once per subscriber). */
  expected: number;
  received: number;
  duplicates: number;
  outOfOrder: number;
  /** The publishing process's CPU per message (on memory:// the subscribers' too: they are in it). */
  publisherCpuUs: number;
  /** The subscriber processes' CPU per message received, averaged over them (NaN on memory://). */
  subscriberCpuUs: number;
  errors: string[];
}

const now = (): number => performance.timeOrigin + performance.now();
const cpuUs = (): number => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

// ---------------------------------------------------------------------------------------------------------
// Publishers

interface Publisher {
  /** Opens what it needs (connection, file), before the subscribers start. */
  open(): Promise<void>;
  publish(message: Message): Promise<void>;
  close(): Promise<void>;
}

function fennelPublisher(url: string, name: string): Publisher & { app: Fennel } {
  const app = new Fennel({ broker: url });
  const channel = app.channel<Message>(name);
  return {
    app,
    // The engine opens on first use: the SQLite file (and its tables) exist before any subscriber opens it.
    open: async () => void app.channelEngine,
    publish: (message) => channel.publish(message),
    close: () => app.close(),
  };
}

function ioredisPublisher(url: string, name: string): Publisher {
  const redis = new Redis(url, { lazyConnect: true });
  return {
    open: () => redis.connect(),
    publish: async (message) => void (await redis.publish(name, JSON.stringify(message))),
    close: async () => void (await redis.quit()),
  };
}

/** A confirm channel, as Fennel publishes: each publish resolves when RabbitMQ confirms it. */
function amqplibPublisher(url: string, name: string): Publisher {
  let close: () => Promise<void> = async () => {};
  let channel: ConfirmChannel | undefined;
  return {
    open: async () => {
      const connection = await connect(url, { noDelay: true });
      close = () => connection.close();
      channel = await connection.createConfirmChannel();
      await channel.assertExchange(name, 'fanout', { durable: false, autoDelete: false });
    },
    publish: (message) =>
      new Promise<void>((resolve, reject) => {
        const body = Buffer.from(JSON.stringify(message), 'utf8');
        channel!.publish(name, '', body, { contentType: 'application/json', contentEncoding: 'utf-8', deliveryMode: 1 }, (error: Error | null) =>
          error ? reject(error) : resolve(),
        );
      }),
    close: () => close(),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Subscribers

interface Done {
  received: number;
  duplicates: number;
  outOfOrder: number;
  lastAt: number;
  /** CPU µs the timed messages cost the subscriber (NaN in this process). */
  cpuUs: number;
  error?: string;
}

interface Subscriber {
  ready: Promise<void>;
  warm: Promise<void>;
  done: Promise<Done>;
  /** Asks for "done" now, with what has arrived. */
  stop(): void;
  kill(): void;
}

/** A promise with its settle functions; a rejection nobody awaits is not unhandled. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: Error) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** bench/peers/channel-subscriber.ts in a process of its own. */
function childSubscriber(kind: 'fennel' | 'ioredis' | 'amqplib', url: string, name: string, count: number, bufferSize: number): Subscriber {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/peers/channel-subscriber.ts', kind, url, name, String(count), String(bufferSize)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  live.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
  const ready = deferred<void>();
  const warm = deferred<void>();
  const done = deferred<Done>();
  let warmCpu = NaN;
  let buffered = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffered.slice(0, nl)) as { event: string; cpuUs: number } & Omit<Done, 'cpuUs'>;
      buffered = buffered.slice(nl + 1);
      if (line.event === 'ready') ready.resolve();
      else if (line.event === 'warm') {
        warmCpu = line.cpuUs;
        warm.resolve();
      } else if (line.event === 'done') {
        const { received, duplicates, outOfOrder, lastAt, error } = line;
        done.resolve({ received, duplicates, outOfOrder, lastAt, cpuUs: line.cpuUs - warmCpu, ...(error ? { error } : {}) });
      }
    }
  });
  child.once('exit', (code, signal) => {
    live.delete(child);
    const error = new Error(`subscriber ${kind} exited (code ${code}, signal ${signal}):\n${stderr}`);
    for (const d of [ready, warm, done]) d.reject(error); // no effect on what has settled
  });
  return {
    ready: ready.promise,
    warm: warm.promise,
    done: done.promise,
    stop: () => void (child.stdin.writable && child.stdin.write('stop\n')),
    kill: () => {
      child.kill('SIGKILL');
      live.delete(child);
    },
  };
}

/** A subscription in this process (memory://), counting as the child does. */
function inProcessSubscriber(app: Fennel, name: string, count: number, bufferSize: number): Subscriber {
  const subscription = app.channel<Message>(name).subscribe({ bufferSize, overflow: 'error' });
  const seen = new Uint8Array(count);
  const state = { received: 0, duplicates: 0, outOfOrder: 0, highest: -1, lastAt: NaN, error: undefined as string | undefined };
  let onWarm: () => void = () => {};
  let onDone: (done: Done) => void = () => {};
  const warm = new Promise<void>((resolve) => (onWarm = resolve));
  const done = new Promise<Done>((resolve) => (onDone = resolve));
  const finish = (): void => {
    const { received, duplicates, outOfOrder, lastAt, error } = state;
    onDone({ received, duplicates, outOfOrder, lastAt, cpuUs: NaN, ...(error ? { error } : {}) });
    void subscription.return();
  };
  void (async () => {
    try {
      for await (const { seq } of subscription) {
        if (seq < 0) {
          if (seq === -1) onWarm();
          continue;
        }
        state.lastAt = now();
        if (seq >= count || seen[seq]) {
          state.duplicates++;
          continue;
        }
        seen[seq] = 1;
        state.received++;
        if (seq < state.highest) state.outOfOrder++;
        else state.highest = seq;
        if (state.received === count) break;
      }
    } catch (error) {
      state.error = String((error as Error).message ?? error);
    }
    finish();
  })();
  return { ready: subscription.ready, warm, done, stop: finish, kill: () => void subscription.return() };
}

// ---------------------------------------------------------------------------------------------------------
// One run

/** Resolves with `promise`, or rejects after `ms` saying what it waited for. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Publishes seq `from` … `from + count − 1`, `window` calls at a time, each window awaited together. */
async function publishAll(publisher: Publisher, from: number, count: number, window: number): Promise<void> {
  for (let i = 0; i < count; i += window) {
    const calls: Array<Promise<void>> = [];
    for (let j = i; j < Math.min(count, i + window); j++) calls.push(publisher.publish({ seq: from + j, t: now() }));
    await Promise.all(calls);
  }
}

let runNumber = 0;

/** Deletes the exchanges a RabbitMQ run declared (transient, but kept when unused: they would pile up). */
async function deleteExchanges(names: string[]): Promise<void> {
  const connection = await connect(AMQP_URL);
  connection.on('error', () => {});
  try {
    const channel = await connection.createChannel();
    for (const name of names) await channel.deleteExchange(name);
  } finally {
    await connection.close().catch(() => {});
  }
}

function brokerUrl(engine: Engine): { url: string; cleanup: () => void } {
  if (engine === 'sqlite') return tempDatabase();
  const url = engine === 'memory' ? 'memory://' : engine === 'redis' ? CHANNELS_REDIS_URL : AMQP_URL;
  return { url, cleanup: () => {} };
}

async function runOnce(engine: Engine, peer: Peer, layout: Layout): Promise<RunResult> {
  const count = SIZES[engine][layout.id];
  const bufferSize = count + WARMUP;
  const name = `bench.channels.${process.pid}.${++runNumber}`;
  const { url, cleanup } = brokerUrl(engine);
  const fennel = peer === 'fennel' ? fennelPublisher(url, name) : undefined;
  const publisher = fennel ?? (engine === 'redis' ? ioredisPublisher(url, name) : amqplibPublisher(url, name));
  let subscriberApp: Fennel | undefined;
  const subscribers: Subscriber[] = [];
  try {
    await publisher.open();
    for (let i = 0; i < layout.subscribers; i++) {
      if (engine === 'memory') subscribers.push(inProcessSubscriber((subscriberApp ??= new Fennel({ broker: url })), name, count, bufferSize));
      else subscribers.push(childSubscriber(peer === 'fennel' ? 'fennel' : engine === 'redis' ? 'ioredis' : 'amqplib', url, name, count, bufferSize));
    }
    await within(Promise.all(subscribers.map((s) => s.ready)), 120_000, 'the subscribers to be ready');
    await publishAll(publisher, -WARMUP, WARMUP, layout.window);
    await within(Promise.all(subscribers.map((s) => s.warm)), 60_000, "the warm-up's last message at every subscriber");

    const cpu0 = cpuUs();
    const start = now();
    await publishAll(publisher, 0, count, layout.window);
    const published = now();
    const publisherCpuUs = (cpuUs() - cpu0) / count;
    // The last messages may still be on their way; past this, whatever has not arrived is lost.
    const grace = Math.max(20_000, 10 * (published - start));
    const all = Promise.all(subscribers.map((s) => s.done));
    try {
      await within(all, grace, 'every subscriber to receive every message');
    } catch {
      console.warn(`channels ${engine} ${peer} ${layout.id}: not every message arrived within ${grace.toFixed(0)} ms of the last publish; counting what did`);
      for (const s of subscribers) s.stop();
    }
    const done = await within(all, 30_000, 'the subscribers to report');
    const received = done.reduce((sum, d) => sum + d.received, 0);
    const fewest = Math.min(...done.map((d) => d.received));
    const lastAt = Math.max(...done.map((d) => d.lastAt));
    return {
      rate: (fewest * 1000) / (lastAt - start),
      publishRate: (count * 1000) / (published - start),
      expected: count * layout.subscribers,
      received,
      duplicates: done.reduce((sum, d) => sum + d.duplicates, 0),
      outOfOrder: done.reduce((sum, d) => sum + d.outOfOrder, 0),
      publisherCpuUs,
      subscriberCpuUs: done.reduce((sum, d) => sum + d.cpuUs / Math.max(1, d.received), 0) / done.length,
      errors: done.flatMap((d) => (d.error ? [d.error] : [])),
    };
  } finally {
    for (const s of subscribers) s.kill();
    await publisher.close().catch(() => {});
    await subscriberApp?.close();
    cleanup();
    if (engine === 'amqp') await deleteExchanges([peer === 'fennel' ? `fennel.channel.${name}` : name]).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------------------
// The section

interface Row {
  engine: Engine;
  peer: Peer;
  layout: Layout;
  runs: RunResult[];
}

async function reachable(engine: Engine): Promise<string | undefined> {
  try {
    if (engine === 'redis') {
      const redis = new Redis(CHANNELS_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      try {
        await redis.connect();
        await redis.ping();
      } finally {
        redis.disconnect();
      }
    } else if (engine === 'amqp') {
      const connection = await connect(AMQP_URL);
      await connection.close();
    }
    return undefined;
  } catch (error) {
    return `${engine} skipped: not reachable (${(error as Error).message})`;
  }
}

const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '–');
const us = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '–');
const cell = (values: number[], show: (v: number) => string): string =>
  values.length === 0 ? '–' : values.length > 1 ? `**${show(median(values))}** (${show(Math.min(...values))}–${show(Math.max(...values))})` : `**${show(median(values))}**`;
const ratio = (a: number[], b: number[]): string => (a.length && b.length ? `${(median(a) / median(b)).toFixed(2)}×` : '–');

function lossCell(runs: RunResult[]): string {
  if (runs.length === 0) return '–';
  const expected = runs.reduce((s, r) => s + r.expected, 0);
  const lost = runs.reduce((s, r) => s + (r.expected - r.received), 0);
  const dup = runs.reduce((s, r) => s + r.duplicates, 0);
  const ooo = runs.reduce((s, r) => s + r.outOfOrder, 0);
  const extra = [dup ? `${int(dup)} duplicated` : '', ooo ? `${int(ooo)} out of order` : ''].filter(Boolean).join(', ');
  return `${int(lost)} of ${int(expected)}${extra ? ` (${extra})` : ''}`;
}

function find(rows: Row[], engine: Engine, peer: Peer, layout: LayoutId): RunResult[] {
  return rows.find((r) => r.engine === engine && r.peer === peer && r.layout.id === layout)?.runs ?? [];
}

function throughputTable(rows: Row[], engines: Engine[]): string {
  const lines = [
    '| Engine | Subscribers and publishing | Messages | Fennel, msg/s per subscriber | Bare client, msg/s per subscriber | Fennel ÷ bare | Fennel publishing, msg/s | Bare client publishing, msg/s | Lost: Fennel | Lost: bare client |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const engine of engines) {
    for (const layout of LAYOUTS) {
      const f = find(rows, engine, 'fennel', layout.id);
      const r = find(rows, engine, 'raw', layout.id);
      const count = SIZES[engine][layout.id];
      const raw = RAW_TITLE[engine];
      lines.push(
        `| ${ENGINE_TITLE[engine]} | ${layout.title} | ${int(count)} | ${cell(f.map((x) => x.rate), int)} | ${raw ? `${raw}: ${cell(r.map((x) => x.rate), int)}` : '–'} | ${ratio(
          f.map((x) => x.rate),
          r.map((x) => x.rate),
        )} | ${cell(f.map((x) => x.publishRate), int)} | ${raw ? cell(r.map((x) => x.publishRate), int) : '–'} | ${lossCell(f)} | ${raw ? lossCell(r) : '–'} |`,
      );
    }
  }
  return lines.join('\n');
}

function cpuTable(rows: Row[], engines: Engine[]): string {
  const lines = [
    '| Engine | Subscribers and publishing | Publisher: Fennel | Publisher: bare client | Fennel ÷ bare | Each subscriber: Fennel | Each subscriber: bare client | Fennel ÷ bare |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const engine of engines) {
    for (const layout of LAYOUTS) {
      const f = find(rows, engine, 'fennel', layout.id);
      const r = find(rows, engine, 'raw', layout.id);
      const fp = f.map((x) => x.publisherCpuUs);
      const rp = r.map((x) => x.publisherCpuUs);
      const fs = f.map((x) => x.subscriberCpuUs).filter(Number.isFinite);
      const rs = r.map((x) => x.subscriberCpuUs).filter(Number.isFinite);
      lines.push(
        `| ${ENGINE_TITLE[engine]} | ${layout.title} | ${cell(fp, us)}${engine === 'memory' ? ' ¹' : ''} | ${cell(rp, us)} | ${ratio(fp, rp)} | ${cell(fs, us)} | ${cell(rs, us)} | ${ratio(fs, rs)} |`,
      );
    }
  }
  return lines.join('\n');
}


/** Runs the benchmark and returns the section of BENCHMARKS.md. */
export async function channelsSection(runs = 3): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const engines: Engine[] = [];
  const skipped: string[] = [];
  for (const engine of ['memory', 'sqlite', 'redis', 'amqp'] as const) {
    const why = await reachable(engine);
    if (why) {
      skipped.push(why);
      console.error(why);
    } else engines.push(engine);
  }
  const rows: Row[] = [];
  for (const engine of engines) {
    for (const layout of LAYOUTS) {
      for (const peer of ['fennel', 'raw'] as const) if (peer === 'fennel' || RAW_TITLE[engine]) rows.push({ engine, peer, layout, runs: [] });
    }
  }
  const retried: string[] = [];
  // Rounds: every scenario once, then again, so a busy minute on a shared machine is spread over all of them; on
  // Redis and RabbitMQ the peers' order turns each round.
  for (let round = 1; round <= runs; round++) {
    for (const engine of engines) {
      for (const layout of LAYOUTS) {
        const pair = rows.filter((r) => r.engine === engine && r.layout === layout);
        const ordered = round % 2 === 0 ? [...pair].reverse() : pair;
        for (const row of ordered) {
          const t0 = performance.now();
          let result: RunResult;
          try {
            result = await runOnce(engine, row.peer, layout);
          } catch (error) {
            // One failed run (a hiccup on a shared machine) is retried once and reported; a second failure stops it.
            const first = String((error as Error).message ?? error).split('\n')[0]!;
            console.warn(`channels ${engine} ${row.peer} ${layout.id} run ${round} failed, retrying once: ${first}`);
            retried.push(`${engine} ${row.peer} ${layout.id} (round ${round}): ${first}`);
            result = await runOnce(engine, row.peer, layout);
          }
          row.runs.push(result);
          console.log(
            `channels ${engine} ${row.peer} ${layout.id} run ${round}/${runs}: ${int(result.rate)} msg/s per subscriber, published ${int(result.publishRate)} msg/s, received ${int(result.received)}/${int(result.expected)}${
              result.duplicates || result.outOfOrder ? ` (${result.duplicates} duplicated, ${result.outOfOrder} out of order)` : ''
            }${result.errors.length ? `, errors: ${result.errors.join('; ')}` : ''}, CPU µs/msg publisher ${us(result.publisherCpuUs)} subscriber ${us(result.subscriberCpuUs)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
          );
        }
      }
    }
  }
  const load1 = loadavg();
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const errors = rows.flatMap((r) => r.runs.flatMap((x) => x.errors.map((e) => `${r.engine} ${r.peer} ${r.layout.id}: ${e}`)));
  const disorder = rows.some((r) => r.runs.some((x) => x.duplicates || x.outOfOrder));
  const throughput = throughputTable(rows, engines);
  const cpu = cpuTable(rows, engines);
  console.log(`\n${throughput}\n\n${cpu}\n`);

  return `## Channels: throughput per engine

Issue #14. One publisher sends small messages (\`{ seq, t }\`, about 30 bytes of JSON) as fast as it can on
\`app.channel(name)\`, to one subscriber and to ten, on each engine; on Redis and RabbitMQ the bare client does the
same beside it, so Fennel's own cost shows as a ratio. Every run is a fresh channel (and a fresh temp file on
SQLite) with its own subscriber processes; runs go in rounds over all the scenarios. Cells give the median
(min–max) of ${runs} runs; ratios are of medians (for rates, above 1 means Fennel is faster).

- Command: \`npm run bench -- channels\` (bench/channels.bench.ts, subscribers bench/peers/channel-subscriber.ts)
- Machine: ${availableParallelism()} CPUs (nproc), ${cpuModel()}, Node ${process.version}; load average ${load(load0)} at the start and ${load(load1)} at the end (1, 5, 15 min). The machine was shared with other work (test suites running) while this ran, and ten subscriber processes on ${availableParallelism()} CPUs compete with the publisher and the broker for them: read these as a loaded machine's numbers, to be re-run on a quiet one
- Brokers: \`memory://\`; \`sqlite://\` a temp file; \`${CHANNELS_REDIS_URL}\` (pub/sub is server-wide: channel names are unique per run); \`${AMQP_URL.replace(/\/\/[^@/]*@/, '//')}\` (the exchanges of each run deleted after it)
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC${skipped.length ? `; ${skipped.join('; ')}` : ''}
- Runs that failed and were run again: ${retried.length ? retried.map((r) => `\`${r}\``).join('; ') : 'none'}${errors.length ? `\n- Subscriptions that ended with an error: ${errors.map((e) => `\`${e}\``).join('; ')}` : ''}

${throughput}

- *msg/s per subscriber*: messages sent ÷ the time from the first publish to the last message received by the slowest
  subscriber (each subscriber receives every message: with ten, the broker delivers ten times as many in all).
- *Publishing*: messages ÷ the time from the first publish to the last \`publish()\` resolved (Fennel resolves when
  the broker has the message: the SQLite commit, Redis's PUBLISH reply, RabbitMQ's confirm; the bare clients
  wait for the same). The subscribers may still be reading then.
- *Lost*: messages sent × subscribers, minus what arrived, over all runs. Channels are at most once, but each
  subscription's buffer holds the whole run (\`bufferSize\` = messages + warm-up), so nothing is dropped by Fennel's
  overflow policy; a loss here is the engine's. Duplicates and messages out of order are counted too${disorder ? '' : ' (none seen)'}.

### CPU per message, µs

What each message cost the publishing process (\`process.cpuUsage()\` over the timed publishing) and each
subscriber process (its own \`process.cpuUsage()\` from the warm-up's last message to its last message, ÷ messages
received, averaged over the subscribers). Less sensitive to the machine's load than the rates: the ratio is
Fennel's overhead over the bare client's work (above 1: Fennel spends more).

${cpu}

¹ On \`memory://\` the subscriptions are in the publishing process: its CPU is theirs too.

### How each number is taken

- **Layout**: the publisher is the benchmark's process (Fennel as built: \`import 'fennel'\` from dist/). Each
  subscriber is a process of its own, one subscription each (\`node --import tsx bench/peers/channel-subscriber.ts
  <fennel|ioredis|amqplib> <url> <name> <count> <bufferSize>\`), so the fan-out to ten is the broker's. On
  \`memory://\` nothing crosses a process: the subscriptions are in the benchmark's process, on a second app, and
  share its event loop with the publisher.
- **Fennel**: \`await channel.publish({ seq, t })\`; each subscriber \`channel.subscribe({ bufferSize, overflow: 'error' })\`,
  \`await subscription.ready\`, \`for await (const m of subscription)\`.
- **Bare ioredis**: \`redis.publish(name, JSON.stringify(m))\` on one connection; each subscriber one connection,
  \`SUBSCRIBE name\`, \`JSON.parse\` in the \`message\` handler.
- **Bare amqplib**: a fanout exchange (transient, kept when unused, as Fennel's), published through a confirm channel
  with each publish's confirm awaited, as Fennel does, \`noDelay\` as Fennel's connections; each subscriber an
  exclusive, auto-deleted, server-named queue bound to it, consumed with \`noAck\`, \`JSON.parse\` of each body.
- **Publishing loop** (the same for every peer): ${WINDOW.toLocaleString('en')} \`publish()\` calls made, then awaited together
  (\`Promise.all\`), then the next ${WINDOW.toLocaleString('en')}: enough in flight that one round trip to the broker is shared by
  many messages (the SQLite engine commits them in groups; Redis and RabbitMQ answer them in a stream), and a bound on
  what is pending. *Each publish awaited* is one call at a time, a round trip each.
- **Warm-up and clock** (the same for every peer): after every subscriber is ready, ${WARMUP.toLocaleString('en')} untimed messages
  with the same loop, until each subscriber has the last; then the timed pass. Times are
  \`performance.timeOrigin + performance.now()\` in every process (milliseconds since the epoch, sub-millisecond).`;
}
