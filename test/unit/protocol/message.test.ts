// Celery protocol v2 build and parse (src/protocol/message.ts), checked against the messages Celery 5.6.2
// actually put on Redis (golden files in test/fixtures/, from CELERY-WIRE.md Appendix A).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError, SerializationError } from '../../../src/errors.ts';
import { decodeEnvelope, encodeEnvelope } from '../../../src/protocol/envelope.ts';
import { buildRetryMessage, buildTaskMessage, embedSchema, headersSchema, parseTaskMessage, plainEmbed, plainHeaders, type TaskCall, type WireMessage } from '../../../src/protocol/message.ts';
import { celeryA1, celeryA1Countdown, celeryA3Chain, rawEnvelope, type CeleryEnvelope } from '../../fixtures/celery.ts';

const PY_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$/;
const EMPTY_EMBED = { callbacks: null, errbacks: null, chain: null, chord: null };

/** A.1's envelope with some fields replaced, as raw Redis text. */
function a1With(change: (env: CeleryEnvelope) => void): string {
  const env = structuredClone(celeryA1.envelope);
  change(env);
  return rawEnvelope(env);
}

function utf8Body(env: CeleryEnvelope, body: string): void {
  env.body = body;
  env.properties['body_encoding'] = 'utf-8';
}

/** Asserts that parsing `message` throws a ProtocolError whose message matches `pattern`. */
function assertRefused(message: WireMessage, pattern: RegExp): void {
  assert.throws(
    () => parseTaskMessage(message),
    (error: unknown) => {
      assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${String(error)}`);
      assert.equal(error.code, 'FENNEL_PROTOCOL');
      assert.match(error.message, pattern);
      return true;
    },
  );
}

const call: TaskCall = {
  id: '11111111-1111-1111-1111-111111111111',
  name: 'proj.tasks.add',
  args: [2, 3],
  queue: 'celery',
  replyTo: '3c66a8a1-d850-3317-81f2-46aacfd8f1f7',
};

describe('parseTaskMessage', () => {
  it('accepts the message Celery 5.6 put on Redis and reads every field', () => {
    const message = decodeEnvelope(rawEnvelope(celeryA1.envelope));
    assert.deepEqual(JSON.parse(message.body), celeryA1.decodedBody);
    assert.deepEqual(parseTaskMessage(message), {
      id: '11111111-1111-1111-1111-111111111111',
      name: 'proj.tasks.add',
      args: [2, 3],
      kwargs: {},
      embed: EMPTY_EMBED,
      retries: 0,
      eta: null,
      expires: null,
      timeLimitSec: null,
      softTimeLimitSec: null,
      rootId: '11111111-1111-1111-1111-111111111111',
      parentId: null,
      group: null,
      groupIndex: null,
      ignoreResult: false,
      origin: 'gen12219@vm',
      replyTo: '3c66a8a1-d850-3317-81f2-46aacfd8f1f7',
      priority: 0,
      queue: 'celery',
      crashes: 0,
      bodyLength: 81, // [[2, 3], {}, {…embed}] as Celery wrote it
    });
  });

  it('reads timelimit as [hard, soft] and eta/expires as dates (countdown, expires and priority variant)', () => {
    const request = parseTaskMessage(decodeEnvelope(rawEnvelope(celeryA1Countdown.envelope)));
    assert.equal(request.timeLimitSec, 30);
    assert.equal(request.softTimeLimitSec, 20);
    assert.deepEqual(request.eta, new Date('2026-11-26T02:30:48.802Z'));
    assert.deepEqual(request.expires, new Date('2026-11-26T02:31:48.802Z'));
    assert.equal(request.priority, 3);
  });

  it('reads a chain from the embed in Celery’s reversed order (A.3)', () => {
    const raw = a1With((env) => utf8Body(env, JSON.stringify([celeryA3Chain.args, celeryA3Chain.kwargs, celeryA3Chain.embed])));
    const request = parseTaskMessage(decodeEnvelope(raw));
    assert.deepEqual(request.args, [1, 2]);
    assert.deepEqual(request.embed.chain, celeryA3Chain.embed.chain);
    const chain = request.embed.chain as Array<{ args: unknown[]; options: { task_id: string } }>;
    assert.deepEqual(chain.at(-1)!.args, [3], 'the next task is popped from the end');
    assert.equal(chain[0]!.options.task_id, '33333333-3333-3333-3333-333333333333', 'the last task carries the apply_async id');
    assert.equal(request.embed.callbacks, null);
    assert.equal(request.embed.chord, null);
  });

  it('accepts the minimum a Celery worker accepts: headers lang, task and id, body [args, kwargs, {}]', () => {
    const request = parseTaskMessage({
      headers: { lang: 'py', task: 'proj.tasks.add', id: 'min-1' },
      properties: {},
      body: '[[1], {"k": 2}, {}]',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
    });
    assert.equal(request.id, 'min-1');
    assert.equal(request.name, 'proj.tasks.add');
    assert.deepEqual(request.args, [1]);
    assert.deepEqual(request.kwargs, { k: 2 });
    assert.deepEqual(request.embed, EMPTY_EMBED);
    assert.equal(request.rootId, 'min-1', 'root_id defaults to the id');
    assert.equal(request.retries, 0);
    assert.equal(request.eta, null);
    assert.equal(request.timeLimitSec, null);
    assert.equal(request.replyTo, null);
    assert.equal(request.queue, null);
  });

  it('accepts a utf-8 envelope body as well as base64', () => {
    const raw = a1With((env) => utf8Body(env, '[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'));
    assert.deepEqual(parseTaskMessage(decodeEnvelope(raw)), parseTaskMessage(decodeEnvelope(rawEnvelope(celeryA1.envelope))));
  });

  it('accepts a Celery 5.2 message without stamped_headers, stamps or replaced_task_nesting', () => {
    const raw = a1With((env) => {
      delete env.headers['stamped_headers'];
      delete env.headers['stamps'];
      delete env.headers['replaced_task_nesting'];
    });
    assert.equal(parseTaskMessage(decodeEnvelope(raw)).id, '11111111-1111-1111-1111-111111111111');
  });

  it('treats a naive eta as UTC, as Celery does', () => {
    const raw = a1With((env) => (env.headers['eta'] = '2000-01-01T00:00:00'));
    assert.deepEqual(parseTaskMessage(decodeEnvelope(raw)).eta, new Date('2000-01-01T00:00:00Z'));
  });

  it('revives kombu type tags in args and kwargs', () => {
    const raw = a1With((env) =>
      utf8Body(env, JSON.stringify([[{ __type__: 'datetime', __value__: '2026-11-26T02:30:06.208145+00:00' }], { id: { __type__: 'uuid', __value__: { hex: '1234567890abcdef1234567890abcdef' } } }, {}])),
    );
    const request = parseTaskMessage(decodeEnvelope(raw));
    assert.deepEqual(request.args, [new Date('2026-11-26T02:30:06.208Z')]);
    assert.deepEqual(request.kwargs, { id: '12345678-90ab-cdef-1234-567890abcdef' });
  });

  describe('refuses with a ProtocolError naming the problem', () => {
    it('a two-element body (it would crash a Celery worker on every restart)', () => {
      assertRefused(decodeEnvelope(a1With((env) => utf8Body(env, '[[2, 3], {}]'))), /three-element array/);
    });

    it('a body that is not JSON', () => {
      assertRefused(decodeEnvelope(a1With((env) => utf8Body(env, '[[2, 3], {}, {}'))), /body is not valid JSON/);
    });

    it('a body that is a JSON object, not an array', () => {
      assertRefused(decodeEnvelope(a1With((env) => utf8Body(env, '{"args": [2, 3]}'))), /three-element array/);
    });

    it('a body with a kombu type tag it does not know', () => {
      assertRefused(decodeEnvelope(a1With((env) => utf8Body(env, '[[{"__type__": "pickle", "__value__": "gASV"}], {}, {}]'))), /unsupported JSON type tag "pickle"/);
    });

    it('args that are not an array', () => {
      assertRefused(decodeEnvelope(a1With((env) => utf8Body(env, '[{"a": 2}, {}, {}]'))), /body\[0\] \(args\) must be an array/);
    });

    it('kwargs that are not an object', () => {
      assertRefused(decodeEnvelope(a1With((env) => utf8Body(env, '[[2], [3], {}]'))), /body\[1\] \(kwargs\) must be an object/);
    });

    it('an embed of the wrong shape', () => {
      assertRefused(decodeEnvelope(a1With((env) => utf8Body(env, '[[2], {}, {"chain": "nope"}]'))), /bad embed: chain/);
    });

    it('a missing task header', () => {
      assertRefused(decodeEnvelope(a1With((env) => delete env.headers['task'])), /bad headers: task/);
    });

    it('a missing id header', () => {
      assertRefused(decodeEnvelope(a1With((env) => delete env.headers['id'])), /bad headers: id/);
    });

    it('an eta that is not a date', () => {
      assertRefused(decodeEnvelope(a1With((env) => (env.headers['eta'] = 'tomorrow'))), /eta.*not an ISO 8601 date/);
    });

    it('a timelimit that is not a pair', () => {
      assertRefused(decodeEnvelope(a1With((env) => (env.headers['timelimit'] = 30))), /bad headers: timelimit/);
    });

    it('a content type other than application/json', () => {
      assertRefused(decodeEnvelope(a1With((env) => (env['content-type'] = 'application/x-python-serialize'))), /content type "application\/x-python-serialize" is not accepted/);
    });

    it('an envelope that is not JSON', () => {
      assertRefused(decodeEnvelope('{"body": "W1s'), /undecodable envelope: not JSON/);
    });

    it('an envelope without properties', () => {
      assertRefused(decodeEnvelope(a1With((env) => delete (env as Partial<CeleryEnvelope>).properties)), /undecodable envelope: no "properties" object/);
    });

    it('an envelope whose body is not a string', () => {
      assertRefused(decodeEnvelope(JSON.stringify({ ...celeryA1.envelope, body: [[2, 3], {}, {}] })), /undecodable envelope: no string "body"/);
    });
  });
});

describe('the plain reading of headers and embed (the hot path without zod)', () => {
  const base = () => structuredClone<Record<string, unknown>>(celeryA1.envelope.headers);
  const built = () => buildTaskMessage({ id: 'i', name: 'n', args: [], queue: 'q' }).headers;
  // Each case: a change to valid headers. The plain reading must give the schema's result, or step aside.
  const headerCases: Array<[string, Record<string, unknown>, boolean]> = [
    ["Celery's own headers", base(), true],
    ["Fennel's own headers", built(), true],
    ['only task and id', { task: 't', id: 'i' }, true],
    ['an eta and expires with offsets', { ...base(), eta: '2026-11-26T10:00:00.123456+00:00', expires: '2026-11-26T11:00:00Z' }, true],
    ['an eta without an offset', { ...base(), eta: '2026-11-26T10:00:00.123456' }, true],
    ['a timelimit of numbers', { ...base(), timelimit: [10, 5.5] }, true],
    ['nulls everywhere', { task: 't', id: 'i', retries: null, eta: null, expires: null, timelimit: null, root_id: null, parent_id: null, group: null, group_index: null, ignore_result: null, origin: null }, true],
    ['an empty task name', { ...base(), task: '' }, false],
    ['a numeric id', { ...base(), id: 7 }, false],
    ['negative retries', { ...base(), retries: -1 }, false],
    ['fractional retries', { ...base(), retries: 1.5 }, false],
    ['retries as a string', { ...base(), retries: '1' }, false],
    ['an eta that is not a date', { ...base(), eta: 'tomorrow' }, false],
    ['an eta that is a number', { ...base(), eta: 1700000000 }, false],
    ['a timelimit of one', { ...base(), timelimit: [10] }, false],
    ['a timelimit of three', { ...base(), timelimit: [1, 2, 3] }, false],
    ['a timelimit of strings', { ...base(), timelimit: ['1', null] }, false],
    ['a numeric group', { ...base(), group: 5 }, false],
    ['group_index as a string', { ...base(), group_index: '0' }, false],
    ['ignore_result as a string', { ...base(), ignore_result: 'no' }, false],
    ['root_id as an object', { ...base(), root_id: {} }, false],
  ];
  for (const [name, headers, plain] of headerCases) {
    it(`headers: ${name}`, () => {
      const fast = plainHeaders(headers);
      const schema = headersSchema.safeParse(headers);
      // The plain reading takes the common shapes (asserted, so the hot path cannot silently fall back to the
      // schema for them) and steps aside for the rest; whatever it takes, the schema accepts with the same result.
      assert.equal(fast !== undefined, plain, `plain reading ${plain ? 'should take' : 'should step aside for'} these headers`);
      if (fast) {
        assert.ok(schema.success);
        // An absent optional header is undefined in one and missing in the other: the same to every reader.
        const defined = (o: object) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
        assert.deepEqual(defined(fast), defined(schema.data));
      }
    });
  }
  const embedCases: Array<[string, unknown, boolean]> = [
    ['null', null, true],
    ['absent', undefined, true],
    ["Celery's nulls", { callbacks: null, errbacks: null, chain: null, chord: null }, true],
    ['lists and a chord', { callbacks: [{ task: 'a' }], errbacks: [], chain: [{ task: 'b' }], chord: { task: 'c' } }, true],
    ['an empty object', {}, true],
    ['callbacks as an object', { callbacks: { task: 'a' } }, false],
    ['a chain as a string', { chain: 'x' }, false],
    ['an array', [], false],
    ['a number', 5, false],
  ];
  for (const [name, embed, plain] of embedCases) {
    it(`embed: ${name}`, () => {
      const fast = plainEmbed(embed);
      const schema = embedSchema.safeParse(embed);
      assert.equal(fast !== undefined, plain);
      if (fast) {
        assert.ok(schema.success);
        const d = schema.data;
        assert.deepEqual(fast, { callbacks: d?.callbacks ?? null, errbacks: d?.errbacks ?? null, chain: d?.chain ?? null, chord: d?.chord ?? null });
      }
    });
  }
  it('a message the plain reading steps aside for is still refused with the schema\'s reason', () => {
    assertRefused(decodeEnvelope(a1With((env) => (env.headers['retries'] = -1))), /bad headers: retries/);
    assertRefused(decodeEnvelope(a1With((env) => (env.headers['timelimit'] = [1, 2, 3]))), /bad headers: timelimit/);
  });
});

describe('buildTaskMessage', () => {
  it('emits Celery 5.6’s header keys in Celery’s order, with lang "js"', () => {
    const message = buildTaskMessage(call);
    assert.deepEqual(Object.keys(message.headers), Object.keys(celeryA1.envelope.headers));
    assert.equal(message.headers['lang'], 'js');
    assert.match(String(message.headers['origin']), /^gen\d+@.+$/);
  });

  it('matches Celery’s own message for the same call, apart from lang, origin and the reprs', () => {
    const message = buildTaskMessage(call);
    const ours = { ...message.headers };
    const theirs = { ...celeryA1.envelope.headers };
    for (const key of ['lang', 'origin', 'argsrepr', 'kwargsrepr']) {
      delete ours[key];
      delete theirs[key];
    }
    assert.deepEqual(ours, theirs);
    const { body_encoding: _encoding, delivery_tag: _tag, ...celeryProperties } = celeryA1.envelope.properties;
    assert.deepEqual(message.properties, celeryProperties);
    assert.deepEqual(JSON.parse(message.body), celeryA1.decodedBody);
    assert.equal(message.contentType, celeryA1.envelope['content-type']);
    assert.equal(message.contentEncoding, celeryA1.envelope['content-encoding']);
  });

  it('matches the countdown, expires and priority capture: eta, expires, [hard, soft] timelimit, expiration in ms', (t) => {
    // The capture was taken 60 s before its eta; freeze the clock there so `expiration` is exact.
    t.mock.timers.enable({ apis: ['Date'], now: new Date('2026-11-26T02:29:48.802Z') });
    const eta = new Date('2026-11-26T02:30:48.802Z');
    const expires = new Date('2026-11-26T02:31:48.802Z');
    const message = buildTaskMessage({ ...call, eta, expires, priority: 3, timeLimitSec: 30, softTimeLimitSec: 20 });
    const captured = celeryA1Countdown.envelope;
    assert.deepEqual(message.headers['timelimit'], [30, 20]);
    assert.equal(message.headers['eta'], '2026-11-26T02:30:48.802000+00:00');
    assert.equal(message.headers['expires'], '2026-11-26T02:31:48.802000+00:00');
    assert.deepEqual(new Date(String(message.headers['eta'])), new Date(String(captured.headers['eta']).replace(/(\.\d{3})\d+/, '$1')));
    assert.equal(message.properties.expiration, captured.properties['expiration']);
    assert.equal(message.properties.priority, captured.properties['priority']);
    assert.deepEqual(Object.keys(message.properties), ['correlation_id', 'reply_to', 'delivery_mode', 'delivery_info', 'priority', 'expiration']);
  });

  it('sets correlation_id, reply_to, delivery_mode 2, priority and delivery_info', () => {
    const message = buildTaskMessage({ ...call, id: 'abc', queue: 'emails', priority: 7, replyTo: 'reply-uuid' });
    assert.equal(message.properties.expiration, undefined, 'no expiration without expires');
    assert.deepEqual(message.properties, {
      correlation_id: 'abc',
      reply_to: 'reply-uuid',
      delivery_mode: 2,
      delivery_info: { exchange: '', routing_key: 'emails' },
      priority: 7,
    });
  });

  it('always writes a three-element body [args, kwargs, embed]', () => {
    const body = JSON.parse(buildTaskMessage({ ...call, args: [], kwargs: { a: 1 } }).body) as unknown[];
    assert.deepEqual(body, [[], { a: 1 }, EMPTY_EMBED]);
    const chained = JSON.parse(buildTaskMessage({ ...call, embed: { chain: celeryA3Chain.embed.chain } }).body) as unknown[];
    assert.equal(chained.length, 3);
    assert.deepEqual(chained[2], { ...EMPTY_EMBED, chain: celeryA3Chain.embed.chain });
  });

  it('writes dates as Python isoformat: microseconds and +00:00', () => {
    const message = buildTaskMessage({ ...call, eta: new Date('2026-01-02T03:04:05.006Z'), expires: new Date('2026-01-02T04:04:05Z') });
    assert.equal(message.headers['eta'], '2026-01-02T03:04:05.006000+00:00');
    assert.equal(message.headers['expires'], '2026-01-02T04:04:05.000000+00:00');
    assert.match(String(message.headers['eta']), PY_ISO);
  });

  it('writes expiration as a string of whole milliseconds until expires', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 1_800_000_000_000 });
    assert.equal(buildTaskMessage({ ...call, expires: new Date(1_800_000_000_000 + 120_000) }).properties.expiration, '120000');
    assert.equal(buildTaskMessage({ ...call, expires: new Date(1_800_000_000_000 - 5_000) }).properties.expiration, '0', 'never negative');
  });

  it('fills root_id from the id unless given, and passes lineage, group and retries through', () => {
    const plain = buildTaskMessage(call);
    assert.equal(plain.headers['root_id'], call.id);
    assert.equal(plain.headers['parent_id'], null);
    const child = buildTaskMessage({ ...call, rootId: 'root', parentId: 'parent', group: 'g', groupIndex: 2, retries: 3, ignoreResult: true });
    assert.equal(child.headers['root_id'], 'root');
    assert.equal(child.headers['parent_id'], 'parent');
    assert.equal(child.headers['group'], 'g');
    assert.equal(child.headers['group_index'], 2);
    assert.equal(child.headers['retries'], 3);
    assert.equal(child.headers['ignore_result'], true);
  });

  it('caps argsrepr at Celery’s 1024 characters', () => {
    const message = buildTaskMessage({ ...call, args: ['x'.repeat(5000)] });
    const argsrepr = String(message.headers['argsrepr']);
    assert.equal(argsrepr.length, 1024);
    assert.ok(argsrepr.endsWith('...'));
  });

  it('writes argsrepr as Python’s repr of the args tuple, cut at 1024 characters, at every length around the cut', () => {
    const reference = (args: unknown[]): string => {
      const text = `(${JSON.stringify(args).slice(1, -1)})`;
      return text.length > 1024 ? `${text.slice(0, 1021)}...` : text;
    };
    // ["x…x"] is 4 characters longer than its string: lengths 1020 to 1028 cross the cut at 1024.
    for (let size = 1016; size <= 1026; size++) {
      const args = ['x'.repeat(size)];
      assert.equal(buildTaskMessage({ ...call, args }).headers['argsrepr'], reference(args), `a string of ${size}`);
    }
    for (const args of [[], [1], [1, 'two', { three: 3 }], ['é'.repeat(2000), 2]]) {
      assert.equal(buildTaskMessage({ ...call, args }).headers['argsrepr'], reference(args));
    }
  });

  it('refuses arguments JSON cannot carry with a SerializationError naming the path', () => {
    assert.throws(() => buildTaskMessage({ ...call, args: [1, { when: () => 1 }] }), (e: unknown) => e instanceof SerializationError && /args\[1\]\.when/.test(e.message));
    assert.throws(() => buildTaskMessage({ ...call, kwargs: { n: 10n } }), (e: unknown) => e instanceof SerializationError && /kwargs\.n/.test(e.message));
  });

  it('writes the envelope exactly as JSON.stringify of kombu’s object would, for both body encodings', () => {
    const message = buildTaskMessage({ ...call, args: ['quote " backslash \\ newline \n é ✓ \u2028', 'x'.repeat(3000)], kwargs: { k: [1, null] } });
    for (const encoding of ['base64', 'utf-8'] as const) {
      for (const extra of [{}, { delivery_tag: 'tag-1' }, { body_encoding: 'ignored-by-neither' }]) {
        const body = encoding === 'base64' ? Buffer.from(message.body, 'utf8').toString('base64') : message.body;
        const expected = JSON.stringify({
          body,
          'content-encoding': message.contentEncoding,
          'content-type': message.contentType,
          headers: message.headers,
          properties: { ...message.properties, body_encoding: encoding, ...extra },
        });
        assert.equal(encodeEnvelope(message, encoding, extra), expected);
      }
    }
  });

  it('round-trips through parseTaskMessage and kombu’s base64 envelope', () => {
    const sent: TaskCall = {
      ...call,
      args: ['héllo ✓', new Date('2026-11-26T02:30:06.208Z'), { n: 1 }],
      kwargs: { raw: Buffer.from([1, 2, 255]) },
      eta: new Date('2026-11-26T02:30:48.802Z'),
      timeLimitSec: 30,
      softTimeLimitSec: 20,
      priority: 5,
      parentId: 'p',
    };
    const wire = decodeEnvelope(encodeEnvelope(buildTaskMessage(sent), 'base64'));
    const request = parseTaskMessage(wire);
    assert.deepEqual(request.args, sent.args);
    assert.deepEqual(request.kwargs, { raw: Buffer.from([1, 2, 255]) });
    assert.deepEqual(request.eta, sent.eta);
    assert.equal(request.timeLimitSec, 30);
    assert.equal(request.softTimeLimitSec, 20);
    assert.equal(request.priority, 5);
    assert.equal(request.parentId, 'p');
    assert.equal(request.rootId, call.id);
    assert.equal(request.replyTo, call.replyTo);
    assert.equal(request.queue, 'celery');
  });
});

describe('buildRetryMessage', () => {
  it('keeps the id and lineage, adds one to retries and sets the new eta', () => {
    const original = parseTaskMessage(buildTaskMessage({ ...call, retries: 1, parentId: 'p', embed: { chain: [{ task: 'next' }] } }));
    const eta = new Date('2026-11-26T03:00:00Z');
    const retry = parseTaskMessage(buildRetryMessage(original, eta, 'retries'));
    assert.equal(retry.id, original.id);
    assert.equal(retry.retries, 2);
    assert.deepEqual(retry.eta, eta);
    assert.equal(retry.rootId, original.rootId);
    assert.equal(retry.parentId, 'p');
    assert.deepEqual(retry.embed.chain, [{ task: 'next' }]);
    assert.equal(retry.queue, 'retries');
  });
});
