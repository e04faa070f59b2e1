// Runs the channel suite (channel.suite.ts) against every engine: memory://, sqlite:// (a temp file per test),
// redis:// (127.0.0.1:6379) and amqp:// (RabbitMQ on 127.0.0.1:5672, guest/guest); an engine whose service does
// not answer is skipped with a one-line reason (a failure when CI=true). Then what is particular to each engine:
// where its messages live on the broker, and the options every engine shares.
//
// Redis: channels store no keys (pub/sub is server-wide), so this file flushes nothing. Its apps use database 3
// (and 4, to show that another database does not receive), which no other test file uses (test/support/services.ts
// lists them), because the database number is part of each pub/sub channel's name. RabbitMQ: each channel leaves a transient exchange, deleted when this file ends.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connect as amqpConnect, type GetMessage } from 'amqplib';
import Database from 'better-sqlite3';
import { ConfigError, Fennel } from '../../src/index.ts';
import { channelExchange, type AmqpChannelEngine } from '../../src/channels/amqp.ts';
import type { ChannelEngine } from '../../src/channels/engine.ts';
import type { MemoryChannelEngine } from '../../src/channels/memory.ts';
import { redisChannelName } from '../../src/channels/redis.ts';
import { MESSAGE_TTL_MS, type SqliteChannelEngine } from '../../src/channels/sqlite.ts';
import { sqlitePath } from '../../src/clients/sqlite-file.ts';
import { tempDirsForFile } from '../support/tmp.ts';
import { RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest, testRedisClient } from '../support/services.ts';
import { channelSuite } from './channel.suite.ts';
import { connect as natsConnect } from '@nats-io/transport-node';
import { BrokerUnavailableError } from '../../src/errors.ts';
import type { NatsChannelEngine } from '../../src/channels/nats.ts';
import { natsSkipReason, natsUrlForTest } from '../support/nats.ts';
import { waitFor } from './helpers/wait.ts';

const REDIS_CHANNEL_DB = REDIS_DB.channels;
const REDIS_URL = redisUrlForTest(REDIS_CHANNEL_DB);
const [redisSkip, rabbitSkip] = await Promise.all([redisSkipReason(), rabbitSkipReason()]);

const tempDir = tempDirsForFile('fennel-channels-');

function freshSqliteUrl(): string {
  return `sqlite://${tempDir().file('fennel.db')}`;
}

/** Subscriptions the engines of `apps` hold (memory://, sqlite://: the broker keeps no subscriber state). */
async function engineSubscribers(apps: readonly Fennel[], channel: string): Promise<number> {
  const engines = new Set<ChannelEngine>(apps.map((app) => app.channelEngine));
  let count = 0;
  for (const engine of engines) count += (engine as MemoryChannelEngine | SqliteChannelEngine).subscriberCount(channel);
  return count;
}

channelSuite('memory', { url: () => 'memory://channels', crossProcess: false, subscribers: engineSubscribers });

channelSuite('sqlite', { url: freshSqliteUrl, crossProcess: true, subscribers: engineSubscribers });

