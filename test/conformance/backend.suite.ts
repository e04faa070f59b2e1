// The conformance suite every result backend must pass: `backendSuite` registers describe/it blocks against
// an engine factory that hands out a fresh, empty store per call. Where the engine can be shared (a file,
// a server), `peer` opens a second instance on the same store, so a result written "elsewhere" is seen
// through the engine's real notification path rather than a shortcut inside one instance.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { ResultBackend } from '../../src/backends/backend.ts';
import type { TaskMeta } from '../../src/protocol/result.ts';
import { isReady, States } from '../../src/protocol/states.ts';
import { celeryA4Results } from '../fixtures/celery.ts';
import { sleep, within } from './helpers/wait.ts';
import { CleanupScope, scopedWith } from './helpers/scope.ts';

export type BackendFactory = () => Promise<ResultBackend> | ResultBackend;

export interface BackendSuiteOptions {
  /** A second instance on the same store (SQLite: another connection to the same file). Default: the same instance. */
  peer?: (backend: ResultBackend) => Promise<ResultBackend> | ResultBackend;
  /**
   * Results reach only the caller that sent the task, nothing stores them for others (rpc://): the peer
   * stores on the caller's behalf (as a worker replying to it), but cannot read those results back itself,
   * so reads go through the first instance only. Default false: every instance reads one shared store.
   */
  callerOnly?: boolean;
}

/** Pause before checking that a wait has *not* resolved: several wake-ups and fallback polls of any engine. */
const GRACE_MS = 600;

function meta(taskId: string, status: string, result: unknown = null, extra: Partial<TaskMeta> = {}): TaskMeta {
  return {
    status,
    result,
    traceback: null,
    children: [],
    date_done: isReady(status) ? '2026-11-26T02:30:06.208145+00:00' : null,
    task_id: taskId,
    ...extra,
  };
}

