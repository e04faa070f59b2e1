// The benchmark driver: runs the scenarios of bench/*.bench.ts several times, prints the medians and rewrites
// BENCHMARKS.md (command, machine, date, tables, aims) so the document never goes stale. Two parts, each its
// own section of the document: SQLite (Fennel alone, bench/sqlite.bench.ts), then Redis (Fennel, bee-queue, BullMQ
// and Python Celery side by side on one Redis database, bench/redis.bench.ts).
//
//   npm run bench                         both parts, 3 runs of each scenario; rewrites BENCHMARKS.md
//   npm run bench -- sqlite               only the SQLite part; rewrites only its section
//   npm run bench -- redis                only the Redis part; rewrites only its section
//   npm run bench -- amqp                 the RabbitMQ part (Fennel vs Celery, bench/amqp.bench.ts); rewrites only its
//                                         section (a whole run keeps the section it finds)
//   npm run bench -- canvas               the canvas part (distributed mergesort, 1,000-member chord vs Celery,
//                                         bench/canvas.bench.ts); rewrites only its section (a whole run keeps it)
//   npm run bench -- gateway              the gateway part (HTTP submissions with autocannon, the Wyndor app end to end,
//                                         bench/gateway.bench.ts); rewrites only its section (a whole run keeps it)
//   npm run bench -- pi                   the Monte Carlo π pipeline (examples/pi, 2 workers vs one process, 5 runs on SQLite
//                                         and Redis, bench/pi.bench.ts); rewrites only its section (a whole run keeps it)
//   npm run bench -- channels             channel throughput per engine (one publisher, 1 and 10 subscriber processes, Fennel
//                                         vs bare ioredis and amqplib, bench/channels.bench.ts); rewrites only its section
//                                         (a whole run keeps it)
//   npm run bench -- beat                 beat drift: an every-second schedule's fires, Fennel on each engine vs Celery beat
//                                         (bench/beat.bench.ts); rewrites only its section (a whole run keeps it)
//   npm run bench -- control              remote control: an addressed ping's round trip, Fennel and Celery clients and workers
//                                         each way (bench/control.bench.ts); rewrites only its section (a whole run keeps it)
//   npm run bench -- refs                 object references: a 1,023-task binary tree and a 1,000-input fan-in, by references
//                                         vs by chords, on SQLite and Redis, 5 runs of each (bench/refs.bench.ts); rewrites only
//                                         its section (a whole run keeps it)
//   npm run bench -- actors               actor method calls: round trip, calls/s with 100 in flight and oneway calls/s, Fennel
//                                         on SQLite, Redis and RabbitMQ vs Pyro4 (bench/actors.bench.ts); rewrites only its
//                                         section (a whole run keeps it)
//   npm run bench -- cache                the cache: Fennel's Cache vs raw memjs on 3 private memcached servers (get, set, getMany),
//                                         and a memoized task's hit (bench/cache.bench.ts); rewrites only its section
//   npm run bench -- nats                 NATS JetStream: Fennel on nats:// (one private node, a private R3 cluster) beside Redis
//                                         and RabbitMQ: enqueue, end to end with 1 and 2 workers, round trip
//                                         (bench/nats.bench.ts); rewrites only its section
//   npm run bench -- --runs 1 latency     only the scenarios whose id contains "latency"; prints, writes nothing
//                                         (e.g. `beequeue`: bee-queue's Redis scenarios; `wyndor-process`: the gateway's;
//                                         `nats-steps-nats1`: the NATS part's, ids nats-<kind>-<engine>)
//
// SQLite ids: enqueue-single, enqueue-bulk, process-async, e2e-async, e2e-process, latency.
// Redis ids: redis-<kind>-<peer>[-<config>], kinds e2e-1, e2e-2, enqueue-single, enqueue-bulk, latency; peers fennel,
// beequeue, bullmq, celery.
// Environment knobs: FENNEL_BENCH_REDIS_URL and FENNEL_BENCH_PYTHON (see bench/redis.bench.ts); sizes live in
// the *.bench.ts files. The machine may be shared: read medians, and the load averages printed with them.

import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { environment, KINDS, PEERS, REDIS_URL, redisScenarios, SIZES, type Environment, type Kind, type Peer, type RedisScenario } from './redis.bench.ts';
import { actorsSection } from './actors.bench.ts';
import { amqpSection } from './amqp.bench.ts';
import { beatSection } from './beat.bench.ts';
import { cacheSection } from './cache.bench.ts';
import { natsScenarioIds, natsSection } from './nats.bench.ts';
import { canvasSection } from './canvas.bench.ts';
import { channelsSection } from './channels.bench.ts';
import { controlSection } from './control.bench.ts';
import { gatewayScenarioIds, gatewaySection } from './gateway.bench.ts';
import { piSection } from './pi.bench.ts';
import { refsSection } from './refs.bench.ts';
import { scenarios as sqliteScenarios } from './sqlite.bench.ts';
import { cleanUp, commit, cpuModel, median, ROOT, type Metric } from './support.ts';

const SQLITE_AIMS = { e2eTasksPerSec: 5000, p50Ms: 5 };
/**
 * Issue #3: Fennel end to end at least 1.5 × BullMQ's best configuration, and a p50 round trip no slower than BullMQ's.
 * Issue #21, under the same rules for every peer (echo task, 1,000-task warm-up, every result awaited): with one
 * worker process at least 1.0 × bee-queue's best configuration and 1.5 × BullMQ's, and a p99 round trip no slower
 * than BullMQ's.
 */
