// The cache benchmark (issue #19), one section of BENCHMARKS.md (`npm run bench -- cache`): Fennel's Cache against
// the raw memcached client it is built on, on the same three private memcached servers, and the hit path of a
// memoized task.
//
//   cache operations  a single `get` (a hit) and a single `set` of a ~100-byte JSON value, and `getMany` of 100
//                     keys (hits), through:
//                       raw memjs    one memjs.Client per server, with the options Fennel's engine gives its own,
//                                    and the same key → server map: the libketama ring Fennel's memcached engine
//                                    builds (hashring, 40 MD5 digests × 4 points per server for 3 servers, names
//                                    "host:port"); the value is JSON.stringify'd and JSON.parse'd, as a user of
//                                    the raw client does. getMany: each server's keys as gets pipelined on its one
//                                    connection, all servers at once (memjs 1.3 has no multi-get; Fennel's engine
//                                    does the same).
//                       Fennel       `new Cache('memcached://a,b,c')`, through the built package.
//                       two tiers    `new Cache(['lru://?max=10000', 'memcached://a,b,c'])` (get and getMany only:
//                                    hits are answered by the in-process tier).
//                     ops/s with 50 operations in flight (getMany: 5 calls, 500 keys), and p50/p99 one at a time.
//                     Before the runs, Fennel stores every key and the raw client reads them all back as hits: the
//                     two map keys to servers alike, or the benchmark stops.
//   memoized task     `await square.delay(x)` for an x already cached, on an app with broker and result backend a
//                     temp SQLite file and its cache memcached:// or lru:// + memcached://; and, for reference, an
//                     uncached call of the same task on the same app, run by an in-process worker
//                     (`new Worker(app, { pool: 'async', concurrency: 4 })`).
//
// Every measurement is preceded by the same untimed warm-up of the same kind, and the clients take turns within each
// measurement (blocks of operations for ops/s, single operations for latency), so that a busy moment on a shared
// machine lands on each alike. One clock for all: performance.now() here.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import HashRing from 'hashring';
import memjs from 'memjs';
import pino from 'pino';
import { Cache, Fennel, Worker, type Task } from 'fennel';
import { commit, cpuModel, median, percentile, ROOT, tempDatabase } from './support.ts';

const SERVERS = 3;
/** Keys the get and getMany measurements cycle through (all stored before the runs). */
const KEYS = 1_000;
const IN_FLIGHT = 50;
const OPS = 50_000;
/** ops/s is measured in this many blocks per client, the clients taking turns (see measureKind). */
const BLOCKS = 10;
const LATENCY_OPS = 10_000;
const WARMUP_OPS = 2_000;
const MANY = 100;
const MANY_IN_FLIGHT = 5;
const MANY_CALLS = 2_000;
const MANY_LATENCY_CALLS = 1_000;
const MANY_WARMUP = 200;
/** Memoized task: cached arguments, hits timed one at a time, hits with IN_FLIGHT in flight, uncached calls. */
const TASK_KEYS = 100;
const TASK_LATENCY_CALLS = 2_000;
const TASK_CALLS = 5_000;
const TASK_WARMUP = 500;
const MISS_CALLS = 200;
const GET_TIMEOUT_MS = 30_000;

type ClientId = 'raw' | 'fennel' | 'tiers';
const CLIENT_NAMES: Record<ClientId, string> = {
  raw: 'raw memjs (same ring)',
  fennel: 'Fennel `memcached://`',
  tiers: 'Fennel `lru://` + `memcached://`',
};

interface Client {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<unknown>;
  getMany(keys: readonly string[]): Promise<unknown[]>;
  close(): Promise<void>;
}

/** The value stored under every key: ~100 bytes of JSON. */
function valueOf(i: number): Record<string, unknown> {
  const id = String(i).padStart(6, '0');
  return { id: i, name: `user-${id}`, email: `user-${id}@example.com`, score: 0.5 + (i % 100) / 1000, tags: ['a', 'b'] };
}
const VALUE_BYTES = JSON.stringify(valueOf(123)).length;
const keyOf = (i: number): string => `bench:cache:${i % KEYS}`;

