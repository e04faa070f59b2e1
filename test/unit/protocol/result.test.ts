// Celery's result layout (src/protocol/result.ts): encoding metas as Celery writes them (A.4 captures),
// and turning a stored FAILURE or REVOKED back into an error a caller can catch.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RemoteTaskError, SerializationError } from '../../../src/errors.ts';
import { decodeMeta, encodeMeta, errorInfo, exceptionInfo, isExceptionInfo, pendingMeta, remoteError, withResultJson, type TaskMeta } from '../../../src/protocol/result.ts';
import { celeryA4Results } from '../../fixtures/celery.ts';
import { encodeJson } from '../../../src/protocol/json.ts';

const { success, failure, revoked, notRegistered, rpcReply } = celeryA4Results;

describe('exceptionInfo', () => {
  it('puts Python’s builtin exception names under module builtins', () => {
    assert.deepEqual(exceptionInfo('ValueError', 'boom'), { exc_type: 'ValueError', exc_message: ['boom'], exc_module: 'builtins' });
    assert.deepEqual(exceptionInfo('TypeError', 'bad'), { exc_type: 'TypeError', exc_message: ['bad'], exc_module: 'builtins' });
  });

  it('reports a plain JS Error as Python’s Exception', () => {
    assert.deepEqual(exceptionInfo('Error', 'plain'), { exc_type: 'Exception', exc_message: ['plain'], exc_module: 'builtins' });
  });

  it('puts JS-only error names under module fennel, unless a module is given', () => {
    assert.deepEqual(exceptionInfo('RangeError', 'r'), { exc_type: 'RangeError', exc_message: ['r'], exc_module: 'fennel' });
    assert.deepEqual(exceptionInfo('NotRegistered', 'proj.tasks.nope', 'celery.exceptions'), notRegistered.result);
  });
});

describe('errorInfo', () => {
  it('takes an Error’s name and message, and its stack as the traceback', () => {
    const error = new TypeError('wrong type');
    const { info, traceback } = errorInfo(error);
    assert.deepEqual(info, { exc_type: 'TypeError', exc_message: ['wrong type'], exc_module: 'builtins' });
    assert.equal(traceback, error.stack);
  });

  it('reports a thrown non-Error as Exception with its text and no traceback', () => {
    assert.deepEqual(errorInfo('just a string'), { info: { exc_type: 'Exception', exc_message: ['just a string'], exc_module: 'builtins' }, traceback: null });
  });
});

describe('isExceptionInfo', () => {
  it('recognises Celery’s exception layout and nothing else', () => {
    assert.equal(isExceptionInfo(failure.result), true);
    assert.equal(isExceptionInfo(5), false);
    assert.equal(isExceptionInfo(null), false);
    assert.equal(isExceptionInfo({ exc_type: 'ValueError' }), false);
  });
});

describe('remoteError', () => {
  it('rebuilds Celery’s captured FAILURE as a RemoteTaskError with every field', () => {
    const error = remoteError(failure);
    assert.ok(error instanceof RemoteTaskError);
    assert.equal(error.code, 'FENNEL_REMOTE_TASK');
    assert.equal(error.taskId, failure.task_id);
    assert.equal(error.remoteName, 'ValueError');
    assert.equal(error.remoteMessage, 'boom, 42');
    assert.equal(error.remoteModule, 'builtins');
    assert.equal(error.remoteStack, failure.traceback);
    assert.equal(error.state, 'FAILURE');
    assert.equal(error.message, `task ${failure.task_id} failed: ValueError: boom, 42`);
  });

  it('says a REVOKED task was revoked', () => {
    const error = remoteError(revoked);
    assert.equal(error.state, 'REVOKED');
    assert.equal(error.remoteName, 'TaskRevokedError');
    assert.equal(error.remoteModule, 'celery.exceptions');
    assert.equal(error.message, `task ${revoked.task_id} was revoked: TaskRevokedError: expired`);
  });

  it('reports an unregistered task as Celery stored it', () => {
    const error = remoteError(notRegistered);
    assert.equal(error.remoteName, 'NotRegistered');
    assert.equal(error.remoteMessage, 'proj.tasks.nope');
    assert.equal(error.remoteStack, null);
  });

  it('accepts an exc_message that is a bare string', () => {
    const meta = { ...failure, result: { exc_type: 'KeyError', exc_message: 'missing', exc_module: 'builtins' } } as TaskMeta;
    assert.equal(remoteError(meta).remoteMessage, 'missing');
  });

  it('reports a failure whose result is not an exception as Exception with the result as JSON', () => {
    const error = remoteError({ ...failure, result: { weird: true } });
    assert.equal(error.remoteName, 'Exception');
    assert.equal(error.remoteMessage, '{"weird":true}');
  });
});

