// The canvas benchmarks (issue #6), one section of BENCHMARKS.md (`npm run bench -- canvas`):
//   (a) the distributed mergesort of 1,000,000 integers, and of 10,000,000 in the main configurations on each engine
//       (issue #21) (examples/mergesort/main.ts, run as a user runs it,
//       with --json) against the same mergesort in one process: the speedup and where the rest goes, on SQLite
//       with 2 × `-c 1` and 1 × `-c 2` workers, on Redis, and with number arrays instead of packed text; as a chord
//       (one k-way merge) and, on SQLite and Redis with 2 × `-c 1`, as a tree of two-way merges taking object
//       references (--shape tree, issue #17);
//   (b) a chord of 1,000 no-op members, apply → callback result: Fennel vs Python Celery 5 on the same Redis
//       database (bench/peers/celery_chord.py), FLUSHDB before each scenario.
// Knobs: FENNEL_BENCH_REDIS_URL and FENNEL_BENCH_PYTHON, as bench/redis.bench.ts.

import { availableParallelism, loadavg } from 'node:os';
import { chord } from 'fennel';
import { canvasApp } from './canvas-tasks.ts';
import { environment, flush, REDIS_URL } from './redis.bench.ts';
import { FENNEL_BIN, median, runCeleryProducer, runProcess, startCeleryWorker, startProcess, tempDatabase, type WorkerProcess } from './support.ts';

const MERGESORT_N = 1_000_000;
const CHORD_MEMBERS = 1000;
const MERGESORT_LARGE_N = 10_000_000;
/**
 * Issue #6: the mergesort on 2 worker processes ≥ 1.7 × the local sort; the chord ≥ 5 × faster than Celery's.
 * Issue #21: the distributed time within 15% of the zero-transfer bound's (sorting per slot + merging), at both sizes.
 */
const AIMS = { mergesortSpeedup: 1.7, chordRatioToCelery: 5, overBound: 1.15 };

// ---------------------------------------------------------------------------------------------------------
// (a) The distributed mergesort

interface MergesortConfig {
  id: string;
  title: string;
  broker: 'sqlite' | 'redis';
  workers: number;
  concurrency: number;
  wire: 'packed' | 'json';
  chunks: number;
  pool: 'process' | 'async';
  /** chord: the sorts, then one k-way merge (a chord's callback); tree: two-way merges level by level, on references. */
  shape: 'chord' | 'tree';
  /** How many integers (MERGESORT_N unless said). */
  n?: number;
}

const sizeOf = (config: MergesortConfig): number => config.n ?? MERGESORT_N;

const MERGESORT_CONFIGS: MergesortConfig[] = [
  { id: 'sqlite-2x1', title: 'SQLite, 2 workers × `-c 1`', broker: 'sqlite', workers: 2, concurrency: 1, wire: 'packed', chunks: 8, pool: 'process', shape: 'chord' },
  { id: 'sqlite-2x1-tree', title: 'SQLite, 2 workers × `-c 1`, `--shape tree`', broker: 'sqlite', workers: 2, concurrency: 1, wire: 'packed', chunks: 8, pool: 'process', shape: 'tree' },
  { id: 'sqlite-1x2', title: 'SQLite, 1 worker × `-c 2`', broker: 'sqlite', workers: 1, concurrency: 2, wire: 'packed', chunks: 8, pool: 'process', shape: 'chord' },
  { id: 'sqlite-2x1-2chunks', title: 'SQLite, 2 workers × `-c 1`', broker: 'sqlite', workers: 2, concurrency: 1, wire: 'packed', chunks: 2, pool: 'process', shape: 'chord' },
  { id: 'sqlite-2x1-async', title: 'SQLite, 2 workers × `-c 1`, `--pool async`', broker: 'sqlite', workers: 2, concurrency: 1, wire: 'packed', chunks: 8, pool: 'async', shape: 'chord' },
  { id: 'redis-2x1', title: 'Redis, 2 workers × `-c 1`', broker: 'redis', workers: 2, concurrency: 1, wire: 'packed', chunks: 8, pool: 'process', shape: 'chord' },
  { id: 'redis-2x1-tree', title: 'Redis, 2 workers × `-c 1`, `--shape tree`', broker: 'redis', workers: 2, concurrency: 1, wire: 'packed', chunks: 8, pool: 'process', shape: 'tree' },
  { id: 'redis-2x1-async', title: 'Redis, 2 workers × `-c 1`, `--pool async`', broker: 'redis', workers: 2, concurrency: 1, wire: 'packed', chunks: 8, pool: 'async', shape: 'chord' },
  { id: 'sqlite-2x1-json', title: 'SQLite, 2 workers × `-c 1`, `--wire json`', broker: 'sqlite', workers: 2, concurrency: 1, wire: 'json', chunks: 8, pool: 'process', shape: 'chord' },
  { id: 'sqlite-2x1-10m', title: 'SQLite, 2 workers × `-c 1`', broker: 'sqlite', workers: 2, concurrency: 1, wire: 'packed', chunks: 8, pool: 'process', shape: 'chord', n: MERGESORT_LARGE_N },
  { id: 'redis-2x1-10m', title: 'Redis, 2 workers × `-c 1`', broker: 'redis', workers: 2, concurrency: 1, wire: 'packed', chunks: 8, pool: 'process', shape: 'chord', n: MERGESORT_LARGE_N },
];

