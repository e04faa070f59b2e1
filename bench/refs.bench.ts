// The dependency-graph benchmark (issue #17, object references), one section of BENCHMARKS.md (`npm run bench --
// refs`): a binary tree of 1,023 no-op tasks, each inner node taking its two children's results, and a fan-in of
// 1,000 results into one task, built with references (an AsyncResult passed to delay(): the call is parked in the
// result backend until its inputs are stored, src/app/refs.ts) and with chords, on SQLite (a temp file) and on Redis
// (database 15, FLUSHDB before each scenario).
//
// A scenario is one engine and one shape (tree, fan-in): a fresh database, one worker process
// (`node bin/fennel.js worker --app bench/refs-tasks.ts -P async -c 100`, compiled, as users run it, and as the
// no-op benchmarks on SQLite and Redis run their main configuration), a producer in this process through the built
// package. Each form (references, chords) runs once untimed, then both run `runs` times, alternating (the form that
// goes first turns each round), so that a busy minute on a shared machine lands on both.
//
// The tree by chords: a chord per inner node whose header is its two children, the subtrees being chords nested in
// the header (each inner callback reports to the enclosing chord; supported since this benchmark found that it was
// not). Each scenario first checks a three-task nested chord; should nesting ever fail again, the tree is built the
// closest other way, one chord per level whose callback hands the level's results back to the producer, which waits
// for them before it sends the next level, and the section says so.

import { randomUUID } from 'node:crypto';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { chord, type AsyncResult, type CanvasNode } from 'fennel';
import { refsApp } from './refs-tasks.ts';
import { environment, flush, REDIS_URL, redisCounters } from './redis.bench.ts';
import { commit, FENNEL_BIN, median, processCpuSec, startProcess, tempDatabase, type WorkerProcess } from './support.ts';

/** The tree's depth: 2^9 = 512 leaves, 511 inner nodes, 1,023 tasks; 10 levels. */
const DEPTH = 9;
const LEAVES = 2 ** DEPTH;
const TREE_TASKS = 2 * LEAVES - 1;
/** Inputs of the fan-in: FAN_IN leaves and one sum, FAN_IN + 1 tasks. */
const FAN_IN = 1000;
const TIMEOUT_MS = 300_000;
const PROBE_TIMEOUT_MS = 10_000;
const WORKER_ARGS = ['worker', '--app', 'bench/refs-tasks.ts', '-P', 'async', '-c', '100', '--loglevel', 'warn'];

type Engine = 'sqlite' | 'redis';
type Shape = 'tree' | 'fanin';
type Form = 'refs' | 'chords';
type Refs = ReturnType<typeof refsApp>;

/** What one timed run measured. */
interface Sample {
  ms: number;
  /** Every call in the broker or parked (every `sent` resolved), ms after the first call; NaN where not known. */
  sentMs: number;
  /** The last leaf's (input's) and the root's (the sum's) results stored (their date_done), ms after the first call. */
  leavesDoneMs: number;
  rootDoneMs: number;
  /** CPU ms over the run: this process, the worker process, Redis (server-wide; NaN on SQLite). */
  producerCpuMs: number;
  workerCpuMs: number;
  redisCpuMs: number;
  /** Redis commands over the run (server-wide; NaN on SQLite). */
  redisCommands: number;
}

interface Scenario {
  engine: Engine;
  shape: Shape;
  /** How the chords form was built: nested chords, or one chord per level (the tree when nesting does not complete). */
  chordsBuilt: 'nested' | 'per-level' | 'one chord';
  /** What the nesting probe saw, when it did not complete. */
  probe?: string;
  samples: Record<Form, Sample[]>;
}

const ENGINE_NAMES: Record<Engine, string> = { sqlite: 'SQLite (temp file)', redis: 'Redis' };
const TASKS: Record<Shape, number> = { tree: TREE_TASKS, fanin: FAN_IN + 1 };
const EXPECTED: Record<Shape, number> = { tree: (LEAVES * (LEAVES - 1)) / 2, fanin: (FAN_IN * (FAN_IN - 1)) / 2 };

