// The cache conformance suite: what a Cache (src/cache/cache.ts) promises over any engine, run against every one
// (cache.test.ts): lru://, redis://, memcached:// (one server and a ring of three). Capabilities say where engines
// differ: whether a second process sees what one stored (`shared`), whether keys can be listed (`deleteMany`), and
// the largest value stored.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Cache, CacheError, ConfigError, SerializationError } from '../../src/index.ts';

export interface CacheSuiteOptions {
  /** A URL for a fresh test's cache: the same store for every call within one test where the engine is shared. */
  url: () => string;
  /** A second Cache on the same URL sees what the first stored (every engine but lru://). */
  shared: boolean;
  /** deleteMany(prefix) works (lru://, redis://; memcached cannot list its keys). */
  deleteMany: boolean;
  /** The engine's largest value in bytes, if it has one short enough to test (memcached: 1 MiB). */
  maxValueBytes?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let counter = 0;
/** A key no other test uses, so that tests on a shared store never see each other's entries. */
function key(label = 'k'): string {
  return `suite:${process.pid}:${Date.now().toString(36)}:${++counter}:${label}`;
}

export function cacheSuite(name: string, options: CacheSuiteOptions): void {
  describe(`cache conformance: ${name}`, () => {
    const opened: Cache[] = [];
    /** What each cache logged. */
    const warnings = new Map<Cache, string[]>();
    const open = (): Cache => {
      const logged: string[] = [];
      const cache = new Cache(options.url(), { timeoutMs: 1000, log: { warn: (message) => logged.push(message) } });
      warnings.set(cache, logged);
      opened.push(cache);
      return cache;
    };
    after(async () => {
      await Promise.all(opened.map((cache) => cache.close()));
    });

    describe('get, set, delete', () => {
      it('answers undefined for a key never set, and the stored value after set', async () => {
        const cache = open();
        const k = key();
        assert.equal(await cache.get(k), undefined);
        assert.equal(await cache.set(k, { n: 1, list: [1, 'two', null] }), true);
        assert.deepEqual(await cache.get(k), { n: 1, list: [1, 'two', null] });
      });

      it('gives a fresh copy on every read: changing what it returned changes nothing stored', async () => {
        const cache = open();
        const k = key();
        await cache.set(k, { list: [1] });
        const first = await cache.get<{ list: number[] }>(k);
        first!.list.push(2);
        assert.deepEqual(await cache.get(k), { list: [1] });
      });

      it('carries Dates, Buffers, null, unicode and nested values through the task codec', async () => {
        const cache = open();
        const k = key();
        const value = { when: new Date('2026-12-06T10:00:00.123Z'), bytes: Buffer.from([0, 1, 255]), none: null, text: 'ünïcødé ✓ 🍵', nested: { a: [{ b: 1.5 }] } };
        await cache.set(k, value);
        assert.deepEqual(await cache.get(k), value);
      });

      it('refuses undefined and values the codec cannot carry, storing nothing', async () => {
        const cache = open();
        const k = key();
        await assert.rejects(cache.set(k, undefined), ConfigError);
        await assert.rejects(cache.set(k, { f: () => 1 }), SerializationError);
        assert.equal(await cache.get(k), undefined);
      });

      it('replaces a value on set, and forgets it on delete (deleting an absent key is no error)', async () => {
        const cache = open();
        const k = key();
        await cache.set(k, 1);
        await cache.set(k, 2);
        assert.equal(await cache.get(k), 2);
        await cache.delete(k);
        assert.equal(await cache.get(k), undefined);
        await cache.delete(k);
      });

      it('getMany answers in the order asked, undefined where there is nothing', async () => {
        const cache = open();
        const [a, b, c] = [key('a'), key('b'), key('c')];
        await cache.set(a, 'A');
        await cache.set(c, 'C');
        assert.deepEqual(await cache.getMany([a, b, c, a]), ['A', undefined, 'C', 'A']);
        assert.deepEqual(await cache.getMany([]), []);
      });

      it('add stores only where nothing is stored', async () => {
        const cache = open();
        const k = key();
        assert.equal(await cache.add(k, 'first'), true);
        assert.equal(await cache.add(k, 'second'), false);
        assert.equal(await cache.get(k), 'first');
      });

      it('stores keys longer than 250 bytes under a shortened key, without two long keys sharing an entry', async () => {
        const cache = open();
        const stem = `${key('long')}:${'ключ'.repeat(60)}`; // Cyrillic: two bytes a letter, so 480+ bytes
        await cache.set(`${stem}:one`, 1);
        await cache.set(`${stem}:two`, 2);
        assert.equal(await cache.get(`${stem}:one`), 1);
        assert.equal(await cache.get(`${stem}:two`), 2);
      });
    });

    describe('time to live', () => {
      it('forgets a value once its ttlSec has passed, and keeps one stored without a ttl', async () => {
        const cache = open();
        const [short, forever] = [key('short'), key('forever')];
        await cache.set(short, 'gone soon', { ttlSec: 1 });
        await cache.set(forever, 'stays');
        assert.equal(await cache.get(short), 'gone soon');
        // memcached counts expiry in whole seconds of its own clock: past 2 s, a 1 s entry has expired on any engine.
        await sleep(2_200);
        assert.equal(await cache.get(short), undefined);
        assert.equal(await cache.get(forever), 'stays');
      });

      it('refuses a negative ttlSec', async () => {
        await assert.rejects(open().set(key(), 1, { ttlSec: -1 }), ConfigError);
      });
    });

    describe('wrap (cache-aside)', () => {
      it('computes on a miss, stores the value, and answers from the cache after', async () => {
        const cache = open();
        const k = key();
        let runs = 0;
        const compute = async (): Promise<number> => ++runs * 10;
        assert.equal(await cache.wrap(k, compute, { ttlSec: 60 }), 10);
        assert.equal(await cache.wrap(k, compute, { ttlSec: 60 }), 10);
        assert.equal(runs, 1);
        assert.equal(await cache.get(k), 10);
      });

      it('single flight: 100 concurrent misses of one key compute once, and all get its value', async () => {
        const cache = open();
        const k = key();
        let runs = 0;
        const compute = async (): Promise<string> => {
          runs++;
          await sleep(50);
          return 'once';
        };
        const values = await Promise.all(Array.from({ length: 100 }, () => cache.wrap(k, compute)));
        assert.equal(runs, 1);
        assert.deepEqual(new Set(values), new Set(['once']));
      });

      it('does not cache a computation that throws: the error reaches the caller, and the next call computes again', async () => {
        const cache = open();
        const k = key();
        let runs = 0;
        await assert.rejects(
          cache.wrap(k, () => {
            runs++;
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.equal(await cache.wrap(k, () => ++runs), 2);
      });

      it('with lock, one of two caches on the store computes while the other waits for its value', { skip: !options.shared && 'the engine is not shared between caches' }, async () => {
        const [first, second] = [open(), open()];
        const k = key();
        let runs = 0;
        const compute = async (): Promise<number> => {
          runs++;
          await sleep(300);
          return 7;
        };
        const values = await Promise.all([first.wrap(k, compute, { lock: true }), second.wrap(k, compute, { lock: { waitMs: 5_000 } })]);
        assert.deepEqual(values, [7, 7]);
        assert.equal(runs, 1);
      });
    });

    describe('sharing', () => {
      it(options.shared ? 'a second cache on the same URL reads what the first stored' : 'a second cache on the same URL has a store of its own', async () => {
        const [first, second] = [open(), open()];
        const k = key();
        await first.set(k, 'v');
        assert.equal(await second.get(k), options.shared ? 'v' : undefined);
      });
    });

    describe('deleteMany', () => {
      it(options.deleteMany ? 'deletes every key with the prefix, and only those' : 'is refused with a ConfigError naming the engine', async () => {
        const cache = open();
        const prefix = key('group');
        const other = key('other');
        await cache.set(`${prefix}:1`, 1);
        await cache.set(`${prefix}:2`, 2);
        await cache.set(other, 3);
        if (!options.deleteMany) {
          await assert.rejects(cache.deleteMany(prefix), (error: unknown) => error instanceof ConfigError && /cannot list its keys/.test(error.message));
          return;
        }
        assert.equal(await cache.deleteMany(prefix), 2);
        assert.deepEqual(await cache.getMany([`${prefix}:1`, `${prefix}:2`, other]), [undefined, undefined, 3]);
      });
    });

    describe('values too large', { skip: options.maxValueBytes === undefined && 'the engine has no value limit short enough to test' }, () => {
      it('set rejects with CacheError naming the size; wrap returns the value unstored; both are counted as refused', async () => {
        const cache = open();
        const k = key();
        const big = 'x'.repeat(options.maxValueBytes! + 1);
        await assert.rejects(cache.set(k, big), (error: unknown) => error instanceof CacheError && new RegExp(`${options.maxValueBytes! + 3} bytes`).test(error.message));
        assert.equal(await cache.wrap(k, () => big), big);
        assert.equal(await cache.get(k), undefined);
        assert.equal(cache.stats().at(-1)!.refused, 2);
      });
    });

    describe('stats', () => {
      it('counts hits, misses and sets per engine', async () => {
        const cache = open();
        const k = key();
        await cache.get(k);
        await cache.set(k, 1);
        await cache.get(k);
        await cache.getMany([k, key('absent')]);
        const [stats] = cache.stats();
        assert.equal(stats!.hits, 2);
        assert.equal(stats!.misses, 2);
        assert.equal(stats!.sets, 1);
        assert.equal(stats!.errors, 0);
        assert.ok(stats!.operations >= 4);
        assert.deepEqual(warnings.get(cache), [], 'nothing went wrong, so nothing was logged');
      });
    });
  });
}