/** The tree's command in the section's text: the main configuration as a tree. */
const TREE_EXAMPLE: MergesortConfig = { ...MERGESORT_CONFIGS[0]!, id: 'sqlite-2x1-tree', shape: 'tree' };

/** The chord and tree rows compared under the table: [chord id, tree id, engine]. */
const TREE_PAIRS: Array<[string, string, string]> = [
  ['sqlite-2x1', 'sqlite-2x1-tree', 'SQLite'],
  ['redis-2x1', 'redis-2x1-tree', 'Redis'],
];

/** What main.ts --json prints (medians of its runs). */
interface MergesortReport {
  shape: 'chord' | 'tree';
  localMs: number;
  totalMs: number;
  speedup: number;
  /** local ÷ (sorting per slot + merging): the speedup if moving the data cost nothing. */
  boundSpeedup: number;
  /** Sorting per slot + merging: the distributed time if moving the data cost nothing. */
  computeMs: number;
  /** What `merging` is in the bound: one k-way merge (chord), or the merge levels' critical path on the slots (tree). */
  bound: string;
  localOk: boolean;
  remoteOk: boolean;
  firstSortDoneMs: number;
  lastSortDoneMs: number;
  /** The chord's callback, or the tree's root merge, stored. */
  mergeDoneMs: number;
  /** The tree: each level's last merge stored (empty for the chord). */
  levelDoneMs: number[];
  chunkSortMs: number;
  sortPerSlotMs: number;
  /** The merging term of the bound: kWayMergeMs for the chord, treeMergeMs for the tree. */
  mergeMs: number;
  kWayMergeMs: number;
  treeMergeMs: number;
  mergeLevels: Array<{ merges: number; size: number; mergeMs: number; rounds: number; levelMs: number }>;
  chunkWireMs: number;
  chunkBytes: number;
}

function mergesortArgs(config: MergesortConfig, runs: number, broker?: string): string[] {
  return [
    '--n', String(sizeOf(config)), '--chunks', String(config.chunks), '--workers', String(config.workers), '--concurrency', String(config.concurrency),
    '--wire', config.wire, '--pool', config.pool, '--shape', config.shape, '--runs', String(runs), ...(broker ? ['--broker', broker] : []), '--json',
  ];
}

async function runMergesort(config: MergesortConfig, runs: number): Promise<MergesortReport> {
  let broker: string | undefined;
  if (config.broker === 'redis') {
    await flush();
    broker = REDIS_URL;
  }
  const args = ['--conditions=development', '--import', 'tsx', 'examples/mergesort/main.ts', ...mergesortArgs(config, runs, broker)];
  const stdout = await runProcess(process.execPath, args, { timeoutMs: 600_000 });
  const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as MergesortReport;
  if (!report.localOk || !report.remoteOk) throw new Error(`mergesort ${config.id}: an output differs from the built-in sort`);
  if (report.shape !== config.shape) throw new Error(`mergesort ${config.id}: ran as a ${report.shape}, not a ${config.shape}`);
  return report;
}


