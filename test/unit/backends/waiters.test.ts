// The waiters every result backend shares (src/backends/waiters.ts): settled by wake, a timeout, an abort
// or the engine, with the engine told when an id, and when every id, is no longer waited for.

import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';
import { Waiters } from '../../../src/backends/waiters.ts';
import { pendingMeta } from '../../../src/protocol/result.ts';

function recorder(): { waiters: Waiters; released: string[]; emptied: () => number } {
  const released: string[] = [];
  let empties = 0;
  const waiters = new Waiters(
    () => empties++,
    (id) => released.push(id),
  );
  return { waiters, released, emptied: () => empties };
}

describe('Waiters', () => {
  it('wakes the one waiter of an id with the meta, and reports the id released and the set empty', async () => {
    const { waiters, released, emptied } = recorder();
    const waiting = waiters.add('a', {});
    assert.equal(waiters.has('a'), true);
    waiters.wake('a', pendingMeta('a'));
    assert.deepEqual(await waiting, pendingMeta('a'));
    assert.equal(waiters.has('a'), false);
    assert.deepEqual(released, ['a']);
    assert.equal(emptied(), 1);
  });

  it('wakes every waiter of an id at once, and releases the id once', async () => {
    const { waiters, released } = recorder();
    const all = [waiters.add('a', {}), waiters.add('a', { timeoutMs: 60_000 }), waiters.add('a', { signal: new AbortController().signal })];
    assert.equal(waiters.size, 1);
    waiters.wake('a', pendingMeta('a'));
    for (const meta of await Promise.all(all)) assert.equal(meta?.task_id, 'a');
    assert.deepEqual(released, ['a']);
  });

  it('leaves other ids waiting, and ignores a wake for an id nobody waits for', async () => {
    const { waiters, released, emptied } = recorder();
    const a = waiters.add('a', {});
    const b = waiters.add('b', {});
    waiters.wake('nobody', pendingMeta('nobody'));
    waiters.wake('a', pendingMeta('a'));
    await a;
    assert.deepEqual([...waiters.ids()], ['b']);
    assert.equal(emptied(), 0);
    waiters.wake('b', undefined);
    assert.equal(await b, undefined);
    assert.deepEqual(released, ['a', 'b']);
    assert.equal(emptied(), 1);
  });

  it('resolves undefined after timeoutMs, and keeps the id while another waiter still waits', async () => {
    const { waiters, released } = recorder();
    const short = waiters.add('a', { timeoutMs: 1 });
    const long = waiters.add('a', {});
    assert.equal(await short, undefined);
    assert.equal(waiters.has('a'), true);
    assert.deepEqual(released, []);
    waiters.wake('a', pendingMeta('a'));
    assert.equal((await long)?.task_id, 'a');
    assert.deepEqual(released, ['a']);
  });

  it('rejects with the signal’s reason on abort, and at once for a signal already aborted', async () => {
    const { waiters, released } = recorder();
    const controller = new AbortController();
    const waiting = waiters.add('a', { signal: controller.signal, timeoutMs: 60_000 });
    controller.abort(new Error('stop'));
    await assert.rejects(waiting, /stop/);
    assert.equal(waiters.has('a'), false);
    assert.deepEqual(released, ['a']);
    await assert.rejects(waiters.add('b', { signal: AbortSignal.abort(new Error('already')) }), /already/);
    assert.equal(waiters.has('b'), false);
  });

  it('waiters sharing a signal share one listener on it, removed when the last of them settles', async () => {
    const { waiters } = recorder();
    const controller = new AbortController();
    const all = ['a', 'b', 'c'].map((id) => waiters.add(id, { signal: controller.signal }));
    assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
    waiters.wake('a', pendingMeta('a'));
    waiters.wake('b', pendingMeta('b'));
    assert.equal(getEventListeners(controller.signal, 'abort').length, 1);
    waiters.wake('c', pendingMeta('c'));
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
    assert.deepEqual((await Promise.all(all)).map((meta) => meta?.task_id), ['a', 'b', 'c']);
  });

  it('an abort rejects every waiter still sharing the signal, and none that settled before it', async () => {
    const { waiters, released } = recorder();
    const controller = new AbortController();
    const [a, b, c] = ['a', 'b', 'c'].map((id) => waiters.add(id, { signal: controller.signal, timeoutMs: 60_000 }));
    waiters.wake('a', pendingMeta('a'));
    controller.abort(new Error('publish failed'));
    assert.equal((await a!)?.task_id, 'a');
    await assert.rejects(b!, /publish failed/);
    await assert.rejects(c!, /publish failed/);
    assert.equal(waiters.size, 0);
    assert.deepEqual(released, ['a', 'b', 'c']);
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
  });

  it('a failed publish (failsWith) rejects the waiters still waiting on it, and none woken before it failed', async () => {
    const { waiters, released } = recorder();
    let fail!: (error: Error) => void;
    const sent = new Promise<void>((_resolve, reject) => (fail = reject));
    const [a, b] = ['a', 'b'].map((id) => waiters.add(id, { failsWith: sent, timeoutMs: 60_000 }));
    waiters.wake('a', pendingMeta('a'));
    fail(new Error('broker said no'));
    assert.equal((await a!)?.task_id, 'a');
    await assert.rejects(b!, /broker said no/);
    assert.equal(waiters.size, 0);
    assert.deepEqual(released, ['a', 'b']);
  });

  it('a publish that succeeds (failsWith) leaves its waiters waiting', async () => {
    const { waiters } = recorder();
    const waiting = waiters.add('a', { failsWith: Promise.resolve(), timeoutMs: 60_000 });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(waiters.has('a'), true);
    waiters.wake('a', pendingMeta('a'));
    assert.equal((await waiting)?.task_id, 'a');
  });

  it('an abort after the wake changes nothing', async () => {
    const { waiters, released } = recorder();
    const controller = new AbortController();
    const waiting = waiters.add('a', { signal: controller.signal });
    waiters.wake('a', pendingMeta('a'));
    controller.abort(new Error('late'));
    assert.equal((await waiting)?.task_id, 'a');
    assert.deepEqual(released, ['a']);
  });

  it('reject settles every waiter of an id with the reason', async () => {
    const { waiters, released } = recorder();
    const all = [waiters.add('a', {}), waiters.add('a', { timeoutMs: 60_000 })];
    waiters.reject('a', new Error('subscription failed'));
    for (const waiting of all) await assert.rejects(waiting, /subscription failed/);
    assert.deepEqual(released, ['a']);
  });

  it('wakeAll resolves every waiter with undefined', async () => {
    const { waiters, emptied } = recorder();
    const all = [waiters.add('a', {}), waiters.add('b', { timeoutMs: 60_000 }), waiters.add('b', {})];
    waiters.wakeAll();
    assert.deepEqual(await Promise.all(all), [undefined, undefined, undefined]);
    assert.equal(waiters.size, 0);
    assert.equal(emptied(), 1);
  });
});
