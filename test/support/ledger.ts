// Counting runs in a task ledger (a file each run appends "<task id> …" to): the fault tests assert that no
// task was lost and report how many ran more than once (at-least-once allows it).

import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { fileLines } from './process.ts';

/** Runs per task id, from a ledger of "<task id> …" lines. */
export function runsById(log: string): Map<string, number> {
  const runs = new Map<string, number>();
  for (const line of fileLines(log)) {
    const id = line.split(' ')[0]!;
    runs.set(id, (runs.get(id) ?? 0) + 1);
  }
  return runs;
}

/** Asserts every id ran at least once; returns how many ran more than once, and reports it as a diagnostic. */
export function assertNoneLost(t: TestContext, log: string, ids: string[], label: string): number {
  const runs = runsById(log);
  assert.deepEqual(ids.filter((id) => !runs.has(id)), [], `${label}: tasks that never ran`);
  const twice = ids.filter((id) => runs.get(id)! > 1);
  const extra = ids.reduce((n, id) => n + runs.get(id)! - 1, 0);
  t.diagnostic(`${label}: ${ids.length} tasks, ${ids.length + extra} runs, ${twice.length} ran more than once`);
  return twice.length;
}