const REDIS_AIMS = { e2eRatioToBeeQueue: 1.0, e2eRatioToBullmq: 1.5, processToAsync: 0.6 };
const REDIS_TITLE = 'Redis: Fennel vs bee-queue vs BullMQ vs Celery';
// Three runs each keep `npm run bench` under about eight minutes on a 2-CPU machine (Celery's runs are the long ones).
const DEFAULT_RUNS = { sqlite: 3, redis: 3 };
const DOC = join(ROOT, 'BENCHMARKS.md');

type Part = 'sqlite' | 'redis' | 'amqp' | 'canvas' | 'gateway' | 'pi' | 'channels' | 'beat' | 'control' | 'refs' | 'actors' | 'cache' | 'nats';

interface Row {
  id: string;
  scenario: string;
  size: string;
  metric: string;
  unit: Metric['unit'];
  values: number[];
}

interface RedisRow {
  scenario: RedisScenario;
  metric: string;
  unit: Metric['unit'];
  values: number[];
}

function parseArgs(argv: string[]): { runs: number | undefined; filters: string[] } {
  let runs: number | undefined;
  const filters: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--runs') runs = Number(argv[++i]);
    else filters.push(argv[i]!);
  }
  if (runs !== undefined && (!Number.isInteger(runs) || runs < 1)) throw new RangeError('--runs needs a positive integer');
  return { runs, filters };
}

function format(value: number, unit: Metric['unit']): string {
  if (!Number.isFinite(value)) return '–';
  if (unit === 'ms') return value.toFixed(2);
  if (unit === 'cmds/task') return value.toFixed(1);
  return Math.round(value).toLocaleString('en');
}

function spread(values: readonly number[], unit: Metric['unit']): string {
  return values.length > 1 ? ` (${format(Math.min(...values), unit)}–${format(Math.max(...values), unit)})` : '';
}



/** The facts every section states about its run. */
interface RunInfo {
  runs: number;
  startedAt: Date;
  loads: [number[], number[]];
  commit: string;
}

function machineLines(command: string, info: RunInfo): string {
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  return `- Command: ${command}
- Machine: ${availableParallelism()} CPUs (nproc), ${cpuModel()}, Node ${process.version}, ${process.platform} ${process.arch}; load average ${load(info.loads[0])} at the start and ${load(info.loads[1])} at the end (1, 5, 15 min)
- Date: ${info.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${info.commit}`;
}

const verdict = (ok: boolean): string => (ok ? '**met**' : '**not met**');

// ---------------------------------------------------------------------------------------------------------
// SQLite

function sqliteTable(rows: Row[]): string {
  const lines = ['| Scenario | Size | Metric | Median | Min | Max | Runs |', '| --- | --- | --- | ---: | ---: | ---: | ---: |'];
  for (const r of rows) {
    lines.push(
      `| ${r.scenario} | ${r.size} | ${r.metric} | **${format(median(r.values), r.unit)} ${r.unit}** | ${format(Math.min(...r.values), r.unit)} | ${format(Math.max(...r.values), r.unit)} | ${r.values.length} |`,
    );
  }
  return lines.join('\n');
}

function sqliteAims(rows: Row[]): string {
  const medianOf = (id: string, metric: string): number | undefined => {
    const row = rows.find((r) => r.id === id && r.metric === metric);
    return row && median(row.values);
  };
  const lines: string[] = [];
  const e2e = SQLITE_AIMS.e2eTasksPerSec.toLocaleString('en');
  for (const [id, flags] of [
    ['e2e-async', '-P async -c 100'],
    ['e2e-process', '-P process -c 2'],
  ] as const) {
    const m = medianOf(id, 'rate');
    if (m !== undefined) lines.push(`- End to end ≥ ${e2e} no-op tasks/s (\`${flags}\`): ${format(m, 'tasks/s')} tasks/s, ${verdict(m >= SQLITE_AIMS.e2eTasksPerSec)}.`);
  }
  const [asyncRate, processRate] = [medianOf('e2e-async', 'rate'), medianOf('e2e-process', 'rate')];
  if (asyncRate !== undefined && processRate !== undefined) {
    lines.push(`- The process pool against the async pool, end to end (no aim; it was 0.20× before the process pool pipelined short tasks, issue #21): ${(processRate / asyncRate).toFixed(2)}×.`);
  }
  const p50 = medianOf('latency', 'p50');
  if (p50 !== undefined) lines.push(`- Round trip p50 < ${SQLITE_AIMS.p50Ms} ms: ${format(p50, 'ms')} ms, ${verdict(p50 < SQLITE_AIMS.p50Ms)}.`);
  return lines.join('\n');
}