/** Tracks whether a promise has settled, without awaiting it. */
function track<T>(promise: Promise<T>): { readonly settled: boolean } {
  const state = { settled: false };
  promise.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

export function backendSuite(name: string, factory: BackendFactory, options: BackendSuiteOptions = {}): void {
  class Scope extends CleanupScope {

    async open(): Promise<ResultBackend> {
      const backend = await factory();
      this.cleanups.push(() => backend.close());
      return backend;
    }

    async peer(backend: ResultBackend): Promise<ResultBackend> {
      if (!options.peer) return backend;
      const second = await options.peer(backend);
      this.cleanups.push(() => second.close());
      return second;
    }

  }

  const scoped = scopedWith(() => new Scope());
  /** The instances that can read what was stored through `b` or `other`. */
  const readers = (b: ResultBackend, other: ResultBackend): ResultBackend[] => (options.callerOnly ? [b] : [b, other]);

  describe(`backend conformance: ${name}`, () => {
    describe('store and get', () => {
      it('reads back a stored meta field for field, in Celery’s layout', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const id = randomUUID();
        const stored = meta(id, States.SUCCESS, { sum: 5, at: new Date('2026-11-26T02:30:06.208Z'), list: [1, 'two', null] }, {
          name: 'proj.tasks.add',
          args: [2, 3],
          kwargs: {},
          worker: 'w1@vm',
          retries: 0,
          queue: 'celery',
          parent_id: null,
          group_id: null,
        });
        await b.store(stored);
        for (const reader of readers(b, other)) {
          const got = await reader.get(id);
          assert.deepEqual(got, stored);
          assert.deepEqual(Object.keys(got).slice(0, 6), ['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
        }
      }));

      it('reads back Celery’s captured SUCCESS, FAILURE and REVOKED metas unchanged', scoped(async (s) => {
        const b = await s.open();
        const { success, failure, revoked, notRegistered } = celeryA4Results;
        for (const captured of [success, failure, revoked, notRegistered]) {
          const copy = { ...captured, task_id: randomUUID() };
          await b.store(copy);
          assert.deepEqual(await b.get(copy.task_id), copy);
        }
      }));

      it('get of an unknown id is undefined', scoped(async (s) => {
        const b = await s.open();
        assert.equal(await b.get(randomUUID()), undefined);
      }));

      it('a stored SUCCESS is not overwritten by a later FAILURE or STARTED', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const id = randomUUID();
        await b.store(meta(id, States.SUCCESS, 42));
        await other.store(meta(id, States.FAILURE, { exc_type: 'WorkerLostError', exc_message: ['lost'], exc_module: 'billiard.exceptions' }));
        await b.store(meta(id, States.STARTED, { pid: 1, hostname: 'w2@vm' }));
        for (const reader of readers(b, other)) {
          const got = await reader.get(id);
          assert.equal(got?.status, States.SUCCESS);
          assert.equal(got?.result, 42);
        }
        assert.deepEqual(await b.countByState(), { SUCCESS: 1 });
      }));

      it('a later state replaces any earlier state other than SUCCESS', scoped(async (s) => {
        const b = await s.open();
        const id = randomUUID();
        for (const status of [States.STARTED, States.RETRY, States.FAILURE, States.SUCCESS]) {
          await b.store(meta(id, status, status));
          assert.equal((await b.get(id))?.status, status);
          assert.equal((await b.get(id))?.result, status);
        }
      }));

      it('forget removes a stored result, and forgetting an unknown id is harmless', scoped(async (s) => {
        const b = await s.open();
        const keep = randomUUID();
        const drop = randomUUID();
        await b.store(meta(keep, States.SUCCESS, 1));
        await b.store(meta(drop, States.SUCCESS, 2));
        await b.forget(drop);
        await b.forget(randomUUID());
        assert.equal(await b.get(drop), undefined);
        assert.equal((await b.get(keep))?.result, 1);
        assert.deepEqual(await b.countByState(), { SUCCESS: 1 });
      }));

      it('countByState counts stored results per state', scoped(async (s) => {
        const b = await s.open();
        assert.deepEqual(await b.countByState(), {});
        await b.store(meta(randomUUID(), States.SUCCESS, 1));
        await b.store(meta(randomUUID(), States.SUCCESS, 2));
        await b.store(meta(randomUUID(), States.FAILURE, celeryA4Results.failure.result));
        await b.store(meta(randomUUID(), States.STARTED));
        assert.deepEqual(await b.countByState(), { SUCCESS: 2, FAILURE: 1, STARTED: 1 });
      }));
    });

    describe('wait', () => {
      it('resolves when a ready state is stored later, by another instance', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const id = randomUUID();
        const waiting = b.wait(id, { timeoutMs: 30_000 });
        const state = track(waiting);
        await sleep(GRACE_MS);
        assert.equal(state.settled, false, 'nothing stored yet');
        await other.store(meta(id, States.SUCCESS, { answer: 42 }));
        const got = await within(waiting, 20_000, 'wait');
        assert.equal(got?.status, States.SUCCESS);
        assert.deepEqual(got?.result, { answer: 42 });
        assert.equal(got?.task_id, id);
      }));

      it('resolves at once when the result is already ready', scoped(async (s) => {
        const b = await s.open();
        const id = randomUUID();
        await b.store(meta(id, States.FAILURE, celeryA4Results.failure.result, { traceback: celeryA4Results.failure.traceback }));
        const got = await within(b.wait(id, { timeoutMs: 120_000 }), 10_000, 'wait for a stored result');
        assert.equal(got?.status, States.FAILURE);
        assert.deepEqual(got?.result, celeryA4Results.failure.result);
      }));

      it('resolves undefined once timeoutMs passes without a result', scoped(async (s) => {
        const b = await s.open();
        assert.equal(await within(b.wait(randomUUID(), { timeoutMs: 200 }), 20_000, 'wait with a timeout'), undefined);
      }));

      it('is not resolved by non-ready states (STARTED, PROGRESS, RETRY)', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const id = randomUUID();
        const waiting = b.wait(id, { timeoutMs: 2_000 });
        await sleep(100);
        await other.store(meta(id, States.STARTED, { pid: 1, hostname: 'w1@vm' }));
        await other.store(meta(id, States.PROGRESS, { done: 1, total: 3 }));
        await other.store(meta(id, States.RETRY, { exc_type: 'Retry', exc_message: ['later'], exc_module: 'celery.exceptions' }));
        assert.equal(await within(waiting, 20_000, 'wait'), undefined, 'the wait ended by its timeout');
        assert.equal((await b.get(id))?.status, States.RETRY);
      }));

      it('wakes every one of 1000 concurrent waiters on different tasks', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const ids = Array.from({ length: 1000 }, () => randomUUID());
        const waits = ids.map((id) => b.wait(id, { timeoutMs: 60_000 }));
        await sleep(100);
        for (const [i, id] of ids.entries()) await other.store(meta(id, States.SUCCESS, i));
        const got = await within(Promise.all(waits), 45_000, '1000 waits');
        assert.deepEqual(
          got.map((m) => [m?.task_id, m?.result]),
          ids.map((id, i) => [id, i]),
        );
      }));

      it('wakes every one of 1000 concurrent waiters on one task', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const id = randomUUID();
        const waits = Array.from({ length: 1000 }, () => b.wait(id, { timeoutMs: 60_000 }));
        await sleep(100);
        await other.store(meta(id, States.SUCCESS, 'shared'));
        const got = await within(Promise.all(waits), 45_000, '1000 waits');
        assert.ok(got.every((m) => m?.status === States.SUCCESS && m.result === 'shared'));
      }));

      it('wakes a waiter whose result is stored after another result was forgotten', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const earlier = randomUUID();
        await other.store(meta(earlier, States.SUCCESS, 'earlier'));
        const id = randomUUID();
        const waiting = b.wait(id, { timeoutMs: 5_000 });
        await sleep(GRACE_MS);
        await other.forget(earlier);
        await other.store(meta(id, States.SUCCESS, 'later'));
        const got = await within(waiting, 20_000, 'wait');
        assert.equal(got?.status, States.SUCCESS, 'the wait saw the result instead of timing out');
        assert.equal(got?.result, 'later');
      }));

      it('wakes the first of two waits when its result is committed while the second wait is starting', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const first = randomUUID();
        const second = randomUUID();
        const waitFirst = b.wait(first, { timeoutMs: 5_000 });
        // A commit landing between the two calls, as another process's worker can make at any moment.
        const stored = other.store(meta(first, States.SUCCESS, 'first'));
        const waitSecond = b.wait(second, { timeoutMs: 5_000 });
        await stored;
        await other.store(meta(second, States.SUCCESS, 'second'));
        const [a, c] = await within(Promise.all([waitFirst, waitSecond]), 20_000, 'both waits');
        assert.equal(c?.result, 'second');
        assert.equal(a?.result, 'first', 'the first wait saw its result instead of timing out');
      }));

      it('rejects with the signal’s reason when a pending wait is aborted', scoped(async (s) => {
        const b = await s.open();
        const controller = new AbortController();
        const reason = new Error('caller gave up');
        const waiting = b.wait(randomUUID(), { timeoutMs: 3_000, signal: controller.signal });
        await sleep(100);
        controller.abort(reason);
        const outcome = await within(waiting.then((value) => ({ value }), (error: unknown) => ({ error })), 20_000, 'aborted wait');
        assert.deepEqual(outcome, { error: reason });
      }));

      it('rejects when the signal aborts right after wait is called', scoped(async (s) => {
        const b = await s.open();
        const controller = new AbortController();
        const reason = new Error('caller gave up');
        const waiting = b.wait(randomUUID(), { timeoutMs: 3_000, signal: controller.signal });
        controller.abort(reason);
        const outcome = await within(waiting.then((value) => ({ value }), (error: unknown) => ({ error })), 20_000, 'aborted wait');
        assert.deepEqual(outcome, { error: reason });
      }));

      it('rejects at once when the signal is already aborted', scoped(async (s) => {
        const b = await s.open();
        const reason = new Error('already gone');
        const waiting = b.wait(randomUUID(), { timeoutMs: 3_000, signal: AbortSignal.abort(reason) });
        const outcome = await within(waiting.then((value) => ({ value }), (error: unknown) => ({ error })), 20_000, 'aborted wait');
        assert.deepEqual(outcome, { error: reason });
      }));
    });
  });
}
