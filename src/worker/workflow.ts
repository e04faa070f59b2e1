// What a worker does after a task of a workflow has finished, before it acknowledges the task's message:
// sends the next chain step, the callbacks, or records the chord member in the backend's join and, if it
// completed the join, sends the chord callback with every result. On failure: the errbacks, and the
// chain's and chord's results fail with the task's error (a failed step stops its chain; Celery marks the
// rest failed the same way). Everything sent here is in the broker before the message is acknowledged, so
// a worker killed at any point repeats this step rather than losing it (src/app/canvas.ts explains why a
// repeat does not send a chord callback twice).
//
// A chord callback that a Fennel worker will run gets its results by reference: the join keeps them in the
// result backend, the message carries a ChordResults (group id and size), and the worker that runs the
// callback reads them back (jobArgs) just before running it. The results (megabytes, for a mergesort) are
// then written to the backend once and read once, instead of being read back by the joining worker,
// encoded into a message, pushed through the broker and decoded again. Only when every task given the
// results is registered in this worker's app: a callback that a Celery worker may run carries them inline.
// A chord started by a Celery producer (its members' messages carry no chord size: the size is in the result
// backend, Celery's `.s` on Redis) is joined in the same place, and its callback gets its results inline, as a
// Celery worker would send them.

import { applyStep, firstTaskId, normaliseChain, resultTaskIds, tasksGivenResult, type SignatureDict } from '../app/canvas.ts';
import type { ChordMemberFailure } from '../backends/backend.ts';
import type { Fennel } from '../app/fennel.ts';
import { storeOutcome } from '../app/refs.ts';
import { ChordResults, decodeJson } from '../protocol/json.ts';
import type { TaskRequest } from '../protocol/message.ts';
import { exceptionInfo, isExceptionInfo, nowIso, type ExceptionInfo } from '../protocol/result.ts';
import { States } from '../protocol/states.ts';
import type { Delivery } from '../transports/transport.ts';
import type { Outcome } from './pools/pool.ts';
import { takesRefs, withResults } from './refs.ts';

/** The built-in task behind `chunks()`: a worker runs it like any task; the banner leaves it out. */
export { STARMAP_TASK } from '../app/canvas.ts';

/** True if the message is part of a workflow (there is something to do after it). */
export function inWorkflow(request: TaskRequest): boolean {
  const { embed } = request;
  return Boolean(embed.chain?.length || embed.callbacks?.length || embed.errbacks?.length || embed.chord);
}

export async function continueWorkflow(app: Fennel, request: TaskRequest, delivery: Delivery, resultJson: string): Promise<void> {
  const { embed } = request;
  const chain = (embed.chain ?? []) as SignatureDict[];
  const callbacks = (embed.callbacks ?? []) as SignatureDict[];
  // Decoded only for the steps that take it as an argument: a chord's join takes the text as it is.
  const result = callbacks.length || chain.length ? decodeJson(resultJson) : undefined;
  const sends: Array<Promise<void>> = [];
  const lineage = { parentId: request.id, rootId: request.rootId };
  for (const callback of callbacks) applyStep(app, callback, { prepend: [result], ...lineage }, sends);
  if (chain.length) {
    // Celery's order: the next step is the last element; the rest run after it, in reverse.
    const next = chain[chain.length - 1]!;
    applyStep(app, next, { prepend: [result], rest: chain.slice(0, -1).reverse(), ...lineage }, sends);
  } else if (embed.chord && request.group !== null && request.groupIndex !== null) {
    await joinChord(app, request, delivery, embed.chord as SignatureDict, resultJson, sends);
  }
  await Promise.all(sends);
}

async function joinChord(app: Fennel, request: TaskRequest, delivery: Delivery, body: SignatureDict, resultJson: string, sends: Array<Promise<void>>): Promise<void> {
  const backend = app.backend;
  if (!backend.chordJoin) throw new Error(`chord ${request.group}: the result backend ${backend.url} has no join (chords need redis:// or sqlite:// results)`);
  // 0: the message does not say (Celery's producer keeps the size in the backend only).
  const size = body.chord_size ?? 0;
  const { chord_size: _size, ...callback } = body;
  const byReference = size > 0 && backend.chordResults !== undefined && tasksGivenResult(callback).every((name) => app.registry.has(name));
  const join = await backend.chordJoin(request.group!, request.groupIndex!, size, resultJson, !byReference, request.id);
  if (!join.complete) return;
  // The completing member sends the callback. A member delivered again (its worker may have died between
  // the join and the send) sends it too, unless the callback has started: on brokers with deduplication
  // the send is dropped while the first is pending; after that its stored state shows it.
  if (!join.first && !delivery.redelivered) return;
  const entry = firstTaskId(body);
  if (!join.first && entry && (await backend.get(entry))) return;
  // A member that a Celery worker recorded as failed fails the chord, as Celery's join would.
  if (join.failed) return failChord(app, request, body, request.group!, dependencyMessage(join.failed), null, sends);
  const results = byReference ? new ChordResults(request.group!, size) : join.results;
  applyStep(app, callback, { prepend: [results], parentId: request.id, rootId: request.rootId, once: true }, sends);
}

