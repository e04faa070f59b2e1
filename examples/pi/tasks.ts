// The task of the Monte Carlo π pipeline (examples/pi/main.ts). Workers load this module:
//   npx fennel worker --app examples/pi/tasks.ts -P process -c 1
// The broker and result backend come from FENNEL_BROKER_URL / FENNEL_RESULT_BACKEND, which main.ts sets.
// `pi.count` draws one chunk's points (montecarlo.ts) and returns how many fell inside the circle; while it
// draws, it publishes how far it is on the channel `pi.progress`, at most every PROGRESS_EVERY_MS per process.

import { Fennel } from 'fennel';
import { chunkState, countInside } from './montecarlo.ts';

export const app = new Fennel();

/** The channel the workers report progress on, and the driver reads. */
export const PROGRESS_CHANNEL = 'pi.progress';

/** One progress report: chunk `chunk` of run `run` has drawn `done` of its `of` points, in process `pid`. */
export interface Progress {
  run: string;
  chunk: number;
  done: number;
  of: number;
  pid: number;
}

/** What one chunk's task returns: the hits, and when and where it ran (for main.ts's account of the time). */
export interface ChunkResult {
  inside: number;
  /** The task's run, start to end, in the process that ran it (drawing and progress reports). */
  computeMs: number;
  /** Of which waiting for progress reports to be published. */
  publishMs: number;
  /** Start and end, in ms since the epoch (performance.timeOrigin + performance.now(): sub-millisecond). */
  startedAt: number;
  endedAt: number;
  pid: number;
}

/**
 * Points drawn between two looks at the clock, at most: about 10–15 ms of drawing here, small enough for a live
 * bar, large enough that the look (one performance.now() and a compare) costs nothing measurable. A chunk is drawn
 * in at least BLOCKS_PER_CHUNK blocks, so a small one can still report before its end.
 */
const BLOCK = 1 << 20;
const BLOCKS_PER_CHUNK = 4;

/**
 * The least time between two progress reports of one process: two a second per slot, whatever the chunk size.
 * What a report costs the slot is one turn of its event loop (see `count`); on sqlite:// that turn is the write
 * itself, which takes its turn for the file's write lock beside the workers' own writes: 0.1 ms uncontended, in
 * the pipeline on a loaded machine a median of about 3 ms and up to 20 (SQLite's busy back-off). main.ts prints
 * what the reports took in all.
 */
export const PROGRESS_EVERY_MS = 500;

/** When this process last published; -Infinity so that its first chunk always reports (even a short run shows progress). */
let lastPublished = -Infinity;
/** A report not yet answered by the broker: the next one waits for it (a broker that is away gets one at a time). */
let inFlight = false;

/** The progress channel: at-most-once publish/subscribe through the broker (docs/patterns.md#channels). Opens nothing until the first publish. */
export const progress = app.channel<Progress>(PROGRESS_CHANNEL);

/**
 * Counts the hits of chunk `chunk` (`samples` points under `seed`), drawing in blocks and reporting after a block
 * when the last report of this process is PROGRESS_EVERY_MS old, unless the chunk is drawn: its result says that.
 * A report is handed to the broker, and the task goes on after one turn of the event loop, without waiting for the
 * broker's answer: in that turn a Redis PUBLISH is written to its socket and a SQLite row is committed (the
 * engine's group commit runs there), and an at-most-once report needs no more. Reports are best effort: one that
 * fails is dropped, never the task.
 */
export const count = app.task('pi.count', async (seed: number, chunk: number, samples: number, run: string): Promise<ChunkResult> => {
  if (!Number.isSafeInteger(samples) || samples < 0) throw new RangeError(`samples must be a non-negative integer (got ${samples})`);
  const started = performance.now();
  let publishMs = 0;
  const state = chunkState(seed, chunk);
  const block = Math.min(BLOCK, Math.ceil(samples / BLOCKS_PER_CHUNK));
  let inside = 0;
  for (let done = 0; done < samples; ) {
    const n = Math.min(block, samples - done);
    inside += countInside(state, n);
    done += n;
    const now = performance.now();
    if (done < samples && !inFlight && now - lastPublished >= PROGRESS_EVERY_MS) {
      lastPublished = now;
      inFlight = true;
      void progress
        .publish({ run, chunk, done, of: samples, pid: process.pid })
        .catch(() => {})
        .finally(() => (inFlight = false));
      await new Promise((resolve) => setImmediate(resolve));
      publishMs += performance.now() - now;
    }
  }
  const ended = performance.now();
  return { inside, computeMs: ended - started, publishMs, startedAt: performance.timeOrigin + started, endedAt: performance.timeOrigin + ended, pid: process.pid };
});
