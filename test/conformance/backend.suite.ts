// The conformance suite every result backend must pass: `backendSuite` registers describe/it blocks against
// an engine factory that hands out a fresh, empty store per call. Where the engine can be shared (a file,
// a server), `peer` opens a second instance on the same store, so a result written "elsewhere" is seen
// through the engine's real notification path rather than a shortcut inside one instance.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import type { ChordJoin, ReleasedCall, ResultBackend, Revocation } from '../../src/backends/backend.ts';
import type { TaskMeta } from '../../src/protocol/result.ts';
import { isReady, States } from '../../src/protocol/states.ts';
import { celeryA4Results } from '../fixtures/celery.ts';
import { joinedResults, memberResult, scrambled } from './helpers/chord.ts';
import { spawnHelperProcess, type Child } from './helpers/child.ts';
import { sleep, waitFor, within } from './helpers/wait.ts';
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
  /**
   * The store is shared across processes: a child process that opens `backend.url` (createBackend) reaches the
   * same store (SQLite's file, a Redis database). The suite then records chord members and revocations from
   * child processes too. Default false.
   */
  crossProcess?: boolean;
  /**
   * Another instance on the same store whose results expire after `resultExpiresSec`: the engine expires results
   * (SQLite, Redis) and keeps pinned objects apart from them (`storeFor`). Absent: it has no `storeFor`.
   */
  expiring?: (backend: ResultBackend, resultExpiresSec: number) => Promise<ResultBackend> | ResultBackend;
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

/** What a join call returns while members are still missing. */
const INCOMPLETE: ChordJoin = { complete: false, first: false, results: [] };

/** Member `index`'s chordJoin call, recording memberResult(index) (the helpers' result, so children agree on it). */
function joinAs(backend: ResultBackend, group: string, index: number, size: number, withResults?: boolean): Promise<ChordJoin> {
  return backend.chordJoin!(group, index, size, JSON.stringify(memberResult(index)), withResults);
}

/** A revocation as reported, checked field for field against the one stored (`terminate` only where asked). */
function reportedAs(seen: readonly Revocation[], stored: Revocation, fields: ReadonlyArray<keyof Revocation> = ['taskId', 'terminate', 'expiresAt']): boolean {
  return seen.some((r) => fields.every((field) => isDeepStrictEqual(r[field], stored[field])));
}

/**
 * How far two readings of one lease's expiry may differ: engines that keep a time to live (Redis) report the
 * expiry as now + the time left, so two readings differ by the time between them and the replies' latency.
 */
const EXPIRY_SLACK_MS = 2_000;

function assertBetween(value: number, low: number, high: number, what: string): void {
  assert.ok(value >= low && value <= high, `${what}: ${new Date(value).toISOString()} is not within [${new Date(low).toISOString()}, ${new Date(high).toISOString()}]`);
}

function assertNear(value: number, expected: number, what: string): void {
  assert.ok(Math.abs(value - expected) <= EXPIRY_SLACK_MS, `${what}: ${new Date(value).toISOString()} is not within ${EXPIRY_SLACK_MS} ms of ${new Date(expected).toISOString()}`);
}