/** Celery's ChordError text for a member its worker recorded as failed: `Dependency <id> raised ValueError('boom', 42)`. */
export function dependencyMessage(failed: ChordMemberFailure): string {
  const info = isExceptionInfo(failed.result) ? failed.result : undefined;
  if (!info) return `Dependency ${failed.taskId} raised ${failed.status}`;
  const args = Array.isArray(info.exc_message) ? info.exc_message : [info.exc_message];
  return `Dependency ${failed.taskId} raised ${info.exc_type}(${args.map(pythonRepr).join(', ')})`;
}

function pythonRepr(value: unknown): string {
  if (typeof value === 'string') return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/**
 * The arguments a task runs with: its message's, with chord results sent by reference read back from the
 * result backend. If they are gone (expired with the results), the task fails with Celery's ChordError
 * rather than running without them.
 */
export function jobArgs(app: Fennel, request: TaskRequest): unknown[] | Promise<unknown[] | Outcome> {
  const ref = request.args[0];
  if (ref instanceof ChordResults) return withChordResults(app, request, ref);
  // Synchronous for every other task: no promise on the hot path.
  return takesRefs(request) ? withResults(app, request) : request.args;
}

async function withChordResults(app: Fennel, request: TaskRequest, ref: ChordResults): Promise<unknown[] | Outcome> {
  const results = await app.backend.chordResults?.(ref.groupId, ref.size);
  if (!results) return { kind: 'failure', error: { name: 'ChordError', message: `the results of chord ${ref.groupId} are no longer in the result backend ${app.backend.url}`, stack: null } };
  // A member of the chord ran on a Celery worker and failed: the callback fails as Celery's join would fail it.
  if (!Array.isArray(results)) return { kind: 'failure', error: { name: 'ChordError', message: dependencyMessage(results.failed), stack: null } };
  return [results, ...request.args.slice(1)];
}

/** After a task of a workflow failed (its FAILURE is stored): errbacks, and the failure of what depended on it. */
export async function failWorkflow(app: Fennel, request: TaskRequest, info: ExceptionInfo, traceback: string | null): Promise<void> {
  const { embed } = request;
  const sends: Array<Promise<void>> = [];
  for (const errback of (embed.errbacks ?? []) as SignatureDict[]) applyStep(app, errback, { prepend: [request.id], parentId: request.id, rootId: request.rootId }, sends);
  const rest = ((embed.chain ?? []) as SignatureDict[]).slice().reverse();
  // The rest of the chain never runs: its results (the chain's result among them) fail with this error.
  const dependents = normaliseChain(rest).flatMap((step) => resultTaskIds(step));
  for (const id of dependents) await storeFailure(app, id, info, traceback);
  // A chord this task (or its chain) reports to fails once, with Celery's ChordError, and runs its errbacks.
  const body = (embed.chord as SignatureDict | null) ?? (rest.length ? (rest[rest.length - 1]!.options.chord ?? null) : null);
  const groupId = embed.chord ? request.group : (rest[rest.length - 1]?.options.group_id ?? null);
  if (body && groupId) await failChord(app, request, body, groupId, `Dependency ${request.id} raised ${info.exc_type}: ${exceptionText(info)}`, traceback, sends);
  await Promise.all(sends);
}

/** Fails a chord's callback once (a once-only marker in the backend) with Celery's ChordError, and runs its errbacks. */
async function failChord(app: Fennel, request: TaskRequest, body: SignatureDict, groupId: string, message: string, traceback: string | null, sends: Array<Promise<void>>): Promise<void> {
  if (!app.backend.claimOnce || !(await app.backend.claimOnce(`chord-failed-${groupId}`))) return;
  const chordInfo = exceptionInfo('ChordError', message, 'celery.exceptions');
  for (const id of resultTaskIds(body)) await storeFailure(app, id, chordInfo, traceback);
  for (const errback of body.options.link_error ?? []) applyStep(app, errback, { prepend: [request.id], parentId: request.id, rootId: request.rootId }, sends);
}

async function storeFailure(app: Fennel, taskId: string, info: ExceptionInfo, traceback: string | null): Promise<void> {
  // Through storeOutcome: a call that takes this result as an argument fails in turn.
  await storeOutcome(app, { status: States.FAILURE, result: info, traceback, children: [], date_done: nowIso(), task_id: taskId }, false);
}

function exceptionText(info: ExceptionInfo): string {
  const first = Array.isArray(info.exc_message) ? info.exc_message[0] : info.exc_message;
  return typeof first === 'string' ? first : JSON.stringify(first ?? '');
}
