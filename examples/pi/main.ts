// The Monte Carlo π pipeline (issue #14). π is estimated twice from the same points: once here, in a plain loop
// (montecarlo.ts), and once as a ventilator → workers → sink pipeline: this process pushes one `pi.count` task per
// chunk (tasks.ts) to two worker processes (`fennel worker -P process -c 1` each), the workers report how far they
// are on the channel `pi.progress` (a live bar here), and this process, the sink, sums the hits the tasks return.
// Each chunk's generator is seeded from (seed, chunk), so both estimates are the same number. It prints both, their
// error against Math.PI, both times and the speedup.
//
//   npx tsx examples/pi/main.ts [--samples 200000000] [--chunks 64] [--seed 1] [--workers 2] [--pool process|async]
//        [--broker URL] [--backend URL] [--no-bare] [--json]
//
// The pipeline's time runs from the moment both workers are ready (they print "worker ready") and this process
// is subscribed to the progress channel, to the last result summed; the time with the workers' start-up runs
// from their spawn instead, and both are printed. Between the two runs, unless --no-bare, the same chunks are
// drawn by as many plain child processes as there are workers, with nothing between them (bare.ts): the speedup
// this machine allows at that moment, which on a shared machine can be far below 2×.
// Broker: by default an embedded SQLite file in a temp directory; redis://… and amqp://… work too. The workers
// are started here and stopped at the end; they also stop if this process is interrupted or killed
// (../processes.ts). --pool async runs each chunk in the worker process itself instead of its pool slot (no hop
// to the slot and back, and no slot's isolation). --json prints one JSON line of the measurements at the end
// instead of the report (bench/pi.bench.ts, test/integration/pi.test.ts).

import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startFennel, stopWithThisProcess, type Child } from '../processes.ts';
import { drawInParallel, type BareRun } from './bare.ts';
import { countChunk, estimate, splitSamples, standardError, type Chunk } from './montecarlo.ts';
import type { Progress } from './tasks.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = join(ROOT, 'src/cli/main.ts');

