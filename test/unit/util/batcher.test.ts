// Batcher (src/util/batcher.ts): the items added in one event-loop turn go out as one call, in order; a full
// batch goes at once; every caller of a batch gets its outcome (one shared promise per batch).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher } from '../../../src/util/batcher.ts';

describe('Batcher', () => {
  it("sends one turn's items as one call, in the order they were added, and resolves every caller after it", async () => {
    const calls: number[][] = [];
    let sent = false;
    const batcher = new Batcher<number>(100, async (items) => {
      calls.push(items);
      await new Promise((resolve) => setTimeout(resolve, 5));
      sent = true;
    });
    const waits = [1, 2, 3].map((n) => batcher.add(n));
    await Promise.all(waits);
    assert.equal(sent, true, 'no caller resolves before the call has completed');
    assert.deepEqual(calls, [[1, 2, 3]]);
    await batcher.add(4);
    assert.deepEqual(calls, [[1, 2, 3], [4]], 'a later turn is a new batch');
  });

  it('sends a full batch at once, and the rest in the next', async () => {
    const calls: string[][] = [];
    const batcher = new Batcher<string>(2, async (items) => void calls.push(items));
    const waits = ['a', 'b', 'c'].map((s) => batcher.add(s));
    assert.deepEqual(calls, [['a', 'b']], 'the full batch left before the turn ended');
    await Promise.all(waits);
    assert.deepEqual(calls, [['a', 'b'], ['c']]);
  });

  it("rejects every caller of a failed batch with its error, and not the next batch's", async () => {
    let fail = true;
    const batcher = new Batcher<number>(10, async () => {
      if (fail) throw new Error('store is down');
    });
    const results = await Promise.allSettled([batcher.add(1), batcher.add(2)]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    assert.equal(((results[0] as PromiseRejectedResult).reason as Error).message, 'store is down');
    fail = false;
    await batcher.add(3);
  });
});