describe('redis://', { skip: redisSkip }, () => {
  channelSuite('redis', {
    url: () => REDIS_URL,
    crossProcess: true,
    // Redis counts the connections subscribed to the channel: one per app here.
    subscribers: async (_apps, channel) => {
      const client = testRedisClient(REDIS_CHANNEL_DB);
      try {
        const reply = (await client.pubsub('NUMSUB', redisChannelName(REDIS_CHANNEL_DB, channel))) as [string, number];
        return Number(reply[1]);
      } finally {
        client.disconnect();
      }
    },
  });

  it("puts the database number in the channel's pub/sub name, so apps on other databases do not receive", async () => {
    const app = new Fennel({ broker: REDIS_URL });
    const elsewhere = new Fennel({ broker: redisUrlForTest(REDIS_DB.interopBroadcast) /* another database; channels write no keys, so sharing it is harmless */ });
    const raw = testRedisClient(REDIS_CHANNEL_DB);
    const name = `layout-${process.pid}`;
    try {
      const seen: string[] = [];
      raw.on('message', (_channel: string, message: string) => seen.push(message));
      await raw.subscribe(`/${REDIS_CHANNEL_DB}.fennel.channel/${name}`);
      const other = elsewhere.channel<string>(name).subscribe();
      await other.ready;
      await app.channel<string>(name).publish('on three');
      await waitFor(() => seen.length === 1, { what: 'the raw subscriber' });
      assert.deepEqual(seen, ['"on three"'], 'the payload is the JSON text, on /<db>.fennel.channel/<name>');
      // The app on the next database is subscribed to its own name: a message there is the first it reads.
      await elsewhere.channel<string>(name).publish('on four');
      assert.deepEqual(await other.next(), { value: 'on four', done: false });
    } finally {
      raw.disconnect();
      await Promise.all([app.close(), elsewhere.close()]);
    }
  });

  it('subscribes again when its subscriber connection is dropped', async () => {
    const app = new Fennel({ broker: REDIS_URL });
    const admin = testRedisClient(REDIS_CHANNEL_DB);
    const name = `reconnect-${process.pid}`;
    const pubsubName = redisChannelName(REDIS_CHANNEL_DB, name);
    const numsub = async (): Promise<number> => Number(((await admin.pubsub('NUMSUB', pubsubName)) as [string, number])[1]);
    try {
      const subscription = app.channel<number>(name).subscribe();
      await subscription.ready;
      // This app's subscriber connection, by its name (the other test files' connections are left alone).
      const clientIds = async (): Promise<Map<string, string>> =>
        new Map(((await admin.client('LIST')) as string).split('\n').flatMap((line) => {
          const id = /^id=(\d+) /.exec(line)?.[1];
          const client = / name=(\S+)/.exec(line)?.[1];
          return id && client ? [[id, client] as const] : [];
        }));
      const id = [...(await clientIds())].find(([, client]) => client === `fennel-channels-sub:${process.pid}`)?.[0];
      assert.ok(id, 'the subscriber connection is in CLIENT LIST');
      await admin.client('KILL', 'ID', id);
      await waitFor(async () => !(await clientIds()).has(id) && (await numsub()) === 1, { what: 'a new connection subscribed' });
      await app.channel<number>(name).publish(1);
      assert.deepEqual(await subscription.next(), { value: 1, done: false });
    } finally {
      admin.disconnect();
      await app.close();
    }
  });
});

