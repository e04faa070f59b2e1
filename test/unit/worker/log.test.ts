// The worker's log formats (src/worker/log.ts): which one by default, and how the pretty form shortens the
// executor's Celery-style messages using their fields.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultLogFormat, duration, readableMessage, shortId } from '../../../src/worker/log.ts';

const ID = '3f2a1b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b';

describe('worker log format', () => {
  it('is pretty on a terminal and json anywhere else', () => {
    assert.equal(defaultLogFormat({ isTTY: true }), 'pretty');
    assert.equal(defaultLogFormat({ isTTY: false }), 'json');
    assert.equal(defaultLogFormat({}), 'json');
  });

  it('shows a success line with a short id and the runtime in ms', () => {
    const log = { task: 'math.add', id: ID, runtimeSec: 0.0012, msg: `Task math.add[${ID}] succeeded in 0.001200s: 5` };
    assert.equal(readableMessage(log), 'Task math.add[3f2a1b2c…] succeeded in 1.2 ms: 5');
  });

  it('adds the runtime to an outcome line whose message does not say it', () => {
    const log = { task: 't.fail', id: ID, runtimeSec: 0.25, error: 'no', msg: `Task t.fail[${ID}] raised RangeError: no` };
    assert.equal(readableMessage(log), 'Task t.fail[3f2a1b2c…] raised RangeError: no (ran 250 ms)');
  });

  it('leaves a message without those fields as it is, and an id that appears unbracketed untouched', () => {
    assert.equal(readableMessage({ msg: 'worker ready: fennel.1@vm, async pool × 2, queues celery' }), 'worker ready: fennel.1@vm, async pool × 2, queues celery');
    assert.equal(readableMessage({ id: ID, msg: `terminating task ${ID}` }), `terminating task ${ID}`);
    assert.equal(readableMessage({ message: 'other key' }, 'message'), 'other key');
    assert.equal(readableMessage({}), '');
  });

  it('shortens ids to their first 8 characters, keeping a short custom id whole', () => {
    assert.equal(shortId(ID), '3f2a1b2c…');
    assert.equal(shortId('job-1'), 'job-1');
  });

  it('prints durations with a unit a person reads at a glance', () => {
    assert.equal(duration(0.0000423), '0.04 ms');
    assert.equal(duration(0.0012), '1.2 ms');
    assert.equal(duration(0.25), '250 ms');
    assert.equal(duration(3.5), '3.50 s');
    assert.equal(duration(125), '125 s');
  });
});
