// The distributed mergesort (issue #6): n shuffled integers are sorted once here, in this process, and once
// by worker processes, with the same mergesort (sort.ts). Both outputs are checked against the built-in sort;
// the times, their ratio, the ratio that zero transfer cost would give, and where the distributed time went are
// printed. Two shapes (--shape):
//   chord  one sort task per chunk, then one k-way merge of the sorted chunks: the chord's callback (the default);
//   tree   one sort task per chunk, then two-way merges level by level, each taking its two inputs as object
//          references (issue #17, docs/refs.md): merge2.delay(sortChunk.delay(a), sortChunk.delay(b)), and so on
//          up to one root. Each merge is parked in the result backend until its inputs are stored, then a worker
//          reads them from there; this process reads only the root's result.
//
//   npx tsx examples/mergesort/main.ts [--shape chord|tree] [--n 1000000] [--chunks 8] [--workers 2] [--concurrency 1]
//        [--pool process|thread|async] [--broker URL] [--backend URL] [--wire packed|json] [--runs 3] [--seed 1]
//        [--no-workers] [--json]
//
// Broker: by default an embedded SQLite file in a temp directory; redis://… and amqp://… work too (amqp needs
// --backend redis://… or sqlite://…: a chord joins in the result backend, and the tree's merges park there,
// which rpc:// cannot do). Unless --no-workers, it starts the workers itself (`fennel worker --app examples/mergesort/tasks.ts -P process -c 1`,
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
import type { AsyncResult } from 'fennel';

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
    shape: { type: 'string', default: 'chord' },
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
const slots = workerCount * concurrency;
const seed = positive('seed', flags.seed);
if (flags.wire !== 'packed' && flags.wire !== 'json') throw new RangeError(`--wire must be packed or json (got '${flags.wire}')`);
if (flags.shape !== 'chord' && flags.shape !== 'tree') throw new RangeError(`--shape must be chord or tree (got '${flags.shape}')`);
if (!['process', 'thread', 'async'].includes(flags.pool)) throw new RangeError(`--pool must be process, thread or async (got '${flags.pool}')`);
const pool = flags.pool;
const wire = flags.wire;
const shape = flags.shape;
if (flags['no-workers'] && !flags.broker) throw new RangeError('--no-workers needs --broker: the workers you started must share it');
if (flags.broker?.startsWith('amqp') && !flags.backend) throw new RangeError(`an amqp:// broker needs --backend redis://… or sqlite://…: the ${shape === 'tree' ? "tree's merges park" : 'chord joins'} in the result backend`);

// The app reads its broker from the environment when tasks.ts is imported, and so do the workers started below.
const tempDir = flags.broker ? undefined : mkdtempSync(join(tmpdir(), 'fennel-mergesort-'));
process.env['FENNEL_BROKER_URL'] = flags.broker ?? `sqlite://${join(tempDir!, 'fennel.db')}`;
if (flags.backend) process.env['FENNEL_RESULT_BACKEND'] = flags.backend;
const { chord } = await import('fennel');
const { app, sortChunk, merge, merge2, sortPacked, mergePacked, merge2Packed } = await import('./tasks.ts');

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
  /** The chord's callback; the tree's root merge (its last sort if there is one chunk). */
  mergeDoneMs: number;
  /** The tree: when the last merge of each level was stored, from the apply (empty for the chord). */
  levelDoneMs: number[];
}

/**
 * The tree's shape over `count` leaves, level by level from the bottom: each node of a level is a pair of indices
 * into the level below (a two-way merge) or one index (the odd one out, passed up unchanged). One level left of
 * one node is the root.
 */
type TreeLevel = Array<[number, number] | [number]>;
function treeShape(count: number): TreeLevel[] {
  const levels: TreeLevel[] = [];
  for (let width = count; width > 1; ) {
    const level: TreeLevel = [];
    for (let i = 0; i + 1 < width; i += 2) level.push([i, i + 1]);
    if (width % 2 === 1) level.push([width - 1]);
    levels.push(level);
    width = level.length;
  }
  return levels;
}