// ---------------------------------------------------------------------------------------------------------
// The raw client

/**
 * Both clients give up on an operation after 100 ms: memjs's own time limit for the raw client, the Cache's
 * timeoutMs for Fennel (default 50 ms; raised here so that a stall of this shared machine costs both alike). A
 * failure is a miss for both, counted: Fennel's Cache counts it itself, the raw client's are counted here.
 */
const TIMEOUT_MS = 100;
const rawErrors = { count: 0, first: '' };

/** memjs logs every error reply to its logger (console by default); Fennel's engine silences it the same way. */
const SILENT = { log: (): void => {} };

/** The memjs client of one server, with the options src/cache/memcached.ts gives its own (no retries, no failover, keep-alive). */
function rawClientFor(host: string, port: number): memjs.Client {
  const options = { retries: 0, failover: false, timeout: TIMEOUT_MS / 1000, conntimeout: TIMEOUT_MS / 1000, keepAlive: true, logger: SILENT };
  const server = new memjs.Server(host, port, undefined, undefined, options);
  Object.assign(server, { username: undefined, password: undefined });
  return new memjs.Client([server], options);
}

class RawMemjs implements Client {
  private readonly ring: HashRing;
  private readonly clients = new Map<string, memjs.Client>();

  constructor(addresses: readonly string[]) {
    // libketama's ring as src/cache/memcached.ts builds it: for 3 equally weighted servers, 40 digests each
    // (ketamaHashesPerServer(3)), 4 points a digest, MD5 of "<host>:<port>-<i>".
    this.ring = new HashRing(Object.fromEntries(addresses.map((a) => [a, { vnodes: 40 }])), 'md5', { 'vnode count': 0, replicas: 4 });
    for (const address of addresses) {
      const [host, port] = address.split(':');
      this.clients.set(address, rawClientFor(host!, Number(port)));
    }
  }

  private clientOf(key: string): memjs.Client {
    return this.clients.get(this.ring.get(key))!;
  }

  async get(key: string): Promise<unknown> {
    let value: Buffer | null;
    try {
      ({ value } = await this.clientOf(key).get(key));
    } catch (error) {
      return failed(error, undefined);
    }
    return value === null ? undefined : (JSON.parse(value.toString('utf8')) as unknown);
  }

  async set(key: string, value: unknown): Promise<unknown> {
    return this.clientOf(key)
      .set(key, JSON.stringify(value), { expires: 0 })
      .catch((error: unknown) => failed(error, false));
  }

  async getMany(keys: readonly string[]): Promise<unknown[]> {
    const groups = new Map<string, number[]>();
    keys.forEach((key, i) => {
      const server = this.ring.get(key);
      const group = groups.get(server);
      if (group) group.push(i);
      else groups.set(server, [i]);
    });
    const values = new Array<unknown>(keys.length);
    await Promise.all(
      [...groups].map(async ([server, indexes]) => {
        const client = this.clients.get(server)!;
        let found: Array<{ value: Buffer | null }>;
        try {
          found = await Promise.all(indexes.map((i) => client.get(keys[i]!)));
        } catch (error) {
          return failed(error, undefined);
        }
        indexes.forEach((keyIndex, j) => {
          const value = found[j]!.value;
          values[keyIndex] = value === null ? undefined : (JSON.parse(value.toString('utf8')) as unknown);
        });
      }),
    );
    return values;
  }

  async close(): Promise<void> {
    for (const client of this.clients.values()) client.close();
  }
}

/** A failed raw operation: counted, and a miss (get) or false (set), as Fennel's Cache answers. */
function failed<T>(error: unknown, answer: T): T {
  if (rawErrors.count++ === 0) rawErrors.first = (error as Error)?.message ?? String(error);
  return answer;
}

