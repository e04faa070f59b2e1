// Celery's remote-control wire format (src/control/protocol.ts) against what Celery 5.2.6 really sent and answered,
// on Redis and on RabbitMQ (test/fixtures/celery-pidbox-*.json, captured by test/fixtures/capture/capture_pidbox.py
// from a real worker and the real `celery inspect`/`celery control`): every request Celery sent parses, and
// Fennel writes the same body for the same command; the nodes that answered are exactly those the addressing rules
// select; Fennel's replies carry the body and headers Celery's did; stale and malformed requests are recognised.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '../../../src/errors.ts';
import {
  CONTROL_EXCHANGE,
  controlReply,
  controlRequest,
  globToRegExp,
  isAddressedTo,
  isStale,
  mailboxQueue,
  parseControlReply,
  parseControlRequest,
  REPLY_EXCHANGE,
  replyHeaders,
  replyQueue,
  requestHeaders,
  type ControlRequest,
} from '../../../src/control/protocol.ts';
import { celeryPidboxAmqp, celeryPidboxRedis, type PidboxCapture, type PidboxMessage } from '../../fixtures/celery.ts';

const headersOf = (message: PidboxMessage): Record<string, unknown> => message.envelope?.headers ?? message.headers ?? {};

for (const [engine, capture] of [['redis', celeryPidboxRedis], ['amqp', celeryPidboxAmqp]] as const satisfies ReadonlyArray<readonly [string, PidboxCapture]>) {
  describe(`control protocol against Celery's captures: ${engine}`, () => {
    const requests = capture.commands.flatMap((command) => command.requests.map((message) => ({ command, message })));

    it('captured every command (and the captures hold requests and replies)', () => {
      assert.ok(requests.length >= 40, `${requests.length} requests`);
      assert.ok(capture.commands.filter((c) => c.replies.length > 0).length >= 30);
    });

    it('every request Celery sent parses, and Fennel writes the same body for it, key for key and in order', () => {
      for (const { command, message } of requests) {
        const parsed = parseControlRequest(message.decodedBody);
        const addressing = Array.isArray(parsed.destination) ? { destination: parsed.destination } : {};
        const rebuilt = controlRequest(parsed.method, parsed.arguments, { ...addressing, pattern: parsed.pattern, matcher: parsed.matcher as 'glob' | 'pcre' | null }, parsed.reply_to ? { ticket: parsed.ticket!, oid: parsed.reply_to.routing_key } : undefined);
        assert.equal(JSON.stringify(rebuilt), JSON.stringify(message.decodedBody), command.name);
        if (parsed.reply_to) assert.equal(parsed.reply_to.exchange, REPLY_EXCHANGE, command.name);
      }
    });

    it("a request's headers are Celery's: the clock and an expiry one timeout ahead", () => {
      for (const { command, message } of requests) {
        const headers = headersOf(message);
        assert.deepEqual(Object.keys(headers).sort(), Object.keys(requestHeaders(1, 1)).sort(), command.name);
        assert.equal(typeof headers['clock'], 'number', command.name);
      }
      const now = Date.parse('2026-12-06T07:00:00Z');
      assert.deepEqual(requestHeaders(3, 1, now), { clock: 3, expires: now / 1000 + 1 });
      assert.deepEqual(requestHeaders(3, 0, now), { clock: 3, expires: 0 });
    });

    it('the nodes that answered are those the addressing selects; the pattern that matched no one got no answer', () => {
      let checked = 0;
      for (const { command, message } of requests) {
        const request = parseControlRequest(message.decodedBody);
        const answered = command.replies.flatMap((reply) => Object.keys(reply.decodedBody as object));
        for (const node of answered) assert.equal(isAddressedTo(request, node), true, `${command.name}: ${node} answered`);
        // Unanswered with a reply wanted: a shutdown (Celery's never replies), a worker's start-up hello (it is
        // alone), or addressed to no one.
        if (answered.length === 0 && request.reply_to && request.method !== 'shutdown' && request.method !== 'hello') {
          assert.equal(isAddressedTo(request, capture.worker['nodename'] as string), false, `${command.name}: unanswered, so not addressed`);
          checked++;
        }
      }
      assert.equal(checked, 1, 'the pcre pattern ^nobody@');
    });

    it("Fennel's reply to each captured request is Celery's: body {node: result}, headers {ticket, clock}; the client reads it", () => {
      let replies = 0;
      for (const command of capture.commands) {
        for (const reply of command.replies) {
          const request = command.requests.map((m) => parseControlRequest(m.decodedBody)).find((r) => r.ticket === headersOf(reply)['ticket']);
          assert.ok(request, `${command.name}: a reply to a captured request`);
          const [[node, result]] = Object.entries(reply.decodedBody as Record<string, unknown>) as [[string, unknown]];
          assert.deepEqual(controlReply(node, result), reply.decodedBody);
          const headers = headersOf(reply);
          assert.deepEqual(replyHeaders(request.ticket, headers['clock'] as number), headers, command.name);
          assert.deepEqual(parseControlReply(reply.decodedBody, headers, request.ticket!), [{ node, result }]);
          assert.equal(parseControlReply(reply.decodedBody, headers, 'another-ticket'), undefined, 'a reply to another request is not this one');
          replies++;
        }
      }
      assert.ok(replies >= 35, `${replies} replies`);
    });
  });
}