function sqliteSection(rows: Row[], info: RunInfo): string {
  return `## SQLite (Fennel alone)

Fennel on its embedded SQLite engine (\`sqlite://\`, one WAL file), every run on a fresh temp database file.
Workers are real separate processes, started as users start them:
\`FENNEL_BROKER_URL=sqlite:///tmp/…/x.db npx fennel worker --app bench/tasks.ts -P async -c 100 --loglevel warn\`.
The task is a no-op (\`bench/tasks.ts\`). Each scenario ran ${info.runs} times; the table gives the median, with min and max.

${machineLines('`npm run bench` (this section alone: `npm run bench -- sqlite`)', info)}

${sqliteTable(rows)}

### Aims

${sqliteAims(rows)}

### How each number is taken

- **enqueue, one by one**: \`await noop.delay().sent\` in a loop; no worker running.
- **enqueue, bulk**: \`await noop.delayMany(batch)[0].sent\`, one transaction per batch; no worker running.
- **processing**: the queue is filled first, then one worker is started. The clock starts when the worker prints
  its "worker ready" line and stops when every task's SUCCESS is stored (polled by key, then
  \`backend.countByState()\`); *startup* is spawn → "worker ready".
- **end to end**: with the worker running (and one warm-up round trip), the producer publishes in batches with
  \`delayMany\` and calls \`get()\` on every result; the clock stops when all have resolved. With \`-P process\`,
  the pool learns from its first tasks that the no-op is short and pipelines it (up to 16 jobs to a slot at once,
  batched both ways, and a window 8 times wider: docs/internals.md §5); the first few dozen tasks run one to a slot.
- **round trip**: \`await noop.delay().get()\`, one at a time; p50 and p99 of one run's round trips.`;
}

async function runSqlite(chosen: typeof sqliteScenarios, runs: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const scenario of chosen) {
    const byMetric = new Map<string, Row>();
    for (let run = 1; run <= runs; run++) {
      const t0 = performance.now();
      const metrics = await scenario.run();
      for (const [name, metric] of Object.entries(metrics)) {
        let row = byMetric.get(name);
        if (!row) byMetric.set(name, (row = { id: scenario.id, scenario: scenario.title, size: scenario.size, metric: name, unit: metric.unit, values: [] }));
        row.values.push(metric.value);
      }
      console.log(`${scenario.id} run ${run}/${runs}: ${shown(metrics)} (${seconds(t0)})`);
    }
    rows.push(...byMetric.values());
  }
  return rows;
}

function shown(metrics: Record<string, Metric>): string {
  return Object.entries(metrics)
    .map(([name, m]) => `${name} ${format(m.value, m.unit)} ${m.unit}`)
    .join(', ');
}

