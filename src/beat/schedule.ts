// Schedules: when each one is due. A schedule is a cron expression (croner: five or six fields, seconds
// optional, in a time zone) or a fixed interval. Due times are a pure function of the schedule, never of when a
// beat started: every beat process computes the same ones, which is what lets a new leader carry on where the
// last one stopped and lets a fire's task id be derived from its due time.
//
// Intervals are aligned to the Unix epoch (`every: 5` is due at :00, :05, :10 … of every minute, in UTC), as
// cron's `*/5` is aligned to the clock. Daylight-saving transitions are croner's (its `fixedTimeRule`): a
// fixed-time job (`30 2 * * *`) that falls in the spring-forward gap runs at the first valid time after it and
// runs once when the fall-back hour repeats; an interval-like job (`*/15 * * * *`) skips the gap and runs on
// both occurrences of the repeated hour (test/unit/beat/schedule.test.ts pins both).

import { createHash } from 'node:crypto';
import { Cron } from 'croner';
import { ConfigError } from '../errors.ts';
import type { CanvasNode, SignatureDict } from '../app/canvas.ts';

export type ScheduleSpec = { cron: string; tz?: string; every?: never } | { every: number | string; cron?: never; tz?: never };

/** What happens to the due times that passed while no beat led (see plan.ts). */
export type CatchUp = 'none' | 'last' | 'all';
export const CATCH_UP_MODES: readonly CatchUp[] = ['none', 'last', 'all'];