// ---------------------------------------------------------------------------------------------------------
// The graphs

/** A leaf's stored date_done, or the root's, as ms after `t0Wall` (Date.now() at the first call). */
async function doneAt(refs: Refs, ids: readonly string[], t0Wall: number): Promise<number> {
  let last = -Infinity;
  for (const id of ids) {
    const done = (await refs.app.backend.get(id))?.date_done;
    last = Math.max(last, done ? Date.parse(done) - t0Wall : NaN);
  }
  return last;
}

interface Built {
  value: number;
  sentMs: number;
  leafIds: string[];
  rootId: string;
}

/**
 * The tree by references, submitted bottom-up from this process without awaiting anything in between: 512
 * `leaf.delay(i)`, then each level's `node.delay(left, right)` on the level below's AsyncResults, up to the root.
 */
async function treeByRefs({ leaf, node }: Refs, t0: number): Promise<Built> {
  const all: Array<AsyncResult<number>> = [];
  let level = Array.from({ length: LEAVES }, (_, i) => leaf.delay(i));
  all.push(...level);
  const leafIds = level.map((r) => r.id);
  while (level.length > 1) {
    const next: Array<AsyncResult<number>> = [];
    for (let j = 0; j < level.length; j += 2) next.push(node.delay(level[j]!, level[j + 1]!));
    all.push(...next);
    level = next;
  }
  const root = level[0]!;
  let sentMs = NaN;
  const sent = Promise.all(all.map((r) => r.sent)).then(() => void (sentMs = performance.now() - t0));
  const [value] = await Promise.all([root.get({ timeoutMs: TIMEOUT_MS }), sent]);
  return { value, sentMs, leafIds, rootId: root.id };
}

/** The tree as nested chords: each inner node a chord whose header is its two children (chords too, down to the leaves) and whose callback sums the list. */
async function treeByNestedChords({ leaf, sum }: Refs, t0: number): Promise<Built> {
  const leafIds: string[] = [];
  const build = (from: number, size: number): CanvasNode<number> => {
    if (size === 1) {
      const taskId = randomUUID();
      leafIds.push(taskId);
      return leaf.s(from).set({ taskId });
    }
    return chord([build(from, size / 2), build(from + size / 2, size / 2)], sum.s());
  };
  const result = chord([build(0, LEAVES / 2), build(LEAVES / 2, LEAVES / 2)], sum.s()).applyAsync();
  let sentMs = NaN;
  const sent = result.sent.then(() => void (sentMs = performance.now() - t0));
  const [value] = await Promise.all([result.get({ timeoutMs: TIMEOUT_MS }), sent]);
  return { value, sentMs, leafIds, rootId: result.id };
}

/**
 * The tree one chord per level: the leaves are a chord's header, its callback (`bench.list`) hands their results
 * back; the producer waits for them, then sends the next level's `node.s(left, right)` as the next chord's header,
 * and so on; the root, one task, is `node.delay(left, right)`. The same 1,023 tasks, plus 9 callbacks.
 */
async function treeByLevelChords({ leaf, node, list }: Refs): Promise<Built> {
  const leafIds = Array.from({ length: LEAVES }, () => randomUUID());
  let values = await chord(leafIds.map((taskId, i) => leaf.s(i).set({ taskId })), list.s()).applyAsync().get({ timeoutMs: TIMEOUT_MS });
  while (values.length > 2) {
    const header = Array.from({ length: values.length / 2 }, (_, j) => node.s(values[2 * j]!, values[2 * j + 1]!));
    values = await chord(header, list.s()).applyAsync().get({ timeoutMs: TIMEOUT_MS });
  }
  const root = node.delay(values[0]!, values[1]!);
  return { value: await root.get({ timeoutMs: TIMEOUT_MS }), sentMs: NaN, leafIds, rootId: root.id };
}

