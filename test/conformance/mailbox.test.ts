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
import { connect as natsConnect } from '@nats-io/transport-node';
import { NatsMailboxEngine } from '../../src/control/nats.ts';
import type { IncomingRequest } from '../../src/control/mailbox.ts';
import { controlRequest, requestHeaders } from '../../src/control/protocol.ts';
import { BrokerUnavailableError } from '../../src/errors.ts';
import { natsSkipReason, natsUrlForTest } from '../support/nats.ts';
import { waitFor } from './helpers/wait.ts';

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

// NATS: core pub/sub on this file's own prefix of the shared server; nothing is stored, so nothing is left behind.
const natsSkip = await natsSkipReason();
describe('nats://', { skip: natsSkip }, () => {
  const NATS_URL = natsUrlForTest('fennel-test-mailbox');
  mailboxSuite('nats', { open: () => new NatsMailboxEngine(NATS_URL) });

  it('sends a reply to the escaped oid only: an oid with dots or wildcards reaches no other reply subject', async () => {
    const [client, worker] = [new NatsMailboxEngine(NATS_URL), new NatsMailboxEngine(NATS_URL)];
    try {
      const plain = await client.openReplies('a');
      const wild = await client.openReplies('>');
      for (const oid of ['>', '*', 'a.b', 'a.>']) await worker.reply({ exchange: 'reply.celery.pidbox', routing_key: oid }, { 'w@test': { oid } }, { ticket: 't' });
      assert.deepEqual(await wild.next(10_000), { body: { 'w@test': { oid: '>' } }, headers: { ticket: 't' } });
      assert.equal(await wild.next(500), undefined, 'only the reply to its own oid');
      assert.equal(await plain.next(500), undefined, 'nothing for oid a');
      assert.equal(worker.replySubject('a.>'), 'fennel-test-mailbox.pidbox.reply.a_2e_3e');
      await Promise.all([plain.close(), wild.close()]);
    } finally {
      await Promise.all([client.close(), worker.close()]);
    }
  });

  it('hands a malformed request on as undecodable, and goes on listening', async () => {
    const worker = new NatsMailboxEngine(NATS_URL);
    const raw = await natsConnect({ servers: '127.0.0.1:4222' });
    try {
      const got: IncomingRequest[] = [];
      const stop = await worker.listen('a@test', (request) => got.push(request));
      for (const junk of ['not json', '[1,2]', 'null', '{"headers":{}}']) raw.publish(worker.requestSubject, junk);
      await raw.flush();
      const request = controlRequest('ping', {});
      await worker.broadcast(request, requestHeaders(1, 0));
      await waitFor(() => got.length === 5, { what: 'five messages' });
      assert.deepEqual(got.slice(0, 4).map((r) => [r.body, typeof r.undecodable]), Array.from({ length: 4 }, () => [undefined, 'string']));
      assert.deepEqual(got[4], { body: request, headers: { clock: 1, expires: 0 } });
      await stop();
    } finally {
      await raw.close();
      await worker.close();
    }
  });

  it('rejects a broadcast with BrokerUnavailableError within connectTimeoutMs when no server answers', async () => {
    const engine = new NatsMailboxEngine('nats://127.0.0.1:1', { connectTimeoutMs: 500 });
    try {
      await assert.rejects(engine.broadcast(controlRequest('ping', {}), requestHeaders(1, 0)), BrokerUnavailableError);
      await assert.rejects(engine.openReplies('x'), BrokerUnavailableError);
    } finally {
      await engine.close();
    }
  });
});
