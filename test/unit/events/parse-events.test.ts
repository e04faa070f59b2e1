// Reading events from text anyone could have written (src/events/events.ts): one event object, or a list of them as
// Celery's workers send their buffered task events (routing key task.multi); anything else is left out.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventRoutingKey, parseEvents } from '../../../src/events/events.ts';

describe('parseEvents', () => {
  it('reads one event object', () => {
    assert.deepEqual(parseEvents('{"type":"worker-online","hostname":"h","timestamp":1}'), [{ type: 'worker-online', hostname: 'h', timestamp: 1 }]);
  });

  it("reads a list of events in order (a Celery worker's task.multi body)", () => {
    const list = [
      { type: 'task-received', hostname: 'celery@vm', timestamp: 1, uuid: 'a', clock: 8 },
      { type: 'task-started', hostname: 'celery@vm', timestamp: 2, uuid: 'a', clock: 9 },
      { type: 'task-succeeded', hostname: 'celery@vm', timestamp: 3, uuid: 'a', clock: 10 },
    ];
    assert.deepEqual(parseEvents(JSON.stringify(list)), list);
  });

  it("leaves out a list's elements that are not events, and keeps the rest", () => {
    assert.deepEqual(parseEvents('[1, null, {"type": 5}, {"type":"task-started","hostname":"h","timestamp":0}, [{"type":"x"}], "task-failed"]'), [{ type: 'task-started', hostname: 'h', timestamp: 0 }]);
  });

  it('reads nothing from text that holds no event', () => {
    for (const text of ['', 'not json', '5', 'null', '"task-succeeded"', '{"hostname":"h"}', '{"type":["a"]}', '[]', '[1,2]']) assert.deepEqual(parseEvents(text), [], text);
  });
});

describe('eventRoutingKey', () => {
  it("is the event's type with dots, as Celery's", () => {
    assert.equal(eventRoutingKey({ type: 'task-succeeded', hostname: 'h', timestamp: 0 }), 'task.succeeded');
  });

  it("is <group>.multi for a list of a group's events", () => {
    assert.equal(eventRoutingKey([{ type: 'task-received', hostname: 'h', timestamp: 0 }, { type: 'task-started', hostname: 'h', timestamp: 0 }]), 'task.multi');
  });
});