function seconds(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(1)} s`;
}

// ---------------------------------------------------------------------------------------------------------
// Redis

/**
 * Runs are rounds: every chosen scenario once, then again, so a peer's runs are spread over the whole part and
 * a busy minute on a shared machine does not land on one peer only. The peers' order turns each round.
 */
async function runRedis(chosen: RedisScenario[], runs: number, retried: string[]): Promise<RedisRow[]> {
  const rows = new Map<string, RedisRow>();
  const kinds = Object.keys(KINDS) as Kind[];
  for (let round = 0; round < runs; round++) {
    const peers = [...PEERS.slice(round % PEERS.length), ...PEERS.slice(0, round % PEERS.length)];
    for (const kind of kinds) {
      for (const peer of peers) {
        for (const scenario of chosen.filter((s) => s.kind === kind && s.peer === peer && round < (s.maxRuns ?? runs))) {
          const t0 = performance.now();
          let metrics: Record<string, Metric>;
          try {
            metrics = await scenario.run();
          } catch (error) {
            // One failed run (a peer's hiccup on a shared machine) is retried once, and reported in the document;
            // a second failure stops the benchmark.
            const first = String((error as Error).message ?? error).split('\n')[0]!;
            console.warn(`${scenario.id} run ${round + 1} failed, retrying once: ${first}`);
            retried.push(`${scenario.id} (round ${round + 1}): ${first}`);
            metrics = await scenario.run();
          }
          for (const [name, metric] of Object.entries(metrics)) {
            const key = `${scenario.id}\n${name}`;
            let row = rows.get(key);
            if (!row) rows.set(key, (row = { scenario, metric: name, unit: metric.unit, values: [] }));
            row.values.push(metric.value);
          }
          console.log(`${scenario.id} run ${round + 1}/${Math.min(runs, scenario.maxRuns ?? runs)}: ${shown(metrics)} (${seconds(t0)})`);
        }
      }
    }
  }
  return [...rows.values()];
}

const PEER_NAMES: Record<Peer, string> = { fennel: 'Fennel', beequeue: 'bee-queue', bullmq: 'BullMQ', celery: 'Celery' };

/** The side-by-side rows: each kind's metrics, from each peer's main configuration. */
const SIDE_BY_SIDE: Array<{ kind: Kind; metric: string }> = [
  { kind: 'e2e-1', metric: 'rate' },
  { kind: 'e2e-2', metric: 'rate' },
  { kind: 'enqueue-single', metric: 'rate' },
  { kind: 'enqueue-bulk', metric: 'rate' },
  { kind: 'latency', metric: 'p50' },
  { kind: 'latency', metric: 'p99' },
];

function mainRow(rows: RedisRow[], kind: Kind, peer: Peer, metric: string): RedisRow | undefined {
  return rows.find((r) => r.scenario.kind === kind && r.scenario.peer === peer && r.scenario.main && r.metric === metric);
}

/** The best end-to-end configuration of a peer with one (or two) workers (only configurations with every run count). */
function bestConfig(rows: RedisRow[], peer: Peer, kind: 'e2e-1' | 'e2e-2' = 'e2e-1'): RedisRow | undefined {
  const full = Math.max(0, ...rows.filter((r) => r.scenario.kind === kind && r.metric === 'rate').map((r) => r.values.length));
  return rows
    .filter((r) => r.scenario.kind === kind && r.scenario.peer === peer && r.metric === 'rate' && r.values.length === full)
    .sort((a, b) => median(b.values) - median(a.values))[0];
}

function ratio(fennel: RedisRow | undefined, peer: RedisRow | undefined): string {
  if (!fennel || !peer) return '–';
  return `${(median(fennel.values) / median(peer.values)).toFixed(2)}×`;
}

function redisTables(rows: RedisRow[], peers: readonly Peer[]): string {
  const head = `| Scenario | Size | Metric | ${peers.map((p) => PEER_NAMES[p]).join(' | ')} | ${peers
    .filter((p) => p !== 'fennel')
    .map((p) => `Fennel ÷ ${PEER_NAMES[p]}`)
    .join(' | ')} |`;
  const lines = [head, `| --- | --- | --- | ${peers.map(() => '---:').join(' | ')} | ${peers
    .filter((p) => p !== 'fennel')
    .map(() => '---:')
    .join(' | ')} |`];
  for (const { kind, metric } of SIDE_BY_SIDE) {
    const cells = peers.map((peer) => {
      const row = mainRow(rows, kind, peer, metric);
      return row ? `**${format(median(row.values), row.unit)}**${spread(row.values, row.unit)}` : '–';
    });
    if (cells.every((c) => c === '–')) continue;
    const unit = mainRow(rows, kind, 'fennel', metric)?.unit ?? (metric === 'rate' ? 'tasks/s' : 'ms');
    const fennel = mainRow(rows, kind, 'fennel', metric);
    const ratios = peers.filter((p) => p !== 'fennel').map((p) => ratio(fennel, mainRow(rows, kind, p, metric)));
    lines.push(`| ${KINDS[kind].title} | ${KINDS[kind].size} | ${metric === 'rate' ? unit : `${metric}, ${unit}`} | ${cells.join(' | ')} | ${ratios.join(' | ')} |`);
  }
  const what = [`| Scenario | ${peers.map((p) => PEER_NAMES[p]).join(' | ')} |`, `| --- | ${peers.map(() => '---').join(' | ')} |`];
  for (const kind of Object.keys(KINDS) as Kind[]) {
    const cells = peers.map((peer) => rows.find((r) => r.scenario.kind === kind && r.scenario.peer === peer && r.scenario.main)?.scenario.config ?? '–');
    if (cells.every((c) => c === '–')) continue;
    what.push(`| ${KINDS[kind].title} | ${cells.join(' | ')} |`);
  }
  return `${lines.join('\n')}\n\nWhat each cell runs (the worker configuration, or the producer call for the enqueue rows):\n\n${what.join('\n')}`;
}

function configTable(rows: RedisRow[], peers: readonly Peer[], kind: 'e2e-1' | 'e2e-2' = 'e2e-1'): string {
  const lines = [
    `| Peer | Configuration (${kind === 'e2e-1' ? '1 worker process' : '2 worker processes'}) | Rate, tasks/s | CPU µs per task: producer | workers | Redis | total | CPUs busy | Redis commands per task | Runs |`,
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const peer of peers) {
    const best = bestConfig(rows, peer, kind);
    for (const rate of rows.filter((r) => r.scenario.kind === kind && r.scenario.peer === peer && r.metric === 'rate')) {
      const medianOf = (metric: string): number => {
        const row = rows.find((r) => r.scenario === rate.scenario && r.metric === metric);
        return row ? median(row.values) : NaN;
      };
      const [producer, workers, redis] = [medianOf('producer CPU'), medianOf('workers CPU'), medianOf('Redis CPU')];
      const total = producer + workers + redis;
      // Total CPU per task × tasks per second: how many CPUs the three kept busy (at most nproc).
      const busy = (total * median(rate.values)) / 1e6;
      const mark = rate === best ? ' (best)' : '';
      lines.push(
        `| ${PEER_NAMES[peer]} | ${rate.scenario.config}${mark} | **${format(median(rate.values), 'tasks/s')}**${spread(rate.values, 'tasks/s')} | ${[producer, workers, redis, total]
          .map((v) => format(v, 'µs/task'))
          .join(' | ')} | ${Number.isFinite(busy) ? busy.toFixed(1) : '–'} | ${format(medianOf('Redis commands'), 'cmds/task')} | ${rate.values.length} |`,
      );
    }
  }
  return lines.join('\n');
}

function redisAims(rows: RedisRow[]): string {
  const lines: string[] = [];
  const fennelMain = mainRow(rows, 'e2e-1', 'fennel', 'rate');
  const fennelBest = bestConfig(rows, 'fennel');
  /** An end-to-end aim: Fennel's median at least `need` × the peer's, both named by their configuration. */
  const line = (label: string, need: number, fennel: RedisRow | undefined, other: RedisRow | undefined): void => {
    if (!fennel || !other) return;
    const r = median(fennel.values) / median(other.values);
    lines.push(
      `- ${label}: Fennel ${fennel.scenario.config} ${format(median(fennel.values), 'tasks/s')} tasks/s ÷ ${PEER_NAMES[other.scenario.peer]} ${other.scenario.config} ${format(median(other.values), 'tasks/s')} tasks/s = **${r.toFixed(2)}×**, ${verdict(r >= need)}.`,
    );
  };
  for (const [peer, need, issues] of [
    ['beequeue', REDIS_AIMS.e2eRatioToBeeQueue, 'issue #21'],
    ['bullmq', REDIS_AIMS.e2eRatioToBullmq, 'issues #3 and #21'],
  ] as const) {
    const best = bestConfig(rows, peer);
    line(`End to end, 1 worker process, ≥ ${need.toFixed(1)}× ${PEER_NAMES[peer]}'s best configuration (${issues})`, need, fennelMain, best);
    if (fennelBest && fennelBest !== fennelMain) line(`The same with Fennel's best configuration`, need, fennelBest, best);
  }
  line(`End to end, 2 worker processes, ≥ ${REDIS_AIMS.e2eRatioToBullmq.toFixed(1)}× BullMQ (issue #3)`, REDIS_AIMS.e2eRatioToBullmq, mainRow(rows, 'e2e-2', 'fennel', 'rate'), mainRow(rows, 'e2e-2', 'bullmq', 'rate'));
  // Issue #21: the process pool's rate against the async pool's (the main configuration), one worker process each.
  const processPool = rows.find((r) => r.scenario.id === 'redis-e2e-1-fennel-process-c2' && r.metric === 'rate');
  if (processPool && fennelMain) {
    const r = median(processPool.values) / median(fennelMain.values);
    lines.push(
      `- The process pool ≥ ${REDIS_AIMS.processToAsync.toFixed(2)}× the async pool, end to end, 1 worker process (issue #21): Fennel ${processPool.scenario.config} ${format(median(processPool.values), 'tasks/s')} tasks/s ÷ Fennel ${fennelMain.scenario.config} ${format(median(fennelMain.values), 'tasks/s')} tasks/s = **${r.toFixed(2)}×**, ${verdict(r >= REDIS_AIMS.processToAsync)}.`,
    );
  }
  for (const [metric, issue] of [
    ['p50', '#3'],
    ['p99', '#21'],
  ] as const) {
    const fp = mainRow(rows, 'latency', 'fennel', metric);
    const bp = mainRow(rows, 'latency', 'bullmq', metric);
    if (!fp || !bp) continue;
    const f = median(fp.values);
    const b = median(bp.values);
    lines.push(`- Round trip ${metric} ≤ BullMQ's (issue ${issue}): Fennel ${format(f, 'ms')} ms, BullMQ ${format(b, 'ms')} ms (Fennel ÷ BullMQ = **${(f / b).toFixed(2)}×**), ${verdict(f <= b)}.`);
  }
  return lines.join('\n');
}

