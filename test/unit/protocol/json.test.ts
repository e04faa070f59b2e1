// The JSON codec (src/protocol/json.ts): kombu's type tags both ways, and refusal of everything JSON
// cannot carry with a SerializationError that names the path to the bad value.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SerializationError } from '../../../src/errors.ts';
import { ChordResults, decodeJson, encodeJson, isoUtc, parseIso, toJsonData } from '../../../src/protocol/json.ts';

/** Asserts that encoding `value` as `what` throws a SerializationError mentioning each of `fragments`. */
function assertRefused(value: unknown, what: string, ...fragments: string[]): void {
  assert.throws(
    () => encodeJson(value, what),
    (error: unknown) => {
      assert.ok(error instanceof SerializationError, `expected a SerializationError, got ${String(error)}`);
      assert.equal(error.code, 'FENNEL_SERIALIZATION');
      for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" should mention "${fragment}"`);
      return true;
    },
  );
}

describe('encodeJson and decodeJson: kombu type tags', () => {
  it('encodes a Date as a datetime tag with microseconds and +00:00, and decodes it back', () => {
    const date = new Date('2026-11-26T02:30:06.208Z');
    const text = encodeJson({ at: date });
    assert.deepEqual(JSON.parse(text), { at: { __type__: 'datetime', __value__: '2026-11-26T02:30:06.208000+00:00' } });
    assert.deepEqual(decodeJson(text), { at: date });
  });

  it('encodes a Buffer as a base64 tag, and decodes it back to the same bytes', () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    const text = encodeJson([bytes]);
    assert.deepEqual(JSON.parse(text), [{ __type__: 'base64', __value__: 'AAEC+v8=' }]);
    assert.deepEqual(decodeJson(text), [bytes]);
  });

  it('encodes a Uint8Array view by its own bytes only', () => {
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
    assert.deepEqual(JSON.parse(encodeJson(backing.subarray(2, 5))), { __type__: 'base64', __value__: 'AQID' });
  });

  it('decodes the tags a Python client sends: datetime with an offset, date, time, decimal, uuid, bytes', () => {
    const fromPython = JSON.stringify({
      aware: { __type__: 'datetime', __value__: '2026-11-26T08:00:06.208145+05:30' },
      naive: { __type__: 'datetime', __value__: '2026-11-26T02:30:06.208145' },
      day: { __type__: 'date', __value__: '2026-11-26' },
      clock: { __type__: 'time', __value__: '02:30:06.208145' },
      price: { __type__: 'decimal', __value__: '3.14159265358979323846' },
      id: { __type__: 'uuid', __value__: { hex: 'aaaaaaaa00000000000000000000000a' } },
      text: { __type__: 'bytes', __value__: 'héllo' },
      raw: { __type__: 'base64', __value__: '/wA=' },
    });
    assert.deepEqual(decodeJson(fromPython), {
      aware: new Date('2026-11-26T02:30:06.208Z'),
      naive: new Date('2026-11-26T02:30:06.208Z'),
      day: new Date('2026-11-26T00:00:00Z'),
      clock: '02:30:06.208145',
      price: '3.14159265358979323846',
      id: 'aaaaaaaa-0000-0000-0000-00000000000a',
      text: Buffer.from('héllo', 'utf8'),
      raw: Buffer.from([255, 0]),
    });
  });

  it('revives tags nested anywhere in arrays and objects', () => {
    const text = '[[{"a": {"__type__": "date", "__value__": "2026-01-01"}}], {"k": [{"__type__": "decimal", "__value__": "1.10"}]}, {}]';
    assert.deepEqual(decodeJson(text), [[{ a: new Date('2026-01-01T00:00:00Z') }], { k: ['1.10'] }, {}]);
  });

  it('leaves an object alone unless its keys are exactly __type__ and __value__, as kombu does', () => {
    const text = '{"x": {"__type__": "datetime", "__value__": "2026-01-01T00:00:00", "extra": 1}, "y": {"__type__": "datetime"}}';
    assert.deepEqual(decodeJson(text), { x: { __type__: 'datetime', __value__: '2026-01-01T00:00:00', extra: 1 }, y: { __type__: 'datetime' } });
  });

  it('refuses an unknown __type__ with a SerializationError naming it', () => {
    assert.throws(() => decodeJson('[{"__type__": "pickle", "__value__": "gASV"}]'), (e: unknown) => e instanceof SerializationError && /unsupported JSON type tag "pickle"/.test(e.message));
  });

  it('refuses a known tag whose value has the wrong type', () => {
    assert.throws(() => decodeJson('{"__type__": "datetime", "__value__": 12}'), SerializationError);
    assert.throws(() => decodeJson('{"__type__": "uuid", "__value__": "not-an-object"}'), SerializationError);
  });

  it('decodes plain JSON without tags as JSON.parse does', () => {
    const text = '{"a": [1, 2.5, "x", null, true], "b": {}}';
    assert.deepEqual(decodeJson(text), JSON.parse(text));
  });

  it('drops undefined object properties as JSON.stringify does, and keeps shared (non-cyclic) references', () => {
    const shared = { n: 1 };
    assert.equal(encodeJson({ a: undefined, b: 1 }), '{"b":1}');
    assert.equal(encodeJson([shared, shared, { again: shared }]), '[{"n":1},{"n":1},{"again":{"n":1}}]');
  });

  it('accepts objects without a prototype', () => {
    const bare = Object.create(null) as Record<string, unknown>;
    bare['k'] = 'v';
    assert.equal(encodeJson(bare), '{"k":"v"}');
  });

  it('toJsonData returns the tagged data rather than text', () => {
    assert.deepEqual(toJsonData({ at: new Date('2026-01-01T00:00:00Z') }), { at: { __type__: 'datetime', __value__: '2026-01-01T00:00:00.000000+00:00' } });
  });
});