/** A lease name, and a records table name, of the test's own. */
const leaseName = (): string => `conformance-lease-${randomUUID()}`;
const tableName = (): string => `conformance-table-${randomUUID()}`;

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

    async expiring(backend: ResultBackend, resultExpiresSec: number): Promise<ResultBackend> {
      const other = await options.expiring!(backend, resultExpiresSec);
      this.cleanups.push(() => other.close());
      return other;
    }

    async peer(backend: ResultBackend): Promise<ResultBackend> {
      if (!options.peer) return backend;
      const second = await options.peer(backend);
      this.cleanups.push(() => second.close());
      return second;
    }

    /** Follows `backend`'s revocations until the test ends (or `stop`): `seen` is what it was told, in order. */
    async watchRevocations(backend: ResultBackend): Promise<{ seen: Revocation[]; stop: () => Promise<void> }> {
      const seen: Revocation[] = [];
      const stop = await backend.watchRevocations!((r) => seen.push(r));
      this.cleanups.push(() => stop());
      return { seen, stop };
    }

    /** A child process running test/conformance/helpers/<script>, killed when the test ends. */
    spawnHelper(script: string, args: string[]): Child {
      const child = spawnHelperProcess(script, args);
      this.cleanups.push(() => child.kill('SIGKILL'));
      return child;
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

    // Chords and revocations need one store every worker shares; rpc:// (callerOnly) has none and offers neither.
    const unshared = options.callerOnly && 'results are the caller’s alone (rpc://): no shared store';

    it('offers chord joins, once-only claims, revocations, leases and records exactly when its store is shared', scoped(async (s) => {
      const b = await s.open();
      for (const method of ['chordJoin', 'chordResults', 'claimOnce', 'revoke', 'watchRevocations', 'acquireLease', 'releaseLease', 'readLease', 'putRecord', 'readRecords', 'deleteRecord', 'park', 'settle'] as const) {
        assert.equal(typeof b[method] === 'function', !options.callerOnly, `${method}()`);
      }
      assert.equal(typeof b.storeFor === 'function', options.expiring !== undefined, 'storeFor(): where results expire');
    }));

    describe('pinned objects (storeFor)', { skip: !options.expiring && 'results do not expire here: nothing to pin' }, () => {
      it('offers storeFor', scoped(async (s) => {
        assert.equal(typeof (await s.open()).storeFor, 'function');
      }));

      it('a pinned object reads back and wakes its waiters, as a stored result does, through every instance', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const id = randomUUID();
        const waiting = other.wait(id, { timeoutMs: 30_000 });
        await b.storeFor!(meta(id, States.SUCCESS, { big: [1, 2, 3] }), 0);
        assert.deepEqual((await within(waiting, 20_000, 'the waiter'))?.result, { big: [1, 2, 3] });
        for (const reader of readers(b, other)) assert.deepEqual((await reader.get(id))?.result, { big: [1, 2, 3] });
        await other.forget(id);
        assert.equal(await b.get(id), undefined, 'forget removes a pinned object');
      }));

      it('results expire after resultExpiresSec while pinned objects stay for their own time (0: until forgotten), and then go', scoped(async (s) => {
        const b = await s.open();
        const short = await s.expiring(b, 1);
        const [result, forever, hour, second] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
        await short.store(meta(result, States.SUCCESS, 'a result'));
        await short.storeFor!(meta(forever, States.SUCCESS, 'kept'), 0);
        await short.storeFor!(meta(hour, States.SUCCESS, 'an hour'), 3600);
        await short.storeFor!(meta(second, States.SUCCESS, 'a second'), 1);
        await sleep(2_500);
        // Engines that expire by sweeping (SQLite) do so as a new instance stores for the first time.
        await (await s.expiring(b, 1)).store(meta(randomUUID(), States.SUCCESS));
        assert.equal(await b.get(result), undefined, 'the result expired after resultExpiresSec');
        assert.equal(await b.get(second), undefined, 'the object pinned for 1 s expired');
        assert.equal((await b.get(forever))?.result, 'kept', 'ttlSec 0 keeps it');
        assert.equal((await b.get(hour))?.result, 'an hour', 'ttlSec 3600 keeps it past resultExpiresSec');
      }));
    });

    describe('parked calls (object references)', { skip: unshared }, () => {
      const call = (id: string): string => JSON.stringify({ call: id });
      const released = (taskId: string, input: string, status: string, again = false): ReleasedCall => ({ taskId, callJson: call(taskId), input, status, again });

      it('a call parked on two inputs is released by the outcome of the second, once, through any instance', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const [x, y, dep] = [randomUUID(), randomUUID(), randomUUID()];
        assert.deepEqual(await b.park!(dep, [x, y], call(dep)), { ready: false });
        assert.deepEqual(await b.park!(dep, [x, y], call(dep)), { ready: false }, 'parked again: nothing changes');
        assert.deepEqual(await other.settle!(meta(x, States.STARTED)), [], 'a state that is not an outcome releases nothing');
        assert.deepEqual(await other.settle!(meta(x, States.SUCCESS, 1)), [], 'one input of two');
        assert.deepEqual(await b.settle!(meta(y, States.SUCCESS, 2)), [released(dep, y, States.SUCCESS)]);
        assert.deepEqual(await other.settle!(meta(x, States.SUCCESS, 1)), [], 'the other input stored again: it did not release the call');
        assert.deepEqual(await other.settle!(meta(y, States.SUCCESS, 2)), [released(dep, y, States.SUCCESS, true)], 'the releasing input stored again (redelivered): the call again, marked');
        for (const reader of readers(b, other)) assert.equal((await reader.get(y))?.status, States.SUCCESS, 'settle stores the outcome as store does');
      }));

      it('an input already complete does not count: a call whose inputs all succeeded is ready at once, and one with a failed input is refused', scoped(async (s) => {
        const b = await s.open();
        const [done, failed, revoked, dep] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
        await b.store(meta(done, States.SUCCESS, 'v'));
        await b.store(meta(failed, States.FAILURE, { exc_type: 'ValueError', exc_message: ['no'], exc_module: 'builtins' }));
        await b.store(meta(revoked, States.REVOKED));
        assert.deepEqual(await b.park!(dep, [done, done], call(dep)), { ready: true });
        assert.deepEqual(await b.park!(randomUUID(), [done, failed], call('f')), { ready: false, failed: { input: failed, status: States.FAILURE } });
        assert.deepEqual(await b.park!(randomUUID(), [revoked], call('r')), { ready: false, failed: { input: revoked, status: States.REVOKED } });
        // Half complete: the call waits for the other input only.
        const [pending, half] = [randomUUID(), randomUUID()];
        assert.deepEqual(await b.park!(half, [done, pending], call(half)), { ready: false });
        assert.deepEqual(await b.settle!(meta(pending, States.SUCCESS, 3)), [released(half, pending, States.SUCCESS)]);
      }));

      it('a failed or revoked input releases its calls at once, with its state, and the other inputs then release nothing', scoped(async (s) => {
        const b = await s.open();
        const [x, y, z, d1, d2] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
        await b.park!(d1, [x, y], call(d1));
        await b.park!(d2, [y, z], call(d2));
        const out = await b.settle!(meta(y, States.FAILURE, { exc_type: 'ValueError', exc_message: ['no'], exc_module: 'builtins' }));
        assert.deepEqual(out.sort((p, q) => p.taskId.localeCompare(q.taskId)), [released(d1, y, States.FAILURE), released(d2, y, States.FAILURE)].sort((p, q) => p.taskId.localeCompare(q.taskId)));
        assert.deepEqual(await b.settle!(meta(x, States.SUCCESS, 1)), [], 'released already');
        assert.deepEqual(await b.settle!(meta(z, States.REVOKED)), [], 'released already');
        const [w, d3] = [randomUUID(), randomUUID()];
        await b.park!(d3, [w], call(d3));
        assert.deepEqual(await b.settle!(meta(w, States.REVOKED)), [released(d3, w, States.REVOKED)]);
      }));

      it('a SUCCESS stored before stands: a later failure of the same task stored again releases its calls as SUCCESS', scoped(async (s) => {
        const b = await s.open();
        const [x, dep] = [randomUUID(), randomUUID()];
        await b.store(meta(x, States.SUCCESS, 1));
        assert.deepEqual(await b.park!(dep, [x, randomUUID()], call(dep)), { ready: false });
        assert.deepEqual(await b.settle!(meta(x, States.FAILURE, { exc_type: 'E', exc_message: ['late'], exc_module: 'builtins' })), [], 'its SUCCESS was read at park; it still waits for the other input');
      }));

      it('no lost wake-up: parks and outcomes racing through several instances release each call exactly once', scoped(async (s) => {
        const b = await s.open();
        const instances = [b, await s.peer(b), await s.peer(b)];
        const n = 60;
        const inputs = Array.from({ length: n }, () => [randomUUID(), randomUUID()] as const);
        const deps = inputs.map(() => randomUUID());
        // Each call's park races the outcomes of its two inputs, each on another instance, in a scrambled order.
        const runs = scrambled(n).map((i, k) => {
          const [x, y] = inputs[i]!;
          return {
            dep: deps[i]!,
            park: instances[k % 3]!.park!(deps[i]!, [x, y], call(deps[i]!)),
            settles: [instances[(k + 1) % 3]!.settle!(meta(x, States.SUCCESS, i)), instances[(k + 2) % 3]!.settle!(meta(y, States.SUCCESS, i))],
          };
        });
        await within(Promise.all(runs.flatMap((r) => [r.park, ...r.settles])), 60_000, 'the parks and outcomes');
        const all: string[] = [];
        for (const run of runs) {
          // Released by an outcome, or ready at its park (both inputs had succeeded by then).
          for (const r of (await Promise.all(run.settles)).flat()) if (!r.again) all.push(r.taskId);
          if ((await run.park).ready) all.push(run.dep);
        }
        all.sort();
        assert.deepEqual(all, [...deps].sort(), 'every call released (by an outcome, or ready at its park) exactly once');
      }));
    });

    describe('chord join', { skip: unshared }, () => {
      it('200 members joined at once through several instances: exactly one call sees the join complete, with every result in index order', scoped(async (s) => {
        const b = await s.open();
        const instances = [b, await s.peer(b), await s.peer(b), await s.peer(b)];
        const group = randomUUID();
        const size = 200;
        const joins = await within(Promise.all(scrambled(size).map((index, k) => joinAs(instances[k % instances.length]!, group, index, size))), 60_000, 'the joins');
        const complete = joins.filter((j) => j.complete);
        assert.equal(complete.length, 1, 'exactly one call sees the join complete');
        assert.deepEqual(complete[0], { complete: true, first: true, results: joinedResults(size) });
        assert.deepEqual(joins.filter((j) => !j.complete).filter((j) => !isDeepStrictEqual(j, INCOMPLETE)), [], 'the other calls see it incomplete');
        for (const reader of instances) assert.deepEqual(await reader.chordResults!(group, size), joinedResults(size));
        assert.equal(await b.chordResults!(group, size + 1), undefined, 'the join holds 200 members, not more');
      }));

      it('a member recorded again (redelivered) counts once and changes nothing, before the join completes and after', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const group = randomUUID();
        const size = 10;
        for (let i = 0; i < size - 1; i++) assert.deepEqual(await joinAs(b, group, i, size), INCOMPLETE);
        // Each member in so far, recorded again through the other instance, with another result (a task run again
        // need not return the same): still one member short.
        for (let i = 0; i < size - 1; i++) assert.deepEqual(await other.chordJoin!(group, i, size, JSON.stringify({ again: i })), INCOMPLETE, `member ${i} recorded again`);
        assert.equal(await b.chordResults!(group, size), undefined, 'one member is still missing');
        assert.deepEqual(await joinAs(other, group, size - 1, size), { complete: true, first: true, results: joinedResults(size) }, 'the last member completes the join, with the results first recorded');
        // Redelivered after the join completed: it sees the join complete, and is not the call that completed it.
        for (const i of [0, size - 1]) {
          assert.deepEqual(await b.chordJoin!(group, i, size, JSON.stringify({ late: i })), { complete: true, first: false, results: joinedResults(size) }, `member ${i} recorded after completion`);
        }
        for (const reader of [b, other]) assert.deepEqual(await reader.chordResults!(group, size), joinedResults(size));
      }));

      it('every member recorded twice at once, through different instances: exactly one call is first, and each call that sees the join complete gets every result in order', scoped(async (s) => {
        const b = await s.open();
        const instances = [b, await s.peer(b), await s.peer(b)];
        const group = randomUUID();
        const size = 100;
        const calls = scrambled(size).flatMap((index, k) => [joinAs(instances[k % 3]!, group, index, size), joinAs(instances[(k + 1) % 3]!, group, index, size)]);
        const joins = await within(Promise.all(calls), 60_000, 'the joins');
        const first = joins.filter((j) => j.first);
        assert.equal(first.length, 1, 'exactly one call completed the join');
        assert.equal(first[0]!.complete, true);
        for (const j of joins) assert.deepEqual(j, j.complete ? { complete: true, first: j.first, results: joinedResults(size) } : INCOMPLETE);
        assert.deepEqual(await b.chordResults!(group, size), joinedResults(size));
      }));

      it('without results asked for, the completing call carries none, and chordResults reads them back in index order', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const group = randomUUID();
        const size = 5;
        const order = scrambled(size);
        for (const [k, index] of order.slice(0, -1).entries()) assert.deepEqual(await joinAs(k % 2 ? b : other, group, index, size, false), INCOMPLETE);
        assert.equal(await other.chordResults!(group, size), undefined, 'not complete yet');
        assert.deepEqual(await joinAs(b, group, order[size - 1]!, size, false), { complete: true, first: true, results: [] });
        for (const reader of [b, other]) assert.deepEqual(await reader.chordResults!(group, size), joinedResults(size));
        assert.deepEqual(await joinAs(other, group, 0, size, true), { complete: true, first: false, results: joinedResults(size) }, 'a redelivered member asking for them gets them');
      }));

      it('claimOnce is true for exactly one of 50 calls with one key made at once through several instances, and false for that key after', scoped(async (s) => {
        const b = await s.open();
        const instances = [b, await s.peer(b), await s.peer(b)];
        const key = `chord-failed-${randomUUID()}`;
        const claims = await within(Promise.all(Array.from({ length: 50 }, (_, k) => instances[k % 3]!.claimOnce!(key))), 30_000, 'the claims');
        assert.equal(claims.filter(Boolean).length, 1);
        for (const instance of instances) assert.equal(await instance.claimOnce!(key), false);
        assert.equal(await b.claimOnce!(`chord-failed-${randomUUID()}`), true, 'another key is claimed on its own');
      }));
    });

    describe('revocations', { skip: unshared }, () => {
      it('a revocation stored through one instance reaches a watcher on another, with its terminate flag and expiry; a stopped watcher hears no more', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const { seen, stop } = await s.watchRevocations(b);
        const plain: Revocation = { taskId: randomUUID(), terminate: false, expiresAt: new Date(Date.now() + 3_600_000) };
        const terminate: Revocation = { taskId: randomUUID(), terminate: true, expiresAt: new Date(Date.now() + 600_000) };
        await other.revoke!(plain);
        await other.revoke!(terminate);
        await waitFor(() => [plain, terminate].every((r) => seen.some((x) => x.taskId === r.taskId)), { timeoutMs: 20_000, what: 'both revocations to be reported' });
        for (const r of [plain, terminate]) assert.ok(reportedAs(seen, r), `${JSON.stringify(r)} is reported as stored; reported: ${JSON.stringify(seen)}`);
        await stop();
        const after = seen.length;
        await other.revoke!({ taskId: randomUUID(), terminate: false, expiresAt: new Date(Date.now() + 3_600_000) });
        await sleep(GRACE_MS);
        assert.equal(seen.length, after, 'nothing is reported after the watch was stopped');
      }));

      it('an instance opened after a revocation was stored reports it as soon as it starts watching, and not one that has expired', scoped(async (s) => {
        const b = await s.open();
        const kept: Revocation = { taskId: randomUUID(), terminate: false, expiresAt: new Date(Date.now() + 3_600_000) };
        const lapsed: Revocation = { taskId: randomUUID(), terminate: false, expiresAt: new Date(Date.now() + 300) };
        await b.revoke!(kept);
        await b.revoke!(lapsed);
        await waitFor(() => Date.now() > lapsed.expiresAt.getTime() + 50, { what: 'the short revocation to expire' });
        const later = await s.peer(b);
        const { seen } = await s.watchRevocations(later);
        await waitFor(() => seen.some((r) => r.taskId === kept.taskId), { timeoutMs: 20_000, what: 'the revocation in force to be reported' });
        assert.ok(reportedAs(seen, kept), `reported as stored; reported: ${JSON.stringify(seen)}`);
        await sleep(GRACE_MS);
        assert.equal(seen.some((r) => r.taskId === lapsed.taskId), false, 'an expired revocation is not reported');
      }));
    });

    // Beat's leader lease and its state records need one store every beat shares; rpc:// has none.
    const noLeases = options.callerOnly && 'no store shared by every process to hold a lease or records in (rpc://: results are the caller’s alone)';

    describe('leases', { skip: noLeases }, () => {
      it('acquiring a free lease makes the caller its holder until about now + ttl, as every instance reads it', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const name = leaseName();
        assert.equal(await b.readLease!(name), undefined, 'nobody holds a lease never taken');
        const before = Date.now();
        const lease = await b.acquireLease!(name, 'holder-a', 60_000);
        const after = Date.now();
        assert.equal(lease.holder, 'holder-a');
        assert.ok(lease.expiresAt instanceof Date);
        assertBetween(lease.expiresAt.getTime(), before + 60_000, after + 60_000, 'expiresAt of the lease taken');
        for (const reader of [b, other]) {
          const read = await reader.readLease!(name);
          assert.ok(read, 'the lease is held');
          assert.equal(read.holder, 'holder-a');
          assertNear(read.expiresAt.getTime(), lease.expiresAt.getTime(), 'readLease’s expiresAt');
        }
      }));

      it('its holder renews it: the expiry moves on and the holder stays', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const name = leaseName();
        const first = await b.acquireLease!(name, 'holder-a', 5_000);
        const before = Date.now();
        // Renewed through another instance: a holder is a name, not a connection.
        const renewed = await other.acquireLease!(name, 'holder-a', 60_000);
        const after = Date.now();
        assert.equal(renewed.holder, 'holder-a');
        assertBetween(renewed.expiresAt.getTime(), before + 60_000, after + 60_000, 'expiresAt of the renewed lease');
        assert.ok(renewed.expiresAt.getTime() > first.expiresAt.getTime(), 'the expiry moved on');
        const read = await b.readLease!(name);
        assert.ok(read, 'the lease is held');
        assert.equal(read.holder, 'holder-a');
        assertNear(read.expiresAt.getTime(), renewed.expiresAt.getTime(), 'readLease’s expiresAt after the renewal');
      }));

      it('another holder is refused while the lease is valid, and told who holds it', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const name = leaseName();
        const held = await b.acquireLease!(name, 'holder-a', 60_000);
        for (const instance of [other, b]) {
          const refused = await instance.acquireLease!(name, 'holder-b', 60_000);
          assert.equal(refused.holder, 'holder-a', 'the current holder, not the caller');
          assertNear(refused.expiresAt.getTime(), held.expiresAt.getTime(), 'the current holder’s expiry');
        }
        const read = await other.readLease!(name);
        assert.ok(read, 'the lease is held');
        assert.equal(read.holder, 'holder-a');
        assertNear(read.expiresAt.getTime(), held.expiresAt.getTime(), 'the refused calls did not move the expiry');
        assert.equal((await b.acquireLease!(leaseName(), 'holder-b', 60_000)).holder, 'holder-b', 'another lease is taken on its own');
      }));

      it('once the ttl lapses nobody holds it, another holder takes it, and the old holder cannot renew it', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const name = leaseName();
        assert.equal((await b.acquireLease!(name, 'holder-a', 300)).holder, 'holder-a');
        await waitFor(async () => (await other.readLease!(name)) === undefined, { timeoutMs: 20_000, what: 'the 300 ms lease to lapse, as the other instance reads it' });
        assert.equal(await b.readLease!(name), undefined);
        const taken = await other.acquireLease!(name, 'holder-b', 60_000);
        assert.equal(taken.holder, 'holder-b', 'a lapsed lease is taken by another holder');
        const late = await b.acquireLease!(name, 'holder-a', 60_000);
        assert.equal(late.holder, 'holder-b', 'the old holder’s renewal is refused once another holds it');
        assertNear(late.expiresAt.getTime(), taken.expiresAt.getTime(), 'the new holder’s expiry');
      }));

      it('a lapsed lease is taken by another holder even while the old holder keeps asking too late', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const name = leaseName();
        assert.equal((await b.acquireLease!(name, 'holder-a', 200)).holder, 'holder-a');
        // Another holder keeps trying; it must win at some point after the 200 ms, and then keep it.
        await waitFor(async () => (await other.acquireLease!(name, 'holder-b', 60_000)).holder === 'holder-b', { timeoutMs: 20_000, intervalMs: 50, what: 'another holder to take the lapsed lease' });
        assert.equal((await b.readLease!(name))?.holder, 'holder-b');
      }));

      it('a release by anyone but the holder changes nothing; the holder’s release frees the lease at once for another', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const name = leaseName();
        const held = await b.acquireLease!(name, 'holder-a', 60_000);
        await other.releaseLease!(name, 'holder-b');
        await b.releaseLease!(name, 'holder-b');
        const read = await other.readLease!(name);
        assert.ok(read, 'the lease is still held');
        assert.equal(read.holder, 'holder-a', 'a non-holder’s release left the lease to its holder');
        assertNear(read.expiresAt.getTime(), held.expiresAt.getTime(), 'and its expiry');
        assert.equal((await other.acquireLease!(name, 'holder-b', 60_000)).holder, 'holder-a', 'still refused to another');
        await other.releaseLease!(name, 'holder-a');
        for (const reader of [b, other]) assert.equal(await reader.readLease!(name), undefined, 'released: nobody holds it');
        assert.equal((await b.acquireLease!(name, 'holder-b', 60_000)).holder, 'holder-b', 'another takes it at once, long before the old ttl');
        await b.releaseLease!(leaseName(), 'holder-a'); // a lease never taken: harmless
        await other.releaseLease!(name, 'holder-a'); // the old holder again, now that another holds it: harmless
        assert.equal((await other.readLease!(name))?.holder, 'holder-b');
      }));

      it('60 holders acquiring one free lease at once through several instances: exactly one wins, and every call names it', scoped(async (s) => {
        const b = await s.open();
        const instances = [b, await s.peer(b), await s.peer(b), await s.peer(b)];
        const name = leaseName();
        const holders = Array.from({ length: 60 }, (_, k) => `holder-${k}`);
        const leases = await within(Promise.all(holders.map((holder, k) => instances[k % instances.length]!.acquireLease!(name, holder, 60_000))), 30_000, 'the acquires');
        const winners = holders.filter((holder, k) => leases[k]!.holder === holder);
        assert.equal(winners.length, 1, `exactly one caller holds it (won: ${JSON.stringify(winners)})`);
        assert.deepEqual(new Set(leases.map((l) => l.holder)), new Set(winners), 'every call reports the one winner');
        for (const reader of instances) assert.equal((await reader.readLease!(name))?.holder, winners[0]);
      }));
    });

    describe('records', { skip: noLeases }, () => {
      it('a record put is read back, by every instance, as the text put', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const table = tableName();
        const json = JSON.stringify({ lastDueMs: 1_780_000_000_000, beat: 'béat ✓', list: [1, null, true] });
        await b.putRecord!(table, 'reports.hourly', json);
        await b.putRecord!(table, 'heartbeat', '{"n":1}');
        for (const reader of [b, other]) {
          const records = await reader.readRecords!(table);
          assert.ok(records instanceof Map);
          assert.deepEqual(records, new Map([['reports.hourly', json], ['heartbeat', '{"n":1}']]));
        }
      }));

      it('a record deleted is gone for every instance, the others of its table stay, and deleting an absent one is harmless', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const table = tableName();
        await b.putRecord!(table, 'gone', '1');
        await b.putRecord!(table, 'kept', '2');
        await other.deleteRecord!(table, 'gone');
        await other.deleteRecord!(table, 'never-there');
        await other.deleteRecord!(tableName(), 'gone');
        for (const reader of [b, other]) assert.deepEqual(await reader.readRecords!(table), new Map([['kept', '2']]));
      }));

      it('a record put again under its key replaces the one there', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const table = tableName();
        await b.putRecord!(table, 'k', '{"v":1}');
        await other.putRecord!(table, 'k', '{"v":2}');
        await b.putRecord!(table, 'k', '{"v":3}');
        for (const reader of [b, other]) assert.deepEqual(await reader.readRecords!(table), new Map([['k', '{"v":3}']]));
      }));

      it('tables are separate: one key in two tables is two records, and a table never written reads as an empty Map', scoped(async (s) => {
        const b = await s.open();
        const one = tableName();
        const two = tableName();
        await b.putRecord!(one, 'k', '"one"');
        await b.putRecord!(two, 'k', '"two"');
        await b.putRecord!(two, 'only-two', '2');
        assert.deepEqual(await b.readRecords!(one), new Map([['k', '"one"']]));
        assert.deepEqual(await b.readRecords!(two), new Map([['k', '"two"'], ['only-two', '2']]));
        const unknown = await b.readRecords!(tableName());
        assert.ok(unknown instanceof Map);
        assert.equal(unknown.size, 0);
      }));

      it('a record written through another instance is read here', scoped(async (s) => {
        const b = await s.open();
        const other = await s.peer(b);
        const table = tableName();
        await other.putRecord!(table, 'from-peer', '{"by":"peer"}');
        assert.deepEqual(await b.readRecords!(table), new Map([['from-peer', '{"by":"peer"}']]));
      }));
    });

    describe('across processes', { skip: (!options.crossProcess && 'the store is not shared across processes') || unshared }, () => {
      it('300 chord members recorded at once by three processes, each member by two of them: exactly one call completes the join, every complete call with every result in order', scoped(async (s) => {
        const b = await s.open();
        const group = randomUUID();
        const size = 300;
        const children = [0, 1, 2].map((p) => {
          const indexes = scrambled(size).filter((i) => i % 3 === p || i % 3 === (p + 1) % 3);
          return s.spawnHelper('backend-peer.ts', [b.url, 'chord-join', group, String(size), indexes.join(',')]);
        });
        for (const c of children) await c.waitForLine('READY');
        for (const c of children) c.send('GO');
        for (const c of children) await c.waitForLine('DONE', 60_000);
        // Each child checked the results a call returned against joinedResults(size): "in order", or "none".
        const joins = children.flatMap((c) => c.linesAfter('JOIN ').map((line) => JSON.parse(line) as { index: number; complete: boolean; first: boolean; results: unknown }));
        assert.equal(joins.length, 2 * size);
        const first = joins.filter((j) => j.first);
        assert.equal(first.length, 1, 'exactly one call completed the join');
        for (const { index, ...j } of joins) assert.deepEqual(j, j.complete ? { complete: true, first: j.first, results: 'in order' } : { complete: false, first: false, results: 'none' }, `member ${index}`);
        assert.deepEqual(await b.chordResults!(group, size), joinedResults(size));
        for (const c of children) await c.exited;
        assert.deepEqual(children.map((c) => c.exit), children.map(() => ({ code: 0, signal: null })));
      }));

      it('a revocation stored by another process reaches a watcher here, and a process started after a revocation reports it', scoped(async (s) => {
        const b = await s.open();
        const { seen } = await s.watchRevocations(b);
        const there: Revocation = { taskId: randomUUID(), terminate: true, expiresAt: new Date(Date.now() + 3_600_000) };
        const revoker = s.spawnHelper('backend-peer.ts', [b.url, 'revoke', there.taskId, '1', String(there.expiresAt.getTime())]);
        await revoker.waitForLine('REVOKED');
        await waitFor(() => seen.some((r) => r.taskId === there.taskId), { timeoutMs: 20_000, what: 'the revocation from the other process' });
        assert.ok(reportedAs(seen, there), `reported as stored; reported: ${JSON.stringify(seen)}`);

        const here: Revocation = { taskId: randomUUID(), terminate: false, expiresAt: new Date(Date.now() + 600_000) };
        await b.revoke!(here);
        const watcher = s.spawnHelper('backend-peer.ts', [b.url, 'watch']);
        await watcher.waitForLine('READY');
        const reported = (): Revocation[] =>
          watcher.linesAfter('REVOKED ').map((line) => {
            const r = JSON.parse(line) as { taskId: string; terminate: boolean; expiresAt: number };
            return { ...r, expiresAt: new Date(r.expiresAt) };
          });
        await waitFor(() => [here, there].every((r) => reported().some((x) => x.taskId === r.taskId)), { timeoutMs: 20_000, what: 'the later process to report both revocations in force' });
        for (const r of [here, there]) assert.ok(reportedAs(reported(), r, ['taskId', 'expiresAt']), `${JSON.stringify(r)} reported; reported: ${JSON.stringify(reported())}`);
      }));

      it('three processes and this one acquire one free lease at once, 20 holders each: exactly one call wins, and every call names the winner', scoped(async (s) => {
        const b = await s.open();
        const name = leaseName();
        const holdersOf = (who: string): string[] => Array.from({ length: 20 }, (_, k) => `${who}-holder-${k}`);
        const children = [0, 1, 2].map((p) => s.spawnHelper('backend-peer.ts', [b.url, 'lease', name, '60000', holdersOf(`process${p}`).join(',')]));
        for (const c of children) await c.waitForLine('READY');
        for (const c of children) c.send('GO');
        const here = holdersOf('here');
        const ours = await within(Promise.all(here.map((holder) => b.acquireLease!(name, holder, 60_000))), 30_000, 'this process’s acquires');
        for (const c of children) await c.waitForLine('DONE', 60_000);
        const calls = [
          ...here.map((holder, k) => ({ holder, got: ours[k]!.holder })),
          ...children.flatMap((c) => c.linesAfter('LEASE ').map((line) => JSON.parse(line) as { holder: string; got: string })),
        ];
        assert.equal(calls.length, 80, 'every call answered');
        const winners = calls.filter((c) => c.got === c.holder).map((c) => c.holder);
        assert.equal(winners.length, 1, `exactly one call won the lease (won: ${JSON.stringify(winners)})`);
        assert.deepEqual(new Set(calls.map((c) => c.got)), new Set(winners), 'every call, in every process, reports the one winner');
        assert.equal((await b.readLease!(name))?.holder, winners[0]);
        for (const c of children) await c.exited;
        assert.deepEqual(children.map((c) => c.exit), children.map(() => ({ code: 0, signal: null })));
      }));

      it('a record put by another process is read here', scoped(async (s) => {
        const b = await s.open();
        const table = tableName();
        const json = JSON.stringify({ lastDueMs: 1_780_000_000_000, beat: 'béat ✓' });
        await b.putRecord!(table, 'here', '"here"');
        const child = s.spawnHelper('backend-peer.ts', [b.url, 'record', table, 'there', json]);
        await child.waitForLine('PUT');
        assert.deepEqual(await b.readRecords!(table), new Map([['here', '"here"'], ['there', json]]));
      }));
    });
  });
}
