// The Monte Carlo π benchmark (issue #14), one section of BENCHMARKS.md (`npm run bench -- pi`): the pipeline of
// examples/pi/main.ts, run as a user runs it (with --json), at 2 × 10^8 points in 64 chunks, on SQLite (a temp file,
// the example's default) and on Redis, `runs` times each (5 unless --runs), in rounds (SQLite, then Redis, then
// again), every run a fresh process with its own two workers. Reported: the medians of the in-process time, the
// pipeline's time (from both workers ready) and its speedup, the same with the workers' start-up, and the ceiling:
// the same chunks in two plain processes with nothing between them (examples/pi/bare.ts), which says how much of
// the second CPU the machine gave at the time; then where the pipeline's time went (from the tasks' own times).
// Knobs: FENNEL_BENCH_REDIS_URL (default redis://127.0.0.1:6379/15, FLUSHDB before each Redis run, as bench/redis.bench.ts).

import { availableParallelism, loadavg } from 'node:os';
import { flush, REDIS_URL } from './redis.bench.ts';
import { median, runProcess } from './support.ts';

const SAMPLES = 200_000_000;
const CHUNKS = 64;
/** Issue #14: the pipeline on 2 worker processes ≥ 1.8 × the in-process loop, at 2 × 10^8 points (2× is the limit). */
const AIM_SPEEDUP = 1.8;

/** What examples/pi/main.ts --json prints. */
interface PiReport {
  localMs: number;
  bareMs: number | null;
  bareSpeedup: number | null;
  startupMs: number;
  pipelineMs: number;
  withStartupMs: number;
  speedup: number;
  speedupWithStartup: number;
  localPointsPerSec: number;
  computeMs: number;
  publishMs: number;
  identical: boolean;
  remoteEstimate: number;
  progressReports: number;
  timeline: Array<{ pid: number; tasks: number; firstStartMs: number; computeMs: number; gapsMs: number; lastEndMs: number }>;
}

/** Where one run's pipeline time went, from the timeline main.ts printed. */
function account(r: PiReport): { busy: number; firstStartMs: number; gapPerChunkMs: number; lastResultMs: number } {
  const t = r.timeline;
  const gaps = t.reduce((sum, s) => sum + s.gapsMs, 0);
  const between = t.reduce((sum, s) => sum + Math.max(0, s.tasks - 1), 0);
  return {
    busy: r.computeMs / (t.length * r.pipelineMs),
    firstStartMs: Math.max(...t.map((s) => s.firstStartMs)),
    gapPerChunkMs: between ? gaps / between : NaN,
    lastResultMs: r.pipelineMs - Math.max(...t.map((s) => s.lastEndMs)),
  };
}

type Engine = 'sqlite' | 'redis';
const ENGINE_TITLE: Record<Engine, string> = { sqlite: 'SQLite (temp file)', redis: 'Redis' };

function piArgs(broker?: string): string[] {
  return ['--samples', String(SAMPLES), '--chunks', String(CHUNKS), ...(broker ? ['--broker', broker] : []), '--json'];
}

async function runPi(engine: Engine): Promise<PiReport> {
  let broker: string | undefined;
  if (engine === 'redis') {
    await flush();
    broker = REDIS_URL;
  }
  const args = ['--conditions=development', '--import', 'tsx', 'examples/pi/main.ts', ...piArgs(broker)];
  const stdout = await runProcess(process.execPath, args, { timeoutMs: 600_000 });
  const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as PiReport;
  if (!report.identical) throw new Error(`pi on ${engine}: the pipeline's estimate differs from the in-process one`);
  return report;
}