const ms = (value: number): string => (Number.isFinite(value) ? value.toFixed(0) : '–');

function mergesortTable(rows: Array<{ config: MergesortConfig; report: MergesortReport }>): string {
  const lines = [
    '| Configuration | Local, ms | Distributed, ms | Speedup | Bound | apply → last sort stored | last sort → merge stored | merge stored → result here | sorting per slot | merging | one hop of one chunk |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const { config, report: r } of rows) {
    lines.push(
      `| ${config.title}, ${config.chunks} chunks${sizeOf(config) === MERGESORT_N ? '' : `, **${sizeOf(config).toLocaleString('en')} integers**`} | ${ms(r.localMs)} | **${ms(r.totalMs)}** | **${r.speedup.toFixed(2)}×** | ${r.boundSpeedup.toFixed(2)}× | ${ms(r.lastSortDoneMs)} | ${ms(r.mergeDoneMs - r.lastSortDoneMs)} | ${ms(r.totalMs - r.mergeDoneMs)} | ${ms(r.sortPerSlotMs)} | ${ms(r.mergeMs)} | ${r.chunkWireMs.toFixed(1)} ms (${(r.chunkBytes / 1e6).toFixed(2)} MB) |`,
    );
  }
  return lines.join('\n');
}

/** Each row's command line, in the table's order. */
function mergesortCommands(rows: Array<{ config: MergesortConfig }>, runs: number): string {
  return rows
    .map(({ config }) => `- ${config.title}, ${config.chunks} chunks${sizeOf(config) === MERGESORT_N ? '' : `, ${sizeOf(config).toLocaleString('en')} integers`}: \`node --conditions=development --import tsx examples/mergesort/main.ts ${mergesortArgs(config, runs, config.broker === 'redis' ? REDIS_URL : undefined).join(' ')}\``)
    .join('\n');
}