/**
 * The tree of calls over `leaves`: merge2(left, right) for each pair, level by level, each taking the two results
 * below it as references. Reads no result: it returns the root's AsyncResult and the ids of each level's merges.
 */
function mergeTree<T>(leaves: ReadonlyArray<AsyncResult<T>>, merge2: (x: AsyncResult<T>, y: AsyncResult<T>) => AsyncResult<T>): { root: AsyncResult<T>; levelIds: string[][] } {
  let below = leaves;
  const levelIds: string[][] = [];
  for (const level of treeShape(leaves.length)) {
    const prev = below;
    const ids: string[] = [];
    below = level.map((node) => {
      if (node.length === 1) return prev[node[0]]!;
      const merged = merge2(prev[node[0]]!, prev[node[1]]!);
      ids.push(merged.id);
      return merged;
    });
    levelIds.push(ids);
  }
  return { root: below[0]!, levelIds };
}

async function distributed(xs: readonly number[]): Promise<DistributedRun> {
  const startedAt = Date.now();
  const t0 = performance.now();
  const parts = splitChunks(xs, chunkCount);
  let sorted: ArrayLike<number>;
  let sortIds: string[];
  let mergeId: string;
  let levelIds: string[][] = [];
  const timeoutMs = 300_000;
  if (shape === 'tree') {
    // Every call is sent at once; each merge waits, parked in the result backend, for its two inputs.
    if (wire === 'packed') {
      const leaves = sortPacked.delayMany(parts.map((part) => [packInt32(part)] as [string]));
      const tree = mergeTree(leaves, (x, y) => merge2Packed.delay(x, y));
      sorted = unpackInt32(await tree.root.get({ timeoutMs }));
      [sortIds, mergeId, levelIds] = [leaves.map((r) => r.id), tree.root.id, tree.levelIds];
    } else {
      const leaves = sortChunk.delayMany(parts.map((part) => [part] as [number[]]));
      const tree = mergeTree(leaves, (x, y) => merge2.delay(x, y));
      sorted = await tree.root.get({ timeoutMs });
      [sortIds, mergeId, levelIds] = [leaves.map((r) => r.id), tree.root.id, tree.levelIds];
    }
  } else {
    // Ids chosen here, so that the members' stored outcomes can be read back for the timeline.
    sortIds = parts.map(() => crypto.randomUUID());
    if (wire === 'packed') {
      const result = chord(
        parts.map((part, i) => sortPacked.s(packInt32(part)).set({ taskId: sortIds[i]! })),
        mergePacked.s(),
      ).applyAsync();
      sorted = unpackInt32(await result.get({ timeoutMs }));
      mergeId = result.id;
    } else {
      const result = chord(
        parts.map((part, i) => sortChunk.s(part).set({ taskId: sortIds[i]! })),
        merge.s(),
      ).applyAsync();
      sorted = await result.get({ timeoutMs });
      mergeId = result.id;
    }
  }
  const totalMs = since(t0);
  // The timeline, read after the clock stopped: each stored outcome's date_done.
  const doneAt = async (id: string): Promise<number> => {
    const meta = await app.asyncResult(id).refresh();
    return meta.date_done ? Date.parse(meta.date_done) - startedAt : NaN;
  };
  const sortsDone = await Promise.all(sortIds.map(doneAt));
  const levelDoneMs: number[] = [];
  for (const ids of levelIds) levelDoneMs.push(Math.max(...(await Promise.all(ids.map(doneAt)))));
  return { totalMs, sorted, firstSortDoneMs: Math.min(...sortsDone), lastSortDoneMs: Math.max(...sortsDone), mergeDoneMs: await doneAt(mergeId), levelDoneMs };
}

/** One level of the tree, timed here: its two-way merges and what they cost on the slots. */
interface MergeLevel {
  merges: number;
  /** The largest merge's output, integers. */
  size: number;
  /** Median of the level's merges (each the median of three). */
  mergeMs: number;
  /** Rounds on `slots` slots: ceil(merges ÷ slots). */
  rounds: number;
  /** The level on `slots` slots: its merges in order, `slots` side by side, each round as long as its longest. */
  levelMs: number;
}

