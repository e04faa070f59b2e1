// The cache metrics of the gateway (issue #19): fennel_cache_operations_total{source,engine,result} and
// fennel_cache_operation_mean_seconds{source,engine} in /metrics, the same rows in GET /api/cache and in the
// dashboard feed, from the gateway's own caches (source "gateway") and each online worker's last report (the
// `cache` field of its worker events, source: its hostname). A worker event's `cache` is checked field by field:
// anyone can publish events. In-process gateways on memory://; a real Worker in this process shows that workers
// report their caches. Waits poll what the gateway answers, never a time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { Cache } from '../../src/cache/cache.ts';
import { createGateway, type Gateway } from '../../src/gateway/gateway.ts';
import { GatewayMetrics } from '../../src/gateway/metrics.ts';
import { MAX_CACHE_REPORTS, parseCacheReports, type CacheRow } from '../../src/gateway/monitor.ts';
import { Fennel, Worker } from '../../src/index.ts';
import { uniqueQueue, waitFor } from '../support/process.ts';
import { connect, request } from './support.ts';

const report = (engine: string, counts: Partial<Record<'hits' | 'misses' | 'errors' | 'refused' | 'sets' | 'operations' | 'meanMs', number>> = {}, url = `${engine}://h:1`) => ({
  engine,
  url,
  hits: 0,
  misses: 0,
  errors: 0,
  refused: 0,
  sets: 0,
  operations: 0,
  meanMs: 0,
  ...counts,
});

