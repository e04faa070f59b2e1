// Runs the messaging conformance suite (direct and broadcast queues) against every engine: memory://, sqlite:// (a
// temp file per case), redis:// (database REDIS_DB.messaging, flushed per case) and amqp:// (RabbitMQ; the queues and
// exchanges a case creates are deleted afterwards). An engine whose service is missing is skipped with the reason
// (and fails under CI=true, through the skip helpers).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe } from 'node:test';
import { AmqpTransport } from '../../src/transports/amqp.ts';
import { MemoryTransport } from '../../src/transports/memory.ts';
import { RedisTransport } from '../../src/transports/redis.ts';
import { SqliteTransport } from '../../src/transports/sqlite.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { messagingSuite } from './messaging.suite.ts';

const POLL_MS = 100;

messagingSuite('memory', { open: () => new MemoryTransport(`memory://${randomUUID()}`), durableCopies: true });

const dir = mkdtempSync(join(tmpdir(), 'fennel-messaging-'));
after(() => rmSync(dir, { recursive: true, force: true }));
messagingSuite('sqlite', {
  open: () => new SqliteTransport(`sqlite://${join(dir, `${randomUUID()}.db`)}`, { pollIntervalMs: POLL_MS }),
  reopen: (t) => new SqliteTransport(t.url, { pollIntervalMs: POLL_MS }),
  durableCopies: true,
});

const redisSkip = await redisSkipReason();
describe('redis://', { skip: redisSkip }, () => {
  const url = redisUrlForTest(REDIS_DB.messaging);
  after(() => flushRedisDb(REDIS_DB.messaging));
  messagingSuite('redis', {
    open: async () => {
      await flushRedisDb(REDIS_DB.messaging);
      return new RedisTransport(url, { pollIntervalMs: POLL_MS });
    },
    reopen: () => new RedisTransport(url, { pollIntervalMs: POLL_MS }),
    durableCopies: true,
  });
});

const rabbitSkip = await rabbitSkipReason();
describe('amqp://', { skip: rabbitSkip }, () => {
  const created = new Set<string>();
  after(async () => {
    if (!rabbitSkip) await removeRabbitQueues(created);
  });
  messagingSuite('amqp', {
    open: () => new AmqpTransport(RABBIT_URL),
    reopen: () => new AmqpTransport(RABBIT_URL),
    created: (queue) => created.add(queue),
  });
});