/**
 * The costs of the steps, measured here on the same data: what a worker spends sorting one chunk and merging,
 * and one hop of one chunk (encoded as it is sent, decoded as it is received). Medians over the chunks (and
 * three merges), so one slow moment on a shared machine does not decide them. Merging is measured both ways:
 * one k-way merge of all the chunks (the chord's callback), and the tree's levels of two-way merges.
 */
function stepCosts(xs: readonly number[]): { chunkSortMs: number; kWayMergeMs: number; mergeLevels: MergeLevel[]; treeMergeMs: number; chunkWireMs: number; chunkBytes: number } {
  const parts = splitChunks(xs, chunkCount);
  const timed = <T>(body: () => T): [T, number] => {
    const t0 = performance.now();
    const out = body();
    return [out, since(t0)];
  };
  const sorts = parts.map((part) => timed(() => mergesortFloat64(part)));
  const sortedParts = sorts.map(([sorted]) => sorted);
  const merges = [0, 1, 2].map(() => timed(() => kWayMergeFloat64(sortedParts))[1]);
  // The two-way merge three times untimed first, so that the first level is not timed on the interpreter's first pass.
  for (let i = 0; i < 3 && sortedParts.length > 1; i++) kWayMergeFloat64([sortedParts[0]!, sortedParts[1]!]);
  const mergeLevels: MergeLevel[] = [];
  let below: Float64Array[] = sortedParts;
  for (const level of treeShape(sortedParts.length)) {
    const prev = below;
    const nodeMs: number[] = [];
    let size = 0;
    below = level.map((node) => {
      if (node.length === 1) return prev[node[0]]!;
      const three = [0, 1, 2].map(() => timed(() => kWayMergeFloat64([prev[node[0]]!, prev[node[1]]!])));
      nodeMs.push(median(three.map(([, ms]) => ms)));
      size = Math.max(size, three[0]![0].length);
      return three[0]![0];
    });
    let levelMs = 0;
    for (let i = 0; i < nodeMs.length; i += slots) levelMs += Math.max(...nodeMs.slice(i, i + slots));
    mergeLevels.push({ merges: nodeMs.length, size, mergeMs: median(nodeMs), rounds: Math.ceil(nodeMs.length / slots), levelMs });
  }
  let chunkBytes = 0;
  const hops = parts.map((part) =>
    timed(() => {
      const text = wire === 'packed' ? JSON.stringify([packInt32(part)]) : JSON.stringify([part]);
      chunkBytes = Buffer.byteLength(text);
      const back = JSON.parse(text) as [string] | [number[]];
      if (wire === 'packed') unpackInt32(back[0] as string);
    })[1],
  );
  return {
    chunkSortMs: median(sorts.map(([, ms]) => ms)),
    kWayMergeMs: median(merges),
    mergeLevels,
    treeMergeMs: mergeLevels.reduce((sum, level) => sum + level.levelMs, 0),
    chunkWireMs: median(hops),
    chunkBytes,
  };
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
  const tree = shape === 'tree';
  const levelDone = tree ? costs.mergeLevels.map((_, l) => median(remote.map((r) => r.levelDoneMs[l]!))) : [];
  const chunksPerSlot = Math.ceil(chunkCount / slots);
  const sortPerSlot = costs.chunkSortMs * chunksPerSlot;
  const speedup = localMs / totalMs;
  // Amdahl's bound: with moving the data free, the slots sort their chunks side by side, then the merging. The
  // chord's merging is one k-way merge on one slot; the tree's is its levels one after another, each level's
  // two-way merges side by side on the slots (the merge levels' critical path on these slots).
  const mergeMs = tree ? costs.treeMergeMs : costs.kWayMergeMs;
  const bound = tree ? `the merge levels' critical path on ${slots} slot(s)` : 'one k-way merge';
  const computeMs = sortPerSlot + mergeMs;
  const boundSpeedup = localMs / computeMs;
  const overhead = (phaseMs: number, workMs: number): string => `${fmt(workMs).padStart(6)} computing + ${fmt(phaseMs - workMs).padStart(6)} overhead`;
  const merges = costs.mergeLevels.map((level) => level.merges);
  const int = (count: number): string => count.toLocaleString('en');

  log(`\nlocal (this process, mergesort of all ${int(n)}): ${fmt(localMs)}   (median of ${runs})`);
  if (tree) {
    log(`distributed (tree of ${chunkCount} sorts → ${merges.join(' + ') || 'no'} two-way merges in ${merges.length} level(s), ${slots} slot(s), -P ${pool}, --wire ${wire}): ${fmt(totalMs)}   (median of ${runs})`);
  } else {
    log(`distributed (chord of ${chunkCount} sorts → 1 merge, ${slots} slot(s), -P ${pool}, --wire ${wire}): ${fmt(totalMs)}   (median of ${runs})`);
  }
  log(`speedup: ${speedup.toFixed(2)}× (local ÷ distributed); with zero transfer cost at most ${boundSpeedup.toFixed(2)}× (local ÷ (sorting per slot + merging) = ${fmt(localMs)} ÷ ${fmt(computeMs)}; merging = ${bound})`);
  log(`output equals the built-in sort: local ${localOk ? 'yes' : 'NO'}, distributed ${remoteOk ? 'yes' : 'NO'}`);
  log(`\nwhere the distributed time goes (timeline from the stored results; step costs measured here on the same data):`);
  log(`  apply → last sort stored     ${fmt(lastSort).padStart(6)} = ${overhead(lastSort, sortPerSlot)}   (sorting: ${chunksPerSlot} chunk(s) per slot × ${fmt(costs.chunkSortMs)}; overhead: publishing ${chunkCount} messages, fetching, decoding, storing; first sort stored at ${fmt(firstSort)})`);
  if (tree) {
    log(`  last sort → merge stored     ${fmt(mergeDone - lastSort).padStart(6)} = ${overhead(mergeDone - lastSort, mergeMs)}   (the root merge. Merging = ${bound}: the levels one after another, each in rounds of up to ${slots} two-way merges side by side; a merge starts once its own two inputs are stored, so level 1's can start before the last sort is. Overhead, at each level: storing the merged results, releasing the parked merges, their messages, reading both inputs from the result backend)`);
    costs.mergeLevels.forEach((level, l) => {
      log(`    level ${l + 1}: ${level.merges} merge(s) of up to ${int(level.size)} integers, last stored at ${fmt(levelDone[l]!)}; computing ${level.rounds} round(s) on ${slots} slot(s) ≈ ${fmt(level.levelMs)} (one merge ≈ ${level.mergeMs.toFixed(1)} ms)`);
    });
    log(`    (one k-way merge of the ${chunkCount} chunks, the chord's, would take ≈ ${fmt(costs.kWayMergeMs)} on one slot)`);
  } else {
    log(`  last sort → merge stored     ${fmt(mergeDone - lastSort).padStart(6)} = ${overhead(mergeDone - lastSort, mergeMs)}   (merging = ${bound}; the join, the callback's message, reading the ${chunkCount} sorted chunks, storing the merged result)`);
  }
  log(`  merge stored → result here   ${fmt(totalMs - mergeDone).padStart(6)} = ${overhead(totalMs - mergeDone, 0)}   (reading and decoding the merged result here)`);
  log(`  total                        ${fmt(totalMs).padStart(6)} = ${overhead(totalMs, computeMs)}`);
  log(`  one hop of one chunk (${(costs.chunkBytes / 1e6).toFixed(2)} MB as ${wire}): encode + decode ≈ ${costs.chunkWireMs.toFixed(1)} ms`);
  if (flags.json) {
    console.log(
      JSON.stringify({
        shape, n, chunks: chunkCount, workers: workerCount, concurrency, pool, wire, runs, localMs, totalMs, speedup, boundSpeedup, bound, computeMs, localOk, remoteOk,
        firstSortDoneMs: firstSort, lastSortDoneMs: lastSort, mergeDoneMs: mergeDone, levelDoneMs: levelDone,
        ...costs, mergeMs, sortPerSlotMs: sortPerSlot,
      }),
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
