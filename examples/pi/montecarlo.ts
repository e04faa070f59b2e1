// The Monte Carlo estimate of π with no Fennel in sight: how the samples are split into chunks, how each chunk's
// generator is seeded, and the hot loop that counts the points inside the circle. The in-process run
// (main.ts) and the worker task (tasks.ts) call the same functions with the same (seed, chunk) pairs, so the
// two estimates are the same number, not two samples of the same distribution.
//
// The generator is xoshiro128+ (Blackman and Vigna, 2018): four 32-bit words of state, 2^128 − 1 period, and
// per output one add, two shifts, one rotate and five xors, all on int32 values V8 keeps in registers. A point
// is two outputs read as signed int32 and scaled by 2^-31 into [-1, 1)²; it is inside when x² + y² < 1, which
// happens with probability π/4. Each coordinate is a double on a grid of 2^-31 (the low bits of xoshiro128+,
// its weak ones, weigh 2^-31 at most, which is why its authors recommend it for floating-point output). The
// loop keeps the state in locals, allocates nothing and calls nothing per sample: about 97 million points a second
// on one core of this shared 2-CPU machine (the benchmark's median; docs/patterns.md#π-pipeline).

/** One chunk of the work: its index (which seeds its generator) and how many points it draws. */
export interface Chunk {
  index: number;
  samples: number;
}

/** The largest sample count accepted: counts and sums stay exact integers in a double. */
export const MAX_SAMPLES = Number.MAX_SAFE_INTEGER;

/**
 * Splits `samples` points into `chunks` chunks whose sizes differ by at most one (the first `samples % chunks`
 * chunks draw one more).
 */
export function splitSamples(samples: number, chunks: number): Chunk[] {
  if (!Number.isSafeInteger(samples) || samples < 1) throw new RangeError(`samples must be a positive integer (got ${samples})`);
  if (!Number.isSafeInteger(chunks) || chunks < 1 || chunks > samples) throw new RangeError(`chunks must be an integer from 1 to samples (got ${chunks})`);
  const base = Math.floor(samples / chunks);
  const extra = samples % chunks;
  return Array.from({ length: chunks }, (_, index) => ({ index, samples: base + (index < extra ? 1 : 0) }));
}

/** murmur3's 32-bit finalizer: a bijection of int32 that spreads every input bit over every output bit. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * The generator state of chunk `index` under `seed`: four words from a splitmix-style hash of (seed, index,
 * word). Neighbouring chunks get unrelated states; a chunk draws 2 × its samples outputs (a few million) from a
 * period of 2^128 − 1, so two chunks' streams overlapping is not a practical concern. Both arguments must be
 * integers in [0, 2^32).
 */
export function chunkState(seed: number, index: number): Uint32Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`seed must be an integer in [0, 2^32) (got ${seed})`);
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) throw new RangeError(`chunk index must be an integer in [0, 2^32) (got ${index})`);
  const key = mix32(mix32(seed ^ 0x5bd1e995) + Math.imul(index, 0x9e3779b9));
  const state = new Uint32Array(4);
  for (let word = 0; word < 4; word++) state[word] = mix32(key + Math.imul(word + 1, 0x632be5ab));
  // The one state xoshiro cannot leave; a hash landing on it is a 2^-128 event, but the check is free.
  if ((state[0]! | state[1]! | state[2]! | state[3]!) === 0) state[0] = 1;
  return state;
}

/** 2^-31: an int32 times this is in [-1, 1). */
const INV_2_31 = 1 / 2147483648;

/**
 * Draws `n` points with xoshiro128+ from `state` (advanced in place, so a chunk can be drawn in several calls
 * with the same outcome as in one) and returns how many fell inside the unit circle.
 */
export function countInside(state: Uint32Array, n: number): number {
  let s0 = state[0]! | 0;
  let s1 = state[1]! | 0;
  let s2 = state[2]! | 0;
  let s3 = state[3]! | 0;
  let inside = 0;
  for (let i = 0; i < n; i++) {
    // x: one xoshiro128+ output (s0 + s3), then the state's step.
    let r = (s0 + s3) | 0;
    let t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    const x = r * INV_2_31;
    // y: the next output.
    r = (s0 + s3) | 0;
    t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    const y = r * INV_2_31;
    inside += x * x + y * y < 1 ? 1 : 0;
  }
  state[0] = s0;
  state[1] = s1;
  state[2] = s2;
  state[3] = s3;
  return inside;
}

/** Points inside the circle among chunk `chunk`'s samples under `seed`, in one call: what the in-process run does per chunk. */
export function countChunk(seed: number, chunk: Chunk): number {
  return countInside(chunkState(seed, chunk.index), chunk.samples);
}

/** π estimated from `inside` hits among `samples` points: 4 × the fraction inside. */
export function estimate(inside: number, samples: number): number {
  return (4 * inside) / samples;
}

/**
 * One standard deviation of the estimate for `samples` points: the hit count is binomial with p = π/4, so the
 * estimate's standard deviation is 4·√(p(1−p)/samples) ≈ 1.64/√samples.
 */
export function standardError(samples: number): number {
  const p = Math.PI / 4;
  return 4 * Math.sqrt((p * (1 - p)) / samples);
}
