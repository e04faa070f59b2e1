// examples/mergesort/main.ts end to end, as a user runs it: it starts its own two worker processes on an
// embedded SQLite file, sorts 20,000 integers locally and through a chord (or, with --shape tree, a tree of two-way
// merges on object references), and says both equal the built-in sort, with the speedup, its zero-transfer bound
// and where the time went.

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

  // --shape tree: two-way merges taking object references, level by level. 5 chunks: an odd one out passes up
  // (2 + 1 + 1 merges in 3 levels); 4 chunks: a full tree (2 + 1 in 2 levels).
  for (const [wire, chunks, merges] of [['packed', 5, [2, 1, 1]], ['json', 4, [2, 1]]] as const) {
    it(`sorts 20,000 integers in ${chunks} chunks as a tree of two-way merges (--shape tree --wire ${wire}) and matches the built-in sort`, async () => {
      const run = await runMain(['--shape', 'tree', '--n', '20000', '--chunks', String(chunks), '--runs', '1', '--wire', wire, '--json']);
      assert.equal(run.code, 0, `exit code ${run.code}; stderr:\n${run.stderr}`);
      const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
      assert.equal(report['shape'], 'tree');
      assert.equal(report['localOk'], true);
      assert.equal(report['remoteOk'], true);
      const levels = report['mergeLevels'] as Array<{ merges: number; levelMs: number }>;
      assert.deepEqual(levels.map((level) => level.merges), merges);
      // The root is the last level's one merge; each level's last merge is stored after the one below.
      const levelDone = report['levelDoneMs'] as number[];
      assert.equal(levelDone.length, merges.length);
      assert.equal(levelDone.at(-1), report['mergeDoneMs']);
      for (let l = 1; l < levelDone.length; l++) assert.ok(levelDone[l]! >= levelDone[l - 1]!, `level ${l + 1} stored before level ${l}: ${levelDone.join(', ')}`);
      // The bound's merging is the merge levels' critical path, not the k-way merge.
      assert.equal(report['mergeMs'], report['treeMergeMs']);
      assert.ok(Math.abs((report['treeMergeMs'] as number) - levels.reduce((sum, level) => sum + level.levelMs, 0)) < 1e-9);
      const bound = (report['localMs'] as number) / ((report['sortPerSlotMs'] as number) + (report['mergeMs'] as number));
      assert.ok(Math.abs((report['boundSpeedup'] as number) - bound) < 1e-9, `boundSpeedup ${String(report['boundSpeedup'])} vs ${bound}`);
    });
  }

  it('prints the tree, its merge levels and which bound it uses (--shape tree)', async () => {
    const run = await runMain(['--shape', 'tree', '--n', '20000', '--chunks', '4', '--runs', '1']);
    assert.equal(run.code, 0, `exit code ${run.code}; stderr:\n${run.stderr}`);
    assert.match(run.stdout, /^distributed \(tree of 4 sorts → 2 \+ 1 two-way merges in 2 level\(s\), 2 slot\(s\).*\): \d+ ms/m);
    assert.match(run.stdout, /merging = the merge levels' critical path on 2 slot\(s\)\)$/m);
    assert.match(run.stdout, /output equals the built-in sort: local yes, distributed yes/);
    assert.match(run.stdout, /^ {4}level 1: 2 merge\(s\) of up to 10,000 integers, last stored at \d+ ms/m);
    assert.match(run.stdout, /^ {4}level 2: 1 merge\(s\) of up to 20,000 integers/m);
    assert.match(run.stdout, /last sort → merge stored +-?\d+ ms = +\d+ ms computing \+ +-?\d+ ms overhead +\(the root merge/);
  });

  it('refuses an unknown --shape', async () => {
    const run = await runMain(['--n', '1000', '--shape', 'ring']);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /--shape must be chord or tree/);
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
