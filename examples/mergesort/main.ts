// The distributed mergesort (issue #6): n shuffled integers are sorted once here, in this process, and once
// by worker processes (a chord: one sort task per chunk, then a merge of the sorted chunks), with the same
// mergesort (sort.ts). Both outputs are checked against the built-in sort; the times, their ratio, the ratio
// that zero transfer cost would give, and where the distributed time went are printed.
//
//   npx tsx examples/mergesort/main.ts [--n 1000000] [--chunks 8] [--workers 2] [--concurrency 1]
//        [--pool process|thread|async] [--broker URL] [--backend URL] [--wire packed|json] [--runs 3] [--seed 1]
//        [--no-workers] [--json]
//
// Broker: by default an embedded SQLite file in a temp directory; redis://… and amqp://… work too (amqp needs
// --backend redis://… or sqlite://…: a chord joins in the result backend, which rpc:// cannot do). Unless
// --no-workers, it starts the workers itself (`fennel worker --app examples/mergesort/tasks.ts -P process -c 1`,
// --workers of them) and stops them at the end. --pool async runs each task in its worker process itself:
// no hop to a pool slot (each chunk and the merged result are copied between processes once less), at the
// price of the slot's isolation; with -c 1 per worker process it is still one sort per CPU. --wire json sends number arrays, packed (the default) sends
// int32 text (packed.ts). --json prints one JSON line of the measurements at the end (bench/canvas.bench.ts).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { packInt32, unpackInt32 } from './packed.ts';
import { kWayMergeFloat64, mergesortFloat64, splitChunks } from './sort.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = join(ROOT, 'src/cli/main.ts');
const TASKS = new URL('./tasks.ts', import.meta.url).pathname;

// Run from this repository's sources: `npx tsx` alone would resolve 'fennel' to the last build in dist/.
if (existsSync(CLI) && !process.execArgv.includes('--conditions=development')) {
  const again = spawnSync(process.execPath, ['--conditions=development', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(again.status ?? 1);
}

const { values: flags } = parseArgs({
  options: {
    n: { type: 'string', default: '1000000' },
    chunks: { type: 'string', default: '8' },
    workers: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '1' },
    pool: { type: 'string', default: 'process' },
    broker: { type: 'string' },
    backend: { type: 'string' },
    wire: { type: 'string', default: 'packed' },
    runs: { type: 'string', default: '3' },
    seed: { type: 'string', default: '1' },
    'no-workers': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

function positive(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`--${name} needs a positive integer (got '${text}')`);
  return value;
}

const n = positive('n', flags.n);
const chunkCount = positive('chunks', flags.chunks);
const workerCount = positive('workers', flags.workers);
const concurrency = positive('concurrency', flags.concurrency);
const runs = positive('runs', flags.runs);
const seed = positive('seed', flags.seed);
if (flags.wire !== 'packed' && flags.wire !== 'json') throw new RangeError(`--wire must be packed or json (got '${flags.wire}')`);
if (!['process', 'thread', 'async'].includes(flags.pool)) throw new RangeError(`--pool must be process, thread or async (got '${flags.pool}')`);
const pool = flags.pool;
const wire = flags.wire;
if (flags['no-workers'] && !flags.broker) throw new RangeError('--no-workers needs --broker: the workers you started must share it');
if (flags.broker?.startsWith('amqp') && !flags.backend) throw new RangeError('an amqp:// broker needs --backend redis://… or sqlite://…: the chord joins in the result backend');

// The app reads its broker from the environment when tasks.ts is imported, and so do the workers started below.
const tempDir = flags.broker ? undefined : mkdtempSync(join(tmpdir(), 'fennel-mergesort-'));
process.env['FENNEL_BROKER_URL'] = flags.broker ?? `sqlite://${join(tempDir!, 'fennel.db')}`;
if (flags.backend) process.env['FENNEL_RESULT_BACKEND'] = flags.backend;
const { chord } = await import('fennel');
const { app, sortChunk, merge, sortPacked, mergePacked } = await import('./tasks.ts');

// ---------------------------------------------------------------------------------------------------------

/** n distinct integers 0…n-1 in a seeded random order (Fisher–Yates with mulberry32). */
function shuffled(count: number, seedValue: number): number[] {
  let a = seedValue >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const xs = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const t = xs[i]!;
    xs[i] = xs[j]!;
    xs[j] = t;
  }
  return xs;
}

function startWorker(index: number): Promise<ChildProcess> {
  const args = [...process.execArgv, CLI, 'worker', '--app', TASKS, '-P', pool, '-c', String(concurrency), '--loglevel', 'warn'];
  // Its own process group, so that stopping it reaches its pool slots too.
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: process.env, detached: true });
  return new Promise((resolve, reject) => {
    let seen = '';
    child.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('worker ready')) {
        seen = '';
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`worker ${index + 1} exited with code ${code} before it was ready`)));
  });
}