/** The fan-in by references: 1,000 `leaf.delay(i)`, then `sum.delay(...refs)`, one call with 1,000 arguments. */
async function fanInByRefs({ leaf, sum }: Refs, t0: number): Promise<Built> {
  const inputs = Array.from({ length: FAN_IN }, (_, i) => leaf.delay(i));
  const total = sum.delay(...inputs);
  let sentMs = NaN;
  const sent = Promise.all([...inputs, total].map((r) => r.sent)).then(() => void (sentMs = performance.now() - t0));
  const [value] = await Promise.all([total.get({ timeoutMs: TIMEOUT_MS }), sent]);
  return { value, sentMs, leafIds: inputs.map((r) => r.id), rootId: total.id };
}

/** The fan-in as a chord: the 1,000 leaves in the header, the same `sum` as the callback (it gets one list). */
async function fanInByChord({ leaf, sum }: Refs, t0: number): Promise<Built> {
  const leafIds = Array.from({ length: FAN_IN }, () => randomUUID());
  const result = chord(leafIds.map((taskId, i) => leaf.s(i).set({ taskId })), sum.s()).applyAsync();
  let sentMs = NaN;
  const sent = result.sent.then(() => void (sentMs = performance.now() - t0));
  const [value] = await Promise.all([result.get({ timeoutMs: TIMEOUT_MS }), sent]);
  return { value, sentMs, leafIds, rootId: result.id };
}

/**
 * Whether a chord nested in a chord's header completes: chord([chord([leaf(1), leaf(2)], sum), leaf(3)], sum) is 6.
 * Undefined if it does, else what happened.
 */
