// The compact wire form of the mergesort's data: 32-bit integers as the base64 text of their little-endian
// bytes. A task argument that is one string crosses every hop (producer → broker → worker → pool slot →
// result backend) as a single JSON string, copied and scanned but never walked element by element, where a
// number[] of 125,000 elements is visited, checked and re-encoded as JSON at each hop. 1,000,000 integers are
// 5.3 MB of text this way, and 6–11 MB as a JSON array, depending on their digits.

/** Integers packed by packInt32: base64 of their int32 little-endian bytes. */
export type PackedInt32 = string;

/** Packs integers in the int32 range; anything else (a fraction, NaN, 2^31) is refused with its index. */
export function packInt32(values: ArrayLike<number>): PackedInt32 {
  const ints = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if ((v | 0) !== v) throw new RangeError(`packInt32: ${v} at index ${i} is not a 32-bit integer`);
    ints[i] = v;
  }
  return Buffer.from(ints.buffer, ints.byteOffset, ints.byteLength).toString('base64');
}

/** The integers back from packInt32's text. */
export function unpackInt32(text: PackedInt32): Int32Array {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.byteLength % 4 !== 0) throw new RangeError(`unpackInt32: ${bytes.byteLength} bytes is not a whole number of int32s`);
  // Buffer.from may hand out a slice of its shared pool at any offset; an Int32Array view needs 4-byte alignment.
  if (bytes.byteOffset % 4 === 0) return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
