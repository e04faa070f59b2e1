// What the backend suite's chord tests record as member results, shared with the child processes that record
// members too (backend-peer.ts), so the results a join returns can be checked whoever recorded them.

/** Member `index`'s result: says which member it is, so a result out of place or order shows. */
export function memberResult(index: number): unknown {
  return { index, member: `m${index}`, text: 'héllo ✓', list: [index, null, true] };
}

/** The results of a join of `size` members, in index order. */
export function joinedResults(size: number): unknown[] {
  return Array.from({ length: size }, (_, i) => memberResult(i));
}

/** 0 … size-1 in a fixed scrambled order (size must be coprime with 7), so no engine gets them sorted. */
export function scrambled(size: number): number[] {
  if (size % 7 === 0) throw new RangeError('scrambled: size must be coprime with 7');
  return Array.from({ length: size }, (_, k) => (k * 7 + 3) % size);
}