/** The tree against the chord on the same engine and workers, from the measured numbers (TREE_PAIRS). */
function treeVsChord(rows: Array<{ config: MergesortConfig; report: MergesortReport }>): string {
  const byId = new Map(rows.map((row) => [row.config.id, row]));
  const pairs = TREE_PAIRS.flatMap(([chordId, treeId, engine]) => {
    const chord = byId.get(chordId);
    const tree = byId.get(treeId);
    return chord && tree ? [{ engine, chord: chord.report, tree: tree.report, slots: tree.config.workers * tree.config.concurrency, chunks: tree.config.chunks }] : [];
  });
  if (pairs.length === 0) return '';
  const pct = (a: number, b: number): string => `${Math.abs((a / b - 1) * 100).toFixed(0)} %`;
  const sentences = pairs.map(({ engine, chord: c, tree: t }) => {
    const levels = t.mergeLevels.length;
    const after = { chord: c.mergeDoneMs - c.lastSortDoneMs, tree: t.mergeDoneMs - t.lastSortDoneMs };
    return (
      `On ${engine} the tree took **${ms(t.totalMs)} ms** against the chord's **${ms(c.totalMs)} ms** (${t.totalMs <= c.totalMs ? `${pct(c.totalMs, t.totalMs)} less` : `${pct(t.totalMs, c.totalMs)} more`}). ` +
      `The sorts are the same tasks; the tree's last one is stored at ${ms(t.lastSortDoneMs)} ms, the chord's at ${ms(c.lastSortDoneMs)}${
        t.lastSortDoneMs > c.lastSortDoneMs * 1.05 ? ' (later: the tree\'s first merges can start beside the last sorts, on the same CPUs, and each stored sort releases a parked merge)' : ''
      }. From the last sort stored to the merged result stored the tree took ${ms(after.tree)} ms ` +
      `(its ${levels} levels' last merges stored at ${t.levelDoneMs.map(ms).join(', ')} ms from the apply) and the chord ${ms(after.chord)} ms. ` +
      `Computing is ${ms(t.treeMergeMs)} ms of that for the tree's levels and ${ms(c.kWayMergeMs)} ms for the chord's k-way merge, ` +
      `so moving the data took ≈ ${ms(after.tree - t.treeMergeMs)} ms in the tree (≈ ${ms((after.tree - t.treeMergeMs) / levels)} ms a level) and ≈ ${ms(after.chord - c.kWayMergeMs)} ms in the chord's join and callback.`
    );
  });
  const { tree: t, slots, chunks } = pairs[0]!;
  const levels = t.mergeLevels.length;
  const mergeCount = t.mergeLevels.reduce((sum, level) => sum + level.merges, 0);
  const first = t.mergeLevels[0]!;
  // The step costs are timed in each run's driver: means over the pairs' runs, with each run's value shown.
  type Pair = (typeof pairs)[number];
  const mean = (of: (pair: Pair) => number): number => pairs.reduce((sum, pair) => sum + of(pair), 0) / pairs.length;
  const each = (of: (pair: Pair) => number): string => pairs.map((pair) => ms(of(pair))).join(' and ');
  const twoWayWork = mean((pair) => pair.tree.mergeLevels.reduce((sum, level) => sum + level.merges * level.mergeMs, 0));
  const heapWork = mean((pair) => pair.tree.kWayMergeMs);
  const rootMerge = mean((pair) => pair.tree.mergeLevels.at(-1)!.mergeMs);
  const treeCritical = mean((pair) => pair.tree.treeMergeMs);
  const chordMerge = mean((pair) => pair.chord.kWayMergeMs);
  const spread = (of: (pair: Pair) => number): number => Math.max(...pairs.map(of)) / Math.min(...pairs.map(of));
  const noisy = spread((pair) => pair.tree.treeMergeMs) > 1.25 || spread((pair) => pair.chord.kWayMergeMs) > 1.25;
  const runsNote =
    pairs.length > 1
      ? ` (means of the ${pairs.map((pair) => pair.engine).join(' and ')} runs' timings in the driver: ${each((pair) => pair.tree.treeMergeMs)} ms against ${each((pair) => pair.chord.kWayMergeMs)} ms${
          noisy ? '; timings of tens of ms vary that much from run to run on this shared machine' : ''
        })`
      : '';
  const perLevelHops = pairs.map(({ tree }) => (tree.mergeDoneMs - tree.lastSortDoneMs - tree.treeMergeMs) / tree.mergeLevels.length);
  const perLevelWork = treeCritical / levels;
  const verdict = pairs.every(({ chord, tree }) => tree.totalMs > chord.totalMs)
    ? `The hops win: the tree is slower than the chord on ${pairs.length > 1 ? 'both engines' : 'this engine'} here.`
    : pairs.every(({ chord, tree }) => tree.totalMs <= chord.totalMs)
      ? `Even so the tree is no slower than the chord on ${pairs.length > 1 ? 'either engine' : 'this engine'} here: the parallel, cheaper merging wins back what the extra hops cost.`
      : `The two come out differently by engine here (${pairs.map(({ engine, chord, tree }) => `${engine}: tree ${ms(tree.totalMs)} ms, chord ${ms(chord.totalMs)} ms`).join('; ')}).`;
  const work = twoWayWork < 0.85 * heapWork ? 'less work than' : twoWayWork > 1.15 * heapWork ? 'more work than' : 'about the same work as';
  const firstLevel = `the ${first.merges} merges of its first level run ${Math.min(first.merges, slots)} at a time, one per slot`;
  const gains =
    treeCritical < 0.85 * chordMerge
      ? `Where the tree gains is computing: ${firstLevel}`
      : treeCritical <= 1.15 * chordMerge
        ? `On computing the tree comes out about even with the chord here, although ${firstLevel}`
        : `The tree gains nothing on computing here, although ${firstLevel}`;
  return `**Tree vs chord.** The \`--shape tree\` rows send one \`mergesort.sort_packed\` per chunk, then \`mergesort.merge2_packed\`
(a two-way merge) on each pair of references, level by level up to one root (${t.mergeLevels.map((level) => level.merges).join(' + ')} merges in ${levels} levels for ${MERGESORT_N.toLocaleString('en')}
integers in ${chunks} chunks); each merge is parked in the result backend until its two inputs are stored, and the driver reads
only the root's result. For the tree, *last sort → merge stored* runs to the root merge, and *merging* in the bound
is the merge levels' critical path on the ${slots} slots (each level's merges side by side, the levels one after another,
from two-way merges timed in the driver), not one k-way merge. ${sentences.join(' ')}

${gains}. In all its
${mergeCount} two-way merges are ${work} the chord's one ${chunks}-way heap merge (${levels} passes over the data against one pass through a heap
${levels} deep: ≈ ${ms(twoWayWork)} ms against ≈ ${ms(heapWork)} ms), and its root merge (all ${MERGESORT_N.toLocaleString('en')} integers, ≈ ${ms(rootMerge)} ms)
runs on one slot while the other waits: its merging's critical path is ≈ ${ms(treeCritical)} ms where the chord's is ≈ ${ms(chordMerge)} ms${runsNote}.
Where it loses is hops: each level stores all ${MERGESORT_N.toLocaleString('en')} integers in the result backend and reads them
back (the parked merges released, their messages sent and fetched, both inputs read by a worker and handed to its slot,
the merged result stored), and the levels run one after another. The tree writes the data to the result backend
${levels + 1} times (the sorts, then each level) where the chord writes it twice, and its workers read it ${levels} times where the chord's
reads it once. A level's hops (≈ ${pairs.map((p, i) => `${ms(perLevelHops[i]!)} ms on ${p.engine}`).join(', ')}) ${
    perLevelHops.every((h) => h > perLevelWork) ? 'cost more than the merging they carry' : 'cost about as much as the merging they carry, or less'
  } (≈ ${ms(perLevelWork)} ms a level). ${verdict}`;
}