describe('amqp://', { skip: rabbitSkip }, () => {
  /** Every queue a subscription was seen to consume; the probe counts those that still exist on the broker. */
  const seenQueues = new Map<string, Set<string>>();

  async function existingQueues(queues: Iterable<string>): Promise<string[]> {
    const connection = await amqpConnect(RABBIT_URL);
    connection.on('error', () => {});
    const existing: string[] = [];
    try {
      for (const queue of queues) {
        // A passive declare of a missing queue closes its channel: one channel per check.
        const channel = await connection.createChannel();
        channel.on('error', () => {});
        try {
          await channel.checkQueue(queue);
          existing.push(queue);
          await channel.close();
        } catch (error) {
          // 404: deleted. 405 RESOURCE_LOCKED: it exists, exclusive to the subscriber's connection. Either way
          // the broker has closed the channel.
          if ((error as { code?: unknown }).code === 405) existing.push(queue);
          else if ((error as { code?: unknown }).code !== 404) throw error;
        }
      }
    } finally {
      await connection.close();
    }
    return existing;
  }

  channelSuite('amqp', {
    url: () => RABBIT_URL,
    crossProcess: true,
    subscribers: async (apps, channel) => {
      let seen = seenQueues.get(channel);
      if (!seen) seenQueues.set(channel, (seen = new Set()));
      for (const app of apps) for (const queue of (app.channelEngine as AmqpChannelEngine).queuesOf(channel)) seen.add(queue);
      return (await existingQueues(seen)).length;
    },
    cleanUp: async (channels) => {
      const connection = await amqpConnect(RABBIT_URL);
      try {
        const channel = await connection.createChannel();
        for (const name of channels) await channel.deleteExchange(channelExchange(name));
        await channel.close();
      } finally {
        await connection.close();
      }
    },
  });

  it('publishes to the fanout exchange fennel.channel.<name>, as transient JSON', async () => {
    const app = new Fennel({ broker: RABBIT_URL });
    const name = `layout-${process.pid}`;
    const connection = await amqpConnect(RABBIT_URL);
    try {
      const subscription = app.channel<{ n: number }>(name).subscribe();
      await subscription.ready; // declares the exchange
      const raw = await connection.createChannel();
      const { queue } = await raw.assertQueue('', { exclusive: true, autoDelete: true });
      await raw.bindQueue(queue, channelExchange(name), 'any routing key: fanout ignores it');
      await app.channel<{ n: number }>(name).publish({ n: 1 });
      const got: { message?: GetMessage } = {};
      await waitFor(
        async () => {
          const message = await raw.get(queue, { noAck: true });
          if (message) got.message = message;
          return Boolean(message);
        },
        { what: 'the message in a queue bound by hand' },
      );
      const { message } = got;
      assert.ok(message);
      assert.equal(message.content.toString(), '{"n":1}');
      assert.equal(message.properties.contentType, 'application/json');
      assert.equal(message.properties.deliveryMode, 1);
      assert.deepEqual(await subscription.next(), { value: { n: 1 }, done: false });
    } finally {
      await app.close();
      const cleanup = await connection.createChannel();
      await cleanup.deleteExchange(channelExchange(name));
      await connection.close();
    }
  });

  it('consumes again, on a new queue, when its connection is lost', async () => {
    const app = new Fennel({ broker: RABBIT_URL });
    const name = `reconnect-${process.pid}`;
    try {
      const subscription = app.channel<number>(name).subscribe();
      await subscription.ready;
      const engine = app.channelEngine as AmqpChannelEngine;
      const [before] = engine.queuesOf(name);
      assert.ok(before);
      // The connection goes (a broker restart, a dropped socket): the exclusive queue goes with it.
      await (await engine.connection.session()).model.close();
      await waitFor(() => engine.queuesOf(name).length === 1 && engine.queuesOf(name)[0] !== before, { what: 'a new queue consumed', timeoutMs: 20_000 });
      await app.channel<number>(name).publish(1);
      assert.deepEqual(await subscription.next(), { value: 1, done: false });
    } finally {
      await app.close();
      const connection = await amqpConnect(RABBIT_URL);
      const cleanup = await connection.createChannel();
      await cleanup.deleteExchange(channelExchange(name));
      await connection.close();
    }
  });
});

describe('sqlite://: the fennel_channel_messages table', () => {
  it('is in the versioned schema, and publishers delete the messages older than MESSAGE_TTL_MS as they go', async () => {
    const url = freshSqliteUrl();
    const app = new Fennel({ broker: url });
    const db = new Database(sqlitePath(url));
    try {
      const name = 'expiry';
      const subscription = app.channel<string>(name).subscribe(); // opens the file, which creates the schema
      await subscription.ready;
      assert.ok((db.pragma('user_version', { simple: true }) as number) >= 3, 'user_version: the schema with the table');
      db.prepare('INSERT INTO fennel_channel_messages (channel, payload, created_at) VALUES (?, ?, ?)').run(name, '"stale"', Date.now() - MESSAGE_TTL_MS - 1_000);
      // The row written by hand was committed after the subscription began: it is delivered, however old.
      assert.deepEqual(await subscription.next(), { value: 'stale', done: false });
      await app.channel<string>(name).publish('fresh');
      assert.deepEqual(await subscription.next(), { value: 'fresh', done: false });
      const rows = db.prepare('SELECT payload FROM fennel_channel_messages ORDER BY id').pluck().all();
      assert.deepEqual(rows, ['"fresh"'], 'the publish deleted the expired row');
    } finally {
      db.close();
      await app.close();
    }
  });
});

