// Task and call options, checked where they are given: an unknown option, a negative limit, an eta that does
// not parse or a rate limit that does not match names the option and the forms it accepts, at the call
// (Celery accepts most of these silently and fails later in the worker, or never).

import { ConfigError } from '../errors.ts';
import { suggest } from './suggest.ts';
import type { CallOptions, TaskOptions } from './task.ts';

type Check = (value: unknown) => string | undefined;

const positive: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? undefined : 'a positive number');
const nonNegative: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? undefined : 'a number ≥ 0');
const count: Check = (v) => (Number.isInteger(v) && (v as number) >= 0 ? undefined : 'an integer ≥ 0');
const priority: Check = (v) => (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 255 ? undefined : 'an integer from 0 to 255');
const bool: Check = (v) => (typeof v === 'boolean' ? undefined : 'true or false');
const name: Check = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'a non-empty string');
const anything: Check = () => undefined;
const time: Check = (v) => (toDate(v) ? undefined : 'a Date or an ISO 8601 string with a time zone (2026-11-26T12:00:00Z)');
const expiresCheck: Check = (v) => (typeof v === 'number' ? positive(v) && 'a positive number of seconds, a Date or an ISO 8601 string' : time(v));
const rate: Check = (v) => (typeof v === 'string' && parseRateLimit(v) ? undefined : "a rate such as '100/s', '10/m' or '1/h'");
const errorList: Check = (v) =>
  Array.isArray(v) && v.every((e) => typeof e === 'string' || typeof e === 'function') ? undefined : 'an array of error classes or error names';
const backoff: Check = (v) => {
  if (typeof v === 'boolean') return undefined;
  const bad = 'true, false or { baseMs, maxMs, jitter }';
  if (v === null || typeof v !== 'object') return bad;
  const o = v as Record<string, unknown>;
  if (Object.keys(o).some((k) => !['baseMs', 'maxMs', 'jitter'].includes(k))) return bad;
  if (o['baseMs'] !== undefined && positive(o['baseMs'])) return `${bad} with baseMs a positive number`;
  if (o['maxMs'] !== undefined && positive(o['maxMs'])) return `${bad} with maxMs a positive number`;
  if (o['jitter'] !== undefined && bool(o['jitter'])) return `${bad} with jitter true or false`;
  return undefined;
};

const TASK_CHECKS: Record<keyof TaskOptions, Check> = {
  queue: name,
  priority,
  maxRetries: count,
  retryBackoff: backoff,
  autoRetryFor: errorList,
  rateLimit: rate,
  timeLimitMs: positive,
  softTimeLimitMs: positive,
  timeLimitSec: positive,
  softTimeLimitSec: positive,
  ignoreResult: bool,
  broadcast: bool,
  expose: bool,
  schema: anything,
  cache: anything, // checked by memoOf (src/app/memo.ts), which reads it
};

const CALL_CHECKS: Record<keyof CallOptions, Check> = {
  queue: name,
  countdown: nonNegative,
  eta: time,
  expires: expiresCheck,
  priority,
  taskId: name,
  deduplicate: (v) => (typeof v === 'boolean' || (v !== null && typeof v === 'object' && Object.keys(v).length === 1 && typeof (v as { ttlSec?: unknown }).ttlSec === 'number' && Number.isFinite((v as { ttlSec: number }).ttlSec) && (v as { ttlSec: number }).ttlSec > 0) ? undefined : 'true, false or { ttlSec: a positive number }'),
  ignoreResult: bool,
  timeLimitMs: positive,
  softTimeLimitMs: positive,
  timeLimitSec: positive,
  softTimeLimitSec: positive,
  kwargs: (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? undefined : 'an object'),
  worker: name,
  broadcast: bool,
};

function check(what: string, given: object, checks: Record<string, Check>): void {
  for (const [key, value] of Object.entries(given)) {
    const test = checks[key];
    if (!test) {
      const hint = suggest(key, Object.keys(checks));
      throw new ConfigError(`${what}: unknown option '${key}'${hint ? ` — did you mean '${hint}'?` : ''}; known: ${Object.keys(checks).join(', ')}`);
    }
    if (value === undefined) continue;
    const expected = test(value);
    if (expected) throw new ConfigError(`${what}: option '${key}' must be ${expected} (got ${describe(value)})`);
  }
}

function describe(value: unknown): string {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (typeof value === 'function') return `function ${value.name}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export function checkTaskOptions(taskName: string, options: TaskOptions): void {
  check(`task '${taskName}'`, options, TASK_CHECKS);
}

export function checkCallOptions(taskName: string, options: CallOptions): void {
  check(`call of '${taskName}'`, options, CALL_CHECKS);
  if (options.deduplicate && !options.taskId) throw new ConfigError(`call of '${taskName}': deduplicate needs a taskId (the id that makes two calls the same)`);
  if (options.eta !== undefined && options.countdown !== undefined) throw new ConfigError(`call of '${taskName}': give eta or countdown, not both`);
  if (options.worker !== undefined && options.queue !== undefined) throw new ConfigError(`call of '${taskName}': give worker or queue, not both (a worker's own queue is <worker>.dq2)`);
  if (options.worker !== undefined && options.broadcast) throw new ConfigError(`call of '${taskName}': give worker or broadcast, not both`);
  if (options.broadcast && options.deduplicate) throw new ConfigError(`call of '${taskName}': a broadcast cannot be deduplicated (each worker gets its own copy)`);
}

/** A Date from a Date or an ISO 8601 string with a zone; undefined if it does not parse. */
export function toDate(value: unknown): Date | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value;
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(value)) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** Celery's rate-limit syntax: `N/s`, `N/m`, `N/h` (or a bare N, per second) → tasks per millisecond. */
export function parseRateLimit(text: string): { perMs: number } | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*([smh]))?\s*$/.exec(text);
  if (!match) return undefined;
  const n = Number(match[1]);
  if (!(n > 0)) return undefined;
  const unitMs = { s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 's') as 's' | 'm' | 'h'];
  return { perMs: n / unitMs };
}

/** The hard and soft limits of a call in seconds (the `timelimit` header's unit): ms options win over seconds. */
export function timeLimits(call: CallOptions, task: TaskOptions): { hard: number | null; soft: number | null } {
  return {
    hard: inSeconds(call.timeLimitMs, call.timeLimitSec) ?? inSeconds(task.timeLimitMs, task.timeLimitSec) ?? null,
    soft: inSeconds(call.softTimeLimitMs, call.softTimeLimitSec) ?? inSeconds(task.softTimeLimitMs, task.softTimeLimitSec) ?? null,
  };
}

function inSeconds(ms: number | undefined, sec: number | undefined): number | undefined {
  return ms !== undefined ? ms / 1000 : sec;
}

/** The countdown before retry number `retries + 1` under a backoff policy: base·2^retries, capped, with full jitter. */
export function backoffMs(policy: TaskOptions['retryBackoff'], retries: number, random = Math.random): number {
  if (!policy) return 0;
  const { baseMs = 1000, maxMs = 600_000, jitter = true } = policy === true ? {} : policy;
  const ceiling = Math.min(maxMs, baseMs * 2 ** retries);
  return jitter ? Math.round(random() * ceiling) : ceiling;
}
