// Celery's result layout (celery/backends/base.py): what a result backend stores for a task, and how an
// error crosses the wire as {exc_type, exc_message, exc_module} plus a traceback string.

import { RemoteTaskError } from '../errors.ts';
import { decodeJson, encodeJson, isoUtc, toJsonData } from './json.ts';
import { States, type TaskState } from './states.ts';

/** One stored outcome, field for field as Celery writes it under `celery-task-meta-<id>`. */
export interface TaskMeta {
  status: TaskState | (string & {});
  result: unknown;
  traceback: string | null;
  children: unknown[];
  date_done: string | null;
  task_id: string;
  // result_extended fields, which Fennel always writes (the dashboard and `fennel status` read them)
  name?: string | null;
  args?: unknown;
  kwargs?: unknown;
  worker?: string | null;
  retries?: number;
  queue?: string | null;
  group_id?: string | null;
  parent_id?: string | null;
}

export interface ExceptionInfo {
  exc_type: string;
  exc_message: unknown[];
  exc_module: string;
}

// Names a Python client can rebuild from `builtins`; any other JS error is reported under module `fennel`.
const PYTHON_BUILTINS = new Set(['Exception', 'TypeError', 'ValueError', 'RuntimeError', 'KeyError', 'IndexError', 'ZeroDivisionError', 'NotImplementedError', 'AssertionError', 'AttributeError', 'LookupError', 'OverflowError', 'MemoryError']);

export function exceptionInfo(name: string, message: string, module?: string): ExceptionInfo {
  const mod = module ?? (PYTHON_BUILTINS.has(name) ? 'builtins' : name === 'Error' ? 'builtins' : 'fennel');
  return { exc_type: name === 'Error' ? 'Exception' : name, exc_message: [message], exc_module: mod };
}

export function errorInfo(error: unknown): { info: ExceptionInfo; traceback: string | null } {
  if (error instanceof Error) {
    return { info: exceptionInfo(error.name || 'Error', error.message), traceback: error.stack ?? null };
  }
  return { info: exceptionInfo('Error', String(error)), traceback: null };
}

export function isExceptionInfo(value: unknown): value is ExceptionInfo {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  return typeof v['exc_type'] === 'string' && 'exc_message' in v;
}

/** The error `get()` throws for a FAILURE or REVOKED meta. */
export function remoteError(meta: TaskMeta): RemoteTaskError {
  const info = isExceptionInfo(meta.result) ? meta.result : exceptionInfo('Error', JSON.stringify(meta.result));
  const args = Array.isArray(info.exc_message) ? info.exc_message : [info.exc_message];
  const message = args.length === 1 ? String(args[0]) : args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(', ');
  return new RemoteTaskError(meta.task_id, info.exc_type, message, meta.traceback, info.exc_module, meta.status);
}

export function nowIso(): string {
  return isoUtc(new Date());
}

/**
 * The JSON of a result as the pool slot encoded it, by meta (withResultJson). V8's JSON.stringify writes a long string
 * at about 5 ns a character on Node 20 (33 ms for a 6.7 MB string, 260 ms for 53 MB), so encoding a large result a
 * second time, to store it, cost as much as the first: encodeMeta splices in the slot's text instead.
 */
const resultTexts = new WeakMap<TaskMeta, string>();

/** Marks `meta.result` as already encoded to `resultJson` (encodeJson's text of the same value): encodeMeta reuses it. */
export function withResultJson(meta: TaskMeta, resultJson: string): TaskMeta {
  resultTexts.set(meta, resultJson);
  return meta;
}

/**
 * Stands in for the result while the rest of the meta is encoded. The result is a meta's second field, after its
 * status (a state's name), so the placeholder's first occurrence is the result's even if a later field (the task's
 * args) holds the same text.
 */
const RESULT_PLACEHOLDER = '\u0000fennel:result\u0000';
const RESULT_PLACEHOLDER_JSON = JSON.stringify(RESULT_PLACEHOLDER);

/** Encodes a meta as JSON text. The `result` may be user data, so it goes through the tagging codec. */
export function encodeMeta(meta: TaskMeta): string {
  const resultJson = resultTexts.get(meta);
  if (resultJson !== undefined) {
    const text = encodeJson({ ...meta, result: RESULT_PLACEHOLDER }, 'meta');
    const at = text.indexOf(RESULT_PLACEHOLDER_JSON);
    return text.slice(0, at) + resultJson + text.slice(at + RESULT_PLACEHOLDER_JSON.length);
  }
  return encodeJson({ ...meta, result: toJsonData(meta.result, 'result') }, 'meta');
}

export function decodeMeta(text: string): TaskMeta {
  return decodeJson(text) as TaskMeta;
}

export function pendingMeta(taskId: string): TaskMeta {
  return { status: States.PENDING, result: null, traceback: null, children: [], date_done: null, task_id: taskId };
}

/** A REVOKED meta as Celery stores it: `TaskRevokedError` with the reason ('revoked', 'terminated', 'expired'). */
export function revokedMeta(taskId: string, reason: string): TaskMeta {
  return {
    status: States.REVOKED,
    result: { exc_type: 'TaskRevokedError', exc_message: [reason], exc_module: 'celery.exceptions' },
    traceback: null,
    children: [],
    date_done: nowIso(),
    task_id: taskId,
  };
}