describe('control protocol: names, addressing, staleness, bad input', () => {
  it("names the mailbox and reply queues as kombu does", () => {
    assert.equal(mailboxQueue('cap1@vm'), 'cap1@vm.celery.pidbox');
    assert.equal(replyQueue('039465c4'), '039465c4.reply.celery.pidbox');
    assert.equal(CONTROL_EXCHANGE, 'celery.pidbox');
  });

  it('addresses by destination list, by glob or pcre pattern, or everyone; an unknown matcher no one', () => {
    const to = (fields: Partial<ControlRequest>): ControlRequest => ({ ...controlRequest('ping', {}), ...fields });
    assert.equal(isAddressedTo(to({}), 'fennel@a'), true);
    assert.equal(isAddressedTo(to({ destination: ['fennel@a', 'fennel@b'] }), 'fennel@b'), true);
    assert.equal(isAddressedTo(to({ destination: ['fennel@a'] }), 'fennel@b'), false);
    assert.equal(isAddressedTo(to({ destination: 'fennel@abc' }), 'fennel@a'), true, "a string is Celery's substring test");
    assert.equal(isAddressedTo(to({ pattern: 'fennel@*', matcher: 'glob' }), 'fennel@host1'), true);
    assert.equal(isAddressedTo(to({ pattern: 'fennel@*', matcher: 'glob' }), 'celery@host1'), false);
    assert.equal(isAddressedTo(to({ pattern: 'cel', matcher: 'pcre' }), 'celery@host1'), true, 'pcre is anchored at the start only');
    assert.equal(isAddressedTo(to({ pattern: 'host1', matcher: 'pcre' }), 'celery@host1'), false);
    assert.equal(isAddressedTo(to({ pattern: '(', matcher: 'pcre' }), 'celery@host1'), false, 'an invalid expression selects no one');
    assert.equal(isAddressedTo(to({ pattern: 'x', matcher: 'regex' }), 'x'), false);
    assert.equal(isAddressedTo(to({ pattern: 'nobody', matcher: null }), 'fennel@a'), true, 'a pattern without a matcher: everyone, as kombu');
  });

  it("matches globs as Python's fnmatch", () => {
    const cases: Array<[string, string, boolean]> = [
      ['cap?@vm', 'cap1@vm', true],
      ['cap?@vm', 'cap10@vm', false],
      ['cap[12]@*', 'cap2@host', true],
      ['cap[!12]@*', 'cap2@host', false],
      ['cap[!12]@*', 'cap3@host', true],
      ['a.b', 'axb', false],
      ['a+b', 'a+b', true],
      ['[', '[', true],
    ];
    for (const [pattern, name, expected] of cases) assert.equal(globToRegExp(pattern).test(name), expected, `${pattern} ~ ${name}`);
  });

  it('a request whose expires has passed is stale; none, 0 or a future one is not', () => {
    const now = 1_800_000_000_000;
    assert.equal(isStale({ clock: 1, expires: now / 1000 - 1 }, now), true);
    assert.equal(isStale({ clock: 1, expires: now / 1000 - 1 }, now, 2000), false, 'within the allowed clock skew');
    assert.equal(isStale({ clock: 1, expires: now / 1000 + 1 }, now), false);
    assert.equal(isStale({ clock: 1, expires: 0 }, now), false);
    assert.equal(isStale({ clock: 1 }, now), false);
    assert.equal(isStale(undefined, now), false);
  });

  it('a malformed request is a ProtocolError saying what is wrong', () => {
    const bad: Array<[unknown, RegExp]> = [
      [null, /must be a JSON object/],
      [[1], /must be a JSON object/],
      [{ arguments: {} }, /needs a method name/],
      [{ method: '' }, /needs a method name/],
      [{ method: 'ping', arguments: [] }, /arguments must be an object/],
      [{ method: 'ping', destination: 5 }, /destination must be/],
      [{ method: 'ping', destination: ['a', 1] }, /destination must be/],
      [{ method: 'ping', pattern: 1 }, /pattern must be/],
      [{ method: 'ping', reply_to: 'x' }, /reply_to must be/],
      [{ method: 'ping', reply_to: { exchange: 'e' } }, /reply_to must be/],
    ];
    for (const [body, message] of bad) assert.throws(() => parseControlRequest(body), (error: unknown) => error instanceof ProtocolError && message.test(error.message), JSON.stringify(body));
    assert.deepEqual(parseControlRequest({ method: 'ping' }), { method: 'ping', arguments: {}, destination: null, pattern: null, matcher: null });
  });

  it('a reply with an expires in the past, or that is not an object, is not read', () => {
    const now = 1_800_000_000_000;
    assert.equal(parseControlReply({ 'a@b': { ok: 'pong' } }, { ticket: 't', expires: now / 1000 - 5 }, 't', now), undefined);
    assert.equal(parseControlReply('pong', { ticket: 't' }, 't', now), undefined);
    assert.deepEqual(parseControlReply({ 'a@b': { ok: 'pong' } }, {}, 't', now), [{ node: 'a@b', result: { ok: 'pong' } }], 'no ticket: counted as this request’s, as Celery does');
  });
});
