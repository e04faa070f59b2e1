// uuid4 (src/util/uuid.ts): task ids in crypto.randomUUID()'s format, never repeated.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { uuid4 } from '../../../src/util/uuid.ts';

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('uuid4', () => {
  it('gives version 4, variant 1 UUIDs in lower-case hex, across many refills of its random pool', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const id = uuid4();
      assert.match(id, V4);
      seen.add(id);
    }
    assert.equal(seen.size, 20_000);
  });

  it('uses every random bit outside the version and variant: each hex digit position takes many values', () => {
    const values = Array.from({ length: 36 }, () => new Set<string>());
    for (let i = 0; i < 2000; i++) [...uuid4()].forEach((c, at) => values[at]!.add(c));
    values.forEach((set, at) => {
      if ([8, 13, 18, 23].includes(at)) assert.deepEqual([...set], ['-']);
      else if (at === 14) assert.deepEqual([...set], ['4']);
      else if (at === 19) assert.equal(set.size, 4, 'the variant digit is one of 8, 9, a, b');
      else assert.equal(set.size, 16, `position ${at}`);
    });
  });
});