describe('encodeMeta and decodeMeta', () => {
  it('encodes Celery’s captured metas to the same JSON, keys in Celery’s order', () => {
    for (const meta of [success, failure, revoked, notRegistered, rpcReply.body]) {
      const text = encodeMeta(meta);
      assert.deepEqual(JSON.parse(text), meta);
      assert.deepEqual(Object.keys(JSON.parse(text) as object), ['status', 'result', 'traceback', 'children', 'date_done', 'task_id']);
    }
  });

  it('tags dates and bytes inside the result, and decodes them back', () => {
    const meta: TaskMeta = { ...(success as TaskMeta), result: { at: new Date('2026-11-26T02:30:06.208Z'), raw: Buffer.from('hi') } };
    const text = encodeMeta(meta);
    assert.deepEqual((JSON.parse(text) as { result: unknown }).result, {
      at: { __type__: 'datetime', __value__: '2026-11-26T02:30:06.208000+00:00' },
      raw: { __type__: 'base64', __value__: 'aGk=' },
    });
    assert.deepEqual(decodeMeta(text), meta);
  });

  it('refuses a result JSON cannot carry, naming its path under result', () => {
    const meta: TaskMeta = { ...(success as TaskMeta), result: { handle: new Map() } };
    assert.throws(() => encodeMeta(meta), (e: unknown) => e instanceof SerializationError && e.message.includes('result.handle'));
  });

  it('splices in the text a slot encoded the result to (withResultJson), the same text as encoding it again', () => {
    const values: unknown[] = [null, 0, 'x'.repeat(100_000), [1, 'two', { three: 3 }], { at: new Date('2026-11-26T02:30:06.208Z'), raw: Buffer.from('hi') }];
    for (const value of values) {
      const plain: TaskMeta = { ...(success as TaskMeta), result: value };
      const reused = withResultJson({ ...(success as TaskMeta), result: value }, encodeJson(value, 'result'));
      assert.equal(encodeMeta(reused), encodeMeta(plain));
    }
    // The text is what goes in, not the value encoded again: the value is not looked at.
    const spliced = withResultJson({ ...(success as TaskMeta), result: new Map() }, '[1,2]');
    assert.deepEqual(decodeMeta(encodeMeta(spliced)).result, [1, 2]);
    // A field after the result that holds the placeholder's own text is left alone.
    const sly = withResultJson({ ...(success as TaskMeta), result: 'r', args: ['\u0000fennel:result\u0000'] }, '"r"');
    assert.deepEqual(decodeMeta(encodeMeta(sly)), { ...success, result: 'r', args: ['\u0000fennel:result\u0000'] });
  });

  it('decodes the rpc:// reply body a Celery worker sends', () => {
    assert.deepEqual(decodeMeta(JSON.stringify(rpcReply.body)), rpcReply.body);
  });
});

describe('pendingMeta', () => {
  it('is what a missing result reads as in Celery', () => {
    assert.deepEqual(pendingMeta('t-1'), { status: 'PENDING', result: null, traceback: null, children: [], date_done: null, task_id: 't-1' });
  });
});
