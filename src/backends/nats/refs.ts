// Parked calls (object references, docs/refs.md) on JetStream key-value, in the results bucket (they expire with
// the results). Two keys per call and input, each changed only by compare-and-set (cas.ts):
//
//   parked.<call id>      {"call": …, "waits": [inputs not yet counted], "by": input | null, "status": …, "atPark": bool}
//   dependents.<input>    ["<call id>", …]: the calls parked on the input
//
// No lost release without a transaction across keys: park WRITES its id into each input's dependents and then READS
// the input's meta; settle WRITES the meta and then READS the input's dependents. Every read and write goes to the
// bucket's stream leader (allow_direct off), in one order: if park's read missed the outcome, the outcome was
// written after that read, so after park's write, and settle's read of the dependents sees the call. Both may see
// each other; then both try to count the input on `parked.<id>`, and its compare-and-set lets one of them: an input
// leaves `waits` once, and the change that empties `waits` (or counts a failed input) sets `by` once. That change
// is the release, so a call is released exactly once.
//
// A call released by park itself (its inputs were done) is the producer's to send (`ready`) or to fail: settle
// never hands it back, as Redis and SQLite park nothing then.

import type { ParkOutcome, ReleasedCall } from '../backend.ts';
import type { TaskMeta } from '../../protocol/result.ts';
import { isReady, States } from '../../protocol/states.ts';
import type { CasKeys, Step } from './cas.ts';
import { resultKeys } from './keys.ts';

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
  /** A key's value as it stands, read from the stream's leader. */
  read(key: string): Promise<string | undefined>;
  /** A task's state as stored (its meta's, or a pinned object's), undefined if none. */
  stateOf(taskId: string): Promise<string | undefined>;
  /** Stores a meta as `store` does; resolves with the state that stands (a SUCCESS stored before stays). */
  storeMeta(meta: TaskMeta): Promise<string>;
}

function parseCall(text: string): ParkedCall {
  const doc = JSON.parse(text) as ParkedCall;
  if (typeof doc.call !== 'string' || !Array.isArray(doc.waits)) throw new Error(`a parked call is not {call, waits, by, status}: ${text.slice(0, 200)}`);
  return doc;
}

function parseIds(text: string | undefined): string[] {
  if (text === undefined) return [];
  const ids = JSON.parse(text) as unknown;
  if (!Array.isArray(ids)) throw new Error(`a dependents list is not a JSON array: ${text.slice(0, 200)}`);
  return ids as string[];
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
  await Promise.all(
    parked.waits.map((input) =>
      store.keys.change(resultKeys.dependents(input), (current) => {
        const ids = parseIds(current);
        return ids.includes(taskId) ? { result: undefined } : { next: JSON.stringify([...ids, taskId]), result: undefined };
      }),
    ),
  );
  // Read only now that every input lists this call (the header: no lost release).
  const states = await Promise.all(parked.waits.map((input) => store.stateOf(input)));
  const done = parked.waits.flatMap((input, i) => (states[i] !== undefined && isReady(states[i]) ? [{ input, status: states[i] }] : []));
  if (done.length === 0) return { ready: false };
  const release = await store.keys.change(key, (current) => count(current, done, true));
  return release ? outcomeOf(release.input, release.status) : { ready: false };
}

function outcomeOf(input: string, status: string): ParkOutcome {
  return status === States.SUCCESS ? { ready: true } : { ready: false, failed: { input, status } };
}

export async function settle(store: RefsStore, meta: TaskMeta): Promise<ReleasedCall[]> {
  const input = meta.task_id;
  const status = await store.storeMeta(meta);
  if (!isReady(status)) return [];
  // Read only now that the outcome is written (the header). Nearly every task has no dependents: one read.
  const dependents = parseIds(await store.read(resultKeys.dependents(input)));
  const releases = await Promise.all(dependents.map((taskId) => store.keys.change(resultKeys.parked(taskId), (current) => count(current, [{ input, status }], false))));
  return releases.flatMap((release, i) => (release ? [{ taskId: dependents[i]!, callJson: release.call, input, status: release.status, again: release.again }] : []));
}
