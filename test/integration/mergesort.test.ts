// examples/mergesort/main.ts end to end, as a user runs it: it starts its own two worker processes on an
// embedded SQLite file, sorts 20,000 integers locally and through a chord, and says both equal the built-in sort,
// with the speedup, its zero-transfer bound and where the time went.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runScriptToEnd } from '../support/process.ts';


/** Runs main.ts to the end; resolves with its exit code and output. */
function runMain(args: string[]): ReturnType<typeof runScriptToEnd> {
  return runScriptToEnd('examples/mergesort/main.ts', args);
}

describe('examples/mergesort/main.ts', () => {
  for (const wire of ['packed', 'json']) {
    it(`sorts 20,000 integers in 4 chunks on two workers (--wire ${wire}) and matches the built-in sort`, async () => {
      const run = await runMain(['--n', '20000', '--chunks', '4', '--runs', '1', '--wire', wire, '--json']);
      assert.equal(run.code, 0, `exit code ${run.code}; stderr:\n${run.stderr}`);
      const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
      assert.equal(report['localOk'], true);
      assert.equal(report['remoteOk'], true);
      assert.equal(report['n'], 20_000);
      assert.equal(report['chunks'], 4);
      assert.ok((report['totalMs'] as number) > 0);
      // The zero-transfer bound is local ÷ (sorting per slot + merging), from the step costs it measured.
      const bound = (report['localMs'] as number) / ((report['sortPerSlotMs'] as number) + (report['mergeMs'] as number));
      assert.ok(Math.abs((report['boundSpeedup'] as number) - bound) < 1e-9, `boundSpeedup ${String(report['boundSpeedup'])} vs ${bound}`);
    });
  }

  it('runs the tasks in the worker processes themselves with --pool async', async () => {
    const run = await runMain(['--n', '20000', '--chunks', '4', '--runs', '1', '--pool', 'async', '--json']);
    assert.equal(run.code, 0, `exit code ${run.code}; stderr:\n${run.stderr}`);
    const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(report['pool'], 'async');
    assert.equal(report['remoteOk'], true);
  });

  it('refuses an unknown --pool', async () => {
    const run = await runMain(['--n', '1000', '--pool', 'fork']);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /--pool must be process, thread or async/);
  });

  it('prints the times, their ratio and where the time went', async () => {
    const run = await runMain(['--n', '20000', '--chunks', '4', '--runs', '1', '--workers', '1', '--concurrency', '2']);
    assert.equal(run.code, 0, `exit code ${run.code}; stderr:\n${run.stderr}`);
    assert.match(run.stdout, /^local .*: \d+ ms/m);
    assert.match(run.stdout, /^distributed .*: \d+ ms/m);
    assert.match(run.stdout, /^speedup: [\d.]+× .*with zero transfer cost at most [\d.]+×/m);
    assert.match(run.stdout, /output equals the built-in sort: local yes, distributed yes/);
    assert.match(run.stdout, /last sort → merge stored +\d+ ms = +\d+ ms computing \+ +-?\d+ ms overhead/);
    assert.match(run.stdout, /^ {2}total +\d+ ms = +\d+ ms computing \+ +-?\d+ ms overhead/m);
  });
});
