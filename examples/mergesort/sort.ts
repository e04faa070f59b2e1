// The two pure algorithms of the distributed mergesort, with no Fennel in sight: a top-down mergesort of
// numbers, and a k-way merge of sorted arrays through a binary min-heap. The local run and the worker tasks
// call the same functions, so the comparison measures distribution, not two different sorts.
//
// Speed: both work on Float64Array (one unboxed, contiguous buffer, no holes, no element-kind transitions),
// the mergesort ping-pongs between the input copy and one scratch buffer allocated once, and runs below
// INSERTION_RUN elements are insertion-sorted, where a merge's bookkeeping costs more than it saves.

/** Runs this short are insertion-sorted: fewer moves than merging them, and no recursion. */
const INSERTION_RUN = 24;

/** Anything indexable that holds numbers: an array, a Float64Array, an Int32Array… */
export type Numbers = ArrayLike<number>;

/**
 * Sorts numbers ascending with a stable top-down mergesort; returns a new Float64Array and leaves `values`
 * alone. NaN has no place in the order and is refused.
 */
export function mergesortFloat64(values: Numbers): Float64Array {
  const n = values.length;
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (v !== v) throw new RangeError(`mergesort: NaN at index ${i}`);
    a[i] = v;
  }
  if (n < 2) return a;
  const b = a.slice(); // the scratch buffer, starting as a copy so either can be the source of a level
  sortInto(b, a, 0, n);
  return a;
}

/** Sorts numbers ascending (the same mergesort), as a plain array: what a task returns over JSON. */
export function mergesort(values: Numbers): number[] {
  return toArray(mergesortFloat64(values));
}

/**
 * Sorts src[lo, hi) into dst[lo, hi). On entry both hold the same elements in that range; each level sorts
 * its halves into `src` (swapping roles) and merges them into `dst`, so no level copies back.
 */
function sortInto(src: Float64Array, dst: Float64Array, lo: number, hi: number): void {
  if (hi - lo <= INSERTION_RUN) {
    insertionSort(dst, lo, hi);
    return;
  }
  const mid = (lo + hi) >>> 1;
  sortInto(dst, src, lo, mid);
  sortInto(dst, src, mid, hi);
  // Already in order (sorted or nearly sorted input): one copy instead of a merge.
  if (src[mid - 1]! <= src[mid]!) {
    dst.set(src.subarray(lo, hi), lo);
    return;
  }
  let i = lo;
  let j = mid;
  let k = lo;
  while (i < mid && j < hi) {
    const x = src[i]!;
    const y = src[j]!;
    // `<=` takes from the left half on ties: stable.
    if (x <= y) {
      dst[k++] = x;
      i++;
    } else {
      dst[k++] = y;
      j++;
    }
  }
  while (i < mid) dst[k++] = src[i++]!;
  while (j < hi) dst[k++] = src[j++]!;
}

function insertionSort(a: Float64Array, lo: number, hi: number): void {
  for (let i = lo + 1; i < hi; i++) {
    const x = a[i]!;
    let j = i - 1;
    while (j >= lo && a[j]! > x) {
      a[j + 1] = a[j]!;
      j--;
    }
    a[j + 1] = x;
  }
}

/**
 * Merges arrays that are each sorted ascending into one sorted Float64Array, in O(n log k): a binary
 * min-heap holds one cursor per non-empty input, ordered by its current value (ties by input index, so the
 * merge is stable across inputs). Unsorted inputs give an unsorted output; they are not checked.
 */
export function kWayMergeFloat64(chunks: ReadonlyArray<Numbers>): Float64Array {
  let total = 0;
  for (const chunk of chunks) total += chunk.length;
  const out = new Float64Array(total);
  const inputs = chunks.filter((chunk) => chunk.length > 0);
  if (inputs.length === 1) {
    out.set(inputs[0]!);
    return out;
  }
  if (inputs.length === 2) {
    merge2(inputs[0]!, inputs[1]!, out);
    return out;
  }
  // The heap: parallel typed arrays of (current value, input index), so sifting moves numbers, not objects.
  // Input indices follow `inputs`' order, which keeps the inputs' order, so ties still go to the earlier input.
  const k = inputs.length;
  const heapValue = new Float64Array(k);
  const heapInput = new Int32Array(k);
  const position = new Int32Array(k);
  for (let c = 0; c < k; c++) {
    // Sift each new leaf up to its place.
    let i = c;
    const v = inputs[c]![0]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pv = heapValue[parent]!;
      if (pv < v || (pv === v && heapInput[parent]! < c)) break;
      heapValue[i] = pv;
      heapInput[i] = heapInput[parent]!;
      i = parent;
    }
    heapValue[i] = v;
    heapInput[i] = c;
  }
  let size = k;
  let o = 0;
  while (size > 1) {
    const c = heapInput[0]!;
    out[o++] = heapValue[0]!;
    const input = inputs[c]!;
    const next = ++position[c]!;
    let v: number;
    let vc: number;
    if (next < input.length) {
      v = input[next]!;
      vc = c;
    } else {
      size--;
      v = heapValue[size]!;
      vc = heapInput[size]!;
    }
    // Sift the hole at the root down, moving children up, and drop (v, vc) where it belongs.
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      const right = child + 1;
      if (right < size) {
        const lv = heapValue[child]!;
        const rv = heapValue[right]!;
        if (rv < lv || (rv === lv && heapInput[right]! < heapInput[child]!)) child = right;
      }
      const cv = heapValue[child]!;
      if (v < cv || (v === cv && vc < heapInput[child]!)) break;
      heapValue[i] = cv;
      heapInput[i] = heapInput[child]!;
      i = child;
    }
    heapValue[i] = v;
    heapInput[i] = vc;
  }
  // One input left: the rest of it goes out as it is.
  if (size === 1) {
    const c = heapInput[0]!;
    const input = inputs[c]!;
    for (let i = position[c]!; i < input.length; i++) out[o++] = input[i]!;
  }
  return out;
}

/** Two inputs: a plain two-way merge, the heap's work without the heap (ties from the first input: stable). */
function merge2(a: Numbers, b: Numbers, out: Float64Array): void {
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x <= y) {
      out[k++] = x;
      i++;
    } else {
      out[k++] = y;
      j++;
    }
  }
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
}

/** Merges sorted arrays into one sorted plain array (the same merge): what the merge task returns over JSON. */
export function kWayMerge(chunks: ReadonlyArray<Numbers>): number[] {
  return toArray(kWayMergeFloat64(chunks));
}

/** A Float64Array as a plain array, built by index into a pre-sized array (faster than Array.from). */
export function toArray(values: Float64Array): number[] {
  const out: number[] = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i]!;
  return out;
}

/** Splits values into `count` contiguous chunks whose sizes differ by at most one (none empty if count ≤ length). */
export function splitChunks<T>(values: readonly T[], count: number): T[][] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`chunk count must be a positive integer (got ${count})`);
  const chunks: T[][] = [];
  const base = Math.floor(values.length / count);
  const extra = values.length % count;
  let start = 0;
  for (let c = 0; c < count; c++) {
    const size = base + (c < extra ? 1 : 0);
    chunks.push(values.slice(start, start + size));
    start += size;
  }
  return chunks;
}