/** When a schedule is due: its next due time after a moment, and what it is for people. */
export interface Timetable {
  /** The first due time strictly after `afterMs` (ms since epoch), or undefined if there is none (a cron that ended). */
  next(afterMs: number): number | undefined;
  /** The typical time between two due times, ms (an interval's own; a cron's, measured on its next two runs). */
  readonly periodMs: number;
  /** `every 5s`, `cron 0 * * * * (Europe/Paris)`: for logs, `fennel schedules` and the dashboard. */
  readonly description: string;
  /** True for a fixed interval (due times are multiples of periodMs). */
  readonly interval: boolean;
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** Seconds in `every`: a positive number of seconds, or '5s', '10m', '1h', '1d' (also '1.5h'). */
export function parseEvery(every: number | string): number | undefined {
  if (typeof every === 'number') return Number.isFinite(every) && every > 0 ? every : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$/.exec(every);
  if (!match) return undefined;
  const seconds = Number(match[1]) * UNITS[match[2]!]!;
  return seconds > 0 ? seconds : undefined;
}

/** True if `tz` is a time zone this runtime knows (IANA names such as Europe/Paris, or UTC). */
function knownTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Parses and checks a schedule; a problem is a ConfigError that names the schedule. */
export function timetable(name: string, spec: ScheduleSpec): Timetable {
  const what = `schedule '${name}'`;
  if (spec === null || typeof spec !== 'object') throw new ConfigError(`${what}: give { cron: '…', tz?: '…' } or { every: seconds | '5s' | '10m' | '1h' }`);
  if ('every' in spec && 'cron' in spec) throw new ConfigError(`${what}: give cron or every, not both`);
  if ('every' in spec) {
    const extra = Object.keys(spec).filter((k) => k !== 'every');
    if (extra.length) throw new ConfigError(`${what}: unknown field ${extra.map((k) => `'${k}'`).join(', ')}; an interval schedule has only every (a time zone is for cron)`);
    const seconds = parseEvery(spec.every);
    if (seconds === undefined) throw new ConfigError(`${what}: every must be a positive number of seconds or a string such as '5s', '10m', '1h', '1d' (got ${JSON.stringify(spec.every)})`);
    if (seconds < 0.001) throw new ConfigError(`${what}: every must be at least 1 ms (got ${seconds} s)`);
    const periodMs = Math.round(seconds * 1000);
    return { next: (after) => (Math.floor(after / periodMs) + 1) * periodMs, periodMs, interval: true, description: `every ${typeof spec.every === 'number' ? `${spec.every}s` : spec.every.trim()}` };
  }
  if (!('cron' in spec) || typeof spec.cron !== 'string') throw new ConfigError(`${what}: give { cron: '…', tz?: '…' } or { every: seconds | '5s' | '10m' | '1h' }`);
  const unknown = Object.keys(spec).filter((k) => k !== 'cron' && k !== 'tz');
  if (unknown.length) throw new ConfigError(`${what}: unknown field ${unknown.map((k) => `'${k}'`).join(', ')}; a cron schedule has cron and tz`);
  if (spec.tz !== undefined && (typeof spec.tz !== 'string' || !knownTimeZone(spec.tz))) throw new ConfigError(`${what}: unknown time zone ${JSON.stringify(spec.tz)} (an IANA name such as 'Europe/Paris' or 'UTC')`);
  let cron: Cron;
  try {
    // Paused: croner only computes dates here; it runs nothing itself.
    cron = new Cron(spec.cron, { paused: true, mode: '5-or-6-parts', ...(spec.tz ? { timezone: spec.tz } : { timezone: 'UTC' }) });
  } catch (error) {
    throw new ConfigError(`${what}: invalid cron expression ${JSON.stringify(spec.cron)}: ${(error as Error).message}`, { cause: error });
  }
  const next = (after: number): number | undefined => cron.nextRun(new Date(after))?.getTime();
  const [first, second] = cron.nextRuns(2, new Date());
  if (first === undefined) throw new ConfigError(`${what}: the cron expression ${JSON.stringify(spec.cron)} is never due`);
  const periodMs = second ? second.getTime() - first.getTime() : 86_400_000;
  return { next, periodMs, interval: false, description: `cron ${spec.cron} (${spec.tz ?? 'UTC'})` };
}

/**
 * The task id of a schedule's fire at a due time: a UUID (version 5 layout) of the beat group, the schedule's name
 * and the due time, so every beat of the group derives the same id and the broker can refuse the second send of one
 * due time, while another group's schedule of the same name is another fire. `part` numbers a workflow's ids.
 */
export function fireId(schedule: string, dueMs: number, part = 0, group = 'default'): string {
  const hash = createHash('sha1').update(`fennel.beat\0${group}\0${schedule}\0${dueMs}\0${part}`).digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Due times of a timetable in (afterMs, untilMs]: how many, and the latest `keep` of them in order. Intervals are
 * counted by arithmetic; a cron is walked, at most WALK_LIMIT steps (`count` is then a lower bound).
 */
export function dueBetween(t: Timetable, afterMs: number, untilMs: number, keep: number): { count: number; latest: number[] } {
  const latest: number[] = [];
  let count = 0;
  if (untilMs <= afterMs) return { count, latest };
  for (let due = t.next(afterMs); due !== undefined && due <= untilMs && count < WALK_LIMIT; due = t.next(due)) {
    count++;
    latest.push(due);
    if (latest.length > keep) latest.shift();
    // An interval's remaining count is arithmetic: jump to the last `keep` due times.
    if (t.interval && count === 1) {
      const total = Math.floor(untilMs / t.periodMs) - Math.floor(afterMs / t.periodMs);
      const last = Math.floor(untilMs / t.periodMs) * t.periodMs;
      const kept = Math.min(keep, total);
      return { count: total, latest: Array.from({ length: kept }, (_, i) => last - (kept - 1 - i) * t.periodMs) };
    }
  }
  return { count, latest };
}

/** The most steps dueBetween walks a cron (a `* * * * * *` cron over 28 hours). */
const WALK_LIMIT = 100_000;

/** Options of a schedule: where and how its fires are sent, and what happens to missed ones. */
export interface ScheduleOptions {
  /** Queue of each fire (default: the task's route, as for delay()). Not with a workflow: set it on its signatures. */
  queue?: string;
  priority?: number;
  /** Keyword arguments (for a task a Python worker runs). */
  kwargs?: Record<string, unknown>;
  /** Seconds after it is sent that a fire no worker has started expires (REVOKED); default the schedule's period. */
  expires?: number;
  /** Missed due times (no beat led when they fell due): 'none' (default), 'last' or 'all'; see src/beat/plan.ts. */
  catchUp?: CatchUp;
}

/** A registered schedule: when, what, and how. */
export interface Schedule {
  readonly name: string;
  readonly spec: ScheduleSpec;
  readonly timetable: Timetable;
  /** The task each fire sends (a workflow's: its first task), for people. */
  readonly taskName: string;
  readonly catchUp: CatchUp;
  /** Seconds a fire may wait for a worker before it expires. */
  readonly expiresSec: number;
  /** A fresh signature dict of one fire, its ids not yet assigned (beat assigns them from the due time). */
  toDict(): SignatureDict;
}

/** What a schedule sends: a task by name with arguments, or a workflow (chain, group, chord, signature). */
export type ScheduleTarget = { task: string; args: readonly unknown[] } | { workflow: CanvasNode<unknown>; taskName: string };

export function defineSchedule(name: string, spec: ScheduleSpec, target: ScheduleTarget, options: ScheduleOptions = {}): Schedule {
  const what = `schedule '${name}'`;
  if (typeof name !== 'string' || name.length === 0) throw new ConfigError('a schedule needs a name (a non-empty string)');
  const table = timetable(name, spec);
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.includes(key)) throw new ConfigError(`${what}: unknown option '${key}'; known: ${OPTION_NAMES.join(', ')}`);
  }
  const catchUp = options.catchUp ?? 'none';
  if (!CATCH_UP_MODES.includes(catchUp)) throw new ConfigError(`${what}: catchUp must be ${CATCH_UP_MODES.map((m) => `'${m}'`).join(', ')} (got ${JSON.stringify(options.catchUp)})`);
  if (options.expires !== undefined && !(typeof options.expires === 'number' && options.expires > 0)) throw new ConfigError(`${what}: expires must be a positive number of seconds (got ${JSON.stringify(options.expires)})`);
  if (options.queue !== undefined && (typeof options.queue !== 'string' || options.queue === '')) throw new ConfigError(`${what}: queue must be a non-empty string`);
  if (options.priority !== undefined && !(Number.isInteger(options.priority) && options.priority >= 0 && options.priority <= 255)) throw new ConfigError(`${what}: priority must be an integer from 0 to 255`);
  const expiresSec = options.expires ?? table.periodMs / 1000;
  if ('workflow' in target) {
    const given = (['queue', 'priority', 'kwargs'] as const).filter((k) => options[k] !== undefined);
    if (given.length) throw new ConfigError(`${what}: ${given.join(', ')} cannot be set on a workflow's schedule; set them on its signatures (.set({ queue }))`);
    return { name, spec, timetable: table, taskName: target.taskName, catchUp, expiresSec, toDict: () => target.workflow.toJSON() };
  }
  const given: unknown = target.args;
  if (!Array.isArray(given)) throw new ConfigError(`${what}: args must be an array (got ${JSON.stringify(target.args)})`);
  const wire: SignatureDict['options'] = {};
  if (options.queue !== undefined) wire.queue = options.queue;
  if (options.priority !== undefined) wire.priority = options.priority;
  const args: unknown[] = target.args.slice();
  const kwargs = { ...options.kwargs };
  return {
    name,
    spec,
    timetable: table,
    taskName: target.task,
    catchUp,
    expiresSec,
    toDict: () => ({ task: target.task, args: args.slice(), kwargs: { ...kwargs }, options: { ...wire }, subtask_type: null, immutable: true }),
  };
}

const OPTION_NAMES: readonly string[] = ['queue', 'priority', 'kwargs', 'expires', 'catchUp'] satisfies ReadonlyArray<keyof ScheduleOptions>;
