// Parked calls (object references, docs/refs.md) on JetStream key-value, in the results bucket (they expire with
// the results). Two keys, each changed only by compare-and-set (cas.ts):
//
//   parked.<call id>   {"call": …, "waits": [inputs not yet counted], "by": input | null, "status": …, "atPark": bool}
//   meta.<input>       the input's meta, followed by the ids of the calls parked on it (keys.ts withDependents);
//                      a call parked on an input that has stored nothing yet writes a PENDING meta to hold its id
//
// No lost release, on one key: park adds its id to the input's value unless that value is an outcome already, and
// settle replaces the value with the outcome, keeping the ids; both by compare-and-set on meta.<input>, so one of
// them comes second and sees the other: park sees the outcome (and counts the input itself), or settle sees the id
// (and counts it). Both may count an input (park read it done through stateOf, then settle stored it again); the
// compare-and-set on `parked.<id>` lets an input leave `waits` once, and the change that empties `waits` (or counts
// a failed input) sets `by` once. That change is the release, so a call is released exactly once.
//
// So settle reads nothing: its store is one write, which returns the ids it kept (nearly always none: the first
// attempt names no revision, and succeeds unless someone wrote the key). An earlier layout kept the ids under a key
// of their own, which settle then read after every outcome: a round trip and the server's work per task.
//
// A call released by park itself (its inputs were done) is the producer's to send (`ready`) or to fail: settle
// never hands it back, as Redis and SQLite park nothing then.

import type { ParkOutcome, ReleasedCall } from '../backend.ts';
import { encodeMeta, pendingMeta, type TaskMeta } from '../../protocol/result.ts';
import { isReady, States } from '../../protocol/states.ts';
import type { CasKeys, Step } from './cas.ts';
import { dependentsOf, metaPart, resultKeys, statusOf, withDependents } from './keys.ts';

interface ParkedCall {
  call: string;
  waits: string[];
  by: string | null;
  status: string | null;
  atPark: boolean;
}

/** A call released by a change of its record: by whom, with which state, and whether it was released so before. */
interface Release {
  input: string;
  status: string;
  call: string;
  again: boolean;
}

interface Outcome {
  input: string;
  status: string;
}

export interface RefsStore {
  /** The results bucket's keys. */
  readonly keys: CasKeys;
  /** A task's state as stored (its meta's, or a pinned object's), undefined if none. */
  stateOf(taskId: string): Promise<string | undefined>;
  /**
   * Stores a meta as `store` does; resolves with the state that stands (a SUCCESS stored before stays) and the calls
   * parked on the task.
   */
  storeMeta(meta: TaskMeta): Promise<{ status: string; dependents: string[] }>;
}

function parseCall(text: string): ParkedCall {
  const doc = JSON.parse(text) as ParkedCall;
  if (typeof doc.call !== 'string' || !Array.isArray(doc.waits)) throw new Error(`a parked call is not {call, waits, by, status}: ${text.slice(0, 200)}`);
  return doc;
}

/**
 * Counts `outcomes` (inputs now done) against a parked call, in order: an input leaves `waits` once; the release is
 * the first failed input, or the input that empties `waits`. An input that released the call before (its outcome
 * stored again) gets it back marked `again`, unless park released it.
 */
function count(current: string | undefined, outcomes: readonly Outcome[], atPark: boolean): Step<Release | undefined> {
  if (current === undefined) return { result: undefined }; // expired with the results
  const parked = parseCall(current);
  if (parked.by !== null) {
    const repeat = !atPark && !parked.atPark && outcomes.length === 1 && outcomes[0]!.input === parked.by;
    return { result: repeat ? { input: parked.by, status: parked.status!, call: parked.call, again: true } : undefined };
  }
  let waits = parked.waits;
  let released: Outcome | undefined;
  for (const outcome of outcomes) {
    if (!waits.includes(outcome.input)) continue;
    waits = waits.filter((input) => input !== outcome.input);
    if (outcome.status !== States.SUCCESS || waits.length === 0) {
      released = outcome;
      break;
    }
  }
  if (waits.length === parked.waits.length) return { result: undefined };
  const next: ParkedCall = released ? { ...parked, waits, by: released.input, status: released.status, atPark } : { ...parked, waits };
  return { next: JSON.stringify(next), result: released ? { ...released, call: parked.call, again: false } : undefined };
}

export async function park(store: RefsStore, taskId: string, inputs: readonly string[], callJson: string): Promise<ParkOutcome> {
  const key = resultKeys.parked(taskId);
  const fresh: ParkedCall = { call: callJson, waits: [...new Set(inputs)], by: null, status: null, atPark: false };
  // Parked before (a producer that retried): carried on from where it stands, every step below being idempotent.
  const parked = await store.keys.change(key, (current) => (current === undefined ? { next: JSON.stringify(fresh), result: fresh } : { result: parseCall(current) }));
  if (parked.by !== null) return parked.atPark ? outcomeOf(parked.by, parked.status!) : { ready: false };
  const states = await Promise.all(parked.waits.map((input) => listOn(store, input, taskId)));
  const done = parked.waits.flatMap((input, i) => (states[i] !== undefined ? [{ input, status: states[i] }] : []));
  if (done.length === 0) return { ready: false };
  const release = await store.keys.change(key, (current) => count(current, done, true));
  return release ? outcomeOf(release.input, release.status) : { ready: false };
}

/**
 * Adds `taskId` to the calls parked on `input`, unless the input is done: resolves with its state then, else with
 * undefined. A pinned object (app.put) whose marker expired is read first: done, and never written over.
 */
async function listOn(store: RefsStore, input: string, taskId: string): Promise<string | undefined> {
  const now = await store.stateOf(input);
  if (now !== undefined && isReady(now)) return now;
  return store.keys.change(resultKeys.meta(input), (current) => {
    const status = statusOf(current);
    if (status !== undefined && isReady(status)) return { result: status };
    const ids = dependentsOf(current);
    if (ids.includes(taskId)) return { result: undefined };
    return { next: withDependents(current === undefined ? encodeMeta(pendingMeta(input)) : metaPart(current), [...ids, taskId]), result: undefined };
  });
}

function outcomeOf(input: string, status: string): ParkOutcome {
  return status === States.SUCCESS ? { ready: true } : { ready: false, failed: { input, status } };
}

export async function settle(store: RefsStore, meta: TaskMeta): Promise<ReleasedCall[]> {
  const input = meta.task_id;
  const { status, dependents } = await store.storeMeta(meta);
  if (!isReady(status) || dependents.length === 0) return [];
  const releases = await Promise.all(dependents.map((taskId) => store.keys.change(resultKeys.parked(taskId), (current) => count(current, [{ input, status }], false))));
  return releases.flatMap((release, i) => (release ? [{ taskId: dependents[i]!, callJson: release.call, input, status: release.status, again: release.again }] : []));
}