class FennelCache implements Client {
  constructor(readonly cache: Cache) {}
  get(key: string): Promise<unknown> {
    return this.cache.get(key);
  }
  set(key: string, value: unknown): Promise<unknown> {
    return this.cache.set(key, value);
  }
  getMany(keys: readonly string[]): Promise<unknown[]> {
    return this.cache.getMany(keys);
  }
  close(): Promise<void> {
    return this.cache.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Measuring

/** Operations per second: `total` calls of `op(i)`, `inFlight` at a time, from the first call to the last answer. */
async function rate(op: (i: number) => Promise<unknown>, total: number, inFlight: number): Promise<number> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < total) await op(next++);
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, lane));
  return total / ((performance.now() - t0) / 1000);
}

/** The time of each of `total` calls of `op(i)`, one after another, in ms. */
async function times(op: (i: number) => Promise<unknown>, total: number): Promise<number[]> {
  const out = new Array<number>(total);
  for (let i = 0; i < total; i++) {
    const t0 = performance.now();
    await op(i);
    out[i] = performance.now() - t0;
  }
  return out;
}

/** Gets that came back empty (a timeout is a miss in Fennel's Cache), counted per client while measuring. */
const missed: Partial<Record<ClientId, number>> = {};
let measuring: ClientId | undefined;

/** A value that is wrong stops the benchmark; an empty one (a miss) is counted and reported. */
function checkHit(value: unknown, i: number): void {
  if (value === undefined && measuring) {
    missed[measuring] = (missed[measuring] ?? 0) + 1;
    return;
  }
  if ((value as { id?: unknown } | undefined)?.id !== i % KEYS) throw new Error(`key ${keyOf(i)}: expected a hit with id ${i % KEYS}, got ${JSON.stringify(value)}`);
}

const manyKeys = (call: number): string[] => Array.from({ length: MANY }, (_, j) => keyOf(call * MANY + j));

/** One kind of measurement: what it runs, through which clients. */
interface OpKind {
  id: 'get' | 'set' | 'getMany';
  clients: readonly ClientId[];
  op(client: Client): (i: number) => Promise<unknown>;
  inFlight: number;
  total: number;
  latencyTotal: number;
  warmup: number;
}

const OP_KINDS: readonly OpKind[] = [
  {
    id: 'get',
    clients: ['raw', 'fennel', 'tiers'],
    op: (c) => (i) => c.get(keyOf(i)).then((v) => checkHit(v, i)),
    inFlight: IN_FLIGHT,
    total: OPS,
    latencyTotal: LATENCY_OPS,
    warmup: WARMUP_OPS,
  },
  {
    id: 'set',
    clients: ['raw', 'fennel'],
    op: (c) => (i) => c.set(keyOf(i), valueOf(i % KEYS)),
    inFlight: IN_FLIGHT,
    total: OPS,
    latencyTotal: LATENCY_OPS,
    warmup: WARMUP_OPS,
  },
  {
    id: 'getMany',
    clients: ['raw', 'fennel', 'tiers'],
    op: (c) => (i) =>
      c.getMany(manyKeys(i)).then((values) => {
        for (let j = 0; j < MANY; j++) checkHit(values[j], i * MANY + j);
      }),
    inFlight: MANY_IN_FLIGHT,
    total: MANY_CALLS,
    latencyTotal: MANY_LATENCY_CALLS,
    warmup: MANY_WARMUP,
  },
];

/** Per operation kind and client: the runs' rate, p50 and p99 (ms). */
type OpSamples = Record<string, { rate: number[]; p50: number[]; p99: number[] }>;
const sampleKey = (kind: string, client: ClientId): string => `${kind} ${client}`;

// ---------------------------------------------------------------------------------------------------------
// Memoized task

type AppId = 'memcached' | 'tiers';

interface TaskApp {
  id: AppId;
  app: Fennel;
  square: Task<[number], number>;
  /** Another app of the same configuration, for a worker (a worker's stop() closes its app). */
  twin: () => Fennel;
  cleanup: () => void;
}