function redisSection(rows: RedisRow[], info: RunInfo, env: Environment, retried: readonly string[]): string {
  const peers = PEERS.filter((p) => rows.some((r) => r.scenario.peer === p));
  const celery = 'skipped' in env.celery ? `Python Celery: **skipped**, ${env.celery.skipped}` : `Python ${env.celery.version}`;
  const warmup = SIZES.warmup.toLocaleString('en');
  return `## ${REDIS_TITLE}

Fennel, ${env.beeQueue}, ${env.bullmq} and ${celery}, on the same Redis (${env.redis}, \`${REDIS_URL}\`, \`FLUSHDB\`
before every run), one scenario at a time, in one run. Every worker is a separate process started as its users start
it (commands below). Every peer runs under the same rules: the task takes one argument and returns it
(\`echo(n)\`, n = 1, 2, … in each run); the producer awaits every result and checks that it is n; and every scenario
first runs ${warmup} of its own calls untimed (an end-to-end pass of ${warmup} tasks in the same batches, ${warmup} enqueue
calls, or ${warmup} round trips), so that what is timed is warm code, as a long-running service runs, not V8 tiering up.
Each scenario ran ${info.runs} times, in rounds (every scenario once, then again; the peers' order turns each round), so a
busy minute on a shared machine is spread over the peers; cells give the median (min–max).

${machineLines('`npm run bench` (this section alone: `npm run bench -- redis`)', info)}
- Runs that failed and were run again: ${retried.length ? retried.map((r) => `\`${r}\``).join('; ') : 'none'}

### What each peer's clock includes

An end-to-end clock runs from the first call to the last result checked; the peers do different work in between,
because they keep different things:

