// The cache's seed example (issue #19): a slow function made fast by remembering its answers in memcached. square(x)
// takes 100 ms (a sleep, standing in for slow work: a query, a remote call); it is called 10 rounds × 2,000 times,
// 100 calls in flight, with x drawn from 0..999, each call through `cache.wrap(key, () => square(x))` over a ring of
// three memcached servers. The first round computes nearly every x it draws; later rounds find most of them cached,
// and each round's time falls with the number it still has to compute. It prints each round's time, how many calls
// were computed, and how many the cache answered.
//
//   npx tsx examples/cache/main.ts [--servers host:port,host:port,…] [--rounds 10] [--calls 2000] [--range 1000]
//        [--in-flight 100] [--delay-ms 100] [--seed 1] [--ttl 300] [--tasks]
//
// --servers: memcached servers to use (a memcached:// URL works too); by default three private ones are started
// here on free loopback ports (the `memcached` binary must be installed: apt-get install memcached) and stopped at
// the end. The keys carry a run id, so a run on servers that an earlier run filled starts cold all the same, and
// they expire after --ttl seconds.
// The draws are repeatable: a seeded generator (mulberry32, --seed), so a run computes the same xs in the same
// rounds every time. With 2,000 draws a round from 1,000 values, a round leaves about e^-2 ≈ 14% of the values
// undrawn, so each round computes about a seventh of what the one before it did.
// --tasks: the same calls as a memoized Fennel task (`app.task('cache.square', …, { cache: { ttlSec } })`) on an
// embedded SQLite broker in a temp directory, run by a worker in this process (`-P async`, as many slots as calls
// in flight): a call whose result is cached is answered without a message, the others are sent and computed.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { Fennel as FennelApp, Task } from 'fennel';

const ROOT = new URL('../../', import.meta.url).pathname;

// Run from this repository's sources: `npx tsx` alone would resolve 'fennel' to the last build in dist/.
if (existsSync(join(ROOT, 'src/index.ts')) && !process.execArgv.includes('--conditions=development')) {
  const again = spawnSync(process.execPath, ['--conditions=development', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(again.status ?? 1);
}

const { Cache, Fennel, Worker } = await import('fennel');

const { values: flags } = parseArgs({
  options: {
    servers: { type: 'string' },
    rounds: { type: 'string', default: '10' },
    calls: { type: 'string', default: '2000' },
    range: { type: 'string', default: '1000' },
    'in-flight': { type: 'string', default: '100' },
    'delay-ms': { type: 'string', default: '100' },
    seed: { type: 'string', default: '1' },
    ttl: { type: 'string', default: '300' },
    tasks: { type: 'boolean', default: false },
  },
});

/** A positive integer flag; 2_000 and 2,000 are read as 2000. */
function positive(name: string, text: string, least = 1): number {
  const value = Number(text.replace(/[_,]/g, ''));
  if (!Number.isSafeInteger(value) || value < least) throw new RangeError(`--${name} needs an integer ≥ ${least} (got '${text}')`);
  return value;
}

const rounds = positive('rounds', flags.rounds);
const calls = positive('calls', flags.calls);
const range = positive('range', flags.range);
const inFlight = positive('in-flight', flags['in-flight']);
const delayMs = positive('delay-ms', flags['delay-ms'], 0);
const seed = positive('seed', flags.seed, 0);
const ttlSec = positive('ttl', flags.ttl);

// ---------------------------------------------------------------------------------------------------------
// The slow function, and the draws

/** The slow work: x², after delayMs. */
async function square(x: number): Promise<number> {
  await sleep(delayMs);
  return x * x;
}

/** mulberry32: a small seeded generator of 32-bit values, as floats in [0, 1). */
function mulberry32(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `call(i)` for i in 0..count-1, at most `limit` at a time. */
async function bounded(count: number, limit: number, call: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) await call(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, lane));
}

// ---------------------------------------------------------------------------------------------------------
// Private memcached servers

const MEMCACHED = existsSync('/usr/bin/memcached') ? '/usr/bin/memcached' : 'memcached';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => done(true));
  });
}

/** `memcached -l 127.0.0.1 -p PORT` on a free port (64 MB, one thread, no UDP); resolves once it accepts connections. */
async function startMemcached(): Promise<{ address: string; process: ChildProcess }> {
  const port = await freePort();
  const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '64', '-t', '1'];
  if (process.getuid?.() === 0) args.push('-u', 'root'); // memcached refuses to run as root unless told whom to be
  const child = spawn(MEMCACHED, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`memcached on port ${port} exited at start: ${stderr.trim()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`memcached on port ${port} did not accept connections within 10 s: ${stderr.trim()}`);
    }
    await sleep(20);
  }
  return { address: `127.0.0.1:${port}`, process: child };
}

const started: ChildProcess[] = [];
const stopServers = (): void => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
};
process.once('exit', stopServers);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopServers();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

let serversUrl: string;
let where: string;
if (flags.servers) {
  serversUrl = flags.servers.startsWith('memcached://') ? flags.servers : `memcached://${flags.servers}`;
  where = 'given with --servers';
} else {
  if (spawnSync(MEMCACHED, ['-V'], { stdio: 'ignore' }).status !== 0) {
    console.error('examples/cache: no memcached binary here to start private servers with (apt-get install memcached), and no --servers given (--servers host:port,host:port,…)');
    process.exit(2);
  }
  const servers = [];
  for (let i = 0; i < 3; i++) {
    const server = await startMemcached();
    started.push(server.process);
    servers.push(server.address);
  }
  serversUrl = `memcached://${servers.join(',')}`;
  where = '3 private memcached servers started here';
}

