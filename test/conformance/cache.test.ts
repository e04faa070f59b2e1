// Runs the cache conformance suite (cache.suite.ts) on every engine: lru:// (in process), redis:// (127.0.0.1:6379,
// database 11, flushed before and after: the conformance database, which this file shares with redis.test.ts, one
// file at a time), and memcached:// on private servers this file starts (test/support/memcached.ts): one server,
// and a ring of three. Then what a cache does when its engine fails: a miss within the time limit, counted and
// logged, never an error.

import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Cache } from '../../src/index.ts';
import { startMemcached, memcachedSkipReason, type RunningMemcached } from '../support/memcached.ts';
import { flushRedisDb, freePort, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { cacheSuite } from './cache.suite.ts';

const DB = REDIS_DB.conformance;
const [redisSkip, memcachedSkip] = [await redisSkipReason(), memcachedSkipReason()];

cacheSuite('lru', { url: () => 'lru://?max=1000', shared: false, deleteMany: true });

describe('redis://', { skip: redisSkip }, () => {
  before(() => flushRedisDb(DB));
  after(() => flushRedisDb(DB));
  cacheSuite('redis', { url: () => redisUrlForTest(DB), shared: true, deleteMany: true });
});

describe('memcached://', { skip: memcachedSkip }, () => {
  const servers: RunningMemcached[] = [];
  before(async () => {
    for (let i = 0; i < 3; i++) servers.push(await startMemcached());
  });
  after(async () => {
    await Promise.all(servers.map((server) => server.stop()));
  });
  cacheSuite('memcached, one server', { url: () => `memcached://${servers[0]!.address}`, shared: true, deleteMany: false, maxValueBytes: 1024 * 1024 });
  cacheSuite('memcached, a ring of three', { url: () => `memcached://${servers.map((s) => s.address).join(',')}`, shared: true, deleteMany: false, maxValueBytes: 1024 * 1024 });
});

describe('an engine that fails is a miss, never an error', () => {
  /** A server that accepts connections and never answers: every operation on it runs into the time limit. */
  let silent: Server;
  let silentPort: number;
  const sockets = new Set<Socket>();
  before(async () => {
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentPort = (silent.address() as { port: number }).port;
  });
  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });

  const cases = [
    { engine: 'redis', url: () => `redis://127.0.0.1:${silentPort}/0`, what: 'a Redis that never answers' },
    { engine: 'memcached', url: () => `memcached://127.0.0.1:${silentPort}`, what: 'a memcached that never answers', skip: memcachedSkip },
  ];
  for (const c of cases) {
    it(`${c.engine}: ${c.what} — get is undefined, set false, wrap computes, each counted as an error and logged once`, { skip: c.skip ?? false }, async () => {
      const warnings: string[] = [];
      const cache = new Cache(c.url(), { timeoutMs: 100, log: { warn: (message) => warnings.push(message) } });
      try {
        assert.equal(await cache.get('k'), undefined);
        assert.equal(await cache.set('k', 1), false);
        assert.deepEqual(await cache.getMany(['a', 'b']), [undefined, undefined]);
        assert.equal(await cache.wrap('k', () => 42), 42);
        const [stats] = cache.stats();
        assert.ok(stats!.errors >= 4, `errors counted: ${stats!.errors}`);
        assert.equal(stats!.hits, 0);
        const failures = warnings.filter((w) => w.includes('counted as a miss'));
        assert.equal(failures.length, 1, `one warning of failed operations, not one per failure: ${warnings.join(' | ')}`);
        assert.match(failures[0]!, new RegExp(`cache ${c.engine} .*127\\.0\\.0\\.1:${silentPort}`));
      } finally {
        await cache.close();
      }
    });
  }

  it('memcached: a server SIGKILLed under a ring of two is a miss, then its keys go to the other', { skip: memcachedSkip }, async () => {
    const [a, b] = [await startMemcached(), await startMemcached()];
    const warnings: string[] = [];
    const cache = new Cache(`memcached://${a.address},${b.address}?failures=1&retryMs=60000`, { timeoutMs: 200, log: { warn: (message) => warnings.push(message) } });
    try {
      const keys = Array.from({ length: 200 }, (_, i) => `kill:${i}`);
      for (const k of keys) assert.equal(await cache.set(k, k), true);
      await a.kill('SIGKILL');
      const afterKill = await cache.getMany(keys);
      const lost = afterKill.filter((v) => v === undefined).length;
      assert.ok(lost > 0 && lost < keys.length, `the dead server's keys miss, the other's hit (${lost} of ${keys.length} missed)`);
      for (const k of keys) await cache.set(k, k);
      assert.deepEqual(await cache.getMany(keys), keys, 'with the dead server out of the ring, every key is stored on the other');
      assert.ok(warnings.some((w) => w.includes(a.address)), `a warning names the dead server: ${warnings.join(' | ')}`);
    } finally {
      await cache.close();
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a cache URL that names no engine, or a part that is wrong, is a ConfigError at construction', async () => {
    assert.throws(() => new Cache('ftp://x'), /is not a cache URL/);
    assert.throws(() => new Cache('lru://?max=zero'), /max of lru:\/\/\?max=zero is 'zero'/);
    assert.throws(() => new Cache('lru://?size=1'), /unknown parameter 'size'/);
    assert.throws(() => new Cache('redis://127.0.0.1:6379/0?timeoutMs=-5'), /timeoutMs/);
    assert.throws(() => new Cache([]), /at least one URL/);
    const port = await freePort();
    assert.throws(() => new Cache(`memcached://127.0.0.1:${port}:1`), /memcached/);
  });
});