- **Fennel**: the producer publishes each batch with \`delayMany\` (each batch's publish confirmed before the next is
  sent); the worker (\`-P async\`, STARTED tracked, Fennel's default) stores each result's meta as
  \`celery-task-meta-<id>\` (1 day expiry, readable later by any Fennel or Celery client) and publishes it; the
  producer's \`get()\` subscribes to each result's channel (SUBSCRIBE in batches) and reads its key (MGET), so a
  result stored before the subscription is found too.
- **bee-queue**: the producer (\`isWorker: false\`, \`getEvents: true\`, \`storeJobs: false\`) saves each batch with
  \`saveAll\` (one pipelined addJob script per job: its record in the queue's jobs hash, its id on the waiting list);
  the worker (\`sendEvents: true\`, \`removeOnSuccess: true\`, \`getEvents: false\`, \`storeJobs: false\`) deletes the
  finished job's record and publishes \`{ id, event: 'succeeded', data: <result> }\` on the queue's one events channel.
  The result is stored nowhere: a producer that is not subscribed at that moment never receives it. The producer
  matches the \`job succeeded\` events it receives to the ids \`saveAll\` gave it (bee-queue's own
  \`job.on('succeeded')\` needs \`storeJobs: true\`, and misses an event that comes before the save's reply). The
  \`removeOnSuccess: false\` configuration is bee-queue's default: the record stays, its id in the succeeded set
  (the result still is not stored).
- **BullMQ**: the producer adds each batch with \`addBulk\` (each job a hash and a place on the wait list); the worker
  (BullMQ's defaults) keeps the completed job's hash with its return value and appends a \`completed\` event carrying
  it to the queue's event stream; the producer's \`QueueEvents\` reads the stream (XREAD BLOCK), and the events are
  matched to the ids \`addBulk\` gave. A round trip is \`waitUntilFinished(queueEvents)\`, which also asks Redis once
  whether the job has already finished.
- **Celery**: the producer sends each batch with \`group(echo.s(n) × ${SIZES.batch}).apply_async()\`; the worker stores
  \`celery-task-meta-<id>\` (1 day expiry) and publishes it; \`ResultSet(results).join_native()\` subscribes to each
  result's channel as its task is sent, and reads the results. Its clock is Python's (\`bench/peers/celery_bench.py\`).

### Side by side

${redisTables(rows, peers)}

Ratios are of medians. For rates, above 1 means Fennel is faster; for round-trip times, below 1 means Fennel is faster.

### Aims

${redisAims(rows)}

### Configurations, end to end with 1 worker process

What one task costs, in CPU time, over the timed part: the producer's (\`process.cpuUsage()\`; Celery's producer
reports its own \`time.process_time()\`), the worker processes' (\`/proc/<pid>/stat\`, the main process only, so
Celery's prefork children are not counted) and Redis's (\`INFO cpu\`), with the commands Redis ran
(\`INFO commandstats\`); Redis's counters are server-wide, so anything else using the server then is counted too.
Celery's workers' and Redis's counts are taken around its whole producer script, so they are divided by every task it
ran, the ${warmup} of the warm-up included. *CPUs busy* is total CPU per task × rate: when it is close to the machine's
CPU count the run is CPU-bound, and the rate is about that count ÷ the total. *(best)* marks each peer's highest median
among the configurations that ran every round; one with fewer runs (Celery's extra pools, run once to keep the whole
run short) is not ranked.

${configTable(rows, peers)}

### Configurations, end to end with 2 worker processes

The same costs (the workers' CPU is both processes'); bee-queue also ran with concurrency 1 here.

${configTable(rows, peers, 'e2e-2')}

### Commands

- Fennel worker: \`FENNEL_BROKER_URL=${REDIS_URL} npx fennel worker --app bench/tasks.ts -P async -c 100 --loglevel warn\` (the task \`bench.echo\`, \`(x) => x\`)
- bee-queue worker: \`node --import tsx bench/peers/bee-queue-worker.ts ${REDIS_URL} bench 100\` (\`queue.process(100, …)\` with a handler returning \`job.data\`, the settings above; a fourth argument \`keep\` for \`removeOnSuccess: false\`)
- BullMQ worker: \`node --import tsx bench/peers/bullmq-worker.ts ${REDIS_URL} bench 100\` (a \`Worker\` whose processor returns \`job.data\`; default options otherwise)
- Celery worker, in \`bench/peers\`: \`CELERY_BENCH_URL=${REDIS_URL} python3 -m celery -A celery_bench worker -P threads -c 8 -n bench0@%h --loglevel WARNING --without-gossip --without-mingle --without-heartbeat\` (the task \`bench.echo\`, returning its argument)
- Celery producer, in \`bench/peers\`: \`python3 celery_bench.py --echo e2e ${SIZES.tasks} ${SIZES.batch} ${SIZES.warmup}\`, \`--echo enqueue-single ${SIZES.tasks} ${SIZES.warmup}\`, \`--echo enqueue-bulk ${SIZES.tasks} ${SIZES.batch} ${SIZES.warmup}\`, \`--echo latency ${SIZES.roundTrips} ${SIZES.warmup}\` (prints one JSON line; its clock is Python's)

### How each number is taken

- **end to end**: the workers are started and ready; the producer runs one untimed pass of ${warmup} tasks, then the
  timed pass of ${SIZES.tasks.toLocaleString('en')}, both in batches of ${SIZES.batch}; the clock runs from the first call until the last
  result has been received and checked. Fennel: \`delayMany\`, then \`get()\` on every result. bee-queue:
  \`saveAll\`, then every job's \`job succeeded\` event. BullMQ: \`addBulk\`, then every job's \`QueueEvents\`
  \`completed\` event. Celery: \`group(…).apply_async()\`, then \`ResultSet(results).join_native()\`.
- **enqueue**: no worker running; ${warmup} untimed calls, then one awaited call at a time (Fennel
  \`await echo.delay(n).sent\`, bee-queue \`await queue.createJob(n).save()\`, BullMQ \`await queue.add('echo', n)\`,
  Celery \`echo.delay(n)\`, which returns once published), or the bulk call per batch of ${SIZES.batch}.
- **round trip**: one worker (concurrency 100, Celery \`-P threads -c 8\`); ${warmup} warm-up round trips, then
  ${SIZES.roundTrips.toLocaleString('en')} timed one at a time: Fennel \`await echo.delay(n).get()\`, bee-queue
  \`await queue.createJob(n).save()\` then its \`job succeeded\` event, BullMQ
  \`await (await queue.add('echo', n)).waitUntilFinished(queueEvents)\`, Celery \`echo.delay(n).get()\`; p50 and
  p99 of one run.
- **built code**: Fennel runs as users run it, compiled: its workers are \`npx fennel worker\` (bin/fennel.js, the
  package built in dist/), and this process imports the built package, as bee-queue and BullMQ run from their npm
  packages. \`npm run bench\` builds first, and refuses a dist/ older than src/.`;
}