async function stopWorkers(workers: ChildProcess[]): Promise<void> {
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.exitCode !== null || w.signalCode !== null) return resolve();
          const timer = setTimeout(() => w.pid && process.kill(-w.pid, 'SIGKILL'), 10_000);
          w.once('exit', () => (clearTimeout(timer), resolve()));
          w.kill('SIGTERM');
        }),
    ),
  );
}

/** Milliseconds since `t0` on performance.now()'s clock. */
const since = (t0: number): number => performance.now() - t0;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function sameOrder(actual: ArrayLike<number>, expected: Float64Array): boolean {
  if (actual.length !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (actual[i] !== expected[i]) return false;
  return true;
}

/** One distributed sort, with the timeline the result backend recorded: when each member and the merge finished. */
interface DistributedRun {
  totalMs: number;
  sorted: ArrayLike<number>;
  /** Milliseconds from the apply: the first and last sort task done, the merge done (date_done, stored by the workers). */
  firstSortDoneMs: number;
  lastSortDoneMs: number;
  mergeDoneMs: number;
}

async function distributed(xs: readonly number[]): Promise<DistributedRun> {
  const startedAt = Date.now();
  const t0 = performance.now();
  const parts = splitChunks(xs, chunkCount);
  // Ids chosen here, so that the members' stored outcomes can be read back for the timeline.
  const ids = parts.map(() => crypto.randomUUID());
  let sorted: ArrayLike<number>;
  let mergeId: string;
  if (wire === 'packed') {
    const result = chord(
      parts.map((part, i) => sortPacked.s(packInt32(part)).set({ taskId: ids[i]! })),
      mergePacked.s(),
    ).applyAsync();
    sorted = unpackInt32(await result.get({ timeoutMs: 300_000 }));
    mergeId = result.id;
  } else {
    const result = chord(
      parts.map((part, i) => sortChunk.s(part).set({ taskId: ids[i]! })),
      merge.s(),
    ).applyAsync();
    sorted = await result.get({ timeoutMs: 300_000 });
    mergeId = result.id;
  }
  const totalMs = since(t0);
  const doneAt = async (id: string): Promise<number> => {
    const meta = await app.asyncResult(id).refresh();
    return meta.date_done ? Date.parse(meta.date_done) - startedAt : NaN;
  };
  const sortsDone = await Promise.all(ids.map(doneAt));
  return { totalMs, sorted, firstSortDoneMs: Math.min(...sortsDone), lastSortDoneMs: Math.max(...sortsDone), mergeDoneMs: await doneAt(mergeId) };
}

/**
 * The costs of the steps, measured here on the same data: what a worker spends sorting one chunk and merging,
 * and one hop of one chunk (encoded as it is sent, decoded as it is received). Medians over the chunks (and
 * three merges), so one slow moment on a shared machine does not decide them.
 */
function stepCosts(xs: readonly number[]): { chunkSortMs: number; mergeMs: number; chunkWireMs: number; chunkBytes: number } {
  const parts = splitChunks(xs, chunkCount);
  const timed = <T>(body: () => T): [T, number] => {
    const t0 = performance.now();
    const out = body();
    return [out, since(t0)];
  };
  const sorts = parts.map((part) => timed(() => mergesortFloat64(part)));
  const sortedParts = sorts.map(([sorted]) => sorted);
  const merges = [0, 1, 2].map(() => timed(() => kWayMergeFloat64(sortedParts))[1]);
  let chunkBytes = 0;
  const hops = parts.map((part) =>
    timed(() => {
      const text = wire === 'packed' ? JSON.stringify([packInt32(part)]) : JSON.stringify([part]);
      chunkBytes = Buffer.byteLength(text);
      const back = JSON.parse(text) as [string] | [number[]];
      if (wire === 'packed') unpackInt32(back[0] as string);
    })[1],
  );
  return { chunkSortMs: median(sorts.map(([, ms]) => ms)), mergeMs: median(merges), chunkWireMs: median(hops), chunkBytes };
}

// ---------------------------------------------------------------------------------------------------------

const fmt = (ms: number): string => `${ms.toFixed(0)} ms`;
const log = (line = ''): void => {
  if (!flags.json) console.log(line);
};

const xs = shuffled(n, seed);
const expected = Float64Array.from(xs).sort();
log(`Distributed mergesort of ${n.toLocaleString('en')} shuffled integers (seed ${seed}) — broker ${process.env['FENNEL_BROKER_URL']}${flags.backend ? `, results ${flags.backend}` : ''}`);

let workers: ChildProcess[] = [];
let failed = false;
try {
  if (!flags['no-workers']) {
    workers = await Promise.all(Array.from({ length: workerCount }, (_, i) => startWorker(i)));
    log(`${workerCount} worker process(es) ready: fennel worker -P ${pool} -c ${concurrency}`);
  }

  // One untimed round of each first: both sides then run compiled code, not the interpreter's first pass.
  mergesortFloat64(xs);
  await distributed(xs);

  const local: number[] = [];
  const remote: DistributedRun[] = [];
  let localOk = true;
  let remoteOk = true;
  for (let run = 0; run < runs; run++) {
    const t0 = performance.now();
    const sorted = mergesortFloat64(xs);
    local.push(since(t0));
    localOk &&= sameOrder(sorted, expected);
    const d = await distributed(xs);
    remote.push(d);
    remoteOk &&= sameOrder(d.sorted, expected);
  }
  const costs = stepCosts(xs);
  const localMs = median(local);
  const totalMs = median(remote.map((r) => r.totalMs));
  const pick = (key: 'firstSortDoneMs' | 'lastSortDoneMs' | 'mergeDoneMs'): number => median(remote.map((r) => r[key]));
  const [firstSort, lastSort, mergeDone] = [pick('firstSortDoneMs'), pick('lastSortDoneMs'), pick('mergeDoneMs')];
  const slots = workerCount * concurrency;
  const chunksPerSlot = Math.ceil(chunkCount / slots);
  const sortPerSlot = costs.chunkSortMs * chunksPerSlot;
  const speedup = localMs / totalMs;
  // Amdahl's bound: with moving the data free, the slots sort their chunks side by side, then one merges.
  const computeMs = sortPerSlot + costs.mergeMs;
  const boundSpeedup = localMs / computeMs;
  const overhead = (phaseMs: number, workMs: number): string => `${fmt(workMs).padStart(6)} computing + ${fmt(phaseMs - workMs).padStart(6)} overhead`;

  log(`\nlocal (this process, mergesort of all ${n.toLocaleString('en')}): ${fmt(localMs)}   (median of ${runs})`);
  log(`distributed (chord of ${chunkCount} sorts → 1 merge, ${slots} slot(s), -P ${pool}, --wire ${wire}): ${fmt(totalMs)}   (median of ${runs})`);
  log(`speedup: ${speedup.toFixed(2)}× (local ÷ distributed); with zero transfer cost at most ${boundSpeedup.toFixed(2)}× (local ÷ (sorting per slot + merging) = ${fmt(localMs)} ÷ ${fmt(computeMs)})`);
  log(`output equals the built-in sort: local ${localOk ? 'yes' : 'NO'}, distributed ${remoteOk ? 'yes' : 'NO'}`);
  log(`\nwhere the distributed time goes (timeline from the stored results; step costs measured here on the same data):`);
  log(`  apply → last sort stored     ${fmt(lastSort).padStart(6)} = ${overhead(lastSort, sortPerSlot)}   (sorting: ${chunksPerSlot} chunk(s) per slot × ${fmt(costs.chunkSortMs)}; overhead: publishing ${chunkCount} messages, fetching, decoding, storing; first sort stored at ${fmt(firstSort)})`);
  log(`  last sort → merge stored     ${fmt(mergeDone - lastSort).padStart(6)} = ${overhead(mergeDone - lastSort, costs.mergeMs)}   (the join, the callback's message, reading the ${chunkCount} sorted chunks, storing the merged result)`);
  log(`  merge stored → result here   ${fmt(totalMs - mergeDone).padStart(6)} = ${overhead(totalMs - mergeDone, 0)}   (reading and decoding the merged result here)`);
  log(`  total                        ${fmt(totalMs).padStart(6)} = ${overhead(totalMs, computeMs)}`);
  log(`  one hop of one chunk (${(costs.chunkBytes / 1e6).toFixed(2)} MB as ${wire}): encode + decode ≈ ${costs.chunkWireMs.toFixed(1)} ms`);
  if (flags.json) {
    console.log(
      JSON.stringify({ n, chunks: chunkCount, workers: workerCount, concurrency, pool, wire, runs, localMs, totalMs, speedup, boundSpeedup, computeMs, localOk, remoteOk, firstSortDoneMs: firstSort, lastSortDoneMs: lastSort, mergeDoneMs: mergeDone, ...costs, sortPerSlotMs: sortPerSlot }),
    );
  }
  failed = !localOk || !remoteOk;
} finally {
  await stopWorkers(workers);
  await app.close();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
}
if (failed) {
  console.error('mergesort: an output differs from the built-in sort');
  process.exitCode = 1;
}
