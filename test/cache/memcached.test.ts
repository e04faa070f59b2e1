// The memcached:// cache engine (src/cache/memcached.ts) against real memcached servers this file starts on loopback
// ports of its own (never the shared 11211): the operations and their expiry, memcached's own LRU eviction, the
// ketama ring (its spread, what moves when a server joins, and agreement with libmemcached through pylibmc), a
// server SIGKILLed mid-run taken out of the ring and put back, a server that never answers, and URL checking.
// Where a key is stored is confirmed by reading each server directly (a memjs client per server). Waits poll with
// deadlines; nothing asserts on elapsed time.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import memjs from 'memjs';
import { MemcachedEngine, parseMemcachedUrl } from '../../src/cache/memcached.ts';
import { CacheError, ConfigError } from '../../src/errors.ts';
import { memcachedSkipReason, startMemcached, type RunningMemcached } from '../support/memcached.ts';
import { waitFor } from '../support/process.ts';
import { PYTHON } from '../support/python.ts';

const skip = memcachedSkipReason();
const PYLIBMC_RING = join(import.meta.dirname, 'fixtures/pylibmc_ring.py');

/** Why the pylibmc agreement test cannot run (no python3-pylibmc), or false; on CI (CI=true) that is an error. */
function pylibmcSkipReason(): string | false {
  if (spawnSync(PYTHON, ['-c', 'import pylibmc'], { stdio: 'ignore' }).status === 0) return false;
  const reason = `${PYTHON} cannot import pylibmc (apt-get install python3-pylibmc)`;
  if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: pylibmc is required)`);
  return reason;
}

const urlOf = (servers: readonly RunningMemcached[], query = ''): string => `memcached://${servers.map((s) => s.address).join(',')}${query}`;
const keysNamed = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}:${i}`);

/** A memjs client on one server only, for reading what is stored there (not through the ring). */
function directClient(address: string): memjs.Client {
  return memjs.Client.create(address, { retries: 1, timeout: 5, logger: { log: () => {} } });
}

/** Which of `servers` hold `key` (read directly from each). */
async function holders(key: string, direct: ReadonlyMap<string, memjs.Client>): Promise<string[]> {
  const found: string[] = [];
  for (const [address, client] of direct) if ((await client.get(key)).value !== null) found.push(address);
  return found;
}

/** The message of the CacheError `promise` rejects with (fails if it resolves or rejects with anything else). */
async function cacheErrorOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    (value) => assert.fail(`expected a CacheError, got ${JSON.stringify(value)}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof CacheError, String(error));
  return error.message;
}