interface TaskSamples {
  /** `await square.delay(x)`, one at a time, ms. */
  p50: number[];
  p99: number[];
  /** `await` the value and `sent` (the outcome stored in the result backend), one at a time, ms. */
  storedP50: number[];
  /** Calls/s with IN_FLIGHT in flight, the clock stopped once every value is back and every outcome stored. */
  rate: number[];
  /** An uncached call (a new argument) through the in-process worker, one at a time, ms. */
  missP50: number[];
}

function taskApp(id: AppId, memcachedUrl: string): TaskApp {
  const db = tempDatabase();
  const make = (): { app: Fennel; square: Task<[number], number> } => {
    const app = new Fennel({ broker: db.url, cache: id === 'tiers' ? ['lru://?max=10000', memcachedUrl] : memcachedUrl });
    return { app, square: app.task('bench.square', (x: number) => x * x, { cache: true }) };
  };
  const { app, square } = make();
  return { id, app, square, twin: () => make().app, cleanup: db.cleanup };
}

/** Runs `body` while an in-process worker (on its own app of the same configuration) consumes the queue. */
async function withWorker<T>(t: TaskApp, body: () => Promise<T>): Promise<T> {
  const worker = new Worker(t.twin(), { pool: 'async', concurrency: 4, logger: pino({ level: 'silent' }) });
  await worker.start();
  try {
    return await body();
  } finally {
    await worker.stop(1);
  }
}

const TASK_X = (i: number): number => i % TASK_KEYS;

async function hit(square: TaskApp['square'], i: number): Promise<void> {
  const x = TASK_X(i);
  const value = await square.delay(x).get({ timeoutMs: GET_TIMEOUT_MS });
  if (value !== x * x) throw new Error(`square(${x}) answered ${value}`);
}

async function hitStored(square: TaskApp['square'], i: number): Promise<void> {
  const x = TASK_X(i);
  const result = square.delay(x);
  const [value] = await Promise.all([result.get({ timeoutMs: GET_TIMEOUT_MS }), result.sent]);
  if (value !== x * x) throw new Error(`square(${x}) answered ${value}`);
}

/** Fills the cache: every cached argument once through the worker. Afterwards a hit needs no worker. */
async function warmTask(t: TaskApp): Promise<void> {
  await withWorker(t, async () => {
    await Promise.all(Array.from({ length: TASK_KEYS }, (_, x) => t.square.delay(x).get({ timeoutMs: GET_TIMEOUT_MS })));
  });
  // No worker now: a miss would wait out GET_TIMEOUT_MS and fail the benchmark.
  for (let x = 0; x < TASK_KEYS; x++) await hit(t.square, x);
}

let missArg = 1_000_000;

async function measureTask(t: TaskApp, samples: TaskSamples): Promise<void> {
  // Hits: no worker running (a producer, as a web server is one).
  await times((i) => hit(t.square, i), TASK_WARMUP);
  const hits = await times((i) => hit(t.square, i), TASK_LATENCY_CALLS);
  samples.p50.push(percentile(hits, 50));
  samples.p99.push(percentile(hits, 99));
  samples.storedP50.push(percentile(await times((i) => hitStored(t.square, i), TASK_LATENCY_CALLS), 50));
  await rate((i) => hitStored(t.square, i), TASK_WARMUP, IN_FLIGHT);
  samples.rate.push(await rate((i) => hitStored(t.square, i), TASK_CALLS, IN_FLIGHT));
  // An uncached call: sent, run by the in-process worker, its result stored in the backend and the cache.
  const misses = await withWorker(t, async () => {
    const call = async (): Promise<void> => {
      const x = missArg++;
      const value = await t.square.delay(x).get({ timeoutMs: GET_TIMEOUT_MS });
      if (value !== x * x) throw new Error(`square(${x}) answered ${value}`);
    };
    await times(call, 20);
    return times(call, MISS_CALLS);
  });
  samples.missP50.push(percentile(misses, 50));
}

// ---------------------------------------------------------------------------------------------------------
// The section

const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(3) : '–');
const us = (v: number): string => (Number.isFinite(v) ? Math.round(v * 1000).toLocaleString('en') : '–');
const whole = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '–');
const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');