async function probeNesting({ leaf, sum }: Refs): Promise<string | undefined> {
  const probe = '`chord([chord([leaf.s(1), leaf.s(2)], sum.s()), leaf.s(3)], sum.s())`';
  try {
    const value = await chord([chord([leaf.s(1), leaf.s(2)], sum.s()), leaf.s(3)], sum.s())
      .applyAsync()
      .get({ timeoutMs: PROBE_TIMEOUT_MS });
    return value === 6 ? undefined : `${probe} gave ${JSON.stringify(value)}, not 6`;
  } catch (error) {
    // A timeout names the task id, which changes every run: the document says what happened, not which id.
    if ((error as Error).name === 'TimeoutError') return `${probe} had no result after ${PROBE_TIMEOUT_MS / 1000} s`;
    return `${probe} failed: ${String((error as Error).message ?? error).split('\n')[0]}`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Running

async function measure(engine: Engine, worker: WorkerProcess, refs: Refs, expected: number, body: (t0: number) => Promise<Built>): Promise<Sample> {
  const redisBefore = engine === 'redis' ? await redisCounters() : undefined;
  const workerBefore = processCpuSec(worker.pid);
  const producerBefore = process.cpuUsage();
  const t0Wall = Date.now();
  const t0 = performance.now();
  const built = await body(t0);
  const ms = performance.now() - t0;
  const producer = process.cpuUsage(producerBefore);
  const workerCpuMs = (processCpuSec(worker.pid) - workerBefore) * 1000;
  const redisAfter = redisBefore && (await redisCounters());
  if (built.value !== expected) throw new Error(`the graph's result is ${JSON.stringify(built.value)}, not ${expected}`);
  let redisCommands = NaN;
  if (redisBefore && redisAfter) {
    redisCommands = 0;
    for (const [name, n] of redisAfter.calls) redisCommands += n - (redisBefore.calls.get(name) ?? 0);
  }
  return {
    ms,
    sentMs: built.sentMs,
    leavesDoneMs: await doneAt(refs, built.leafIds, t0Wall),
    rootDoneMs: await doneAt(refs, [built.rootId], t0Wall),
    producerCpuMs: (producer.user + producer.system) / 1000,
    workerCpuMs,
    redisCpuMs: redisBefore && redisAfter ? (redisAfter.cpuSec - redisBefore.cpuSec) * 1000 : NaN,
    redisCommands,
  };
}

async function runScenario(engine: Engine, shape: Shape, runs: number): Promise<Scenario> {
  let url: string;
  let cleanup = (): void => {};
  if (engine === 'redis') {
    await flush();
    url = REDIS_URL;
  } else {
    const db = tempDatabase();
    url = db.url;
    cleanup = db.cleanup;
  }
  const refs = refsApp({ broker: url });
  try {
    const worker = await startProcess({ command: process.execPath, args: [FENNEL_BIN, ...WORKER_ARGS], env: { FENNEL_BROKER_URL: url, FENNEL_RESULT_BACKEND: '' } });
    try {
      const scenario: Scenario = { engine, shape, chordsBuilt: 'one chord', samples: { refs: [], chords: [] } };
      let chords: (t0: number) => Promise<Built> = (t0) => fanInByChord(refs, t0);
      if (shape === 'tree') {
        const probe = await Promise.race([probeNesting(refs), worker.died]);
        scenario.chordsBuilt = probe === undefined ? 'nested' : 'per-level';
        if (probe !== undefined) scenario.probe = probe;
        chords = probe === undefined ? (t0) => treeByNestedChords(refs, t0) : () => treeByLevelChords(refs);
      }
      const forms: Record<Form, (t0: number) => Promise<Built>> = { refs: shape === 'tree' ? (t0) => treeByRefs(refs, t0) : (t0) => fanInByRefs(refs, t0), chords };
      const one = (form: Form): Promise<Sample> => Promise.race([measure(engine, worker, refs, EXPECTED[shape], forms[form]), worker.died]);
      await one('refs');
      await one('chords');
      for (let round = 0; round < runs; round++) {
        for (const form of round % 2 === 0 ? (['refs', 'chords'] as const) : (['chords', 'refs'] as const)) {
          const sample = await one(form);
          scenario.samples[form].push(sample);
          console.log(`refs ${engine} ${shape} ${form} run ${round + 1}/${runs}: ${sample.ms.toFixed(0)} ms (${rate(shape, sample.ms).toFixed(0)} tasks/s)`);
        }
      }
      if (worker.complaints.length) throw new Error(`the worker logged ${worker.complaints.length} warning(s), e.g. ${worker.complaints[0]}`);
      return scenario;
    } finally {
      await worker.stop();
    }
  } finally {
    await refs.app.close();
    cleanup();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The section

const rate = (shape: Shape, ms: number): number => (TASKS[shape] * 1000) / ms;
const whole = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : '–');
const med = (samples: readonly Sample[], pick: (s: Sample) => number): number => median(samples.map(pick));


function chordsTitle(s: Scenario): string {
  if (s.shape === 'fanin') return `one chord: ${FAN_IN.toLocaleString('en')} \`leaf.s(i)\` → \`sum.s()\``;
  return s.chordsBuilt === 'nested' ? 'nested chords: a chord per inner node, its two children in the header' : 'one chord per level, the producer waiting between levels';
}

function mainTable(scenarios: readonly Scenario[]): string {
  const lines = [
    '| Graph | Engine | Form | ms, median (min–max) | tasks/s | refs ÷ chords (time) |',
    '| --- | --- | --- | ---: | ---: | ---: |',
  ];
  for (const s of scenarios) {
    const graph = s.shape === 'tree' ? `tree, ${TREE_TASKS.toLocaleString('en')} tasks` : `fan-in, ${FAN_IN.toLocaleString('en')} → 1`;
    const refsMs = med(s.samples.refs, (x) => x.ms);
    const chordsMs = med(s.samples.chords, (x) => x.ms);
    const cell = (samples: Sample[]): string => {
      const values = samples.map((x) => x.ms);
      return `**${whole(median(values))}** (${whole(Math.min(...values))}–${whole(Math.max(...values))})`;
    };
    lines.push(`| ${graph} | ${ENGINE_NAMES[s.engine]} | references | ${cell(s.samples.refs)} | ${whole(rate(s.shape, refsMs))} | **${(refsMs / chordsMs).toFixed(2)}×** |`);
    lines.push(`| ${graph} | ${ENGINE_NAMES[s.engine]} | ${chordsTitle(s)} | ${cell(s.samples.chords)} | ${whole(rate(s.shape, chordsMs))} | |`);
  }
  return lines.join('\n');
}

function detailTable(scenarios: readonly Scenario[]): string {
  const lines = [
    '| Graph | Engine | Form | every call sent or parked | last leaf stored | root stored | root − last leaf | per level above the leaves | CPU ms: producer | worker | Redis | Redis commands per task |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const s of scenarios) {
    for (const form of ['refs', 'chords'] as const) {
      const samples = s.samples[form];
      const leaves = med(samples, (x) => x.leavesDoneMs);
      const root = med(samples, (x) => x.rootDoneMs);
      const perLevel = s.shape === 'tree' ? med(samples, (x) => (x.rootDoneMs - x.leavesDoneMs) / DEPTH) : NaN;
      const title = form === 'refs' ? 'references' : s.shape === 'tree' ? (s.chordsBuilt === 'nested' ? 'nested chords' : 'chord per level') : 'chord';
      lines.push(
        `| ${s.shape === 'tree' ? 'tree' : 'fan-in'} | ${ENGINE_NAMES[s.engine]} | ${title} | ${whole(med(samples, (x) => x.sentMs))} | ${whole(leaves)} | ${whole(root)} | ${whole(med(samples, (x) => x.rootDoneMs - x.leavesDoneMs))} | ${Number.isFinite(perLevel) ? perLevel.toFixed(1) : '–'} | ${[
          (x: Sample) => x.producerCpuMs,
          (x: Sample) => x.workerCpuMs,
          (x: Sample) => x.redisCpuMs,
        ]
          .map((pick) => whole(med(samples, pick)))
          .join(' | ')} | ${s.engine === 'redis' ? (med(samples, (x) => x.redisCommands) / TASKS[s.shape]).toFixed(1) : '–'} |`,
      );
    }
  }
  return lines.join('\n');
}

/** Runs the four scenarios and returns the section of BENCHMARKS.md. */
export async function refsSection(runs = 5): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const env = await environment();
  const scenarios: Scenario[] = [];
  for (const shape of ['tree', 'fanin'] as const) {
    for (const engine of ['sqlite', 'redis'] as const) {
      const t0 = performance.now();
      const scenario = await runScenario(engine, shape, runs);
      scenarios.push(scenario);
      if (scenario.probe) console.log(`refs ${engine}: nested chords did not complete (${scenario.probe}); the chords tree was built one chord per level`);
      console.log(`refs ${engine} ${shape}: references ${whole(med(scenario.samples.refs, (x) => x.ms))} ms, chords ${whole(med(scenario.samples.chords, (x) => x.ms))} ms (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
  }
  const load1 = loadavg();
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const table = mainTable(scenarios);
  console.log(`\n${table}\n`);
  const trees = scenarios.filter((s) => s.shape === 'tree');
  const perLevel = trees.some((s) => s.chordsBuilt === 'per-level');
  // One line per distinct outcome, naming the engines that saw it.
  const probes = [...new Set(trees.flatMap((s) => (s.probe ? [s.probe] : [])))].map(
    (probe) => `${trees.filter((s) => s.probe === probe).map((s) => ENGINE_NAMES[s.engine]).join(' and ')}: ${probe}`,
  );

  return `## Object references: a 1,023-task tree and a 1,000-input fan-in, references vs chords

Issue #17: a dependency graph of no-op tasks, built with references (an \`AsyncResult\` passed to \`delay()\`: the
call is parked in the result backend until its inputs are stored, and the worker that stores the last one sends it;
docs/refs.md) and with chords (docs/canvas.md), timed from the first call to the root's result in this process. One
worker process for every row, Fennel's no-op configuration elsewhere in this document: \`FENNEL_BROKER_URL=<url> npx
fennel worker --app bench/refs-tasks.ts -P async -c 100 --loglevel warn\` (run as \`node bin/fennel.js …\`, compiled);
the producer is this process, through the built package. Each scenario (an engine and a graph) has a fresh database
(SQLite: a temp file; Redis: \`FLUSHDB\`) and its own worker; each form runs once untimed, then both forms run ${runs}
times, alternating (the first form turns each round). Each number is the median of the ${runs} timed runs (min–max
where shown). Every run checks the root's value: the sum of the leaves (${EXPECTED.tree.toLocaleString('en')} for the tree,
${EXPECTED.fanin.toLocaleString('en')} for the fan-in).

- Command: \`npm run bench -- refs\` (bench/refs.bench.ts, tasks in bench/refs-tasks.ts)
- Machine: ${availableParallelism()} CPUs (nproc), ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}; load average ${load(load0)} at the start and ${load(load1)} at the end (1, 5, 15 min); the machine is shared with other work, so read the ratios with that in mind
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${commit()}; ${env.redis} at \`${REDIS_URL}\`

${table}

*tasks/s* is the graph's tasks (${TREE_TASKS.toLocaleString('en')} for the tree, ${(FAN_IN + 1).toLocaleString('en')} for the fan-in) ÷ the median time${perLevel ? `; the tree one chord per level runs ${DEPTH} callbacks more, not counted` : ''}.
*refs ÷ chords* is the ratio of the median times: below 1, references are faster.

### What each form runs

- **Tree by references**: ${LEAVES} \`leaf.delay(i)\` (returns \`i\`), then, level by level up to the root, ${LEAVES - 1} \`node.delay(left, right)\`
  (returns \`left + right\`) on the level below's \`AsyncResult\`s, all submitted from this process without awaiting
  anything in between; then \`await root.get()\`. Each inner node is parked until its two children are stored.
- **Tree by chords**: ${
    perLevel
      ? `a chord per inner node with its two children (chords themselves) in the header does not complete: a chord nested in a
  chord's header never reports to the outer chord, whose callback then never runs (the probe each tree scenario runs
  first: ${probes.map((p) => `${p}`).join('; ')}). So the tree is built the closest way the canvas allows: **one chord per level, and the
  producer waits between levels.** The first chord's header is the ${LEAVES} \`leaf.s(i)\`, its callback \`list.s()\` hands their results
  back to this process; then each level's \`node.s(left, right)\` on the values just received is the next chord's header (${LEAVES / 2}, ${LEAVES / 4}, …, 2
  members); the root, one task, is \`node.delay(left, right)\`. The same ${TREE_TASKS.toLocaleString('en')} tasks plus ${DEPTH} callbacks, and ${DEPTH} round trips
  through this process that the references do not make: the graph is not the same shape, and this row is the canvas's
  way to the same answer, not a like-for-like of the references' tree.`
      : `a chord per inner node, its two children in the header (the subtrees as chords nested in the header, down to the
  leaves \`leaf.s(i)\`), its callback \`sum.s()\` summing the two results; one \`applyAsync()\` for the whole tree.`
  }
- **Fan-in by references**: ${FAN_IN.toLocaleString('en')} \`leaf.delay(i)\`, then \`sum.delay(...refs)\`, one call with ${FAN_IN.toLocaleString('en')} arguments, parked
  until all are stored; the worker that runs it reads the ${FAN_IN.toLocaleString('en')} inputs from the result backend.
- **Fan-in by a chord**: \`chord(leaf.s(i) × ${FAN_IN.toLocaleString('en')}, sum.s())\`; the same \`sum\` task (it flattens its arguments) gets one list,
  read from the chord's join by the worker that runs it.

### Where the time goes

Medians over the same runs, in ms after the first call: when every call's \`sent\` had resolved (in the broker, or
parked), when the last leaf's and the root's (the fan-in's sum's) results were stored (their \`date_done\`, written by
the worker; the clocks are the same machine's, to the millisecond), the time between those two, and for the tree the
time per level above the leaves ((root stored − last leaf stored) ÷ ${DEPTH}: what each level of dependencies
costs on the critical path${perLevel ? "; for the chord per level, that includes the level's callback and the round trip through this process" : ''}). CPU is over the timed run: this process (\`process.cpuUsage()\`), the worker process
(\`/proc/<pid>/stat\`; \`-P async\` runs the tasks in it), Redis (\`INFO cpu\`, server-wide), and the commands Redis ran
(\`INFO commandstats\`, server-wide) per task of the graph.

${detailTable(scenarios)}`;
}