/** The value of one sample line of /metrics, or undefined if it is not there. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('parseCacheReports', () => {
  it('keeps entries with a plain engine name, reads bad counts as 0, caps the list, and says undefined for no list', () => {
    assert.equal(parseCacheReports(undefined), undefined);
    assert.equal(parseCacheReports('lru'), undefined);
    assert.equal(parseCacheReports({ engine: 'lru' }), undefined);
    assert.deepEqual(parseCacheReports([]), []);
    const parsed = parseCacheReports([
      null,
      5,
      'lru',
      [report('lru')],
      { hits: 1 },
      { engine: 7 },
      { engine: '<b>x</b>' },
      { engine: 'Redis' },
      { engine: 'x'.repeat(40) },
      { engine: 'lru', url: 5, hits: '3', misses: -1, errors: Number.NaN, refused: Infinity, sets: 2, operations: 4, meanMs: 0.5 },
    ]);
    assert.deepEqual(parsed, [{ engine: 'lru', url: '', hits: 0, misses: 0, errors: 0, refused: 0, sets: 2, operations: 4, meanMs: 0.5 }]);
    assert.equal(parseCacheReports(Array.from({ length: 50 }, () => report('lru')))?.length, MAX_CACHE_REPORTS);
    assert.equal(parseCacheReports([report('lru', {}, 'x'.repeat(10_000))])?.[0]?.url.length, 500);
  });

  it('registers the process-wide latency histogram in every gateway registry of the process', async () => {
    const [a, b] = [new GatewayMetrics(), new GatewayMetrics()];
    for (const metrics of [a, b]) assert.match(await metrics.registry.metrics(), /# TYPE fennel_cache_operation_seconds histogram/);
  });
});

describe('cache metrics of the gateway', () => {
  const broker = `memory://${uniqueQueue('gwcache')}`;
  const app = new Fennel({ broker });
  let gateway: Gateway;
  let url: string;

  before(async () => {
    gateway = await createGateway(app, { port: 0 });
    url = await gateway.listen();
  });
  after(async () => {
    await gateway?.close();
    await app.close();
  });

  const metrics = async (): Promise<string> => {
    const answer = await request(url, 'GET', '/metrics');
    assert.equal(answer.status, 200);
    return answer.text;
  };
  const rows = async (): Promise<CacheRow[]> => {
    const answer = await request(url, 'GET', '/api/cache');
    assert.equal(answer.status, 200);
    return answer.body['cache'] as CacheRow[];
  };
  const heartbeat = (hostname: string, fields: Record<string, unknown>, type = 'worker-heartbeat'): void => gateway.monitor.onEvent({ type, hostname, pid: 4242, timestamp: Date.now() / 1000, freq: 2, ...fields });

  it('shows a worker\'s reported caches by source, engine and result, keeps the last report, and drops an offline worker', async () => {
    heartbeat('w1@test', { cache: [report('lru', { hits: 7, misses: 3, sets: 3, operations: 13, meanMs: 0.02 }, 'lru://?max=100'), report('redis', { hits: 2, misses: 5, errors: 1, refused: 1, sets: 4, operations: 11, meanMs: 1.5 }, 'redis://:***@r:6379/0')] });
    const text = await metrics();
    assert.match(text, /# TYPE fennel_cache_operations_total counter/);
    assert.match(text, /# TYPE fennel_cache_operation_mean_seconds gauge/);
    const op = (engine: string, result: string): number | undefined => sample(text, 'fennel_cache_operations_total', `source="w1@test",engine="${engine}",result="${result}"`);
    assert.deepEqual(['hit', 'miss', 'error', 'refused', 'set'].map((r) => op('lru', r)), [7, 3, 0, 0, 3]);
    assert.deepEqual(['hit', 'miss', 'error', 'refused', 'set'].map((r) => op('redis', r)), [2, 5, 1, 1, 4]);
    assert.equal(sample(text, 'fennel_cache_operation_mean_seconds', 'source="w1@test",engine="redis"'), 0.0015);
    assert.deepEqual(
      (await rows()).filter((r) => r.source === 'w1@test').map((r) => [r.engine, r.url, r.hits]),
      [
        ['lru', 'lru://?max=100', 7],
        ['redis', 'redis://:***@r:6379/0', 2],
      ],
    );

    // A heartbeat without the field (or with one that is not a list) keeps the last report; a new one replaces it.
    heartbeat('w1@test', {});
    heartbeat('w1@test', { cache: 'nonsense' });
    assert.equal(sample(await metrics(), 'fennel_cache_operations_total', 'source="w1@test",engine="lru",result="hit"'), 7);
    heartbeat('w1@test', { cache: [report('lru', { hits: 9, misses: 3 })] });
    const replaced = await metrics();
    assert.equal(sample(replaced, 'fennel_cache_operations_total', 'source="w1@test",engine="lru",result="hit"'), 9);
    assert.equal(sample(replaced, 'fennel_cache_operations_total', 'source="w1@test",engine="redis",result="hit"'), undefined);

    // An offline worker's counts leave /metrics (a Prometheus counter reset when it comes back).
    heartbeat('w1@test', {}, 'worker-offline');
    assert.equal((await rows()).some((r) => r.source === 'w1@test'), false);
    assert.doesNotMatch(await metrics(), /source="w1@test"/);
  });

  it('ignores junk in a worker\'s cache field, and makes no label out of it', async () => {
    const junk = [null, 'redis', 42, { engine: '"}\nfennel_pwned 1\n' }, { engine: 'lru', hits: 'many', misses: -5, sets: 1e400, url: { x: 1 } }, ...Array.from({ length: 20 }, (_, i) => report(`e${i}`))];
    heartbeat('junk@test', { cache: junk });
    const text = await metrics();
    assert.doesNotMatch(text, /fennel_pwned/);
    assert.equal(sample(text, 'fennel_cache_operations_total', 'source="junk@test",engine="lru",result="hit"'), 0);
    assert.equal(sample(text, 'fennel_cache_operations_total', 'source="junk@test",engine="lru",result="miss"'), 0);
    const mine = (await rows()).filter((r) => r.source === 'junk@test');
    assert.equal(mine.length, MAX_CACHE_REPORTS);
    assert.deepEqual(mine[0], { source: 'junk@test', engine: 'lru', url: '', hits: 0, misses: 0, errors: 0, refused: 0, sets: 0, operations: 0, meanMs: 0 });
    // A worker whose events never carried a cache has no rows; its heartbeat is not junk for the others.
    heartbeat('plain@test', { active: 1 });
    assert.equal((await rows()).some((r) => r.source === 'plain@test'), false);
    assert.equal(gateway.monitor.workers.get('plain@test:4242')?.cache.length, 0);
    heartbeat('junk@test', {}, 'worker-offline');
  });

  it("counts the caches open in the gateway's own process as source=\"gateway\", with their latency", async () => {
    const cache = new Cache('lru://');
    try {
      assert.equal(await cache.get('absent'), undefined);
      assert.equal(await cache.set('k', { v: 1 }), true);
      assert.deepEqual(await cache.get('k'), { v: 1 });
      const text = await metrics();
      const op = (result: string): number | undefined => sample(text, 'fennel_cache_operations_total', `source="gateway",engine="lru",result="${result}"`);
      assert.deepEqual(['hit', 'miss', 'error', 'refused', 'set'].map(op), [1, 1, 0, 0, 1]);
      assert.ok((sample(text, 'fennel_cache_operation_mean_seconds', 'source="gateway",engine="lru"') ?? -1) >= 0);
      assert.ok((sample(text, 'fennel_cache_operation_seconds_count', 'engine="lru",op="get"') ?? 0) >= 2, 'the latency histogram of the process');
      const gatewayRows = (await rows()).filter((r) => r.source === 'gateway');
      assert.deepEqual(
        gatewayRows.map((r) => [r.engine, r.url, r.hits, r.misses, r.sets, r.operations]),
        [['lru', 'lru://', 1, 1, 1, 3]],
      );
      // The dashboard feed carries the same rows, in the snapshot and in each stats message.
      const ws = await connect(url);
      try {
        ws.send({ op: 'subscribe', all: true });
        const snapshot = await ws.next((m) => m['type'] === 'snapshot', 'the snapshot');
        assert.deepEqual((snapshot['cache'] as CacheRow[]).filter((r) => r.source === 'gateway').map((r) => r.hits), [1]);
        await ws.next((m) => m['type'] === 'stats' && (m['cache'] as CacheRow[]).some((r) => r.source === 'gateway'), 'a stats message with the cache rows');
      } finally {
        ws.close();
      }
    } finally {
      await cache.close();
    }
    // A closed cache leaves.
    assert.equal((await rows()).some((r) => r.source === 'gateway'), false);
  });

  it('shows the caches a real worker reports in its heartbeats', async () => {
    // A worker in this process, on the gateway's memory:// broker: the cache it sees open is this one.
    const cache = new Cache('lru://?max=10');
    const workerApp = new Fennel({ broker });
    const worker = new Worker(workerApp, { pool: 'async', concurrency: 1, hostname: `${uniqueQueue('cw')}@test`, logger: pino({ level: 'silent' }) });
    try {
      await cache.set('a', 1);
      await cache.get('a');
      await worker.start();
      await waitFor(async () => (await rows()).some((r) => r.source === worker.name && r.engine === 'lru' && r.hits >= 1), 'the worker\'s cache row');
      await waitFor(async () => sample(await metrics(), 'fennel_cache_operations_total', `source="${worker.name}",engine="lru",result="set"`) === 1, 'the worker\'s counter');
    } finally {
      await worker.stop(1);
      await workerApp.close();
      await cache.close();
    }
  });
});
