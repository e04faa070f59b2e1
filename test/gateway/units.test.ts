// The gateway's small pure parts: the static-file resolver (never outside its folder), the token check, the
// task views and the monitor's handling of events that any process could have published.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Fennel, RemoteTaskError } from '../../src/index.ts';
import { z } from 'zod';
import { checkArguments } from '../../src/gateway/arguments.ts';
import { tokenCheck } from '../../src/gateway/auth.ts';
import { GatewayMetrics } from '../../src/gateway/metrics.ts';
import { Monitor } from '../../src/gateway/monitor.ts';
import { resolveInside } from '../../src/gateway/static.ts';
import { safeStringify, viewOfMeta, viewOfOutcome } from '../../src/gateway/views.ts';

describe('resolveInside', () => {
  it('serves files inside the folder, index.html for a folder, and nothing outside it or of an unknown type', () => {
    assert.equal(resolveInside('/srv/site', ''), '/srv/site/index.html');
    assert.equal(resolveInside('/srv/site', 'a/b.js'), '/srv/site/a/b.js');
    assert.equal(resolveInside('/srv/site', 'a/'), '/srv/site/a/index.html');
    assert.equal(resolveInside('/srv/site', '../etc/passwd'), undefined);
    assert.equal(resolveInside('/srv/site', '..%2f..%2fetc%2fpasswd.txt'), undefined);
    assert.equal(resolveInside('/srv/site', '/etc/hosts.txt'), '/srv/site/etc/hosts.txt');
    assert.equal(resolveInside('/srv/site', 'x.ts'), undefined);
    assert.equal(resolveInside('/srv/site', 'bad%zz.js'), undefined);
    assert.equal(resolveInside('/srv/site', 'nul\0.js'), undefined);
    assert.equal(resolveInside('/srv/site', '../site2/x.js'), undefined);
  });
});

describe('checkArguments', () => {
  const pair = z.tuple([z.number(), z.number()]);
  const named = z.object({ name: z.string(), times: z.coerce.number().default(1) });

  it('checks args against a tuple schema, with kwargs (if any) as the trailing object the task receives', () => {
    assert.deepEqual(checkArguments(pair, [1, 2], undefined), { ok: true, args: [1, 2] });
    assert.deepEqual(checkArguments(pair, [1, 2], {}), { ok: true, args: [1, 2] }); // {} is no kwargs
    assert.deepEqual(checkArguments(pair, [1, 2], { c: 3 }), { ok: false, reason: 'kwargs: not accepted: this task takes positional arguments only (send them in args)' });
    assert.match((checkArguments(pair, [1, 'x'], undefined) as { reason: string }).reason, /^args\.1: /);
    const optionsLast = z.tuple([z.number(), z.object({ scale: z.number() }).optional()]);
    assert.deepEqual(checkArguments(optionsLast, [1], { scale: 2 }), { ok: true, args: [1], kwargs: { scale: 2 } });
    assert.match((checkArguments(optionsLast, [1], { scale: 'x' }) as { reason: string }).reason, /^kwargs\.scale: /);
  });

  it('reads an object schema as the one argument of a task that takes its arguments by name', () => {
    assert.deepEqual(checkArguments(named, [], { name: 'a', times: '2' }), { ok: true, args: [], kwargs: { name: 'a', times: 2 } });
    assert.deepEqual(checkArguments(named, [{ name: 'a' }], undefined), { ok: true, args: [{ name: 'a', times: 1 }] });
    assert.match((checkArguments(named, [], { name: 5 }) as { reason: string }).reason, /^kwargs\.name: /);
    assert.match((checkArguments(named, [], undefined) as { reason: string }).reason, /^kwargs: required: /);
    assert.match((checkArguments(named, [1], { name: 'a' }) as { reason: string }).reason, /^args: not accepted: /);
  });

  it('passes args and kwargs on as sent for a task without a schema', () => {
    assert.deepEqual(checkArguments(undefined, [1], { a: 1 }), { ok: true, args: [1], kwargs: { a: 1 } });
  });
});

describe('tokenCheck', () => {
  it('accepts everything without a token; with one, only the bearer header or the query token that match', () => {
    assert.equal(tokenCheck(undefined)(undefined, undefined), true);
    const check = tokenCheck('abc');
    assert.equal(check('Bearer abc', undefined), true);
    assert.equal(check('bearer   abc', undefined), true);
    assert.equal(check(undefined, 'abc'), true);
    assert.equal(check('Bearer abd', undefined), false);
    assert.equal(check('Basic abc', undefined), false);
    assert.equal(check(undefined, undefined), false);
    assert.equal(check('Bearer ab', 'abc'), false); // a header that is there decides
  });
});

describe('task views', () => {
  it('shows a result on SUCCESS, an error on FAILURE in Celery\'s layout, and progress otherwise', () => {
    const base = { traceback: null, children: [], date_done: null, task_id: 't1' };
    assert.deepEqual(viewOfMeta({ ...base, status: 'SUCCESS', result: 5, name: 'x' }), { id: 't1', state: 'SUCCESS', name: 'x', result: 5 });
    assert.deepEqual(viewOfMeta({ ...base, status: 'FAILURE', result: { exc_type: 'ValueError', exc_message: ['bad', 2], exc_module: 'builtins' }, traceback: 'tb' }).error, {
      type: 'ValueError',
      message: 'bad, 2',
      module: 'builtins',
      traceback: 'tb',
    });
    assert.deepEqual(viewOfMeta({ ...base, status: 'PROGRESS', result: { done: 1 } }).progress, { done: 1 });
    assert.deepEqual(viewOfMeta({ ...base, status: 'FAILURE', result: 'odd' }).error?.type, 'Error');
    const failed = viewOfOutcome('t2', { ok: false, error: new RemoteTaskError('t2', 'RangeError', 'no', null, 'fennel', 'FAILURE') });
    assert.equal(failed?.state, 'FAILURE');
    assert.equal(viewOfOutcome('t3', { ok: false, error: new Error('aborted') }), undefined);
  });

  it('safeStringify never throws: BigInt as text, cycles marked', () => {
    const cyclic: Record<string, unknown> = { n: 1n };
    cyclic['self'] = cyclic;
    assert.equal(safeStringify(cyclic), '{"n":"1","self":"[Circular]"}');
  });
});

describe('Monitor', () => {
  it('ignores events with bad fields, caps queue names, and marks workers from heartbeats and task events', async () => {
    const app = new Fennel({ broker: 'memory://monitor-unit' });
    const monitor = new Monitor(app, new GatewayMetrics());
    try {
      for (const bad of [{}, { type: 5 }, { type: 'task-succeeded' }, { type: 'task-nonsense', uuid: 'x' }, { type: 'worker-heartbeat', hostname: {}, loadavg: 'x', queues: [1, 'q'] }]) {
        monitor.onEvent(bad as never);
      }
      for (let i = 0; i < 500; i++) monitor.onEvent({ type: 'worker-heartbeat', hostname: 'h', timestamp: 0, pid: 1, queues: [`q${i}`] });
      assert.ok(monitor.queues.size <= 100);
      monitor.onEvent({ type: 'task-started', hostname: 'w2', timestamp: 0, pid: 2, uuid: 'u' });
      assert.equal(monitor.workers.get('w2:2')?.online, true);
      assert.equal(monitor.tasks.get('u')?.state, 'STARTED');
    } finally {
      await monitor.stop();
      await app.close();
    }
  });
});
