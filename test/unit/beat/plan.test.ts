// What a beat fires when it starts leading (planStart) and on each timer while it leads (planTick): pure
// functions of the timetable, the last due time recorded, the time now and catchUp.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CATCH_UP_CAP, ON_TIME_MS, planStart, planTick } from '../../../src/beat/plan.ts';
import { timetable, type CatchUp } from '../../../src/beat/schedule.ts';

// A due time of every schedule below, so that the arithmetic reads plainly.
const T = Date.parse('2026-05-01T12:00:00Z');
const tenSeconds = timetable('ten', { every: 10 });
const second = timetable('second', { every: 1 });
const MODES: readonly CatchUp[] = ['none', 'last', 'all'];

const seconds = (...offsets: number[]): number[] => offsets.map((s) => T + s * 1000);

describe('planStart', () => {
  it('constants: on time means at most a second late; catchUp all fires at most 100', () => {
    assert.equal(ON_TIME_MS, 1000);
    assert.equal(CATCH_UP_CAP, 100);
  });

  it('first run (nothing recorded): fires only the due times of the last second, whatever catchUp says', () => {
    for (const mode of MODES) {
      assert.deepEqual(planStart(tenSeconds, undefined, T + 500, mode), { fire: [T], caughtUp: 0, skipped: 0 }, `${mode}: due half a second ago: on time`);
      assert.deepEqual(planStart(tenSeconds, undefined, T, mode), { fire: [T], caughtUp: 0, skipped: 0 }, `${mode}: due now`);
      assert.deepEqual(planStart(tenSeconds, undefined, T + 5_000, mode), { fire: [], caughtUp: 0, skipped: 0 }, `${mode}: due 5 s ago: not missed, not fired`);
      assert.deepEqual(planStart(tenSeconds, undefined, T - 1, mode), { fire: [], caughtUp: 0, skipped: 0 }, `${mode}: not due yet`);
    }
    // Several due times in the last second (a sub-second interval): all of them, in order.
    const tenth = timetable('tenth', { every: 0.1 });
    assert.deepEqual(planStart(tenth, undefined, T + 50, 'none').fire, Array.from({ length: 10 }, (_, i) => T - 900 + i * 100));
  });

  it('after a gap of 60 s (5 due times missed): none skips them, last fires the latest, all fires each; the on-time one always', () => {
    const last = T - 60_000; // recorded: due 60 s ago; missed: T-50 … T-10 s; on time: T
    const now = T + 200;
    assert.deepEqual(planStart(tenSeconds, last, now, 'none'), { fire: [T], caughtUp: 0, skipped: 5 });
    assert.deepEqual(planStart(tenSeconds, last, now, 'last'), { fire: seconds(-10, 0), caughtUp: 1, skipped: 4 });
    assert.deepEqual(planStart(tenSeconds, last, now, 'all'), { fire: seconds(-50, -40, -30, -20, -10, 0), caughtUp: 5, skipped: 0 });
  });

  it('after a gap with no due time on time now: only the missed ones, per catchUp', () => {
    const last = T - 60_000;
    const now = T + 5_000; // T is 5 s old: missed too
    assert.deepEqual(planStart(tenSeconds, last, now, 'none'), { fire: [], caughtUp: 0, skipped: 6 });
    assert.deepEqual(planStart(tenSeconds, last, now, 'last'), { fire: [T], caughtUp: 1, skipped: 5 });
    assert.deepEqual(planStart(tenSeconds, last, now, 'all'), { fire: seconds(-50, -40, -30, -20, -10, 0), caughtUp: 6, skipped: 0 });
  });

  it('catchUp all fires at most CATCH_UP_CAP missed due times, the latest ones, and counts the rest as skipped', () => {
    const missed = 250;
    const last = T - missed * 1000;
    const now = T + 100;
    const plan = planStart(second, last, now, 'all');
    // Missed: (last, now - ON_TIME_MS] = T-249 s … T-1 s, 249 of them; on time: T.
    assert.equal(plan.caughtUp, CATCH_UP_CAP);
    assert.equal(plan.skipped, missed - 1 - CATCH_UP_CAP);
    assert.deepEqual(plan.fire, [...Array.from({ length: CATCH_UP_CAP }, (_, i) => T - (CATCH_UP_CAP - i) * 1000), T], 'the latest 100 missed, in order, then the on-time one');
    const lastOnly = planStart(second, last, now, 'last');
    assert.deepEqual(lastOnly, { fire: seconds(-1, 0), caughtUp: 1, skipped: missed - 2 });
    assert.deepEqual(planStart(second, last, now, 'none'), { fire: [T], caughtUp: 0, skipped: missed - 1 });
  });

  it('a gap of days on a cron: counts exactly, fires per catchUp', () => {
    const hourly = timetable('hourly', { cron: '0 * * * *' });
    const last = Date.parse('2026-05-01T00:00:00Z');
    const now = Date.parse('2026-05-03T00:30:00Z'); // 48 hourly due times missed, none on time
    assert.deepEqual(planStart(hourly, last, now, 'none'), { fire: [], caughtUp: 0, skipped: 48 });
    assert.deepEqual(planStart(hourly, last, now, 'last'), { fire: [Date.parse('2026-05-03T00:00:00Z')], caughtUp: 1, skipped: 47 });
    const all = planStart(hourly, last, now, 'all');
    assert.equal(all.caughtUp, 48);
    assert.equal(all.skipped, 0);
    assert.equal(all.fire.length, 48);
    assert.equal(all.fire[0], Date.parse('2026-05-01T01:00:00Z'));
    assert.equal(all.fire[47], Date.parse('2026-05-03T00:00:00Z'));
  });

  it('a last due time within the last second (a takeover a moment later): nothing missed, only what is due after it', () => {
    const tenth = timetable('tenth', { every: 0.1 });
    for (const mode of MODES) {
      // Recorded 300 ms ago: 200 ms, 100 ms ago and now are due, and fired; nothing counts as missed.
      assert.deepEqual(planStart(tenth, T - 300, T, mode), { fire: [T - 200, T - 100, T], caughtUp: 0, skipped: 0 }, mode);
      // The last recorded is the latest due time: nothing to do.
      assert.deepEqual(planStart(tenSeconds, T, T + 400, mode), { fire: [], caughtUp: 0, skipped: 0 }, mode);
      // Recorded exactly a second ago.
      assert.deepEqual(planStart(second, T - ON_TIME_MS, T, mode), { fire: [T], caughtUp: 0, skipped: 0 }, mode);
    }
  });

  it('never fires a due time at or before the last recorded one, nor after now', () => {
    for (const mode of MODES) {
      for (const [last, now] of [
        [T - 3_000, T + 500],
        [T - 500_000, T + 999],
        [T, T + 10_000],
        [T + 10_000, T + 10_500],
      ] as const) {
        const plan = planStart(second, last, now, mode);
        assert.ok(plan.fire.every((due) => due > last && due <= now), `${mode} (${last - T}, ${now - T}]: ${plan.fire.map((d) => d - T).join(',')}`);
        assert.deepEqual(plan.fire, [...plan.fire].sort((a, b) => a - b), 'in order');
        assert.equal(new Set(plan.fire).size, plan.fire.length, 'each once');
      }
    }
  });
});

describe('planTick', () => {
  it('fires every due time in (last, now], in order', () => {
    assert.deepEqual(planTick(tenSeconds, T - 10_000, T), { fire: [T], skipped: 0 });
    assert.deepEqual(planTick(tenSeconds, T - 10_000, T - 1), { fire: [], skipped: 0 }, 'not due yet');
    assert.deepEqual(planTick(tenSeconds, T, T + 9_999), { fire: [], skipped: 0 }, 'the last one is not fired again');
    // A timer that woke 35 s late: every due time it slept through.
    assert.deepEqual(planTick(tenSeconds, T - 10_000, T + 35_000), { fire: seconds(0, 10, 20, 30), skipped: 0 });
    assert.deepEqual(planTick(tenSeconds, T + 3_000, T + 3_000), { fire: [], skipped: 0 }, 'an empty range');
  });

  it('fires at most CATCH_UP_CAP, the latest, and counts the rest as skipped', () => {
    const plan = planTick(second, T - 150_000, T);
    assert.equal(plan.skipped, 50);
    assert.equal(plan.fire.length, CATCH_UP_CAP);
    assert.equal(plan.fire[0], T - 99_000);
    assert.equal(plan.fire[CATCH_UP_CAP - 1], T);
  });
});