// ---------------------------------------------------------------------------------------------------------
// (b) A chord of 1,000 no-op members

async function withWorker<T>(start: () => Promise<WorkerProcess>, body: () => Promise<T>): Promise<T> {
  const worker = await start();
  try {
    const out = await Promise.race([body(), worker.died]);
    if (worker.complaints.length) throw new Error(`the worker logged ${worker.complaints.length} warning(s), e.g. ${worker.complaints[0]}`);
    return out;
  } finally {
    await worker.stop();
  }
}

const fennelWorker = (broker: string) => (): Promise<WorkerProcess> =>
  startProcess({
    command: process.execPath,
    args: [FENNEL_BIN, 'worker', '--app', 'bench/canvas-tasks.ts', '-P', 'async', '-c', '100', '--loglevel', 'warn'],
    env: { FENNEL_BROKER_URL: broker, FENNEL_RESULT_BACKEND: '' },
  });

/** Fennel: one warm-up chord, then `runs` chords timed from applyAsync() to the callback's result. */
async function fennelChord(broker: string, runs: number): Promise<number[]> {
  const { app, noop, count } = canvasApp({ broker });
  try {
    return await withWorker(fennelWorker(broker), async () => {
      const one = async (): Promise<number> => {
        const t0 = performance.now();
        const got = await chord(Array.from({ length: CHORD_MEMBERS }, () => noop.s()), count.s()).applyAsync().get({ timeoutMs: 120_000 });
        const elapsed = performance.now() - t0;
        if (got !== CHORD_MEMBERS) throw new Error(`the chord callback saw ${got} results, not ${CHORD_MEMBERS}`);
        return elapsed;
      };
      await one();
      const times: number[] = [];
      for (let i = 0; i < runs; i++) times.push(await one());
      return times;
    });
  } finally {
    await app.close();
  }
}

const CELERY_ENV = { CELERY_BENCH_URL: REDIS_URL, PYTHONDONTWRITEBYTECODE: '1' };

/** Celery: the same on `celery worker -P threads -c 8` (Celery's main configuration in bench/redis.bench.ts). */
async function celeryChord(runs: number): Promise<number[]> {
  const start = (): Promise<WorkerProcess> => startCeleryWorker('celery_chord', ['-P', 'threads', '-c', '8'], 'chord0@%h', CELERY_ENV);
  return withWorker(start, async () => (await runCeleryProducer<{ ms: number[] }>('celery_chord.py', ['chord', CHORD_MEMBERS, runs], CELERY_ENV, 600_000)).ms);
}