function cell(values: readonly number[], show: (v: number) => string): string {
  if (values.length === 0) return '–';
  return `**${show(median(values))}** (${show(Math.min(...values))}–${show(Math.max(...values))})`;
}

const OP_TITLES: Record<OpKind['id'], string> = {
  get: `\`get\`, a hit (${VALUE_BYTES}-byte JSON)`,
  set: `\`set\` (${VALUE_BYTES}-byte JSON)`,
  getMany: `\`getMany\` of ${MANY} keys, all hits`,
};

function opsTable(samples: OpSamples): string {
  const lines = [
    `| Operation | Client | ops/s, ${IN_FLIGHT} in flight (getMany: calls/s, ${MANY_IN_FLIGHT} in flight) | p50, µs | p99, µs | ops/s ÷ raw | p50 ÷ raw |`,
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const kind of OP_KINDS) {
    const raw = samples[sampleKey(kind.id, 'raw')]!;
    for (const client of kind.clients) {
      const s = samples[sampleKey(kind.id, client)]!;
      const rateRatio = client === 'raw' ? '' : `**${(median(s.rate) / median(raw.rate)).toFixed(2)}×**`;
      const p50Ratio = client === 'raw' ? '' : `${(median(s.p50) / median(raw.p50)).toFixed(2)}×`;
      lines.push(`| ${OP_TITLES[kind.id]} | ${CLIENT_NAMES[client]} | ${cell(s.rate, whole)} | ${cell(s.p50, us)} | ${us(median(s.p99))} | ${rateRatio} | ${p50Ratio} |`);
    }
  }
  return lines.join('\n');
}

const APP_NAMES: Record<AppId, string> = { memcached: '`memcached://a,b,c`', tiers: "`['lru://?max=10000', 'memcached://a,b,c']`" };

function taskTable(samples: Record<AppId, TaskSamples>): string {
  const lines = [
    `| The app's cache | hit p50, ms: value | hit p99, ms: value | hit p50, ms: value and outcome stored | hits/s, ${IN_FLIGHT} in flight (outcomes stored) | uncached call p50, ms (in-process worker) |`,
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const id of ['memcached', 'tiers'] as const) {
    const s = samples[id];
    lines.push(`| ${APP_NAMES[id]} | ${cell(s.p50, ms)} | ${ms(median(s.p99))} | ${cell(s.storedP50, ms)} | ${cell(s.rate, whole)} | ${cell(s.missP50, ms)} |`);
  }
  return lines.join('\n');
}

function aims(samples: OpSamples): string {
  const lines: string[] = [];
  for (const kind of OP_KINDS) {
    const raw = median(samples[sampleKey(kind.id, 'raw')]!.rate);
    const fennel = median(samples[sampleKey(kind.id, 'fennel')]!.rate);
    const r = fennel / raw;
    lines.push(`- ${OP_TITLES[kind.id]}, Fennel \`memcached://\` ≥ 0.9× the raw client's ops/s: ${whole(fennel)} ÷ ${whole(raw)} = **${r.toFixed(2)}×**, ${r >= 0.9 ? '**met**' : '**not met**'}.`);
  }
  return lines.join('\n');
}

