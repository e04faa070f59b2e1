// Runs the transport and backend conformance suites against the redis:// engines, on a real Redis server
// (127.0.0.1:6379, database 11, owned by this file). Every factory call starts from an empty database
// (FLUSHDB): the suites run their tests one after another, and a test's transports are closed before the
// next test opens its own. `reopen` / `peer` open a second instance on the same database, on its own
// connections, so cross-connection behaviour goes through Redis itself.
//
// Priority: kombu's Redis buckets serve 0 first and 9 last (0–2, 3–5, 6–8, 9 each FIFO), the reverse of
// sqlite:// and memory://; the suite is told so through `priorityRank`.
// Redelivery: kombu's restore marks a message by setting headers.redelivered (and delivery_info.redelivered);
// the suite is told that header is the broker's through `redeliveryHeaders`.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisBackend } from '../../src/backends/redis.ts';
import { RedisTransport } from '../../src/transports/redis.ts';
import { CONSUMERS_KEY } from '../../src/transports/redis/consumers.ts';
import type { Transport } from '../../src/transports/transport.ts';
import { flushRedisDb, REDIS_DB, redisSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';
import { backendSuite } from './backend.suite.ts';
import { transportSuite, type TransportOpenOptions } from './transport.suite.ts';

const DB = REDIS_DB.conformance;
const URL = redisUrlForTest(DB);
const POLL_MS = 100;
const skip = await redisSkipReason();

function openTransport(url: string, opts: TransportOpenOptions): RedisTransport {
  return new RedisTransport(url, { visibilityTimeoutSec: opts.visibilityTimeoutSec, pollIntervalMs: POLL_MS });
}

/** kombu's bucket of a priority: the bucket number is the order it is served in (0 first). */
function kombuBucket(priority: number): number {
  return priority >= 9 ? 9 : priority >= 6 ? 6 : priority >= 3 ? 3 : 0;
}

describe('redis://', { skip }, () => {
  before(() => flushRedisDb(DB));
  after(() => flushRedisDb(DB));

  transportSuite(
    'redis',
    async (opts) => {
      await flushRedisDb(DB);
      return openTransport(URL, opts);
    },
    { delayedDelivery: true, priorities: true, crossProcess: true, deduplication: true, broadcast: true },
    {
      reopen: (transport: Transport, opts) => {
        const second = openTransport(transport.url, opts);
        assert.notEqual(second.client, (transport as RedisTransport).client, 'the second transport has its own connection');
        return second;
      },
      priorityRank: kombuBucket,
      redeliveryHeaders: ['redelivered'],
      presence: 'announced',
    },
  );

  backendSuite(
    'redis',
    async () => {
      await flushRedisDb(DB);
      return new RedisBackend(URL);
    },
    { peer: (backend) => new RedisBackend(backend.url), expiring: (backend, resultExpiresSec) => new RedisBackend(backend.url, { resultExpiresSec }), crossProcess: true },
  );

  // Engine-specific: the presence hash does not grow with the workers that died without withdrawing.
  it('presence: deletes announcements past their TTL from fennel.consumers (consumers_prune.lua), never a live one', async () => {
    await flushRedisDb(DB);
    const dying = openTransport(URL, { visibilityTimeoutSec: 30 });
    const next = openTransport(URL, { visibilityTimeoutSec: 30 });
    const inspect = testRedisClient(DB);
    try {
      await dying.announceConsumer('dead@test', ['q1', 'q2'], 0.1);
      await dying.announceConsumer('alive@test', ['q1'], 60);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(await inspect.hlen(CONSUMERS_KEY), 3, 'nothing has pruned yet: the lapsed entries are still stored');
      // A connection prunes on its first announcement (and then at most once a minute).
      await next.announceConsumer('new@test', ['q2'], 60);
      assert.deepEqual(Object.keys(await inspect.hgetall(CONSUMERS_KEY)).sort(), ['q1\nalive@test', 'q2\nnew@test']);
    } finally {
      inspect.disconnect();
      await dying.close();
      await next.close();
    }
  });
});
