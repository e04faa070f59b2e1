// The tasks of the distributed mergesort (examples/mergesort/main.ts). Workers load this module:
//   npx fennel worker --app examples/mergesort/tasks.ts -P process -c 1
// The broker and result backend come from FENNEL_BROKER_URL / FENNEL_RESULT_BACKEND, which main.ts sets.
// Two pairs of the same two tasks: on plain number arrays (JSON), and on packed int32 text (packed.ts), which
// crosses each hop as one string instead of a million JSON numbers: main.ts --wire chooses. And for the tree
// (main.ts --shape tree), a two-way merge of two sorted chunks given as separate arguments, on each wire: the
// tree passes each argument as an object reference, `merge2.delay(sortChunk.delay(a), sortChunk.delay(b))`
// (docs/refs.md), so a worker reads both inputs from the result backend just before it merges them.

import { Fennel } from 'fennel';
import { packInt32, unpackInt32, type PackedInt32 } from './packed.ts';
import { kWayMerge, kWayMergeFloat64, mergesort, mergesortFloat64 } from './sort.ts';

export const app = new Fennel();

/** Sorts one chunk. */
export const sortChunk = app.task('mergesort.sort', (xs: number[]) => mergesort(xs));

/** Merges the sorted chunks, in order: a chord's callback, which receives its header's results. */
export const merge = app.task('mergesort.merge', (sortedChunks: number[][]) => kWayMerge(sortedChunks));

/** sortChunk on packed int32 text. */
export const sortPacked = app.task('mergesort.sort_packed', (packed: PackedInt32) => packInt32(mergesortFloat64(unpackInt32(packed))));

/** merge on packed int32 text. */
export const mergePacked = app.task('mergesort.merge_packed', (sortedChunks: PackedInt32[]) => packInt32(kWayMergeFloat64(sortedChunks.map(unpackInt32))));

/** Merges two sorted chunks, x before y on ties: one node of the tree (main.ts --shape tree). */
export const merge2 = app.task('mergesort.merge2', (x: number[], y: number[]) => kWayMerge([x, y]));

/** merge2 on packed int32 text. */
export const merge2Packed = app.task('mergesort.merge2_packed', (x: PackedInt32, y: PackedInt32) => packInt32(kWayMergeFloat64([unpackInt32(x), unpackInt32(y)])));
