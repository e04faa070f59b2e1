// examples/mergesort: the mergesort and the k-way merge agree with the built-in sort on random arrays,
// duplicates, the empty array, one element, sorted and reversed input; the packed int32 form round-trips.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packInt32, unpackInt32 } from '../../../examples/mergesort/packed.ts';
import { kWayMerge, kWayMergeFloat64, mergesort, mergesortFloat64, splitChunks } from '../../../examples/mergesort/sort.ts';
import { seededRandom } from '../../support/random.ts';

function randomInts(length: number, range: number, seed: number): number[] {
  const next = seededRandom(seed);
  return Array.from({ length }, () => Math.floor(next() * range) - Math.floor(range / 2));
}

const builtin = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);

const CASES: Array<[string, number[]]> = [
  ['the empty array', []],
  ['one element', [7]],
  ['two elements out of order', [2, 1]],
  ['random integers', randomInts(10_000, 1_000_000_000, 1)],
  ['many duplicates', randomInts(5_000, 10, 2)],
  ['all equal', Array.from({ length: 1000 }, () => 3)],
  ['already sorted', Array.from({ length: 3000 }, (_, i) => i)],
  ['reversed', Array.from({ length: 3000 }, (_, i) => 3000 - i)],
  ['fractions, negatives and zeros', [0.5, -0, 0, -1.25, 1e300, -1e300, 3, 0.5, Number.MIN_VALUE]],
  ['lengths around the insertion-sort cut-off', randomInts(25, 100, 3)],
];

describe('mergesort', () => {
  for (const [what, xs] of CASES) {
    it(`sorts ${what} as the built-in sort does`, () => {
      assert.deepEqual(mergesort(xs), builtin(xs));
    });
  }

  it('sorts every length from 0 to 100 (each split of the recursion)', () => {
    for (let n = 0; n <= 100; n++) {
      const xs = randomInts(n, 50, 100 + n);
      assert.deepEqual(mergesort(xs), builtin(xs), `length ${n}`);
    }
  });

  it('leaves its input alone', () => {
    const xs = [3, 1, 2];
    mergesort(xs);
    assert.deepEqual(xs, [3, 1, 2]);
  });

  it('takes typed arrays and returns a Float64Array from mergesortFloat64', () => {
    const sorted = mergesortFloat64(Int32Array.from([5, -3, 9, 0]));
    assert.ok(sorted instanceof Float64Array);
    assert.deepEqual([...sorted], [-3, 0, 5, 9]);
  });

  it('refuses NaN, which has no place in the order', () => {
    assert.throws(() => mergesort([1, Number.NaN, 0]), /NaN at index 1/);
  });
});

describe('kWayMerge', () => {
  for (const k of [1, 2, 3, 8, 17]) {
    it(`merges ${k} sorted chunks of random integers into the built-in sort's order`, () => {
      const xs = randomInts(5_000, 1_000, 10 + k);
      const chunks = splitChunks(xs, k).map((chunk) => mergesort(chunk));
      assert.deepEqual(kWayMerge(chunks), builtin(xs));
    });
  }

  it('merges chunks of different lengths, empty ones included', () => {
    const chunks = [[], [1, 4, 4, 9], [], [0], [2, 3, 4, 5, 6, 7, 8, 10], []];
    assert.deepEqual(kWayMerge(chunks), [0, 1, 2, 3, 4, 4, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('gives an empty array for no chunks, or only empty ones', () => {
    assert.deepEqual(kWayMerge([]), []);
    assert.deepEqual(kWayMerge([[], []]), []);
  });

  it('merges chunks that are all duplicates of one value, and reversed ranges', () => {
    assert.deepEqual(kWayMerge([[5, 5], [5], [5, 5, 5]]), [5, 5, 5, 5, 5, 5]);
    assert.deepEqual(kWayMerge([[7, 8, 9], [4, 5, 6], [1, 2, 3]]), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('takes typed arrays', () => {
    const merged = kWayMergeFloat64([Int32Array.from([1, 3]), Float64Array.from([2, 4]), [0]]);
    assert.deepEqual([...merged], [0, 1, 2, 3, 4]);
  });
});

describe('splitChunks', () => {
  it('splits into contiguous chunks whose sizes differ by at most one', () => {
    const chunks = splitChunks([1, 2, 3, 4, 5, 6, 7], 3);
    assert.deepEqual(chunks, [[1, 2, 3], [4, 5], [6, 7]]);
  });

  it('refuses a chunk count that is not a positive integer', () => {
    assert.throws(() => splitChunks([1], 0), RangeError);
  });
});

describe('packInt32', () => {
  it('round-trips 32-bit integers, the extremes included, through text', () => {
    const xs = [0, -1, 1, 2 ** 31 - 1, -(2 ** 31), ...randomInts(1001, 2 ** 32, 4).map((x) => x | 0)];
    const packed = packInt32(xs);
    assert.equal(typeof packed, 'string');
    assert.deepEqual([...unpackInt32(packed)], xs);
  });

  it('round-trips the empty array', () => {
    assert.deepEqual([...unpackInt32(packInt32([]))], []);
  });

  it('refuses a number that is not a 32-bit integer, naming its index', () => {
    assert.throws(() => packInt32([1, 2.5]), /2\.5 at index 1/);
    assert.throws(() => packInt32([2 ** 31]), /not a 32-bit integer/);
  });

  it('unpacks text decoded at any offset of Buffer’s shared pool (an unaligned view is copied)', () => {
    // Short texts come out of Buffer's pool at arbitrary offsets; every length must still unpack.
    for (let n = 1; n <= 9; n++) {
      const xs = Array.from({ length: n }, (_, i) => i * 7 - 3);
      assert.deepEqual([...unpackInt32(packInt32(xs))], xs);
    }
  });
});