// ---------------------------------------------------------------------------------------------------------
// The document

const marker = (part: Part, end = false): string => `<!-- ${end ? 'end ' : ''}section: ${part} -->`;

function wrap(part: Part, body: string): string {
  return `${marker(part)}\n${body}\n${marker(part, true)}`;
}

/** The section of `part` in the current BENCHMARKS.md, if it has one. */
function currentSection(part: Part): string | undefined {
  if (!existsSync(DOC)) return undefined;
  const text = readFileSync(DOC, 'utf8');
  const start = text.indexOf(marker(part));
  const end = text.indexOf(marker(part, true));
  return start >= 0 && end > start ? text.slice(start, end + marker(part, true).length) : undefined;
}

function writeDocument(sections: Partial<Record<Part, string>>): void {
  const notRun = (part: Part, title: string): string => wrap(part, `## ${title}\n\nNot run yet: \`npm run bench -- ${part}\`.`);
  const body = [
    sections.sqlite ? wrap('sqlite', sections.sqlite) : (currentSection('sqlite') ?? notRun('sqlite', 'SQLite (Fennel alone)')),
    sections.redis ? wrap('redis', sections.redis) : (currentSection('redis') ?? notRun('redis', REDIS_TITLE)),
    sections.amqp ? wrap('amqp', sections.amqp) : (currentSection('amqp') ?? notRun('amqp', 'RabbitMQ: Fennel vs Celery')),
    sections.canvas ? wrap('canvas', sections.canvas) : (currentSection('canvas') ?? notRun('canvas', 'Canvas: distributed mergesort and a 1,000-member chord')),
    sections.gateway ? wrap('gateway', sections.gateway) : (currentSection('gateway') ?? notRun('gateway', 'Gateway: HTTP submissions and the Wyndor app end to end')),
    sections.pi ? wrap('pi', sections.pi) : (currentSection('pi') ?? notRun('pi', 'Monte Carlo π: 2 worker processes vs one process')),
    sections.channels ? wrap('channels', sections.channels) : (currentSection('channels') ?? notRun('channels', 'Channels: throughput per engine')),
    sections.beat ? wrap('beat', sections.beat) : (currentSection('beat') ?? notRun('beat', 'Beat: drift of an every-second schedule')),
    sections.control ? wrap('control', sections.control) : (currentSection('control') ?? notRun('control', 'Remote control: round trip of an addressed ping')),
    sections.refs ? wrap('refs', sections.refs) : (currentSection('refs') ?? notRun('refs', 'Object references: a 1,023-task tree and a 1,000-input fan-in, references vs chords')),
    sections.actors ? wrap('actors', sections.actors) : (currentSection('actors') ?? notRun('actors', 'Actors: method calls, Fennel vs Pyro4')),
    sections.cache ? wrap('cache', sections.cache) : (currentSection('cache') ?? notRun('cache', "Cache: Fennel's Cache vs the raw memcached client, and a memoized task's hit")),
    sections.nats ? wrap('nats', sections.nats) : (currentSection('nats') ?? notRun('nats', 'NATS JetStream: Fennel on nats://, beside Redis and RabbitMQ')),
  ];
  writeFileSync(
    DOC,
    `# Benchmarks

<!-- Generated by bench/run.ts (npm run bench); edits by hand are overwritten. -->

Thirteen parts: Fennel alone on its embedded SQLite engine, Fennel side by side with bee-queue, BullMQ and Python Celery on Redis, Fennel side by side with Python Celery on RabbitMQ, the canvas (a distributed mergesort, and a chord side by side with Python Celery), the gateway (HTTP submissions and the Wyndor app end to end), the Monte Carlo π pipeline (2 worker processes vs one process), channel throughput per engine (one publisher, one and ten subscribers, Fennel vs the bare clients), beat's drift (an every-second schedule, Fennel vs Celery beat), remote control's round trip (an addressed ping, Fennel's and Celery's clients and workers each way), object references (a 1,023-task tree and a 1,000-input fan-in, by references vs by chords), actors (a remote object's method calls: round trip, calls in flight and oneway calls, Fennel on each engine vs Pyro4), the cache (Fennel's Cache vs the raw memcached client on the same servers, and a memoized task's hit), and NATS JetStream (Fennel on one node and on an R3 cluster, beside Fennel on Redis and RabbitMQ).

${body.join('\n\n')}
`,
  );
}

// ---------------------------------------------------------------------------------------------------------

/** The newest modification time (ms) of any file under `dir`. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** Fennel is measured as built (dist/, as `npx fennel` and `import 'fennel'` run it): a stale build would measure old code. */
function checkBuild(): void {
  const built = join(ROOT, 'dist', 'index.js');
  if (!existsSync(built) || statSync(built).mtimeMs < newestMtime(join(ROOT, 'src'))) {
    throw new Error('dist/ is missing or older than src/: run `npm run build` first (`npm run bench` does)');
  }
}

