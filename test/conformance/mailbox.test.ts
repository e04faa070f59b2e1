// Runs the mailbox suite (mailbox.suite.ts) against every remote-control mailbox engine: memory://, sqlite:// (the
// channel table of one temp file), redis:// (127.0.0.1:6379, the conformance database) and amqp:// (RabbitMQ on
// 127.0.0.1:5672); an engine whose service does not answer is skipped with a one-line reason, a failure when
// CI=true. Redis: the engine leaves no key behind (bindings removed, reply
// lists deleted), checked at the end; RabbitMQ's queues are exclusive and auto-deleted.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { createMailboxEngine } from '../../src/control/index.ts';
import { AmqpMailboxEngine } from '../../src/control/amqp.ts';
import { RedisMailboxEngine } from '../../src/control/redis.ts';
import { RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';
import { makeTempDir } from '../support/tmp.ts';
import { mailboxSuite } from './mailbox.suite.ts';

// memory:// channel engines are shared by URL within a process: the suite's engines of one test meet there.
const memoryUrl = `memory://mailbox-${randomUUID()}`;
mailboxSuite('memory', { open: () => createMailboxEngine(memoryUrl) });

const dir = makeTempDir('fennel-mailbox-');
after(() => dir.remove());
const sqliteUrl = `sqlite://${dir.file('fennel.db')}`;
mailboxSuite('sqlite', { open: () => createMailboxEngine(sqliteUrl) });

const redisSkip = await redisSkipReason();
if (!redisSkip) {
  const db = REDIS_DB.conformance;
  mailboxSuite('redis', { open: () => new RedisMailboxEngine(redisUrlForTest(db)) });
  describe('mailbox: redis leaves nothing behind', () => {
    after(async () => {
      const redis = testRedisClient(db);
      try {
        assert.deepEqual(await redis.smembers('_kombu.binding.reply.celery.pidbox'), [], 'no reply binding left');
        assert.deepEqual(await redis.keys('*.reply.celery.pidbox*'), [], 'no reply list left');
      } finally {
        redis.disconnect();
      }
    });
    it('(checked after the suite)', () => {});
  });
} else {
  describe('mailbox conformance: redis', { skip: redisSkip }, () => it('skipped', () => {}));
}

const rabbitSkip = await rabbitSkipReason();
if (!rabbitSkip) mailboxSuite('amqp', { open: () => new AmqpMailboxEngine(RABBIT_URL) });
else describe('mailbox conformance: amqp', { skip: rabbitSkip }, () => it('skipped', () => {}));
