// LazyAbort: the per-task AbortController the pools make only when a task reads its signal.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LazyAbort } from '../../../src/worker/lazy-abort.ts';

describe('LazyAbort', () => {
  it('gives one signal, aborted with the reason when abort() comes after it was read', () => {
    const lazy = new LazyAbort();
    const signal = lazy.signal;
    assert.equal(lazy.signal, signal, 'the same signal on every read');
    assert.equal(signal.aborted, false);
    const reason = new Error('soft time limit');
    lazy.abort(reason);
    assert.equal(signal.aborted, true);
    assert.equal(signal.reason, reason);
  });

  it('remembers an abort that came before anyone read the signal', () => {
    const lazy = new LazyAbort();
    const reason = new Error('revoked with terminate');
    lazy.abort(reason);
    lazy.abort(new Error('a second abort changes nothing'));
    assert.equal(lazy.signal.aborted, true);
    assert.equal(lazy.signal.reason, reason);
  });
});