/** Runs the measurements `runs` times and returns the section of BENCHMARKS.md. */
export async function cacheSection(runs = 5): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  // Test support, imported only here: every other part of the benchmark runs without it.
  const { startMemcached } = await import('../test/support/memcached.ts');
  const servers = [];
  for (let i = 0; i < SERVERS; i++) servers.push(await startMemcached({ memoryMb: 64 }));
  const addresses = servers.map((s) => s.address);
  const url = `memcached://${addresses.join(',')}?timeoutMs=${TIMEOUT_MS}`;
  const warnings: string[] = [];
  const log = { warn: (message: string): void => void warnings.push(message) };
  const clients: Record<ClientId, Client> = {
    raw: new RawMemjs(addresses),
    fennel: new FennelCache(new Cache(url, { log })),
    tiers: new FennelCache(new Cache(['lru://?max=10000', url], { log })),
  };
  const apps: TaskApp[] = [];
  try {
    // Every key stored through Fennel, read back as a hit through the raw client: the same key → server map.
    for (let i = 0; i < KEYS; i++) await clients.fennel.set(keyOf(i), valueOf(i));
    for (let i = 0; i < KEYS; i++) checkHit(await clients.raw.get(keyOf(i)), i);
    const memjsVersion = (JSON.parse(readFileSync(join(ROOT, 'node_modules/memjs/package.json'), 'utf8')) as { version: string }).version;

    const samples: OpSamples = {};
    /**
     * One kind's measurements in one run, the clients interleaved so that each sees the machine as the others do:
     * ops/s in BLOCKS blocks, each client's block in turn (the order turning each block), its rate its operations ÷ the
     * sum of its blocks' times; latencies one operation of each client in turn.
     */
    const measureKind = async (kind: OpKind, run: number): Promise<void> => {
      const turn = (k: number): ClientId[] => [...kind.clients.slice(k % kind.clients.length), ...kind.clients.slice(0, k % kind.clients.length)];
      const ops = Object.fromEntries(kind.clients.map((id) => [id, kind.op(clients[id])])) as Record<ClientId, (i: number) => Promise<unknown>>;
      for (const id of turn(run)) {
        measuring = id;
        await rate(ops[id], kind.warmup, kind.inFlight);
      }
      const perBlock = Math.ceil(kind.total / BLOCKS);
      const spent = new Map<ClientId, number>();
      for (let block = 0; block < BLOCKS; block++) {
        for (const id of turn(run + block)) {
          measuring = id;
          spent.set(id, (spent.get(id) ?? 0) + perBlock / (await rate((i) => ops[id](block * perBlock + i), perBlock, kind.inFlight)));
        }
      }
      const latencies = new Map<ClientId, number[]>(kind.clients.map((id) => [id, []]));
      for (let i = 0; i < kind.latencyTotal; i++) {
        for (const id of turn(run + i)) {
          measuring = id;
          const t0 = performance.now();
          await ops[id](i);
          latencies.get(id)!.push(performance.now() - t0);
        }
      }
      for (const id of kind.clients) {
        const s = samples[sampleKey(kind.id, id)]!;
        s.rate.push((perBlock * BLOCKS) / spent.get(id)!);
        s.p50.push(percentile(latencies.get(id)!, 50));
        s.p99.push(percentile(latencies.get(id)!, 99));
      }
    };
    for (const kind of OP_KINDS) for (const client of kind.clients) samples[sampleKey(kind.id, client)] = { rate: [], p50: [], p99: [] };
    for (let run = 0; run < runs; run++) {
      const t0 = performance.now();
      for (const kind of OP_KINDS) {
        try {
          await measureKind(kind, run);
        } catch (error) {
          throw new Error(`${kind.id} through ${measuring ? CLIENT_NAMES[measuring] : '?'}: ${(error as Error).message}; cache warnings: ${warnings.join(' | ') || 'none'}`, { cause: error });
        } finally {
          measuring = undefined;
        }
      }
      const shown = OP_KINDS.map((k) => `${k.id} ${k.clients.map((c) => `${c} ${whole(samples[sampleKey(k.id, c)]!.rate.at(-1)!)}`).join(' / ')}`).join('; ');
      console.log(`cache run ${run + 1}/${runs}: ${shown} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }

    const taskSamples = {} as Record<AppId, TaskSamples>;
    for (const id of ['memcached', 'tiers'] as const) {
      const t = taskApp(id, url);
      apps.push(t);
      await warmTask(t);
      taskSamples[id] = { p50: [], p99: [], storedP50: [], rate: [], missP50: [] };
    }
    for (let run = 0; run < runs; run++) {
      for (const t of run % 2 === 0 ? apps : [...apps].reverse()) {
        await measureTask(t, taskSamples[t.id]);
        const s = taskSamples[t.id];
        console.log(`cache task ${t.id} run ${run + 1}/${runs}: hit p50 ${ms(s.p50.at(-1)!)} ms, stored p50 ${ms(s.storedP50.at(-1)!)} ms, ${whole(s.rate.at(-1)!)} hits/s, uncached p50 ${ms(s.missP50.at(-1)!)} ms`);
      }
    }
    const load1 = loadavg();
    const errors = [...(clients.fennel as FennelCache).cache.stats(), ...(clients.tiers as FennelCache).cache.stats()].reduce((sum, tier) => sum + tier.errors, 0);
    const ops = opsTable(samples);
    const tasks = taskTable(taskSamples);
    console.log(`\n${ops}\n\n${tasks}\n\n${aims(samples)}\n`);
    if (warnings.length) console.log(`cache warnings: ${warnings.join(' | ')}`);
    const memcachedVersion = execFileSync(existsSync('/usr/bin/memcached') ? '/usr/bin/memcached' : 'memcached', ['-V'], { encoding: 'utf8' }).trim();

    return `## Cache: Fennel's Cache vs the raw memcached client, and a memoized task's hit

Issue #19. Fennel's \`Cache\` (src/cache/) against the client it is built on, memjs ${memjsVersion}, on the same ${SERVERS} private
memcached servers started by the benchmark (${memcachedVersion}, \`-t 1 -m 64 -U 0\`, 127.0.0.1, free ports), in
one process, with the same warm-up before every measurement and the same clock (\`performance.now()\` here); and the
hit path of a memoized task. Fennel runs as users run it: this process imports the built package (dist/). The
raw client is given equal terms: one \`memjs.Client\` per server with the options Fennel's engine gives its own
(no retries, no failover, keep-alive; a time limit of ${TIMEOUT_MS} ms, memjs's own for the raw client and the Cache's
\`?timeoutMs=${TIMEOUT_MS}\` for Fennel, whose default is 50 ms: on a shared machine a stall then costs both alike, and
a failure is a miss for both), and the same key → server map, libketama's ring built with hashring as
src/cache/memcached.ts builds it (checked: ${KEYS.toLocaleString('en')} keys stored through Fennel are all read back as hits
through the raw client before the runs). Values are a ${VALUE_BYTES}-byte JSON object; the raw client
\`JSON.stringify\`s and \`JSON.parse\`s it, as its users do. The clients take turns within each measurement (see
below), so that a busy moment of this shared machine lands on each alike. ${runs} runs; cells give the median of the
runs (min–max); p99 is the median of the runs' p99s.

- Command: \`npm run bench -- cache\` (bench/cache.bench.ts)
- Machine: ${availableParallelism()} CPUs (nproc), ${cpuModel()}, Node ${process.version}, ${process.platform} ${process.arch}; load average ${load(load0)} at the start and ${load(load1)} at the end (1, 5, 15 min); the machine is shared with other work, so read the ratios with that in mind
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${commit()}
- Failed operations (each a miss or a false, and counted as an operation all the same): raw memjs ${rawErrors.count}${rawErrors.first ? ` (the first: \`${rawErrors.first}\`)` : ''}; gets that missed while measuring: ${(['raw', 'fennel', 'tiers'] as const).map((c) => `${CLIENT_NAMES[c]} ${missed[c] ?? 0}`).join(', ')}; errors and timeouts counted by the two Fennel Caches: ${errors} (their warnings: ${warnings.length ? warnings.map((w) => `\`${w}\``).join('; ') : 'none'})

### Cache operations

${ops}

Ratios are of medians: ops/s above 1 means Fennel is faster than the raw client; p50 below 1 means Fennel is faster.

### Aims

${aims(samples)}

### A memoized task's hit

\`square = app.task('bench.square', (x) => x * x, { cache: true })\` on \`new Fennel({ broker: 'sqlite://<temp>/x.db', cache })\`
(the result backend is the broker's file; \`cache\` the same three servers with \`?timeoutMs=${TIMEOUT_MS}\`, alone or behind
\`lru://?max=10000\`), its ${TASK_KEYS} arguments cached before the runs by an in-process worker.

${tasks}

### What each clock includes

- **Cache operations**: from the call to its answer, in this process: for the raw client, picking the server on the
  ring, memjs writing the binary-protocol request and parsing the reply, and \`JSON.parse\` (\`JSON.stringify\` for set);
  for Fennel, the same memjs calls (its engine, src/cache/memcached.ts) plus what the Cache adds above them: the key
  check (\`safeKey\`), the codec (\`decodeJson\`/\`encodeJson\`: a scan for kombu's tags, then \`JSON.parse\`/\`JSON.stringify\`),
  the server's failure count, and the per-tier statistics (hits, misses, and a latency sample into a histogram of
  the cache's own, ten bounds searched in a loop). The round trip and memjs's work are the same for both, so with
  ${IN_FLIGHT} in flight, where this process's CPU is the limit, the ratio is that of CPU per operation. A first
  version ran at 0.77× (get) and 0.71× (set): profiled (\`node --cpu-prof\`), a fifth of its extra CPU was
  prom-client's \`Histogram.observe\` (labels hashed on every call), a fifth a \`setTimeout\` armed and cleared per
  request, a fifth the promise jobs of five stacked async layers. The histogram is now the cache's own, the time
  limit memjs's (one deadline list and one socket timer per connection), and a hit goes through two \`then\`s above
  memjs; what remains is the codec and the bookkeeping. Socket writes (one \`write\` per request, for both clients) are half of all the CPU. Two tiers: \`get\` is
  answered by the in-process \`lru://\` tier (lru-cache) without a network round trip, except once every 5 s per key
  (the default hotTtlSec), when the copy expires and is read again from memcached. **ops/s**: ${OPS.toLocaleString('en')} operations
  per client (getMany: ${MANY_CALLS.toLocaleString('en')} calls of ${MANY} keys) through ${IN_FLIGHT} concurrent loops (getMany: ${MANY_IN_FLIGHT}), each awaiting its operation
  before the next, in ${BLOCKS} blocks, the clients' blocks in turn (the first client turning each block), each block timed
  from its first call to its last answer; the rate is the operations ÷ the sum of the client's blocks. Before them,
  ${WARMUP_OPS.toLocaleString('en')} untimed (getMany: ${MANY_WARMUP}) per client. **p50/p99**: ${LATENCY_OPS.toLocaleString('en')} operations per client
  (getMany: ${MANY_LATENCY_CALLS.toLocaleString('en')} calls), one at a time, one of each client in turn. Every get's value is checked: a wrong one
  stops the benchmark, a missing one is counted (above).
- **Memoized task, hit**: \`await square.delay(x).get()\` for a cached \`x\`, no worker running: the key (SHA-256 of the
  arguments' canonical JSON), the cache lookup, and the AsyncResult answered from it; no message is sent. A hit also
  stores the outcome in the result backend under the call's id (a SQLite write here), in the background: *value* does
  not wait for it, *value and outcome stored* also awaits \`result.sent\`, which resolves once it is stored, and so does
  every call counted in *hits/s* (${TASK_CALLS.toLocaleString('en')} calls, ${IN_FLIGHT} in flight, after ${TASK_WARMUP} untimed; p50s over ${TASK_LATENCY_CALLS.toLocaleString('en')} calls one at a time).
- **Uncached call**: a new argument each time, through an in-process worker (\`new Worker(app, { pool: 'async', concurrency: 4 })\`,
  the same app): the cache lookup (a miss), the message published to the SQLite file, the worker's own lookup, the task, its
  result stored in the result backend and the cache, and the producer's \`get()\` reading it (${MISS_CALLS} calls one at a time, after 20 untimed).`;
  } finally {
    for (const t of apps) {
      await t.app.close();
      t.cleanup();
    }
    await Promise.all(Object.values(clients).map((c) => c.close()));
    await Promise.all(servers.map((s) => s.stop()));
  }
}