describe('memcached:// cache engine', { skip }, () => {
  const trio: RunningMemcached[] = [];
  const engines: MemcachedEngine[] = [];
  const direct = new Map<string, memjs.Client>();
  const warnings: string[] = [];
  const engine = (url: string, timeoutMs = 2_000): MemcachedEngine => {
    const made = new MemcachedEngine(url, { timeoutMs, warn: (message) => warnings.push(message) });
    engines.push(made);
    return made;
  };

  before(async () => {
    for (let i = 0; i < 3; i++) trio.push(await startMemcached({ memoryMb: 16 }));
    for (const server of trio) direct.set(server.address, directClient(server.address));
  });
  after(async () => {
    for (const made of engines) await made.close();
    for (const client of direct.values()) client.close();
    for (const server of trio) await server.stop();
  });

  it('sets, gets, adds, deletes and reads many keys across three servers', async () => {
    const cache = engine(urlOf(trio));
    assert.equal(cache.kind, 'memcached');
    assert.equal(cache.url, urlOf(trio));
    assert.equal(cache.maxValueBytes, 1024 * 1024);
    assert.equal('deleteMany' in cache, false, 'memcached cannot list its keys');

    assert.equal(await cache.get('rt:absent'), undefined);
    await cache.set('rt:a', 'héllo ✓ wörld', 60);
    assert.equal(await cache.get('rt:a'), 'héllo ✓ wörld', 'values come back as the UTF-8 text stored');
    await cache.set('rt:a', 'replaced', 0);
    assert.equal(await cache.get('rt:a'), 'replaced');

    assert.equal(await cache.add('rt:a', 'not stored', 60), false, 'add on a key that holds a value');
    assert.equal(await cache.get('rt:a'), 'replaced');
    assert.equal(await cache.add('rt:b', 'added', 60), true);
    assert.equal(await cache.get('rt:b'), 'added');

    await cache.delete('rt:a');
    assert.equal(await cache.get('rt:a'), undefined);
    await cache.delete('rt:a'); // absent: fine

    // A value over memcached's item size is refused by the server: a CacheError, but the server answered, so it
    // is no failure of the server's (not counted towards taking it out of the ring).
    const tooLarge = cache.serverFor('rt:large');
    assert.match(await cacheErrorOf(cache.set('rt:large', 'x'.repeat(2 * 1024 * 1024), 60)), new RegExp(`^memcached ${tooLarge}: .*too large`, 'i'));
    assert.deepEqual(
      cache.servers().find((s) => s.server === tooLarge),
      { server: tooLarge, inRing: true, failures: 0 },
    );
    await cache.set('rt:large', 'x'.repeat(1000 * 1024), 60);
    assert.equal((await cache.get('rt:large'))?.length, 1000 * 1024);

    // Keys on every server, some missing, in the order asked.
    const keys = keysNamed('rt:many', 60);
    for (const [i, key] of keys.entries()) if (i % 3 !== 0) await cache.set(key, `v${i}`, 60);
    assert.equal(new Set(keys.map((key) => cache.serverFor(key))).size, 3, 'the keys are spread over all three servers');
    assert.deepEqual(
      await cache.getMany(keys),
      keys.map((_, i) => (i % 3 === 0 ? undefined : `v${i}`)),
    );
    assert.deepEqual(await cache.getMany([]), []);

    // Each key is on the server the ring names, and only there.
    for (const key of keys.filter((_, i) => i % 3 !== 0)) assert.deepEqual(await holders(key, direct), [cache.serverFor(key)], key);
  });

  it('expires a key after its ttl, and reads a ttl over 30 days as seconds, not a date in 1970', async () => {
    const cache = engine(urlOf(trio));
    await cache.set('ttl:short', 'soon gone', 1);
    await cache.set('ttl:none', 'stays', 0);
    // 40 days: memcached reads any expiry above 30 days as a unix time; sent as is, it would be long past.
    await cache.set('ttl:long', 'stays too', 40 * 24 * 3600);
    assert.equal(await cache.add('ttl:long-add', 'added', 40 * 24 * 3600), true);
    assert.equal(await cache.get('ttl:short'), 'soon gone');
    await new Promise((r) => setTimeout(r, 2_100));
    assert.equal(await cache.get('ttl:short'), undefined, 'expired after its 1 s');
    assert.equal(await cache.get('ttl:none'), 'stays');
    assert.equal(await cache.get('ttl:long'), 'stays too');
    assert.equal(await cache.get('ttl:long-add'), 'added');
  });

  it('loses the least recently used values when a small server is full (memcached evicts; a miss, not an error)', async () => {
    const small = await startMemcached({ memoryMb: 2 });
    try {
      const cache = engine(urlOf([small]));
      const value = 'x'.repeat(50 * 1024);
      const keys = keysNamed('lru', 200); // 10 MB through a 2 MB server
      for (const key of keys) await cache.set(key, value, 0);
      const values = await cache.getMany(keys);
      assert.equal(values[0], undefined, 'the first value written is gone');
      assert.equal(values.at(-1), value, 'the last value written is there');
      const kept = values.filter((v) => v !== undefined).length;
      assert.ok(kept > 0 && kept < keys.length / 2, `${kept} of ${keys.length} values kept`);
    } finally {
      await small.stop();
    }
  });

  it('spreads 30,000 keys over three servers within 15% of a third each, where the servers hold them', async () => {
    const cache = engine(urlOf(trio));
    const counts = new Map<string, number>();
    for (const key of keysNamed('spread', 30_000)) {
      const server = cache.serverFor(key)!;
      counts.set(server, (counts.get(server) ?? 0) + 1);
    }
    assert.deepEqual([...counts.keys()].sort(), trio.map((s) => s.address).sort());
    for (const [server, count] of counts) assert.ok(Math.abs(count - 10_000) <= 1_500, `${server} has ${count} of 30000 keys`);

    const sample = keysNamed('spread', 30_000).filter((_, i) => i % 100 === 0);
    await Promise.all(sample.map((key) => cache.set(key, 'here', 60)));
    for (const key of sample) assert.deepEqual(await holders(key, direct), [cache.serverFor(key)], key);
  });

  it('moves about a quarter of the keys when a fourth server joins, every one of them to the new server', async () => {
    const fourth = await startMemcached({ memoryMb: 16 });
    const fourthClient = directClient(fourth.address);
    try {
      const three = engine(urlOf(trio));
      const four = engine(urlOf([...trio, fourth]));
      const keys = keysNamed('join', 30_000);
      const moved = keys.filter((key) => three.serverFor(key) !== four.serverFor(key));
      const share = moved.length / keys.length;
      assert.ok(share >= 0.15 && share <= 0.35, `${moved.length} of ${keys.length} keys moved`);
      for (const key of moved) assert.equal(four.serverFor(key), fourth.address, `${key} moved to ${four.serverFor(key)}`);

      // Written through the four-server ring, the moved keys are on the new server.
      const sample = moved.slice(0, 200);
      await Promise.all(sample.map((key) => four.set(key, 'moved', 60)));
      for (const key of sample) assert.notEqual((await fourthClient.get(key)).value, null, key);
    } finally {
      fourthClient.close();
      await fourth.stop();
    }
  });

  it('takes a SIGKILLed server out of the ring after `failures` failures, sends its keys elsewhere, and puts it back after retryMs', async () => {
    const servers = [await startMemcached(), await startMemcached(), await startMemcached()];
    try {
      const before = warnings.length;
      const retryMs = 1_500;
      const cache = engine(urlOf(servers, `?failures=2&retryMs=${retryMs}`), 2_000);
      const victim = servers[1]!;
      const keys = keysNamed('kill', 600);
      const victimKeys = keys.filter((key) => cache.serverFor(key) === victim.address);
      assert.ok(victimKeys.length > 100, `${victimKeys.length} of the keys are on the victim`);
      const out = (): boolean => !cache.servers().find((s) => s.server === victim.address)!.inRing;

      for (const key of keys.slice(0, 100)) {
        await cache.set(key, `v:${key}`, 60);
        assert.equal(await cache.get(key), `v:${key}`);
      }
      await victim.kill('SIGKILL');

      // A set and a get per key, in order: the victim's first two operations fail, and then it is out.
      const rejected: string[] = [];
      let i = 100;
      for (; i < keys.length && !out(); i++) {
        const key = keys[i]!;
        for (const op of [() => cache.set(key, `v:${key}`, 60), () => cache.get(key)]) {
          await op().catch((error: unknown) => rejected.push(`${key}: ${String(error)}`));
        }
      }
      assert.ok(out(), 'the victim was taken out of the ring');
      assert.equal(rejected.length, 2, `the failures before it went out, and only those:\n${rejected.join('\n')}`);
      for (const message of rejected) assert.match(message, new RegExp(`CacheError: memcached ${victim.address}: `));
      const outWarnings = warnings.slice(before).filter((w) => w.includes('taken out of the ring'));
      assert.equal(outWarnings.length, 1);
      assert.match(outWarnings[0]!, new RegExp(`^memcached ${victim.address} taken out of the ring after 2 failures in a row \\([^)]+\\); trying it again in 1.5 s$`));

      // While it is out, every key has a live server and every operation succeeds, the victim's keys included.
      let victimKeysServed = 0;
      for (const key of [...victimKeys, ...keys.slice(i)]) {
        if (!out()) break; // back already (retryMs passed): what follows is the next part
        const server = cache.serverFor(key);
        assert.ok(server !== undefined && server !== victim.address, `${key} goes to ${server}`);
        await cache.set(key, `elsewhere:${key}`, 60);
        assert.equal(await cache.get(key), `elsewhere:${key}`);
        if (victimKeys.includes(key)) victimKeysServed++;
      }
      assert.ok(victimKeysServed >= 10, `${victimKeysServed} of the victim's keys were served by the others while it was out`);

      // Restarted on its port, it is back in the ring once retryMs have passed, and its keys go to it again.
      await victim.restart();
      await waitFor(() => !out(), 'the victim back in the ring', 20_000);
      assert.ok(warnings.slice(before).some((w) => w.startsWith(`memcached ${victim.address} is back in the ring after 1.5 s out`)));
      const victimClient = directClient(victim.address);
      try {
        for (const key of victimKeys.slice(0, 20)) {
          assert.equal(cache.serverFor(key), victim.address);
          await cache.set(key, `back:${key}`, 60);
          assert.equal(await cache.get(key), `back:${key}`);
          assert.equal((await victimClient.get(key)).value?.toString(), `back:${key}`, 'stored on the victim itself');
        }
      } finally {
        victimClient.close();
      }
      assert.deepEqual(
        cache.servers().map((s) => [s.inRing, s.failures]),
        [
          [true, 0],
          [true, 0],
          [true, 0],
        ],
      );

      // Killed again and left dead: out after two failures, back after retryMs, and out again on its first failure.
      await victim.kill('SIGKILL');
      const key = victimKeys[0]!;
      await cacheErrorOf(cache.get(key));
      await cacheErrorOf(cache.get(key));
      assert.ok(out());
      await waitFor(() => !out(), 'the dead victim back in the ring', 20_000);
      assert.match(await cacheErrorOf(cache.get(key)), new RegExp(`memcached ${victim.address}: `));
      assert.ok(out(), 'one failure on its return takes it out again');
      assert.match(warnings.at(-1)!, new RegExp(`^memcached ${victim.address} taken out of the ring again: it failed on its first try after coming back`));
    } finally {
      for (const server of servers) await server.stop();
    }
  });

  it('rejects with no server in the ring at once when every server is out', async () => {
    const lone = await startMemcached();
    try {
      const cache = engine(urlOf([lone], '?failures=1&retryMs=60000'));
      await cache.set('lone', 'x', 60);
      await lone.kill('SIGKILL');
      await cacheErrorOf(cache.get('lone'));
      assert.equal(cache.serverFor('lone'), undefined);
      assert.match(await cacheErrorOf(cache.get('lone')), /^no memcached server is in the ring: all 1 were taken out after failing 1 times in a row; the first is tried again in /);
      assert.match(await cacheErrorOf(cache.getMany(['lone', 'other'])), /^no memcached server is in the ring/);
    } finally {
      await lone.stop();
    }
  });

  it('rejects the requests waiting on a connection the server closes unanswered (a memcached SIGKILLed after reading them)', async () => {
    // A memcached killed after it read a request closes the connection with FIN, not RST: no socket error, and
    // memjs 1.3 alone would leave each request waiting for ever (its timer goes with the socket).
    const hangup: Server = createServer((socket) => socket.once('data', () => socket.end()));
    await new Promise<void>((resolve) => hangup.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(hangup.address() as { port: number }).port}`;
    const closed = `memcached ${address}: the server closed the connection before it answered`;
    /** Fails the test, rather than hanging it, if `promise` is still waiting after 10 s (its time limit is 2 s). */
    const settled = <T,>(promise: Promise<T>): Promise<T> => {
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('still waiting after 10 s')), 10_000)));
      return Promise.race([promise, stuck]).finally(() => clearTimeout(timer));
    };
    try {
      const cache = engine(`memcached://${address}?failures=2`);
      assert.equal(await settled(cacheErrorOf(cache.get('k'))), closed);
      // Twenty requests on one connection that closes: each is rejected, and they are one failure of the server.
      const crowded = await settled(Promise.all(Array.from({ length: 20 }, (_, i) => cacheErrorOf(cache.get(`crowd:${i}`)))));
      assert.deepEqual(crowded, Array.from({ length: 20 }, () => closed));
      assert.deepEqual(cache.servers().map((s) => [s.inRing, s.failures]), [[false, 2]], 'two failures in a row: out of the ring');
    } finally {
      await new Promise<void>((resolve) => hangup.close(() => resolve()));
    }
  });

  it('rejects with "timed out" when a server accepts connections and never answers, and leaves no connection open', async () => {
    const connections = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      connections.add(socket);
      socket.on('close', () => connections.delete(socket));
      socket.resume(); // reads every request, answers none
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(silent.address() as { port: number }).port}`;
    try {
      const cache = engine(`memcached://${address}?failures=2`, 300);
      assert.equal(await cacheErrorOf(cache.get('k')), `memcached ${address}: timed out after 300 ms`);
      assert.equal(await cacheErrorOf(cache.set('k', 'v', 10)), `memcached ${address}: timed out after 300 ms`);
      // Two failures in a row: out of the ring, and the next operation rejects without waiting.
      assert.match(await cacheErrorOf(cache.get('k')), /^no memcached server is in the ring/);

      // Twenty requests waiting on one connection that times out are one failure of the server, not twenty: a
      // stall of this process with many in flight must not empty the ring.
      const crowd = engine(`memcached://${address}?failures=2`, 300);
      const crowded = await Promise.all(Array.from({ length: 20 }, (_, i) => cacheErrorOf(crowd.get(`crowd:${i}`))));
      assert.ok(crowded.every((message) => message.includes('timed out after 300 ms')), crowded.join(' | '));
      assert.deepEqual(crowd.servers().map((s) => [s.inRing, s.failures]), [[true, 1]], 'one failure, still in the ring');
      assert.equal(await cacheErrorOf(crowd.get('again')), `memcached ${address}: timed out after 300 ms`);
      assert.deepEqual(crowd.servers().map((s) => s.inRing), [false], 'the second failure in a row takes it out');
      await crowd.close();

      // Requests keep coming while the earlier ones time out (the server never taken out of the ring): memjs 1.3,
      // reusing a connection after a timeout, would orphan the sockets it opens meanwhile (see retire() in
      // memcached.ts); after close() none may stay open.
      const busy = engine(`memcached://${address}?failures=1000000`, 200);
      const pending: Array<Promise<string>> = [];
      for (let i = 0; i < 60; i++) {
        pending.push(cacheErrorOf(busy.get(`busy:${i}`)));
        await new Promise((r) => setTimeout(r, 25));
      }
      // Each times out, or is dropped with its connection when another request on it timed out first.
      const timedOut = new RegExp(`^memcached ${address.replace(/\./g, '\\.')}: (connection closed after another request on it failed \\()?timed out after 200 ms\\)?$`);
      for (const message of await Promise.all(pending)) assert.match(message, timedOut);
      assert.ok(busy.servers()[0]!.inRing, 'never taken out: failures=1000000');
      await cache.close();
      await busy.close();
      await waitFor(() => connections.size === 0, 'every connection to the silent server closed', 10_000);
    } finally {
      for (const socket of connections) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  describe('agrees with libmemcached (pylibmc) on where every key goes', { skip: pylibmcSkipReason() }, () => {
    /** Has pylibmc SET each key to `servers` with `behaviour`, then reads each server: key -> where pylibmc put it. */
    async function wherePylibmcPuts(servers: readonly RunningMemcached[], keys: readonly string[], behaviour: string): Promise<Map<string, string>> {
      const run = spawnSync(PYTHON, [PYLIBMC_RING, servers.map((s) => s.address).join(','), behaviour], { input: keys.join('\n'), encoding: 'utf8', timeout: 120_000 });
      assert.equal(run.status, 0, `pylibmc_ring.py failed:\n${run.stdout}${run.stderr}`);
      assert.equal(run.stdout.trim(), `set ${keys.length}`);
      const placed = new Map<string, string>();
      for (const server of servers) {
        const client = directClient(server.address);
        try {
          const values = await Promise.all(keys.map((key) => client.get(key)));
          keys.forEach((key, i) => {
            if (values[i]!.value === null) return;
            assert.equal(placed.get(key), undefined, `${key} is on two servers`);
            placed.set(key, server.address);
          });
        } finally {
          client.close();
        }
      }
      assert.equal(placed.size, keys.length, 'every key pylibmc set is on one server');
      return placed;
    }

    const agreement = (cache: MemcachedEngine, placed: ReadonlyMap<string, string>): string[] =>
      [...placed].filter(([key, server]) => cache.serverFor(key) !== server).map(([key, server]) => `${key}: pylibmc ${server}, Fennel ${cache.serverFor(key)}`);

    it('with three servers: "ketama_weighted" agrees on all 2,000 keys; plain "ketama" does not', async () => {
      const cache = engine(urlOf(trio));
      const keys = keysNamed('py3', 2_000);
      const disagree = agreement(cache, await wherePylibmcPuts(trio, keys, 'ketama_weighted'));
      assert.deepEqual(disagree.slice(0, 10), [], `${disagree.length} of ${keys.length} keys disagree`);
      // pylibmc's plain "ketama" (100 points a server, one per digest) is another ring: most keys land elsewhere.
      const plainKeys = keysNamed('py3plain', 2_000);
      const plain = agreement(cache, await wherePylibmcPuts(trio, plainKeys, 'ketama'));
      assert.ok(plain.length > plainKeys.length / 4, `only ${plain.length} keys disagree with plain ketama`);
    });

    // 7 servers: hashring's own digest count, Math.floor(1 / 7 * 40 * 7) in doubles, is 39, libmemcached's 40.
    // 25 servers: libmemcached's count, in single precision, is 39 (ketamaHashesPerServer), not 40.
    for (const count of [7, 25]) {
      it(`with ${count} servers, where rounding the points per server matters`, async () => {
        const servers: RunningMemcached[] = [];
        try {
          for (let i = 0; i < count; i++) servers.push(await startMemcached({ memoryMb: 2 }));
          const cache = engine(urlOf(servers));
          const keys = keysNamed(`py${count}`, 2_000);
          const disagree = agreement(cache, await wherePylibmcPuts(servers, keys, 'ketama_weighted'));
          assert.deepEqual(disagree.slice(0, 10), [], `${disagree.length} of ${keys.length} keys disagree`);
        } finally {
          for (const server of servers) await server.stop();
        }
      });
    }
    // A server on the default port 11211 is named "<host>-<i>" on the ring, not "<host>:11211-<i>". It is not tried
    // against pylibmc here: 11211 is the shared memcached of this machine (.ci/run starts one there), and a private
    // server cannot take that port. The naming is libmemcached's (update_continuum) and src/cache/memcached.ts's.
  });

  it('refuses a malformed URL with a ConfigError naming the part', () => {
    const refused = (url: string, pattern: RegExp): void => {
      assert.throws(
        () => parseMemcachedUrl(url),
        (e: unknown) => e instanceof ConfigError && pattern.test(e.message),
      );
    };
    refused('memcached://127.0.0.1:99999', /the port '99999' of server 1 \('127\.0\.0\.1:99999'\) of memcached:\/\/127\.0\.0\.1:99999 is not a port/);
    refused('memcached://a:11211,b:0', /the port '0' of server 2 \('b:0'\)/);
    refused('memcached://a:11211,b:x', /the port 'x' of server 2/);
    refused('memcached://', /server 1 of memcached:\/\/ is empty/);
    refused('memcached://a:11211,,b', /server 2 of memcached:\/\/a:11211,,b is empty/);
    refused('memcached://a,a:11211', /the server a:11211 is named twice/);
    refused('memcached://a:1:2', /server 1 \('a:1:2'\) .* has more than one ':'/);
    refused('memcached://[::1:11211', /opens an IPv6 address with '\[' and never closes it/);
    refused('memcached://a?failures=2&retry=5', /unknown parameter 'retry' in memcached:\/\/a\?failures=2&retry=5; known: failures, retryMs, timeoutMs/);
    refused('memcached://a?failures=0', /failures of memcached:\/\/a\?failures=0 is '0': use a whole number from 1/);
    refused('memcached://a?retryMs=soon', /retryMs of .* is 'soon'/);
    refused('memcached://user:secret@a:11211', /^memcached:\/\/user:\*\*\*@a:11211 has a user name or password: memcached's SASL authentication is not supported yet/);
    refused('memcached://a/0', /the path '\/0' of memcached:\/\/a\/0 means nothing to memcached/);
    refused('redis://a:6379', /is not a memcached URL/);

    const parsed = parseMemcachedUrl('memcached://a,b:11212,[::1]:11213/?failures=3&retryMs=500&timeoutMs=100');
    assert.deepEqual(parsed.servers, [
      { host: 'a', port: 11211, address: 'a:11211' },
      { host: 'b', port: 11212, address: 'b:11212' },
      { host: '::1', port: 11213, address: '[::1]:11213' },
    ]);
    assert.equal(parsed.failures, 3);
    assert.equal(parsed.retryMs, 500);
    const defaults = parseMemcachedUrl('memcached://a');
    assert.deepEqual([defaults.failures, defaults.retryMs], [2, 30_000]);
  });
});
