// examples/pi/main.ts end to end, as a user runs it: it estimates π from 2,000,000 points in this process and again
// through its own two worker processes on an embedded SQLite file, with progress on a channel, and the two
// estimates are the same number. Nothing here is timed: the speedup is printed, never asserted.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pidAlive, runScriptToEnd, waitFor } from '../support/process.ts';
import { chunkState, countChunk, countInside, estimate, splitSamples, standardError } from '../../examples/pi/montecarlo.ts';

const SAMPLES = 2_000_000;
const CHUNKS = 8;

/** Runs main.ts to the end; resolves with its exit code and output. */
function runMain(args: string[]): ReturnType<typeof runScriptToEnd> {
  return runScriptToEnd('examples/pi/main.ts', args);
}

interface Report {
  samples: number;
  chunks: number;
  localInside: number;
  remoteInside: number;
  localEstimate: number;
  remoteEstimate: number;
  identical: boolean;
  slots: number;
  progressReports: number;
  progressPids: number;
  workerPids: number[];
  barePids: number[];
  timeline: Array<{ pid: number; tasks: number }>;
}

describe('examples/pi/montecarlo.ts', () => {
  it('splits the points into chunks that differ by at most one and add up', () => {
    const chunks = splitSamples(1_000_003, 8);
    assert.equal(chunks.reduce((sum, c) => sum + c.samples, 0), 1_000_003);
    assert.deepEqual(
      chunks.map((c) => c.samples),
      [125_001, 125_001, 125_001, 125_000, 125_000, 125_000, 125_000, 125_000],
    );
    assert.throws(() => splitSamples(4, 5), RangeError);
  });

  it('draws a chunk the same in blocks as in one call, and each chunk from its own stream', () => {
    const whole = countChunk(7, { index: 3, samples: 300_000 });
    const state = chunkState(7, 3);
    const inBlocks = countInside(state, 100_000) + countInside(state, 150_000) + countInside(state, 50_000);
    assert.equal(inBlocks, whole);
    assert.notDeepEqual(chunkState(7, 3), chunkState(7, 4));
    assert.notDeepEqual(chunkState(7, 3), chunkState(8, 3));
  });
});

describe('examples/pi/main.ts', () => {
  it('gets the same estimate through two workers as in-process, near π, with progress on the channel, and leaves no process behind', async () => {
    const run = await runMain(['--samples', String(SAMPLES), '--chunks', String(CHUNKS), '--json']);
    assert.equal(run.code, 0, `exit code ${run.code}; stderr:\n${run.stderr}`);
    const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Report;
    assert.equal(report.samples, SAMPLES);
    assert.equal(report.chunks, CHUNKS);

    // Same generator, same seeds per chunk: the same hits, so exactly the same number, both ways.
    assert.equal(report.identical, true);
    assert.equal(report.remoteInside, report.localInside);
    assert.equal(report.remoteEstimate, report.localEstimate);
    assert.equal(report.localEstimate, estimate(report.localInside, SAMPLES));
    // And the hits are what the pure functions give here (the seed is 1 by default).
    assert.equal(report.localInside, splitSamples(SAMPLES, CHUNKS).reduce((sum, chunk) => sum + countChunk(1, chunk), 0));

    // The hit count is binomial(n, π/4): the estimate's standard deviation is 4·√(p(1−p)/n) ≈ 1.16e-3 for 2·10^6
    // points. A correct generator lands within 5 of them but for about one seed in 1.7 million; a broken one (a
    // correlated or badly seeded stream) lands far outside. With the seed fixed the outcome is deterministic.
    const bound = 5 * standardError(SAMPLES);
    assert.ok(Math.abs(report.remoteEstimate - Math.PI) < bound, `estimate ${report.remoteEstimate} is ${Math.abs(report.remoteEstimate - Math.PI)} from π, over 5σ = ${bound}`);

    // Every chunk ran in a pool slot, and the slots reported on the channel while drawing (a slot's first block always reports).
    assert.equal(report.timeline.reduce((sum, t) => sum + t.tasks, 0), CHUNKS);
    assert.ok(report.progressReports >= 1, 'no progress report received on pi.progress');
    assert.ok(report.progressPids >= 1 && report.progressPids <= report.slots, `${report.progressPids} reporting processes, ${report.slots} slots`);

    // Nothing it started outlives it: the two workers, their pool slots and the plain processes of the ceiling.
    const started = [...report.workerPids, ...report.timeline.map((t) => t.pid), ...report.barePids];
    assert.equal(report.workerPids.length, 2);
    assert.equal(report.barePids.length, 2);
    await waitFor(() => started.every((pid) => !pidAlive(pid)), `the processes main.ts started (${started.join(', ')}) to exit`, 10_000);
  });

  it('prints both estimates with their error, both times, the speedup and the progress', async () => {
    const run = await runMain(['--samples', String(SAMPLES), '--chunks', String(CHUNKS), '--no-bare']);
    assert.equal(run.code, 0, `exit code ${run.code}; stderr:\n${run.stderr}`);
    assert.match(run.stdout, /^in this process +π ≈ 3\.\d{9} +error [+−]\d\.\d{2}e-\d+ \(\d+\.\d{2} σ\) +[\d,]+ ms/m);
    assert.match(run.stdout, /^pipeline +π ≈ 3\.\d{9} +error [+−]\d\.\d{2}e-\d+ \(\d+\.\d{2} σ\) +[\d,]+ ms from both workers ready, [\d,]+ ms with their start-up/m);
    assert.match(run.stdout, /^speedup: [\d.]+× from the workers ready .*; [\d.]+× with their start-up/m);
    assert.match(run.stdout, /^estimates identical: yes/m);
    assert.match(run.stdout, /^progress: [1-9]\d* reports from [12] worker process\(es\) on channel pi\.progress/m);
    // Not a terminal: the bar is plain lines, the last one at 100%.
    assert.match(run.stdout, /^pipeline: 100\.0% +2\.00M of 2\.00M points, 8\/8 chunks/m);
    assert.doesNotMatch(run.stdout, /plain processes/);
  });
});
