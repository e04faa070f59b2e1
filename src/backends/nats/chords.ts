// A chord's join on JetStream key-value, in the results bucket (it expires with the results):
//
//   chord.<group id>            [index, …]: the members recorded so far, changed by compare-and-set only
//   chord.<group id>.<index>    the member's result (JSON), as first recorded
//
// A member writes its result first (only if none is there: a member run again need not return the same), then
// adds its index to the join. The compare-and-set that brings the join to `size` indexes succeeds once, and its
// caller is `first`. A member redelivered after a crash between the two writes finds its result there and adds its
// index then, so a join never stays one short. The results stay under their own keys rather than in the join, so
// the join's value stays small (a few bytes a member) whatever the results weigh.

import type { ChordJoin } from '../backend.ts';
import { decodeJson } from '../../protocol/json.ts';
import type { CasKeys } from './cas.ts';
import { resultKeys } from './keys.ts';

export interface ChordStore {
  readonly keys: CasKeys;
  read(key: string): Promise<string | undefined>;
  /**
   * The member reads under way, by group: the calls that see a join complete at once (members redelivered, or
   * recorded twice) share one read of its results, which never change once complete.
   */
  readonly memberReads: Map<string, Promise<unknown[] | undefined>>;
}

const INCOMPLETE: ChordJoin = { complete: false, first: false, results: [] };
/** Member results read at once. */
const READ_CHUNK = 256;

function parseIndexes(text: string | undefined): number[] {
  if (text === undefined) return [];
  const indexes = JSON.parse(text) as unknown;
  if (!Array.isArray(indexes)) throw new Error(`a chord's join is not a JSON array of indexes: ${text.slice(0, 200)}`);
  return indexes as number[];
}

export async function chordJoin(store: ChordStore, groupId: string, index: number, size: number, resultJson: string, withResults: boolean): Promise<ChordJoin> {
  await store.keys.change(resultKeys.member(groupId, index), (current) => (current === undefined ? { next: resultJson, result: undefined } : { result: undefined }));
  const { added, count } = await store.keys.change(resultKeys.chord(groupId), (current) => {
    const indexes = parseIndexes(current);
    if (indexes.includes(index)) return { result: { added: false, count: indexes.length } };
    indexes.push(index);
    return { next: JSON.stringify(indexes), result: { added: true, count: indexes.length } };
  });
  if (count < size) return INCOMPLETE;
  const join: ChordJoin = { complete: true, first: added && count === size, results: [] };
  if (!withResults) return join;
  const results = await readMembers(store, groupId, size);
  if (!results) throw new Error(`chord ${groupId}: the join holds ${count} members, but a member's result is gone (expired with the results?)`);
  join.results = results;
  return join;
}

export async function chordResults(store: ChordStore, groupId: string, size: number): Promise<unknown[] | undefined> {
  if (parseIndexes(await store.read(resultKeys.chord(groupId))).length < size) return undefined;
  return readMembers(store, groupId, size);
}

/** Members 0 to size - 1's results, in index order (an array of the caller's own); undefined if one is missing. */
async function readMembers(store: ChordStore, groupId: string, size: number): Promise<unknown[] | undefined> {
  const key = `${groupId}\n${size}`;
  let reading = store.memberReads.get(key);
  if (!reading) {
    store.memberReads.set(key, (reading = readEach(store, groupId, size)));
    void reading.finally(() => store.memberReads.delete(key)).catch(() => {});
  }
  const results = await reading;
  return results && [...results];
}

async function readEach(store: ChordStore, groupId: string, size: number): Promise<unknown[] | undefined> {
  const results: unknown[] = [];
  for (let from = 0; from < size; from += READ_CHUNK) {
    const texts = await Promise.all(Array.from({ length: Math.min(READ_CHUNK, size - from) }, (_, i) => store.read(resultKeys.member(groupId, from + i))));
    for (const text of texts) {
      if (text === undefined) return undefined;
      results.push(decodeJson(text));
    }
  }
  return results;
}
