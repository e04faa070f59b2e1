// The worker's side of object references (src/app/refs.ts): a call that takes results as arguments reaches a
// worker only once they are all stored (its inputs released it). Just before it runs, each ResultRef among its
// arguments and keyword arguments is replaced by that result, read from the result backend: one read per input,
// by the worker that needs it, so the data never passes through the caller. An input whose result is gone (it
// expired with the results, `resultExpiresSec`) or did not succeed fails the call with DependencyError rather
// than running it with a hole in its arguments.

import type { Fennel } from '../app/fennel.ts';
import { ResultRef } from '../protocol/json.ts';
import type { TaskRequest } from '../protocol/message.ts';
import { States } from '../protocol/states.ts';
import type { Outcome } from './pools/pool.ts';

/** True if the call takes results as arguments (one instanceof per argument: nearly every call has none). */
export function takesRefs(request: TaskRequest): boolean {
  for (const arg of request.args) if (arg instanceof ResultRef) return true;
  for (const key in request.kwargs) if (request.kwargs[key] instanceof ResultRef) return true;
  return false;
}

/** The call's arguments with each reference replaced by its result (kwargs too, in place), or the failure. */
export async function withResults(app: Fennel, request: TaskRequest): Promise<unknown[] | Outcome> {
  const ids = new Set<string>();
  for (const arg of request.args) if (arg instanceof ResultRef) ids.add(arg.taskId);
  for (const key in request.kwargs) {
    const value = request.kwargs[key];
    if (value instanceof ResultRef) ids.add(value.taskId);
  }
  const results = new Map<string, unknown>();
  // All at once: one round trip's wait for a fan-in of 1,000 rather than 1,000 in a row (Redis pipelines them).
  const list = [...ids];
  const metas = await Promise.all(list.map((id) => app.backend.get(id)));
  for (const [i, id] of list.entries()) {
    const meta = metas[i];
    if (!meta) return dependencyError(`the result of input ${id} is not in the result backend ${app.backend.url}: it expired (resultExpiresSec), or was forgotten`);
    if (meta.status !== States.SUCCESS) return dependencyError(`input ${id} is ${meta.status}, not SUCCESS`);
    results.set(id, meta.result);
  }
  const resolve = (value: unknown): unknown => (value instanceof ResultRef ? results.get(value.taskId) : value);
  for (const key in request.kwargs) request.kwargs[key] = resolve(request.kwargs[key]);
  return request.args.map(resolve);
}

function dependencyError(message: string): Outcome {
  return { kind: 'failure', error: { name: 'DependencyError', message, stack: null } };
}
