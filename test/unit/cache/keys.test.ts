// Cache keys (src/cache/keys.ts) and the memoized task's options (src/app/memo.ts): the key of a call is stable
// (object key order, a decoded copy of the arguments as a worker sees them), distinct calls get distinct keys, long
// keys are shortened safely; bad options and URLs are ConfigErrors at the app's construction or the task's.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalJson, MAX_KEY_BYTES, memoKey, memoPrefix, safeKey } from '../../../src/cache/keys.ts';
import { decodeJson, encodeJson } from '../../../src/protocol/json.ts';
import { ConfigError, Fennel } from '../../../src/index.ts';

describe('memoKey', () => {
  it('is the task name and 32 hex digits, the same for objects whose keys come in another order', () => {
    const a = memoKey('math.f', [{ x: 1, y: [2, { b: 1, a: 2 }] }]);
    const b = memoKey('math.f', [{ y: [2, { a: 2, b: 1 }], x: 1 }]);
    assert.equal(a, b);
    assert.match(a, /^fennel:memo:math\.f:[0-9a-f]{32}$/);
    assert.ok(a.startsWith(memoPrefix('math.f')));
  });

  it('is the same for the arguments a worker decodes from the message (Dates, Buffers, nested values)', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.jsonValue(), fc.date({ noInvalidDate: true }).map((d) => ({ at: d })), fc.uint8Array().map((u) => Buffer.from(u)))), (args) => {
        const decoded = decodeJson(encodeJson(args)) as unknown[];
        assert.equal(memoKey('t', decoded), memoKey('t', args));
      }),
    );
  });

  it('differs between tasks, between argument lists, and with keyword arguments', () => {
    const keys = new Set([memoKey('a', [1]), memoKey('b', [1]), memoKey('a', [2]), memoKey('a', [1, 2]), memoKey('a', ['1']), memoKey('a', [1], { k: 1 }), memoKey('a', [[1]])]);
    assert.equal(keys.size, 7);
    assert.equal(memoKey('a', [1], {}), memoKey('a', [1]), 'empty kwargs are no kwargs');
  });
});

describe('canonicalJson', () => {
  it('sorts object keys at every depth and keeps array order', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [3, 1], c: null } }), '{"a":{"c":null,"d":[3,1]},"b":1}');
  });
});

describe('safeKey', () => {
  it('keeps a key of up to 250 bytes as it is', () => {
    const key = 'k'.repeat(MAX_KEY_BYTES);
    assert.equal(safeKey(key), key);
  });

  it('shortens a longer key to its first 150 bytes, # and its SHA-256, within 250 bytes, never splitting a character', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 130, maxLength: 400 }), (key) => {
        const safe = safeKey(key);
        assert.ok(Buffer.byteLength(safe) <= MAX_KEY_BYTES, `${Buffer.byteLength(safe)} bytes`);
        if (Buffer.byteLength(key) <= MAX_KEY_BYTES) assert.equal(safe, key);
        else {
          assert.match(safe, /#[0-9a-f]{64}$/);
          const head = safe.slice(0, safe.lastIndexOf('#'));
          assert.ok(key.startsWith(head), 'keeps a prefix of the key, cut between characters');
          assert.ok(Buffer.byteLength(head) > 150 - 4, 'as much of it as fits in 150 bytes');
        }
      }),
    );
  });

  it('gives two long keys with a common head different keys', () => {
    const head = 'x'.repeat(300);
    assert.notEqual(safeKey(`${head}1`), safeKey(`${head}2`));
  });
});

describe('memoized task options', () => {
  const app = new Fennel({ broker: 'memory://keys-test' });

  it('refuses an unknown cache option, a bad ttlSec, url or key', () => {
    assert.throws(() => app.task('o.1', () => 1, { cache: { ttl: 5 } as never }), (e: unknown) => e instanceof ConfigError && /unknown cache option 'ttl'/.test(e.message));
    assert.throws(() => app.task('o.2', () => 1, { cache: { ttlSec: -1 } }), /ttlSec must be a number of seconds ≥ 0/);
    assert.throws(() => app.task('o.3', () => 1, { cache: { url: '' } }), /cache url must be a cache URL/);
    assert.throws(() => app.task('o.4', () => 1, { cache: { key: 'k' as never } }), /cache key must be a function/);
  });

  it('invalidate() of a task that is not memoized is a ConfigError', async () => {
    const plain = app.task('o.plain', (x: number) => x);
    await assert.rejects(plain.invalidate(1), (e: unknown) => e instanceof ConfigError && /not memoized/.test(e.message));
  });

  it('a key function that returns no string fails the call at once', () => {
    const odd = app.task('o.odd', (x: number) => x, { cache: { key: () => '' } });
    assert.throws(() => odd.delay(1), /returned "", not a non-empty string/);
  });
});

describe("the app's cache option", () => {
  it('defaults to lru://, and takes tiers from an array or from FENNEL_CACHE_URL separated by spaces', async () => {
    const plain = new Fennel({ broker: 'memory://cache-opt' });
    assert.equal(plain.config.cache, 'lru://');
    assert.equal(plain.cache.url, 'lru://');
    await plain.close();
    const tiers = new Fennel({ broker: 'memory://cache-opt', cache: ['lru://?max=5', 'lru://?max=50'] });
    assert.deepEqual(tiers.cache.stats().map((s) => s.url), ['lru://?max=5', 'lru://?max=50']);
    await tiers.close();
  });

  it('checks every tier URL at construction, naming where it came from', () => {
    assert.throws(() => new Fennel({ broker: 'memory://x', cache: 'lru://?max=0' }), (e: unknown) => e instanceof ConfigError && /option 'cache' is invalid: max of lru:\/\/\?max=0 is '0'/.test(e.message));
    const before = process.env['FENNEL_CACHE_URL'];
    process.env['FENNEL_CACHE_URL'] = 'lru://?max=10 memcached://h:99999';
    try {
      assert.throws(() => new Fennel({ broker: 'memory://x' }), (e: unknown) => e instanceof ConfigError && /environment variable FENNEL_CACHE_URL is invalid/.test(e.message));
    } finally {
      if (before === undefined) delete process.env['FENNEL_CACHE_URL'];
      else process.env['FENNEL_CACHE_URL'] = before;
    }
    assert.throws(() => new Fennel({ broker: 'memory://x', cache: 'ftp://nope' }), /is not a cache URL/);
  });
});