// ---------------------------------------------------------------------------------------------------------
// The rounds

interface Round {
  ms: number;
  /** Calls whose square was computed in this round. */
  computed: number;
  /** Calls the cache answered: all the others, either read from memcached or waiting on the same key's computation. */
  cached: number;
  wrong: number;
}

/** One way of making a call: returns x², and counts a computation in `computedNow` when square() ran. */
type Caller = (x: number) => Promise<number>;
let computedNow = 0;
const counted = async (x: number): Promise<number> => {
  computedNow++;
  return square(x);
};

async function runRounds(call: Caller): Promise<Round[]> {
  const random = mulberry32(seed);
  const out: Round[] = [];
  for (let round = 1; round <= rounds; round++) {
    const xs = Array.from({ length: calls }, () => Math.floor(random() * range));
    computedNow = 0;
    let wrong = 0;
    const t0 = performance.now();
    await bounded(calls, inFlight, async (i) => {
      const x = xs[i]!;
      if ((await call(x)) !== x * x) wrong++;
    });
    const r: Round = { ms: performance.now() - t0, computed: computedNow, cached: calls - computedNow, wrong };
    out.push(r);
    const pct = (Math.floor((1000 * r.cached) / calls) / 10).toFixed(1); // 1,999 of 2,000 is 99.9%, not 100.0%
    console.log(
      `round ${String(round).padStart(2)}  ${(r.ms / 1000).toFixed(3)} s  computed ${String(r.computed).padStart(5)}  from the cache ${String(r.cached).padStart(5)} (${pct.padStart(5)}%)${wrong ? `  WRONG ${wrong}` : ''}`,
    );
  }
  return out;
}

const run = randomUUID().slice(0, 8);
console.log(`cache: ${serversUrl} (${where})`);
console.log(
  `square(x) takes ${delayMs} ms; ${rounds} rounds × ${calls.toLocaleString('en')} calls, ${inFlight} in flight, x drawn from 0..${range - 1} (mulberry32, seed ${seed}: the same draws every run)`,
);

let results: Round[];
let tempDir: string | undefined;
if (!flags.tasks) {
  console.log(`each call: cache.wrap(\`square:${run}:\${x}\`, () => square(x), { ttlSec: ${ttlSec} })`);
  const cache = new Cache(serversUrl);
  try {
    results = await runRounds((x) => cache.wrap(`square:${run}:${x}`, () => counted(x), { ttlSec }));
    const [stats] = cache.stats();
    console.log(`memcached: ${stats!.hits} hits, ${stats!.misses} misses, ${stats!.errors} errors, ${stats!.sets} values stored`);
  } finally {
    await cache.close();
  }
} else {
  tempDir = mkdtempSync(join(tmpdir(), 'fennel-cache-'));
  const broker = `sqlite://${join(tempDir, 'fennel.db')}`;
  console.log(`each call: await square.delay(x), a memoized task (cache: { ttlSec: ${ttlSec} }) on ${broker}, run by a worker in this process (-P async -c ${inFlight})`);
  // The task's name carries the run id: its keys (fennel:memo:<name>:<hash of the arguments>) are this run's own.
  const makeApp = (): { app: FennelApp; task: Task<[number], Promise<number>> } => {
    const app = new Fennel({ broker, cache: serversUrl });
    return { app, task: app.task(`cache.square.${run}`, (x: number) => counted(x), { cache: { ttlSec } }) };
  };
  const producer = makeApp();
  // The worker has an app of its own (its stop() closes it); the same configuration and tasks.
  const worker = new Worker(makeApp().app, { pool: 'async', concurrency: inFlight, logLevel: 'warn' });
  await worker.start();
  try {
    results = await runRounds((x) => producer.task.delay(x).get({ timeoutMs: 60_000 }));
  } finally {
    await worker.stop(5);
    await producer.app.close();
  }
}
if (tempDir) rmSync(tempDir, { recursive: true, force: true });
stopServers();

const first = results[0]!;
const last = results.at(-1)!;
console.log(`first round ${(first.ms / 1000).toFixed(3)} s, last ${(last.ms / 1000).toFixed(3)} s: ${(first.ms / last.ms).toFixed(1)}× faster`);
if (results.some((r) => r.wrong > 0)) {
  console.error('some calls returned a wrong square');
  process.exitCode = 1;
}
