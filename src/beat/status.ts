// What `fennel schedules` and the dashboard show: every schedule of the app with its last and next fire, and
// which beat leads. Read from the engine (the lease and the state records), so it is the same from any process.

import type { Fennel } from '../app/fennel.ts';
import { beatBackend, beatKeys, parseState } from './beat.ts';

export interface ScheduleStatus {
  name: string;
  /** `every 5s`, `cron 0 * * * * (UTC)`. */
  when: string;
  task: string;
  catchUp: string;
  expiresSec: number;
  /** The last due time fired, by any beat (ISO 8601), or null if it never fired. */
  lastDue: string | null;
  lastSentAt: string | null;
  lastTaskId: string | null;
  /** The beat that sent the last fire. */
  lastBeat: string | null;
  /** The next due time after now (ISO 8601), or null if the schedule has none (a cron that has ended). */
  next: string | null;
}

export interface BeatStatus {
  /** The beat that leads now, and until when its lease lasts unrenewed; null if none does. */
  leader: { beat: string; leaseUntil: string } | null;
  schedules: ScheduleStatus[];
}

export async function beatStatus(app: Fennel, now = Date.now()): Promise<BeatStatus> {
  const backend = beatBackend(app);
  const keys = beatKeys(app);
  const [lease, records] = await Promise.all([backend.readLease(keys.lease), backend.readRecords(keys.state)]);
  const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
  const schedules = [...app.schedules.values()].map((s): ScheduleStatus => {
    const state = parseState(records.get(s.name));
    return {
      name: s.name,
      when: s.timetable.description,
      task: s.taskName,
      catchUp: s.catchUp,
      expiresSec: s.expiresSec,
      lastDue: iso(state?.lastDueMs),
      lastSentAt: iso(state?.lastSentAtMs),
      lastTaskId: state?.lastTaskId ?? null,
      lastBeat: state?.beat ?? null,
      next: iso(s.timetable.next(now)),
    };
  });
  return { leader: lease ? { beat: lease.holder, leaseUntil: lease.expiresAt.toISOString() } : null, schedules };
}