describe('app.channel() options', () => {
  it('refuses a bad channel name or option with a ConfigError naming it', () => {
    const app = new Fennel({ broker: 'memory://channel-options' });
    for (const name of ['', 'has space', 'a/b', 'x'.repeat(201)]) assert.throws(() => app.channel(name), ConfigError, JSON.stringify(name));
    assert.throws(() => app.channel('ok', { bufferSize: 0 }), /bufferSize 0 must be a whole number/);
    assert.throws(() => app.channel('ok', { overflow: 'drop' as 'error' }), /overflow "drop" must be 'error'/);
    assert.throws(() => app.channel('ok', { signal: AbortSignal.abort() } as object), /unknown option 'signal'/);
    assert.throws(() => app.channel('ok').subscribe({ bufferSise: 3 } as object), /unknown option 'bufferSise'/);
    assert.throws(() => app.channel('ok').subscribe({ bufferSize: 1.5 }), ConfigError);
  });

  it('ends a subscription whose signal is already aborted at once: done, and ready rejects with the reason', async () => {
    const app = new Fennel({ broker: 'memory://channel-options' });
    try {
      const subscription = app.channel('ok').subscribe({ signal: AbortSignal.abort(new Error('stop')) });
      await assert.rejects(subscription.ready, /stop/);
      assert.deepEqual(await subscription.next(), { value: undefined, done: true });
      assert.equal(await engineSubscribers([app], 'ok'), 0);
    } finally {
      await app.close();
    }
  });
});

// NATS: core pub/sub keeps nothing on the server, so the suite counts the subscriptions the apps' engines hold; the
// prefix is this file's own on the shared server.
const natsSkip = await natsSkipReason();
describe('nats://', { skip: natsSkip }, () => {
  const NATS_URL = natsUrlForTest('fennel-test-channels');
  const natsSubscribers = async (apps: readonly Fennel[], channel: string): Promise<number> => {
    let count = 0;
    for (const engine of new Set(apps.map((app) => app.channelEngine))) count += (engine as NatsChannelEngine).subscriberCount(channel);
    return count;
  };
  channelSuite('nats', { url: () => NATS_URL, crossProcess: true, subscribers: natsSubscribers });

  it('publishes the JSON text on <prefix>.ch.<name escaped into one token>; another prefix does not receive', async () => {
    const app = new Fennel({ broker: NATS_URL });
    const elsewhere = new Fennel({ broker: natsUrlForTest('fennel-test-channels-other') });
    const raw = await natsConnect({ servers: '127.0.0.1:4222' });
    const name = `lay.out:${process.pid}_x`;
    try {
      const seen: Array<[string, string]> = [];
      raw.subscribe('fennel-test-channels.ch.>', { callback: (_error, message) => void seen.push([message.subject, message.string()]) });
      await raw.flush();
      const other = elsewhere.channel<string>(name).subscribe();
      await other.ready;
      await app.channel<string>(name).publish('here');
      await waitFor(() => seen.length === 1, { what: 'the raw subscriber' });
      assert.deepEqual(seen, [[`fennel-test-channels.ch.lay_2eout_3a${process.pid}__x`, '"here"']]);
      assert.equal((app.channelEngine as NatsChannelEngine).subjectOf(name), seen[0]![0]);
      // The app on the other prefix is subscribed to its own subject: a message there is the first it reads.
      await elsewhere.channel<string>(name).publish('there');
      assert.deepEqual(await other.next(), { value: 'there', done: false });
    } finally {
      await raw.close();
      await Promise.all([app.close(), elsewhere.close()]);
    }
  });

  it('rejects publish and subscribe with BrokerUnavailableError within connectTimeoutMs when no server answers', async () => {
    const app = new Fennel({ broker: 'nats://127.0.0.1:1?prefix=nobody', connectTimeoutMs: 500 });
    try {
      const started = Date.now();
      await assert.rejects(app.channel<number>('down').publish(1), (error: unknown) => error instanceof BrokerUnavailableError && /127\.0\.0\.1:1/.test(error.message));
      const subscription = app.channel<number>('down').subscribe();
      await assert.rejects(subscription.ready, BrokerUnavailableError);
      assert.ok(Date.now() - started < 10_000, 'bounded by the connect timeout, not hanging');
    } finally {
      await app.close();
    }
  });
});