// Run from this repository's sources: `npx tsx` alone would resolve 'fennel' to the last build in dist/.
if (existsSync(CLI) && !process.execArgv.includes('--conditions=development')) {
  const again = spawnSync(process.execPath, ['--conditions=development', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(again.status ?? 1);
}

const { values: flags } = parseArgs({
  options: {
    samples: { type: 'string', default: '200000000' },
    chunks: { type: 'string', default: '64' },
    seed: { type: 'string', default: '1' },
    workers: { type: 'string', default: '2' },
    pool: { type: 'string', default: 'process' },
    broker: { type: 'string' },
    backend: { type: 'string' },
    'no-bare': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

/** A positive integer flag; 2e8 and 200_000_000 are read as 200000000. */
function positive(name: string, text: string): number {
  const value = Number(text.replace(/[_,]/g, ''));
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`--${name} needs a positive integer (got '${text}')`);
  return value;
}

const samples = positive('samples', flags.samples);
const chunkCount = positive('chunks', flags.chunks);
const workerCount = positive('workers', flags.workers);
if (flags.pool !== 'process' && flags.pool !== 'async') throw new RangeError(`--pool must be process or async (got '${flags.pool}')`);
const pool = flags.pool;
const seed = Number(flags.seed);
if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`--seed needs an integer in [0, 2^32) (got '${flags.seed}')`);
const chunks = splitSamples(samples, chunkCount);

// The app reads its broker from the environment when tasks.ts is imported, and so do the workers started below.
const tempDir = flags.broker ? undefined : mkdtempSync(join(tmpdir(), 'fennel-pi-'));
process.env['FENNEL_BROKER_URL'] = flags.broker ?? `sqlite://${join(tempDir!, 'fennel.db')}`;
if (flags.backend) process.env['FENNEL_RESULT_BACKEND'] = flags.backend;
const { app, count, progress, PROGRESS_CHANNEL } = await import('./tasks.ts');

const removeTempDir = (): void => {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
};
const workers: Child[] = [];
/** Set once the run stops its workers itself: an exit from then on is expected. */
let stopped = false;
// Interrupted, the run did not finish: it exits as a process killed by the signal would (128 + its number), with
// its workers stopped and its temporary broker removed.
const stopper = stopWithThisProcess({
  children: () => workers,
  say: (line) => console.error(`pi: ${line}`),
  exitCode: (signal) => 128 + constants.signals[signal],
  cleanUp: removeTempDir,
});

// ---------------------------------------------------------------------------------------------------------
// Output: the report, and the live progress bar (redrawn in place on a terminal, a plain line a second otherwise).

const tty = process.stdout.isTTY === true && !flags.json;
const say = (line = ''): void => {
  if (!flags.json) console.log(line);
};
const int = (n: number): string => Math.round(n).toLocaleString('en');
const ms = (n: number): string => `${int(n)} ms`;
const millions = (n: number): string => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)}M`;

function progressLine(label: string, done: number, chunksDone: number, elapsedMs: number, extra = ''): string {
  const fraction = done / samples;
  const width = 30;
  const full = Math.min(width, Math.floor(fraction * width));
  const bar = tty ? `[${'█'.repeat(full)}${'░'.repeat(width - full)}] ` : '';
  return `${label}: ${bar}${(fraction * 100).toFixed(1).padStart(5)}%  ${millions(done)} of ${millions(samples)} points, ${chunksDone}/${chunkCount} chunks, ${(elapsedMs / 1000).toFixed(1)} s${extra}`;
}

/** Shows a progress line: in place on a terminal; as its own line otherwise, unless `plainToo` is false. */
function showProgress(line: string, plainToo: boolean): void {
  if (flags.json) return;
  if (tty) process.stdout.write(`\r${line}\x1b[K`);
  else if (plainToo) console.log(line);
}

const endProgress = (): void => {
  if (tty) process.stdout.write('\n');
};

/** A URL as shown: its password, if any, masked. */
const shown = (url: string | undefined): string => (url ?? '').replace(/^([a-z0-9+.-]+:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');

function errorText(value: number): string {
  const error = value - Math.PI;
  return `error ${error >= 0 ? '+' : '−'}${Math.abs(error).toExponential(2)} (${(Math.abs(error) / standardError(samples)).toFixed(2)} σ)`;
}

// ---------------------------------------------------------------------------------------------------------
// The workers

/** Starts one `fennel worker -P <pool> -c 1`; resolves once it prints "worker ready". Its warnings go to stderr. */
function startWorker(index: number): Promise<Child> {
  const label = `worker ${index + 1}`;
  const child = startFennel(label, ['worker', '--app', 'examples/pi/tasks.ts', '-P', pool, '-c', '1', '--loglevel', 'warn'], { stdout: 'pipe', stderr: 'inherit' });
  workers.push(child);
  return new Promise((resolve, reject) => {
    let ready = false;
    let partial = '';
    child.process.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (!ready && line.includes('worker ready')) {
          ready = true;
          resolve(child);
        } else if (/"level":(40|50|60)/.test(line)) process.stderr.write(`[${label}] ${line}\n`);
      }
    });
    // Stopped on purpose it is no error; before it was ready, or during the run, it is.
    void child.exited.then(() => {
      if (!stopper.stopping && !stopped) reject(new Error(`${label} (pid ${child.process.pid}) exited with code ${child.process.exitCode ?? child.process.signalCode}${ready ? ' during the run' : ' before it was ready'}`));
    });
  });
}

async function stopWorkers(): Promise<void> {
  stopped = true;
  // SIGTERM: the fennel CLI's warm shutdown; they hold nothing by now.
  await Promise.all(workers.map((w) => (w.process.exitCode === null && w.process.signalCode === null && w.process.kill('SIGTERM'), w.exited)));
}

/** Rejects when a worker exits before the run is over. */
function anyWorkerExit(): Promise<never> {
  return new Promise((_, reject) => {
    for (const w of workers) {
      void w.exited.then(() => {
        if (!stopper.stopping && !stopped) reject(new Error(`${w.label} (pid ${w.process.pid}) exited during the run (code ${w.process.exitCode ?? w.process.signalCode})`));
      });
    }
  });
}

/** One pool slot's part of the pipeline, in ms from the moment the tasks were sent. */
interface SlotTimeline {
  pid: number;
  tasks: number;
  firstStartMs: number;
  computeMs: number;
  /** Between the end of one of its chunks and the start of its next: the hop back and forth through the worker. */
  gapsMs: number;
  lastEndMs: number;
}

/** Each slot's timeline, from the tasks' own start and end times (epoch ms) and the moment they were sent. */
function slotTimeline(outcomes: ReadonlyArray<{ pid: number; startedAt: number; endedAt: number; computeMs: number }>, sentAt: number, pipelineMs: number): SlotTimeline[] {
  const byPid = new Map<number, Array<(typeof outcomes)[number]>>();
  for (const o of outcomes) byPid.set(o.pid, [...(byPid.get(o.pid) ?? []), o]);
  return [...byPid.entries()].map(([pid, runs]) => {
    const sorted = [...runs].sort((a, b) => a.startedAt - b.startedAt);
    let gapsMs = 0;
    for (let i = 1; i < sorted.length; i++) gapsMs += sorted[i]!.startedAt - sorted[i - 1]!.endedAt;
    return {
      pid,
      tasks: sorted.length,
      firstStartMs: sorted[0]!.startedAt - sentAt,
      computeMs: sorted.reduce((sum, o) => sum + o.computeMs, 0),
      gapsMs,
      lastEndMs: Math.min(pipelineMs, sorted.at(-1)!.endedAt - sentAt),
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// 1. In this process

say(`Monte Carlo π: ${int(samples)} points in ${chunkCount} chunks (seed ${seed}, xoshiro128+), broker ${shown(process.env['FENNEL_BROKER_URL'])}${flags.backend ? `, results ${shown(flags.backend)}` : ''}`);
say();

const localCounts: number[] = [];
const localStart = performance.now();
let localDone = 0;
for (const chunk of chunks) {
  // One turn of the event loop between chunks (64 of them cost nothing): a Ctrl-C is handled within a chunk.
  if (chunk.index > 0) await new Promise((resolve) => setImmediate(resolve));
  localCounts.push(countChunk(seed, chunk));
  localDone += chunk.samples;
  // A terminal write is synchronous on Linux: the bar moves while the loop runs (64 writes cost nothing).
  if (tty) showProgress(progressLine('in this process', localDone, chunk.index + 1, performance.now() - localStart), false);
}
const localMs = performance.now() - localStart;
endProgress();
const localInside = localCounts.reduce((a, b) => a + b, 0);
const localEstimate = estimate(localInside, samples);
say(`in this process   π ≈ ${localEstimate.toFixed(9)}   ${errorText(localEstimate)}   ${ms(localMs)}   (${(samples / localMs / 1e3).toFixed(1)} million points/s on one core)`);

let bare: BareRun | undefined;
if (!flags['no-bare']) {
  bare = await drawInParallel(seed, chunks, workerCount);
  const same = bare.counts.every((c, i) => c === localCounts[i]);
  say(`${workerCount} plain processes  (no queue: the same chunks, chunk i in process i mod ${workerCount}) ${ms(bare.wallMs)}: the most this machine allows now is ${(localMs / bare.wallMs).toFixed(2)}×${same ? '' : '; their hits DIFFER from this process\'s'}`);
}

// ---------------------------------------------------------------------------------------------------------
// 2. The pipeline: ventilator (this process) → workers → sink (this process)

/** Identifies this run's progress reports: a report from an earlier run on the same broker is not counted. */
const runId = randomUUID();
const reported = new Array<number>(chunkCount).fill(0);
const finished = new Array<boolean>(chunkCount).fill(false);
const reportingPids = new Set<number>();
let reports = 0;
let chunksDone = 0;

const listening = new AbortController();
/**
 * Reads the progress reports until the run ends. The channel is at-most-once and the reports are throttled, so the
 * bar counts a chunk's points from its latest report until its result arrives, then all of them.
 */
async function readProgress(subscription: AsyncIterable<Progress>): Promise<void> {
  try {
    for await (const report of subscription) {
      if (report.run !== runId || !(report.chunk >= 0 && report.chunk < chunkCount)) continue;
      reports++;
      reportingPids.add(report.pid);
      reported[report.chunk] = Math.max(reported[report.chunk]!, report.done);
    }
  } catch (error) {
    if (!listening.signal.aborted) console.error(`pi: progress channel failed: ${(error as Error).message}`);
  }
}

const pointsDone = (): number => chunks.reduce((sum, chunk) => sum + (finished[chunk.index] ? chunk.samples : Math.min(chunk.samples, reported[chunk.index]!)), 0);

let failed = false;
let report: Record<string, unknown> | undefined;
try {
  const spawnedAt = performance.now();
  // Subscribed while the workers start, and live (`ready`) before the first task is sent: the channel is
  // at-most-once, so a report published before that would be lost. The bar needs only the latest reports.
  const subscription = progress.subscribe({ signal: listening.signal, overflow: 'drop-oldest' });
  void readProgress(subscription);
  await Promise.all([...Array.from({ length: workerCount }, (_, i) => startWorker(i)), subscription.ready]);
  const readyAt = performance.now();
  say(`${workerCount} workers ready in ${ms(readyAt - spawnedAt)} (fennel worker -P ${pool} -c 1, pids ${workers.map((w) => w.process.pid).join(', ')}); progress on channel ${PROGRESS_CHANNEL}`);

  const pipelineStart = performance.now();
  const timer = setInterval(() => showProgress(progressLine('pipeline', pointsDone(), chunksDone, performance.now() - pipelineStart, `, ${reports} reports`), true), tty ? 100 : 1000);
  const results = count.delayMany(chunks.map((chunk: Chunk) => [seed, chunk.index, chunk.samples, runId] as [number, number, number, string]));
  const timeoutMs = Math.max(120_000, localMs * 20);
  const outcomes = await Promise.race([
    Promise.all(
      results.map((result, i) =>
        result.get({ timeoutMs }).then((outcome) => {
          finished[i] = true;
          chunksDone++;
          return outcome;
        }),
      ),
    ),
    anyWorkerExit(),
  ]);
  const pipelineMs = performance.now() - pipelineStart;
  clearInterval(timer);
  showProgress(progressLine('pipeline', pointsDone(), chunksDone, pipelineMs, `, ${reports} reports`), true);
  endProgress();

  const remoteCounts = outcomes.map((outcome) => outcome.inside);
  const remoteInside = remoteCounts.reduce((a, b) => a + b, 0);
  const remoteEstimate = estimate(remoteInside, samples);
  const withStartupMs = performance.now() - spawnedAt;
  const differing = remoteCounts.flatMap((c, i) => (c === localCounts[i] ? [] : [i]));
  const identical = remoteEstimate === localEstimate && differing.length === 0;
  const computeMs = outcomes.reduce((sum, o) => sum + o.computeMs, 0);
  const publishMs = outcomes.reduce((sum, o) => sum + o.publishMs, 0);
  const timeline = slotTimeline(outcomes, performance.timeOrigin + pipelineStart, pipelineMs);
  const slots = timeline.length;
  const speedup = localMs / pipelineMs;
  const speedupWithStartup = localMs / withStartupMs;

  say(`pipeline          π ≈ ${remoteEstimate.toFixed(9)}   ${errorText(remoteEstimate)}   ${ms(pipelineMs)} from both workers ready, ${ms(withStartupMs)} with their start-up   (${(samples / pipelineMs / 1e3).toFixed(1)} million points/s)`);
  say();
  say(`speedup: ${speedup.toFixed(2)}× from the workers ready (in this process ÷ pipeline: ${ms(localMs)} ÷ ${ms(pipelineMs)}); ${speedupWithStartup.toFixed(2)}× with their start-up (÷ ${ms(withStartupMs)})`);
  say(`estimates identical: ${identical ? 'yes' : 'NO'} (${int(localInside)} of ${int(samples)} points inside in this process, ${int(remoteInside)} in the pipeline${differing.length ? `; chunks differing: ${differing.join(', ')}` : ''})`);
  say(`progress: ${reports} reports from ${reportingPids.size} worker process(es) on channel ${PROGRESS_CHANNEL}`);
  say(`\nwhere the pipeline's ${ms(pipelineMs)} went, per pool slot (from the start and end times the tasks returned):`);
  for (const t of timeline) {
    say(`  pid ${t.pid}: ${String(t.tasks).padStart(3)} chunks; first started at ${ms(t.firstStartMs).padStart(8)}, computing ${ms(t.computeMs).padStart(8)}, between its chunks ${ms(t.gapsMs).padStart(6)} (${(t.gapsMs / Math.max(1, t.tasks - 1)).toFixed(2)} ms each), last ended at ${ms(t.lastEndMs).padStart(8)}`);
  }
  say(`  slots busy computing ${((computeMs / (workerCount * pipelineMs)) * 100).toFixed(1)}% of ${workerCount} × the pipeline's time; progress reports took ${ms(publishMs)} of it; the last result was here ${ms(pipelineMs - Math.max(...timeline.map((t) => t.lastEndMs)))} after the last chunk ended`);
  report = {
    samples, chunks: chunkCount, seed, workers: workerCount, pool, broker: shown(process.env['FENNEL_BROKER_URL']), localMs, localInside, localEstimate,
    startupMs: readyAt - spawnedAt, pipelineMs, withStartupMs, remoteInside, remoteEstimate, identical, speedup, speedupWithStartup,
    localPointsPerSec: (samples / localMs) * 1000, bareMs: bare?.wallMs ?? null, bareSpeedup: bare ? localMs / bare.wallMs : null, computeMs, publishMs, slots, timeline, progressReports: reports,
    workerPids: workers.map((w) => w.process.pid), barePids: bare?.pids ?? [], progressPids: reportingPids.size,
  };
  failed = !identical;
} finally {
  listening.abort();
  await stopWorkers();
  await app.close();
  removeTempDir();
}
if (flags.json && report) console.log(JSON.stringify(report));
if (failed) {
  console.error('pi: the pipeline estimate differs from the in-process one');
  process.exitCode = 1;
}
// The stopper's parent watch is unref'd and the app is closed: nothing keeps this process up now.
