// kombu's envelope (src/protocol/envelope.ts): encodeEnvelope writes its text piece by piece, and that text
// must stay exactly what JSON.stringify gives for kombu's object, which Python Celery workers read.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeEnvelope, encodeEnvelope, type BodyEncoding } from '../../../src/protocol/envelope.ts';
import { buildTaskMessage, type WireMessage, type WireProperties } from '../../../src/protocol/message.ts';

/** The reference: kombu's object, stringified whole. */
function reference(message: WireMessage, encoding: BodyEncoding, extra: Partial<WireProperties> = {}): string {
  return JSON.stringify({
    body: encoding === 'base64' ? Buffer.from(message.body, 'utf8').toString('base64') : message.body,
    'content-encoding': message.contentEncoding,
    'content-type': message.contentType,
    headers: message.headers,
    properties: { ...message.properties, body_encoding: encoding, ...extra },
  });
}

const call = { id: '5f2b7c1e-0000-4000-8000-000000000001', name: 'tasks.add', args: [2, 3], queue: 'celery', replyTo: 'oid' };

/** Messages that exercise every member: unicode, escapes, sizes around the reused buffer's, odd properties. */
function messages(): Array<[string, WireMessage]> {
  const task = buildTaskMessage(call);
  return [
    ['a task message', task],
    ['unicode, escapes and line separators in args', buildTaskMessage({ ...call, args: ['quote " backslash \\ newline \n é ✓ 😀 \u2028 \u2029 \u0000'], kwargs: { 'clé': 'välue' } })],
    ['an expiring message (expiration property)', buildTaskMessage({ ...call, expires: new Date(Date.now() + 60_000), eta: new Date() })],
    ['a lone surrogate in the body', { ...task, body: '["\ud800 alone", {}, {}]' }],
    ...[16_000, 16_383, 16_384, 16_385, 40_000].map((n): [string, WireMessage] => [`a body of ${n} characters`, { ...task, body: `["${'é'.repeat(n - 4)}"]` }]),
    ['an empty body', { ...task, body: '' }],
    ['no properties', { ...task, properties: {} }],
    ['properties that already have body_encoding', { ...task, properties: { body_encoding: 'old', priority: 3 } }],
    ['an integer-like property', { ...task, properties: { ...task.properties, '7': 'seven' } }],
    ['a property whose value is undefined', { ...task, properties: { ...task.properties, note: undefined } }],
    ['undefined content type, encoding and headers', { ...task, contentType: undefined, contentEncoding: undefined, headers: undefined } as unknown as WireMessage],
    ['headers with a Date', { ...task, headers: { ...task.headers, when: new Date(0) } }],
    // Large bodies buildTaskMessage wrote, which a utf-8 envelope quotes by escaping their quotes and backslashes alone,
    // and one with too many of them for that, which goes JSON.stringify's way.
    ['a large task message with escapes in its arguments', buildTaskMessage({ ...call, args: [`${'x'.repeat(100_000)} quote " backslash \\ newline \n nul \u0000 lone \ud800 é ✓ \u2028`, 'y'.repeat(70_000)], kwargs: { 'k"ey': 'v\\' } })],
    ['a large task message with many quotes', buildTaskMessage({ ...call, args: Array.from({ length: 20_000 }, (_, i) => `k${i}`) })],
  ];
}

const extras: Array<Partial<WireProperties>> = [
  {},
  { delivery_tag: 'tag-1' },
  { delivery_tag: 'a "quoted" ✓ tag' },
  { body_encoding: 'overridden' },
  { priority: 9 },
  { delivery_tag: undefined },
  { delivery_tag: null, n: 1.5, ok: true, nan: Number.NaN },
  { '3': 'index-like' },
  { delivery_info: { exchange: 'x', routing_key: 'r' } },
  { when: new Date(0) },
  { 'é "key"': 'v' },
];

describe('encodeEnvelope', () => {
  for (const [what, message] of messages()) {
    it(`writes JSON.stringify's text for ${what}, in both body encodings and with every kind of extra property`, () => {
      for (const encoding of ['base64', 'utf-8'] as const) {
        assert.equal(encodeEnvelope(message, encoding), reference(message, encoding), `${encoding}, no extra`);
        for (const extra of extras) assert.equal(encodeEnvelope(message, encoding, extra), reference(message, encoding, extra), `${encoding}, extra ${JSON.stringify(extra)}`);
      }
    });
  }

  it('gives the same text for the same message twice (the reused buffer leaves nothing behind)', () => {
    const long = buildTaskMessage({ ...call, args: ['x'.repeat(5000)] });
    const short = buildTaskMessage(call);
    const first = encodeEnvelope(short, 'base64');
    encodeEnvelope(long, 'base64');
    assert.equal(encodeEnvelope(short, 'base64'), first);
  });

  it('round-trips through decodeEnvelope', () => {
    const message = buildTaskMessage({ ...call, args: ['héllo ✓ 😀'] });
    for (const encoding of ['base64', 'utf-8'] as const) {
      const decoded = decodeEnvelope(encodeEnvelope(message, encoding, { delivery_tag: 't' }));
      assert.equal(decoded.body, message.body);
      assert.deepEqual(decoded.headers, message.headers);
      assert.deepEqual(decoded.properties, { ...message.properties, body_encoding: encoding, delivery_tag: 't' });
    }
  });
});
