// What the gateway says about a task, over HTTP and the WebSocket alike: one JSON shape built from Celery's
// stored result layout (status, result, traceback, result_extended fields).

import { RemoteTaskError, type TaskMeta } from '../index.ts';

export interface TaskError {
  type: string;
  message: string;
  module: string;
  traceback: string | null;
}

export interface TaskView {
  id: string;
  state: string;
  name?: string;
  /** The return value, once SUCCESS. */
  result?: unknown;
  /** Why, once FAILURE or REVOKED. */
  error?: TaskError;
  /** What a STARTED or PROGRESS state carries (`ctx.progress(meta)`). */
  progress?: unknown;
  worker?: string;
  dateDone?: string;
}

/** Celery stores an error as {exc_type, exc_message: [args], exc_module}; anything else is shown as it is. */
function errorOf(meta: TaskMeta): TaskError {
  const info = meta.result as { exc_type?: unknown; exc_message?: unknown; exc_module?: unknown } | null;
  if (info && typeof info === 'object' && typeof info.exc_type === 'string') {
    const args = Array.isArray(info.exc_message) ? info.exc_message : [info.exc_message];
    const message = args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(', ');
    return { type: info.exc_type, message, module: typeof info.exc_module === 'string' ? info.exc_module : '', traceback: meta.traceback };
  }
  return { type: 'Error', message: JSON.stringify(meta.result), module: '', traceback: meta.traceback };
}

export function viewOfMeta(meta: TaskMeta): TaskView {
  const view: TaskView = { id: meta.task_id, state: meta.status };
  if (meta.name) view.name = meta.name;
  if (meta.worker) view.worker = meta.worker;
  if (meta.date_done) view.dateDone = meta.date_done;
  if (meta.status === 'SUCCESS') view.result = meta.result;
  else if (meta.status === 'FAILURE' || meta.status === 'REVOKED') view.error = errorOf(meta);
  else if (meta.result !== null && meta.result !== undefined) view.progress = meta.result;
  return view;
}

/** The view of a task whose get() settled: its value, or the RemoteTaskError it threw. */
export function viewOfOutcome(id: string, outcome: { ok: true; value: unknown } | { ok: false; error: unknown }): TaskView | undefined {
  if (outcome.ok) return { id, state: 'SUCCESS', result: outcome.value };
  const error = outcome.error;
  if (error instanceof RemoteTaskError) {
    return { id, state: error.state, error: { type: error.remoteName, message: error.remoteMessage, module: error.remoteModule, traceback: error.remoteStack } };
  }
  return undefined; // aborted, or the store could not be read: not an outcome
}

/** JSON text that never throws: BigInt becomes a string, a cycle becomes "[Circular]". */
export function safeStringify(value: unknown): string {
  const seen = new WeakSet<object>();
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (v !== null && typeof v === 'object') {
      if (seen.has(v)) return '[Circular]';
      seen.add(v);
    }
    return v;
  });
}