describe('encodeJson: values that need no tag are written by JSON.stringify as they are', () => {
  it('writes the same text as JSON.stringify for plain data, large arrays included', () => {
    const big = Array.from({ length: 100_000 }, (_, i) => (i % 7 === 0 ? -i / 3 : i));
    for (const value of [big, [big, 'x', null, true], { a: { b: [1, { c: 'd' }] }, e: [] }, Object.create(null) as object, 'text', 0, null]) {
      assert.equal(encodeJson(value), JSON.stringify(value));
    }
  });

  it('still tags and refuses deep inside a large array, naming the element', () => {
    const numbers = Array.from({ length: 100_000 }, (_, i) => i);
    assertRefused([numbers.map((x) => (x === 99_999 ? Number.NaN : x))], 'args', 'args[0][99999]', 'NaN');
    const at = new Date('2026-11-26T00:00:00Z');
    assert.deepEqual(JSON.parse(encodeJson([...numbers.slice(0, 3), { at }])), [0, 1, 2, { at: { __type__: 'datetime', __value__: '2026-11-26T00:00:00.000000+00:00' } }]);
  });

  it('nests deeper than its check goes without mistaking depth for a cycle', () => {
    let deep: unknown = 'bottom';
    for (let i = 0; i < 500; i++) deep = [deep];
    assert.equal(encodeJson(deep), JSON.stringify(deep));
  });
});

describe("Fennel's chord results tag", () => {
  it('encodes ChordResults as fennel_chord_results with the group id and size, and decodes it back', () => {
    const text = encodeJson([new ChordResults('g-1', 8), 'x']);
    assert.deepEqual(JSON.parse(text), [{ __type__: 'fennel_chord_results', __value__: { group_id: 'g-1', size: 8 } }, 'x']);
    const [ref] = decodeJson(text) as [ChordResults];
    assert.ok(ref instanceof ChordResults);
    assert.deepEqual({ ...ref }, { groupId: 'g-1', size: 8 });
  });

  it('refuses the tag without a group id or a whole size', () => {
    assert.throws(() => decodeJson('[{"__type__": "fennel_chord_results", "__value__": {"size": 2}}]'), SerializationError);
    assert.throws(() => decodeJson('[{"__type__": "fennel_chord_results", "__value__": {"group_id": "g", "size": 1.5}}]'), SerializationError);
  });
});

describe('encodeJson refuses what JSON cannot carry, naming the path', () => {
  it('a function', () => assertRefused([1, { callback: () => 1 }], 'args', 'args[1].callback', 'a function'));
  it('a symbol', () => assertRefused({ tag: Symbol('x') }, 'kwargs', 'kwargs.tag', 'a symbol'));
  it('a cycle', () => {
    const node: Record<string, unknown> = { name: 'a' };
    node['self'] = node;
    assertRefused([node], 'args', 'args[0].self', 'cycle');
  });
  it('undefined inside an array', () => assertRefused([1, undefined, 3], 'args', 'args[1]', 'undefined'));
  it('a BigInt', () => assertRefused({ big: 2n ** 70n }, 'kwargs', 'kwargs.big', 'BigInt'));
  it('a Map', () => assertRefused([new Map([['a', 1]])], 'args', 'args[0]', 'Map'));
  it('a Set', () => assertRefused({ s: new Set([1]) }, 'kwargs', 'kwargs.s', 'Set'));
  it('a class instance', () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    assertRefused({ where: [new Point(1, 2)] }, 'kwargs', 'kwargs.where[0]', 'Point');
  });
  it('NaN', () => assertRefused({ ratio: Number.NaN }, 'result', 'result.ratio', 'NaN'));
  it('Infinity and -Infinity', () => {
    assertRefused([Number.POSITIVE_INFINITY], 'args', 'args[0]', 'Infinity');
    assertRefused([Number.NEGATIVE_INFINITY], 'args', 'args[0]', 'Infinity');
  });
  it('undefined at the top level', () => assertRefused(undefined, 'result', 'result', 'undefined'));
  it('an invalid Date', () => assertRefused({ when: new Date('not a date') }, 'kwargs', 'kwargs.when', 'invalid Date'));
});

describe('isoUtc and parseIso', () => {
  it('isoUtc writes Python’s isoformat of an aware UTC datetime', () => {
    assert.equal(isoUtc(new Date('2026-11-26T02:30:06.208Z')), '2026-11-26T02:30:06.208000+00:00');
    assert.equal(isoUtc(new Date('1999-12-31T23:59:59Z')), '1999-12-31T23:59:59.000000+00:00');
  });

  it('parseIso reads Celery’s eta with microseconds, offsets, Z and naive text (as UTC)', () => {
    const instant = new Date('2026-11-26T02:30:48.802Z');
    assert.deepEqual(parseIso('2026-11-26T02:30:48.802798+00:00'), instant);
    assert.deepEqual(parseIso('2026-11-26T03:30:48.802798+01:00'), instant);
    assert.deepEqual(parseIso('2026-11-26T02:30:48.802Z'), instant);
    assert.deepEqual(parseIso('2026-11-26T02:30:48.802798'), instant);
  });

  it('parseIso refuses text that is not a date', () => {
    assert.throws(() => parseIso('next tuesday'), SerializationError);
  });
});