const int = (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString('en') : '–');
const times = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}×` : '–');
const spread = (values: readonly number[], show: (v: number) => string): string =>
  values.length > 1 ? `**${show(median(values))}** (${show(Math.min(...values))}–${show(Math.max(...values))})` : `**${show(median(values))}**`;

function table(rows: Array<{ engine: Engine; reports: PiReport[] }>): string {
  const lines = [
    '| Broker and results | In this process, ms | Pipeline from workers ready, ms | Speedup | Two plain processes, ms | Ceiling (in-process ÷ plain) | Workers start-up, ms | Pipeline with start-up, ms | Speedup with start-up | Runs |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const { engine, reports } of rows) {
    const col = (pick: (r: PiReport) => number | null): number[] => reports.map(pick).filter((v): v is number => v !== null);
    lines.push(
      `| ${ENGINE_TITLE[engine]} | ${spread(col((r) => r.localMs), int)} | ${spread(col((r) => r.pipelineMs), int)} | ${spread(col((r) => r.speedup), times)} | ${spread(col((r) => r.bareMs), int)} | ${spread(col((r) => r.bareSpeedup), times)} | ${spread(col((r) => r.startupMs), int)} | ${spread(col((r) => r.withStartupMs), int)} | ${spread(col((r) => r.speedupWithStartup), times)} | ${reports.length} |`,
    );
  }
  return lines.join('\n');
}

function accountTable(rows: Array<{ engine: Engine; reports: PiReport[] }>): string {
  const lines = [
    '| Broker and results | Slots busy computing | Last slot\'s first chunk started, ms | Between two chunks of a slot, ms | Last result here after the last chunk ended, ms | Progress reports per run | Time the reports took the slots, ms per run |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const pct = (v: number): string => `${(v * 100).toFixed(1)}%`;
  const ms1 = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '–');
  for (const { engine, reports } of rows) {
    const a = reports.map(account);
    lines.push(
      `| ${ENGINE_TITLE[engine]} | ${spread(a.map((x) => x.busy), pct)} | ${spread(a.map((x) => x.firstStartMs), int)} | ${spread(a.map((x) => x.gapPerChunkMs), ms1)} | ${spread(a.map((x) => x.lastResultMs), int)} | ${spread(reports.map((r) => r.progressReports), int)} | ${spread(reports.map((r) => r.publishMs), int)} |`,
    );
  }
  return lines.join('\n');
}

/** Runs the benchmark and returns the section of BENCHMARKS.md. */
export async function piSection(runs = 5): Promise<string> {
  const startedAt = new Date();
  const load0 = loadavg();
  const engines: Engine[] = ['sqlite'];
  let redisNote = '';
  try {
    await flush();
    engines.push('redis');
  } catch (error) {
    redisNote = `Redis skipped: not reachable at \`${REDIS_URL}\` (${(error as Error).message})`;
    console.error(redisNote);
  }
  const rows = engines.map((engine) => ({ engine, reports: [] as PiReport[] }));
  // Rounds: every engine once, then again, so a busy minute on a shared machine is spread over both.
  for (let round = 1; round <= runs; round++) {
    for (const row of rows) {
      const t0 = performance.now();
      const r = await runPi(row.engine);
      row.reports.push(r);
      console.log(
        `pi ${row.engine} run ${round}/${runs}: in-process ${int(r.localMs)} ms, pipeline ${int(r.pipelineMs)} ms (${times(r.speedup)}), plain processes ${int(r.bareMs ?? NaN)} ms (${times(r.bareSpeedup ?? NaN)}), with start-up ${int(r.withStartupMs)} ms (${times(r.speedupWithStartup)}), ${r.progressReports} progress reports (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
  }
  const load1 = loadavg();
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const first = rows[0]!.reports;
  const speedup = median(first.map((r) => r.speedup));
  const ceiling = median(first.map((r) => r.bareSpeedup ?? NaN));
  const rate = median(first.map((r) => r.localPointsPerSec));
  const busy = median(first.map((r) => account(r).busy));
  const verdict = (ok: boolean): string => (ok ? '**met**' : '**not met**');

  return `## Monte Carlo π: 2 worker processes vs one process

Issue #14. π from ${SAMPLES.toLocaleString('en')} random points in ${CHUNKS} chunks, once in one process and once as a
ventilator → workers → sink pipeline on two worker processes (\`fennel worker --app examples/pi/tasks.ts -P process -c 1\`
each), with the same generator (xoshiro128+) seeded per chunk, so both estimates are the same number (checked in every
run). Every run is a fresh \`examples/pi/main.ts\` process with its own workers; runs go in rounds over the engines.
Cells give the median (min–max) of ${runs} runs; each speedup is the median of the runs' own ratios.

- Command: \`npm run bench -- pi\` (bench/pi.bench.ts); one run: \`node --conditions=development --import tsx examples/pi/main.ts ${piArgs().join(' ')}\` (\`--broker ${REDIS_URL}\` for Redis)
- Machine: ${availableParallelism()} CPUs (nproc), Node ${process.version}; load average ${load(load0)} at the start and ${load(load1)} at the end (1, 5, 15 min). The machine was shared with other work, so these numbers can be low: the *two plain processes* column is what the machine gave two CPU-bound processes at that moment, with no queue at all
- Date: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC${redisNote ? `; ${redisNote}` : ''}

${table(rows)}

- *In this process*: the plain loop, ${int(rate / 1e6)} million points a second (median) on one core.
- *Pipeline from workers ready*: from both workers printing "worker ready" (and the driver subscribed to the progress
  channel) to the ${CHUNKS} results summed: publishing the ${CHUNKS} tasks in one \`delayMany\`, the workers fetching and
  running them, storing the hits, and the driver reading them, with the progress reports on the channel \`pi.progress\`.
- *Two plain processes*: the same chunks in two child processes forked by the driver, timed from "start" to the last
  answer (examples/pi/bare.ts): the ceiling for the pipeline at that moment, on that machine.
- *With start-up*: from spawning the two workers (each loads the TypeScript sources through tsx and forks its pool
  slot) to the results summed.

### Where the pipeline's time went

From the start and end times each task returned (examples/pi/main.ts prints the same per run). *Slots busy
computing* is the tasks' own time (drawing, and the progress reports they publish, at most 2 a second per slot)
÷ (2 slots × the pipeline's time): the speedup is about 2 × this × (the slots' drawing speed ÷ the in-process
loop's), so on a quiet machine, where the second factor is about 1, it is the part of the 2× the queue keeps.
*Between two chunks* is a slot's idle time from the end of one task to the start of its next: the result going to
its worker process, and the next prefetched message coming to the slot.

${accountTable(rows)}

### Aims

- Pipeline on 2 worker processes ≥ ${AIM_SPEEDUP}× the in-process loop at 2 × 10^8 points, on SQLite: median speedup **${times(speedup)}**, ${verdict(speedup >= AIM_SPEEDUP)}; the ceiling measured beside it was ${times(ceiling)}${
    speedup < AIM_SPEEDUP && ceiling < AIM_SPEEDUP ? ' (the machine did not give the second CPU: re-run on a quiet machine)' : ''
  }, and the slots were busy computing ${(busy * 100).toFixed(1)}% of the pipeline's time (2 × that is the speedup when the slots draw as fast as the in-process loop).`;
}
