// Random (version 4) UUIDs for task ids, as crypto.randomUUID() makes them but built as one string: Node's
// joins 20 pieces and leaves ~530 bytes of intermediate strings per id, where this leaves the id's own 56.
// A producer makes one per task. The randomness is the same: crypto.randomFillSync, drawn 256 ids at a time.

import { randomFillSync } from 'node:crypto';

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const pool = Buffer.allocUnsafeSlow(16 * 256);
let used = pool.length;
const text = Buffer.allocUnsafeSlow(36);

export function uuid4(): string {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  let at = 0;
  for (let i = 0; i < 16; i++) {
    let byte = pool[used + i]!;
    // RFC 9562: the version (4) in the high nibble of byte 6, the variant (10) in the high bits of byte 8.
    if (i === 6) byte = (byte & 0x0f) | 0x40;
    else if (i === 8) byte = (byte & 0x3f) | 0x80;
    if (i === 4 || i === 6 || i === 8 || i === 10) text[at++] = 0x2d; // '-'
    text[at++] = HEX[byte >> 4]!;
    text[at++] = HEX[byte & 0x0f]!;
  }
  used += 16;
  return text.toString('latin1', 0, 36);
}
