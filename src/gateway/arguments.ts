// The arguments of a submission, checked against the task's schema. The rule: the schema checks the argument
// list the task function will be called with. A Fennel worker calls `fn(...args)`, or `fn(...args, kwargs)`
// when kwargs is a non-empty object (Celery kwargs arrive as one trailing object: src/worker/run-job.ts), so
// that list is what the schema sees. A tuple schema with no place for a trailing object therefore refuses
// kwargs, instead of the function receiving an argument it never declared.
// A schema that is a z.object describes one object argument: a task that takes its arguments by name. It is
// read as z.tuple([schema]), so `{"kwargs": {…}}` and `{"args": [{…}]}` are the same call to it.
// A task without a schema takes what it is sent: the gateway has nothing to check it against.

import type { z, ZodType } from 'zod';

export type CheckedArguments = { ok: true; args: unknown[]; kwargs?: Record<string, unknown> } | { ok: false; reason: string };

/** "args.1: Expected number, received string; kwargs.name: …"; `label` names where each issue is. */
export function reasons(error: z.ZodError, label: (path: PropertyKey[]) => string = (path) => path.map(String).join('.')): string {
  return error.issues.map((i) => `${label(i.path) || '(body)'}: ${i.message}`).join('; ');
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

export function checkArguments(schema: ZodType | undefined, args: unknown[], kwargs: Record<string, unknown> | undefined): CheckedArguments {
  // An empty kwargs object is no kwargs: the worker calls the function without it.
  const named = kwargs && Object.keys(kwargs).length > 0 ? kwargs : undefined;
  if (!schema) return { ok: true, args, ...(named ? { kwargs: named } : {}) };
  const list = named ? [...args, named] : args;
  // A path into the list names the field of the body it came from: args.<i>, or kwargs for the trailing object.
  const where = (index: PropertyKey | undefined): string => (index === undefined ? 'args' : named && index === args.length ? 'kwargs' : `args.${String(index)}`);
  const inList = (path: PropertyKey[]): string => [where(path[0]), ...path.slice(1).map(String)].join('.');

  if (schema.type === 'object') {
    if (list.length !== 1) {
      return { ok: false, reason: `${list.length === 0 ? 'kwargs: required' : 'args: not accepted'}: this task takes its arguments by name, as one object (send {"kwargs": {…}} and no args)` };
    }
    const checked = schema.safeParse(list[0]);
    if (!checked.success) return { ok: false, reason: reasons(checked.error, (path) => inList([0, ...path])) };
    return named ? { ok: true, args: [], kwargs: checked.data as Record<string, unknown> } : { ok: true, args: [checked.data] };
  }

  const checked = schema.safeParse(list);
  if (!checked.success) {
    // Only the list's length is wrong, and the positional arguments alone would do: the kwargs are the problem.
    if (named && checked.error.issues.every((i) => i.path.length === 0) && schema.safeParse(args).success) {
      return { ok: false, reason: 'kwargs: not accepted: this task takes positional arguments only (send them in args)' };
    }
    return { ok: false, reason: reasons(checked.error, inList) };
  }
  // The schema's output replaces the arguments (a schema may coerce); an output that is not a list leaves them as sent.
  const out: unknown = checked.data;
  if (!Array.isArray(out)) return { ok: true, args, ...(named ? { kwargs: named } : {}) };
  const last: unknown = out.at(-1);
  if (named && out.length === list.length && isPlainObject(last)) return { ok: true, args: out.slice(0, -1), kwargs: last };
  // A transform that changed the trailing object's place: the whole list as args is the same call to a worker.
  return { ok: true, args: out };
}