async function main(): Promise<void> {
  checkBuild();
  const { runs, filters } = parseArgs(process.argv.slice(2));
  if (filters.length === 1 && filters[0] === 'amqp') {
    writeDocument({ amqp: await amqpSection(runs ?? 3) });
    console.log('wrote BENCHMARKS.md (the amqp section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'gateway') {
    writeDocument({ gateway: await gatewaySection(runs ?? 3) });
    console.log('wrote BENCHMARKS.md (the gateway section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'pi') {
    writeDocument({ pi: await piSection(runs ?? 5) });
    console.log('wrote BENCHMARKS.md (the pi section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'channels') {
    writeDocument({ channels: await channelsSection(runs ?? 3) });
    console.log('wrote BENCHMARKS.md (the channels section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'beat') {
    writeDocument({ beat: await beatSection(runs ?? 1) });
    console.log('wrote BENCHMARKS.md (the beat section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'control') {
    writeDocument({ control: await controlSection(runs ?? 1) });
    console.log('wrote BENCHMARKS.md (the control section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'refs') {
    writeDocument({ refs: await refsSection(runs ?? 5) });
    console.log('wrote BENCHMARKS.md (the refs section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'actors') {
    writeDocument({ actors: await actorsSection(runs ?? 3) });
    console.log('wrote BENCHMARKS.md (the actors section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'cache') {
    writeDocument({ cache: await cacheSection(runs ?? 5) });
    console.log('wrote BENCHMARKS.md (the cache section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'nats') {
    writeDocument({ nats: await natsSection(runs ?? 3) });
    console.log('wrote BENCHMARKS.md (the nats section)');
    return;
  }
  if (filters.length === 1 && filters[0] === 'canvas') {
    writeDocument({ canvas: await canvasSection(runs ?? 3) });
    console.log('wrote BENCHMARKS.md (the canvas section)');
    return;
  }
  // Filters naming NATS scenarios: those alone, printed, nothing written. Their ids all start with `nats-`
  // (nats-<kind>-<engine>), so a filter such as `e2e-1` still means the Redis part's.
  const natsIds = natsScenarioIds();
  if (filters.length > 0 && filters.every((f) => f.startsWith('nats-') && natsIds.some((id) => id.includes(f)))) {
    await natsSection(runs ?? 3, (id) => filters.some((f) => id.includes(f)));
    return;
  }
  // Filters naming gateway scenarios (wyndor-process, submit-amqp): those alone, printed, nothing written.
  const gatewayIds = gatewayScenarioIds();
  const partNamed = filters.some((f) => f === 'sqlite' || f === 'redis');
  if (!partNamed && filters.length > 0 && filters.every((f) => gatewayIds.some((id) => id.includes(f)))) {
    await gatewaySection(runs ?? 3, (id) => filters.some((f) => id.includes(f)));
    return;
  }
  const whole = filters.length === 0;
  const onlyPart = filters.length === 1 && (filters[0] === 'sqlite' || filters[0] === 'redis') ? filters[0] : undefined;
  const writes = whole || onlyPart !== undefined;
  const matches = (id: string): boolean => filters.some((f) => id.includes(f));
  const sqliteChosen = whole || onlyPart === 'sqlite' ? sqliteScenarios : onlyPart ? [] : sqliteScenarios.filter((s) => matches(s.id));
  let redisChosen = whole || onlyPart === 'redis' ? redisScenarios() : onlyPart ? [] : redisScenarios().filter((s) => matches(s.id));
  if (sqliteChosen.length + redisChosen.length === 0) {
    throw new Error(`no scenario matches ${filters.join(', ')}; ids: ${[...sqliteScenarios.map((s) => s.id), ...redisScenarios().map((s) => s.id)].join(', ')}`);
  }
  const sections: Partial<Record<Part, string>> = {};

  if (sqliteChosen.length) {
    const info = { runs: runs ?? DEFAULT_RUNS.sqlite, startedAt: new Date(), commit: commit() };
    const load = loadavg();
    const rows = await runSqlite(sqliteChosen, info.runs);
    console.log(`\n${sqliteTable(rows)}\n\n${sqliteAims(rows)}\n`);
    sections.sqlite = sqliteSection(rows, { ...info, loads: [load, loadavg()] });
  }

  if (redisChosen.length) {
    const info = { runs: runs ?? DEFAULT_RUNS.redis, startedAt: new Date(), commit: commit() };
    const load = loadavg();
    let env: Environment | undefined;
    try {
      env = await environment();
    } catch (error) {
      // A whole run still writes the SQLite part; the Redis section says why it is missing.
      if (!whole) throw error;
      console.error(`Redis part skipped: ${(error as Error).message}`);
      sections.redis = `## ${REDIS_TITLE}\n\n**Skipped** on ${info.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC: ${(error as Error).message}.`;
    }
    if (env) {
      if ('skipped' in env.celery) {
        console.error(`Celery's rows skipped: ${env.celery.skipped}`);
        redisChosen = redisChosen.filter((s) => s.peer !== 'celery');
      }
      const retried: string[] = [];
      const rows = await runRedis(redisChosen, info.runs, retried);
      const peers = PEERS.filter((p) => rows.some((r) => r.scenario.peer === p));
      console.log(`\n${redisTables(rows, peers)}\n\n${configTable(rows, peers)}\n\n${configTable(rows, peers, 'e2e-2')}\n\n${redisAims(rows)}\n`);
      sections.redis = redisSection(rows, { ...info, loads: [load, loadavg()] }, env, retried);
    }
  }

  if (writes) {
    writeDocument(sections);
    console.log(`wrote BENCHMARKS.md${onlyPart ? ` (the ${onlyPart} section)` : ''}`);
  }
}

const stop = (signal: NodeJS.Signals): void => {
  cleanUp();
  process.exit(signal === 'SIGINT' ? 130 : 143);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

try {
  await main();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  cleanUp();
}
