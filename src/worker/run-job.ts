// Runs one job against an app's registry, inside a task context, and turns whatever happens into an
// Outcome. Shared by the async pool (in the worker process) and by process/thread slots (in children).

import { makeContext, runInContext } from '../app/context.ts';
import type { RegisteredTask } from '../app/task.ts';
import type { Reject, Retry } from '../errors.ts';
import { encodeJson } from '../protocol/json.ts';
import type { ErrorReport, Job, Outcome } from './pools/pool.ts';

export function errorReport(error: unknown): ErrorReport {
  if (error instanceof Error) return { name: error.name || 'Error', message: error.message, stack: error.stack ?? null };
  return { name: 'Error', message: typeof error === 'string' ? error : safeText(error), stack: null };
}

function safeText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** True if `error` is an instance of one of the classes, or its name is one of the names. */
function retriesFor(list: TaskOptionsList | undefined, error: unknown): boolean {
  if (!list?.length || error === null || typeof error !== 'object') return false;
  const name = (error as { name?: unknown }).name;
  return list.some((entry) => (typeof entry === 'string' ? entry === name : error instanceof entry));
}

type TaskOptionsList = RegisteredTask['options']['autoRetryFor'];

/** Celery kwargs reach a Fennel task as one trailing object argument (docs/protocol.md). */
export function callArguments(job: Pick<Job, 'args' | 'kwargs'>): unknown[] {
  return Object.keys(job.kwargs).length > 0 ? [...job.args, job.kwargs] : job.args;
}

/**
 * Runs the job's function in its task context. A function that returns a plain value (most short tasks)
 * gets its outcome back at once, not as a promise: the async pool then settles the job without the extra
 * promises and turns an `await` would cost it. Callers that want a promise wrap it (`Promise.resolve`).
 */
export function runJob(
  registry: ReadonlyMap<string, RegisteredTask>,
  job: Job,
  signal: () => AbortSignal,
  onProgress: (metaJson: string) => void,
): Outcome | Promise<Outcome> {
  const task = registry.get(job.name);
  if (!task) return { kind: 'failure', error: { name: 'NotRegistered', message: job.name, stack: null } };
  const context = makeContext({
    id: job.id,
    name: job.name,
    retries: job.retries,
    queue: job.queue,
    signal,
    progress: async (meta) => onProgress(encodeJson(meta, 'progress meta')),
  });
  let value: unknown;
  try {
    value = runInContext(context, task.fn, ...callArguments(job));
  } catch (error) {
    return thrown(task, error);
  }
  if (isThenable(value)) return Promise.resolve(value).then(succeeded, (error: unknown) => thrown(task, error));
  return succeeded(value);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

function succeeded(value: unknown): Outcome {
  try {
    // A task that returns nothing stores null, as a Python task returning None does.
    return { kind: 'success', resultJson: value === undefined ? 'null' : encodeJson(value, 'result') };
  } catch (error) {
    return { kind: 'failure', error: errorReport(error) };
  }
}

/** The outcome of a task that threw (or whose promise rejected). */
function thrown(task: RegisteredTask, error: unknown): Outcome {
  // Codes, not instanceof: the app may have imported another copy of Fennel (dist/ beside src/).
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'FENNEL_RETRY') {
    const retry = error as Retry;
    return {
      kind: 'retry',
      countdownSec: retry.countdownSec,
      reason: retry.reason === undefined ? null : retry.reason instanceof Error ? retry.reason.message : safeText(retry.reason),
      error: retry.error === undefined ? null : errorReport(retry.error),
    };
  }
  if (code === 'FENNEL_REJECT') return { kind: 'reject', reason: (error as Reject).reason };
  // autoRetryFor is matched here, where the error object still exists (a slot sends only its report).
  if (retriesFor(task.options.autoRetryFor, error)) {
    const report = errorReport(error);
    return { kind: 'retry', countdownSec: null, reason: `${report.name}: ${report.message}`, error: report };
  }
  return { kind: 'failure', error: errorReport(error) };
}