const spread = (values: readonly number[]): string => `**${ms(median(values))}** (${ms(Math.min(...values))}–${ms(Math.max(...values))})`;

// ---------------------------------------------------------------------------------------------------------

/** Runs both parts and returns the section of BENCHMARKS.md. */
export async function canvasSection(runs = 3): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const env = await environment();

  const mergesortRows: Array<{ config: MergesortConfig; report: MergesortReport }> = [];
  for (const config of MERGESORT_CONFIGS) {
    const t0 = performance.now();
    const report = await runMergesort(config, runs);
    mergesortRows.push({ config, report });
    console.log(`canvas mergesort ${config.id}: local ${ms(report.localMs)} ms, distributed ${ms(report.totalMs)} ms, speedup ${report.speedup.toFixed(2)}× (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }

  await flush();
  const fennelRedis = await fennelChord(REDIS_URL, runs);
  console.log(`canvas chord fennel redis: ${fennelRedis.map(ms).join(', ')} ms`);
  const sqlite = tempDatabase();
  let fennelSqlite: number[];
  try {
    fennelSqlite = await fennelChord(sqlite.url, runs);
  } finally {
    sqlite.cleanup();
  }
  console.log(`canvas chord fennel sqlite: ${fennelSqlite.map(ms).join(', ')} ms`);
  let celery: number[] | undefined;
  let celeryNote = '';
  if ('skipped' in env.celery) celeryNote = `Celery skipped: ${env.celery.skipped}`;
  else {
    await flush();
    celery = await celeryChord(runs);
    console.log(`canvas chord celery redis: ${celery.map(ms).join(', ')} ms`);
  }

  const main = mergesortRows[0]!;
  const best = [...mergesortRows].filter((r) => r.config.wire === 'packed' && sizeOf(r.config) === MERGESORT_N).sort((a, b) => b.report.speedup - a.report.speedup)[0]!;
  // Issue #21's rows: 2 workers × -c 1, 8 chunks, as a chord on process slots, at each size, on each engine.
  const boundRows = mergesortRows.filter(({ config: c }) => c.shape === 'chord' && c.pool === 'process' && c.wire === 'packed' && c.workers === 2 && c.concurrency === 1 && c.chunks === 8);
  const overBound = (row: { report: MergesortReport }): number => row.report.totalMs / row.report.computeMs;
  const large = mergesortRows.find((row) => row.config.id === 'sqlite-2x1-10m');
  const chordRatio = celery ? median(celery) / median(fennelRedis) : NaN;
  const verdict = (ok: boolean): string => (ok ? '**met**' : '**not met**');
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const r = main.report;
  const hops = r.totalMs - r.sortPerSlotMs - r.mergeMs;

  return `## Canvas: distributed mergesort and a 1,000-member chord

Both parts of issue #6. Every worker is a separate process started as users start it; each number is the median of
${runs} timed runs after one untimed warm-up (min–max where shown).

- Command: \`npm run bench -- canvas\` (bench/canvas.bench.ts)
- Machine: ${availableParallelism()} CPUs (nproc), Node ${process.version}; load average ${load(load0)} at the start and ${load(loadavg())} at the end (1, 5, 15 min); the machine is shared with other work, so read the ratios with that in mind
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC; ${env.redis} at \`${REDIS_URL}\` (\`FLUSHDB\` before each Redis scenario); ${'skipped' in env.celery ? celeryNote : `Python ${env.celery.version}`}

### (a) Mergesort of ${MERGESORT_N.toLocaleString('en')} integers (and of ${MERGESORT_LARGE_N.toLocaleString('en')} in the last rows): 2 worker processes vs one process

\`node --conditions=development --import tsx examples/mergesort/main.ts ${mergesortArgs(main.config, runs).join(' ')}\`
(and the variations in the first column). *Local* is the same mergesort (examples/mergesort/sort.ts) of all
${MERGESORT_N.toLocaleString('en')} integers in one process; *distributed* runs from splitting and packing the input to the
sorted array unpacked here: a chord of one \`mergesort.sort_packed\` task per chunk and one \`mergesort.merge_packed\`
callback (a heap merge), on workers \`fennel worker --app examples/mergesort/tasks.ts -P process\` (or \`-P async\`,
which runs each task in the worker process itself, without the hop to a pool slot). Both outputs are
checked against \`Float64Array.from(xs).sort()\`. The timeline columns are from the \`date_done\` the workers stored;
*sorting per slot*, *merging* and *one hop* are the same steps timed in the driver process on the same data, and
*bound* is the speedup if moving the data cost nothing (Amdahl's bound): local ÷ (sorting per slot + merging).
The \`--shape tree\` rows merge the same sorted chunks as a tree of two-way merges that take object references
(issue #17, docs/refs.md), \`merge2.delay(sort.delay(a), sort.delay(b))\` level by level:
\`node --conditions=development --import tsx examples/mergesort/main.ts ${mergesortArgs(TREE_EXAMPLE, runs).join(' ')}\`
(compared under the table).

${mergesortTable(mergesortRows)}

Each row's command (the table's numbers are its \`--json\` line; without \`--json\` it prints the same as text):

${mergesortCommands(mergesortRows, runs)}

${treeVsChord(mergesortRows)}

### (b) Chord of ${CHORD_MEMBERS.toLocaleString('en')} no-op members: apply → callback result

\`chord(noop.s() × ${CHORD_MEMBERS}, count.s())\`, timed from the call to the callback's result (which checks it saw
${CHORD_MEMBERS} results), one worker process each: Fennel \`fennel worker --app bench/canvas-tasks.ts -P async -c 100\`,
Celery \`celery -A celery_chord worker -P threads -c 8 --without-gossip --without-mingle --without-heartbeat\`
(in bench/peers; producer \`python3 celery_chord.py chord ${CHORD_MEMBERS} ${runs}\`), Redis broker and result backend on the
same database for both. Celery's Redis backend joins a chord with an atomic counter too (no \`chord_unlock\` polling).

| Peer | Broker and results | ms, median (min–max) |
| --- | --- | ---: |
| Fennel | Redis | ${spread(fennelRedis)} |
| Fennel | SQLite (temp file) | ${spread(fennelSqlite)} |
| Celery | Redis | ${celery ? spread(celery) : `– (${celeryNote})`} |

### Aims

- Mergesort with 2 worker processes ≥ ${AIMS.mergesortSpeedup}× the local sort: ${main.config.title}: ${ms(r.localMs)} ms ÷ ${ms(r.totalMs)} ms = **${r.speedup.toFixed(2)}×**, ${verdict(r.speedup >= AIMS.mergesortSpeedup)}${best !== main ? `; the best configuration here (${best.config.title}, ${best.config.chunks} chunks) reached ${best.report.speedup.toFixed(2)}×` : ''}.
- Distributed time within ${Math.round((AIMS.overBound - 1) * 100)}% of the zero-transfer bound's (sorting per slot + merging; issue #21), 2 workers × \`-c 1\`, 8 chunks, at ${MERGESORT_N.toLocaleString('en')} and ${MERGESORT_LARGE_N.toLocaleString('en')} integers: ${boundRows
    .map((row) => `${row.config.broker === 'redis' ? 'Redis' : 'SQLite'}, ${sizeOf(row.config).toLocaleString('en')}: ${ms(row.report.totalMs)} ms ÷ ${ms(row.report.computeMs)} ms = **${overBound(row).toFixed(2)}×** the bound's time, ${verdict(overBound(row) <= AIMS.overBound)}`)
    .join('; ')}.
- Chord of ${CHORD_MEMBERS.toLocaleString('en')} members ≥ ${AIMS.chordRatioToCelery}× faster than Celery on the same Redis: ${celery ? `Celery ${ms(median(celery))} ms ÷ Fennel ${ms(median(fennelRedis))} ms = **${chordRatio.toFixed(2)}×**, ${verdict(chordRatio >= AIMS.chordRatioToCelery)}` : `not measured (${celeryNote})`}.

### Where the mergesort's time goes

In the main configuration, sorting takes about ${ms(r.sortPerSlotMs)} ms per slot (${Math.ceil(main.config.chunks / (main.config.workers * main.config.concurrency))} chunks of ${Math.ceil(MERGESORT_N / main.config.chunks).toLocaleString('en')} at ${ms(r.chunkSortMs)} ms each, both slots
at once) and the merge about ${ms(r.mergeMs)} ms: ${ms(r.sortPerSlotMs + r.mergeMs)} ms of the ${ms(r.totalMs)} ms. The other ≈ ${ms(hops)} ms is moving the data:
the first sort is stored ${ms(r.firstSortDoneMs)} ms after the apply, although one chunk sorts in ${ms(r.chunkSortMs)} ms, and the merge is
stored ${ms(r.mergeDoneMs - r.lastSortDoneMs)} ms after the last sort although it merges in ${ms(r.mergeMs)} ms. Each chunk (${(r.chunkBytes / 1e6).toFixed(2)} MB of text) is
written and read at several hops: the message (producer → broker → worker → pool slot), the sorted chunk back
(slot → worker), its SUCCESS result and the chord's join. The merge's callback carries a reference to the
sorted chunks, not the chunks (docs/canvas.md): the worker that runs it reads all ${MERGESORT_N.toLocaleString('en')} integers from the
result backend once, hands them to its pool slot, and the merged result goes back to the worker, into the
result store, and to the driver. One hop of one chunk costs ${r.chunkWireMs.toFixed(1)} ms in the driver; writing these to the broker
and the result store (SQLite rows, or Redis values) and copying them between processes (on 2 CPUs shared by the
driver, the workers, their slots and the broker) cost the rest. Four of those copies were cut (measured alone, medians, but the last):
a process slot's hop uses V8's serializer instead of JSON lines (a 5.3 MB string to a slot and back ≈ 20 ms instead of
≈ 46, a 0.67 MB one ≈ 3.6 instead of ≈ 6.5), the Redis fetch script finds a message's delivery tag without a pattern scan
of its body (one 0.9 MB envelope ≈ 3.2 ms instead of ≈ 6.5, a bare RPOP of it ≈ 2.2), and a message is built and wrapped in
its envelope without extra copies of its argument (8 messages of a chunk ≈ 16 ms instead of ≈ 26), and on SQLite a claim no longer writes a
large message's envelope into the WAL again (it is kept out of the message's row: the main configuration took 801–831 ms against 866–927 in
three interleaved pairs of runs, issue #21). With number arrays (\`--wire json\`) every hop also
walks each of the integers, which is why the packed int32 text is the default.

The *bound* column is what sorting and merging alone would allow on this machine: ${r.boundSpeedup.toFixed(2)}× in the main
configuration (the merge is sequential, and 2 CPUs at most halve the sort), ${
    r.boundSpeedup >= AIMS.mergesortSpeedup ? 'above the aim: what keeps the measured speedup' : 'below the aim before any data moves; and what keeps the measured speedup'
  } at ${r.speedup.toFixed(2)}× is the data movement, not the sort.${
    large
      ? `

At ${MERGESORT_LARGE_N.toLocaleString('en')} integers (${large.config.title}, ${large.config.chunks} chunks) sorting takes ${ms(large.report.sortPerSlotMs)} ms per slot and the merge
${ms(large.report.mergeMs)} ms: ${ms(large.report.computeMs)} ms of the ${ms(large.report.totalMs)} ms, ${(large.report.totalMs / large.report.computeMs).toFixed(2)}× the bound's time (${(r.totalMs / r.computeMs).toFixed(2)}× at
${MERGESORT_N.toLocaleString('en')}). Moving the data took ≈ ${ms(large.report.totalMs - large.report.computeMs)} ms, ${((large.report.totalMs - large.report.computeMs) / (r.totalMs - r.computeMs)).toFixed(1)} times as long for ${MERGESORT_LARGE_N / MERGESORT_N} times the data:
it grows with the bytes, as the sort nearly does, so the larger size does not leave the hops behind. One hop of one chunk
(${(large.report.chunkBytes / 1e6).toFixed(2)} MB) costs ${large.report.chunkWireMs.toFixed(1)} ms in the driver.`
      : ''
  }`;
}
