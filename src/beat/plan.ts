// What a beat fires when it becomes the leader: a pure function of the schedule, the last due time any leader
// recorded for it, the time now and the schedule's catchUp. Kept apart from the timers so that every case is a
// unit test (test/unit/beat/plan.test.ts).
//
// A due time is *on time* if it is less than ON_TIME_MS old: it is fired whatever catchUp says (a leader that
// takes over, or a beat restarted, a moment after it fell due has not missed it). Older due times after the
// last recorded one were *missed* while no beat led:
//   none  skip them all (logged with their count) and carry on with the next;
//   last  fire the latest of them once, now;
//   all   fire each of them now, in order, at most CATCH_UP_CAP (the latest ones; the rest are skipped, logged).
// A schedule with no recorded fire (first run) has missed nothing.

import { dueBetween, type CatchUp, type Timetable } from './schedule.ts';

/** A due time less than this old at leadership start counts as on time. */
export const ON_TIME_MS = 1000;

/** The most missed due times `catchUp: 'all'` fires at once (the latest ones). */
export const CATCH_UP_CAP = 100;

export interface StartPlan {
  /** Due times to fire now, in order: the caught-up missed ones, then the on-time ones. */
  fire: number[];
  /** How many of `fire` are missed due times fired by catchUp. */
  caughtUp: number;
  /** Missed due times not fired. */
  skipped: number;
}

export function planStart(t: Timetable, lastDueMs: number | undefined, nowMs: number, catchUp: CatchUp): StartPlan {
  const onTimeFrom = Math.max(lastDueMs ?? -Infinity, nowMs - ON_TIME_MS);
  const onTime = dueBetween(t, onTimeFrom, nowMs, CATCH_UP_CAP).latest;
  if (lastDueMs === undefined || lastDueMs >= onTimeFrom) return { fire: onTime, caughtUp: 0, skipped: 0 };
  const missed = dueBetween(t, lastDueMs, onTimeFrom, catchUp === 'all' ? CATCH_UP_CAP : 1);
  const caught = catchUp === 'none' ? [] : missed.latest;
  return { fire: [...caught, ...onTime], caughtUp: caught.length, skipped: missed.count - caught.length };
}

/**
 * While leading: the due times in (lastDueMs, nowMs], all of them (a timer that woke late, an event loop that
 * was busy), at most CATCH_UP_CAP; the rest are skipped.
 */
export function planTick(t: Timetable, lastDueMs: number, nowMs: number): { fire: number[]; skipped: number } {
  const due = dueBetween(t, lastDueMs, nowMs, CATCH_UP_CAP);
  return { fire: due.latest, skipped: due.count - due.latest.length };
}
