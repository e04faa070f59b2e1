// The cross-process event buses against their real engines: a `fennel worker -E` process publishes, this
// process subscribes through its own app on the same broker URL and sees Celery-format events.
// sqlite:// (a table in the broker file) and redis:// (kombu's celeryev channels; this file owns Redis db 8).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect as amqpConnect } from 'amqplib';
import { Redis } from 'ioredis';
import { Fennel } from '../../src/index.ts';
import type { FennelEvent } from '../../src/events/events.ts';
import { SqliteEventBus } from '../../src/events/sqlite.ts';
import { eventChannelPrefix, RedisEventBus } from '../../src/events/redis.ts';
import { AmqpEventBus } from '../../src/events/amqp.ts';
import { startWorker, stopProcess, tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { flushRedisDb, RABBIT_URL, rabbitSkipReason, REDIS_DB, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { connect as natsConnect } from '@nats-io/transport-node';
import { NatsEventBus } from '../../src/events/nats.ts';
import { natsSkipReason, natsUrlForTest } from '../support/nats.ts';

const TASKS = 'test/gateway/fixtures/tasks.ts';

/** One task's events as a worker buffers them in one turn, and as Celery's workers send them: a list, routing key task.multi. */
const TURN: FennelEvent[] = [
  { type: 'task-received', hostname: 'h', timestamp: 1, clock: 1, uuid: 'u1', name: 'gw.add' },
  { type: 'task-started', hostname: 'h', timestamp: 2, clock: 2, uuid: 'u1' },
  { type: 'task-succeeded', hostname: 'h', timestamp: 3, clock: 3, uuid: 'u1', result: '5', runtime: 0.1 },
];

/** Runs a worker with -E on `url`, sends gw.add(2, 3) and checks what a subscriber in this process saw. */
async function workerEventsRoundTrip(url: string, queue = uniqueQueue('ev')): Promise<void> {
  const monitor = new Fennel({ broker: url });
  const events: FennelEvent[] = [];
  const unsubscribe = await monitor.events.subscribe((e) => events.push(e));
  let worker: RunningWorker | undefined;
  try {
    worker = await startWorker(TASKS, url, ['-E', '-c', '1', '-P', 'async', '-Q', queue]);
    await waitFor(() => events.some((e) => e.type === 'worker-online'), 'worker-online');
    const result = monitor.sendTask('gw.add', [2, 3], { queue });
    assert.equal(await result.get({ timeoutMs: 20_000 }), 5);
    await waitFor(() => events.some((e) => e.type === 'task-succeeded' && e['uuid'] === result.id), 'task-succeeded');
    const types = events.filter((e) => e['uuid'] === result.id).map((e) => e.type);
    assert.deepEqual(types, ['task-received', 'task-started', 'task-succeeded']);
    const online = events.find((e) => e.type === 'worker-online')!;
    assert.equal(online['pid'], worker.child.pid);
    assert.equal(online['pool'], 'async');
    assert.equal(typeof online.timestamp, 'number');
    // SIGTERM: a warm shutdown sends worker-offline before the process exits.
    await stopProcess(worker, 'SIGTERM');
    await waitFor(() => events.some((e) => e.type === 'worker-offline' && e['pid'] === worker!.child.pid), 'worker-offline');
  } finally {
    if (worker) await stopProcess(worker);
    await unsubscribe();
    await monitor.close();
  }
}

describe('sqlite:// event bus', () => {
  it('carries a worker process\'s worker and task events to a subscriber in another process', async () => {
    const db = tempDb();
    try {
      await workerEventsRoundTrip(db.url);
    } finally {
      db.cleanup();
    }
  });

  it('delivers events in order to every bus of this process on the file, from subscription on only', async () => {
    const db = tempDb();
    const a = new SqliteEventBus(db.url);
    const b = new SqliteEventBus(db.url);
    try {
      a.publish({ type: 'worker-heartbeat', hostname: 'before', timestamp: 0 });
      await new Promise((r) => setTimeout(r, 50));
      const seen: number[] = [];
      const stop = await b.subscribe((e) => {
        assert.notEqual(e.hostname, 'before');
        seen.push(e['n'] as number);
      });
      for (let n = 0; n < 1200; n++) a.publish({ type: 'worker-heartbeat', hostname: 'h', timestamp: 0, n });
      await waitFor(() => seen.length === 1200, '1200 events');
      assert.deepEqual(seen, [...Array(1200).keys()]);
      await stop();
    } finally {
      await a.close();
      await b.close();
      db.cleanup();
    }
  });

  it('keeps the table near its cap: a subscriber that lags loses the oldest events, never the newest', async () => {
    const db = tempDb();
    const bus = new SqliteEventBus(db.url, { maxRows: 100 });
    try {
      const seen: number[] = [];
      await bus.subscribe((e) => seen.push(e['n'] as number));
      for (let n = 0; n < 1200; n++) bus.publish({ type: 'worker-heartbeat', hostname: 'h', timestamp: 0, n });
      await waitFor(() => seen.at(-1) === 1199, 'the newest event');
      // One commit held all 1200: trimmed at the 500th and 1000th append, so rows 900.. survived it.
      assert.deepEqual(seen, Array.from({ length: 300 }, (_, i) => 900 + i));
      const file = (bus as unknown as { file: { db: { prepare(s: string): { get(): { n: number } } } } }).file;
      assert.equal(file.db.prepare('SELECT COUNT(*) AS n FROM fennel_events').get().n, 300);
    } finally {
      await bus.close();
      db.cleanup();
    }
  });

  it("delivers a list of events (publishMany: one row holding Celery's task.multi body) as each event, in order", async () => {
    const db = tempDb();
    const a = new SqliteEventBus(db.url);
    const b = new SqliteEventBus(db.url);
    try {
      const seen: FennelEvent[] = [];
      await b.subscribe((e) => seen.push(e));
      a.publishMany(TURN);
      await waitFor(() => seen.length === 3, 'three events');
      assert.deepEqual(seen, TURN);
      const file = (a as unknown as { file: { db: { prepare(s: string): { get(): { n: number } } } } }).file;
      assert.equal(file.db.prepare('SELECT COUNT(*) AS n FROM fennel_events').get().n, 1);
    } finally {
      await a.close();
      await b.close();
      db.cleanup();
    }
  });

  it('skips a row that is not JSON', async () => {
    const db = tempDb();
    const bus = new SqliteEventBus(db.url);
    try {
      const seen: FennelEvent[] = [];
      await bus.subscribe((e) => seen.push(e));
      const file = (bus as unknown as { file: { db: { prepare(s: string): { run(...a: unknown[]): void } } } }).file;
      file.db.prepare('INSERT INTO fennel_events (created_at, event) VALUES (?, ?)').run(0, '{not json');
      bus.publish({ type: 'worker-online', hostname: 'h', timestamp: 0 });
      await waitFor(() => seen.length === 1, 'the good event');
      assert.equal(seen[0]!.type, 'worker-online');
    } finally {
      await bus.close();
      db.cleanup();
    }
  });
});

describe('redis:// event bus', { skip: await redisSkipReason() }, () => {
  const url = redisUrlForTest(REDIS_DB.eventBuses);
  before(() => flushRedisDb(REDIS_DB.eventBuses));
  after(() => flushRedisDb(REDIS_DB.eventBuses));

  it('carries a worker process\'s worker and task events to a subscriber in another process', async () => {
    await workerEventsRoundTrip(url);
  });

  it('publishes in kombu\'s layout: channel /<db>.celeryev/<type with dots>, a JSON envelope with a base64 body', async () => {
    const raw = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    const bus = new RedisEventBus(url);
    try {
      const got: Array<[string, string]> = [];
      raw.on('pmessage', (_p: string, channel: string, message: string) => got.push([channel, message]));
      await raw.psubscribe(`${eventChannelPrefix(REDIS_DB.eventBuses)}*`);
      bus.publish({ type: 'task-succeeded', hostname: 'h', timestamp: 1, uuid: 'u1', result: '5', runtime: 0.1 });
      await waitFor(() => got.length === 1, 'the event');
      const [channel, message] = got[0]!;
      assert.equal(channel, `/${REDIS_DB.eventBuses}.celeryev/task.succeeded`);
      const envelope = JSON.parse(message) as { body: string; 'content-type': string; properties: Record<string, unknown> };
      assert.equal(envelope['content-type'], 'application/json');
      assert.equal(envelope.properties['body_encoding'], 'base64');
      assert.deepEqual(envelope.properties['delivery_info'], { exchange: 'celeryev', routing_key: 'task.succeeded' });
      assert.deepEqual(JSON.parse(Buffer.from(envelope.body, 'base64').toString()), { type: 'task-succeeded', hostname: 'h', timestamp: 1, uuid: 'u1', result: '5', runtime: 0.1 });
    } finally {
      raw.disconnect();
      await bus.close();
    }
  });

  it("sends a list of events (publishMany) as Celery's workers do: one message on /<db>.celeryev/task.multi, each event delivered in order", async () => {
    const raw = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    const bus = new RedisEventBus(url);
    const monitor = new RedisEventBus(url);
    try {
      const got: Array<[string, string]> = [];
      raw.on('pmessage', (_p: string, channel: string, message: string) => got.push([channel, message]));
      await raw.psubscribe(`${eventChannelPrefix(REDIS_DB.eventBuses)}*`);
      const seen: FennelEvent[] = [];
      await monitor.subscribe((e) => seen.push(e));
      bus.publishMany(TURN);
      await waitFor(() => got.length === 1 && seen.length === 3, 'one message, three events');
      const [channel, message] = got[0]!;
      assert.equal(channel, `/${REDIS_DB.eventBuses}.celeryev/task.multi`);
      const envelope = JSON.parse(message) as { body: string; properties: Record<string, unknown> };
      assert.deepEqual(envelope.properties['delivery_info'], { exchange: 'celeryev', routing_key: 'task.multi' });
      assert.deepEqual(JSON.parse(Buffer.from(envelope.body, 'base64').toString()), TURN);
      assert.deepEqual(seen, TURN);
    } finally {
      raw.disconnect();
      await Promise.all([bus.close(), monitor.close()]);
    }
  });

  it("a worker with -E sends the task events of a turn as task.multi lists: every task's three events, in order", async () => {
    const raw = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    const queue = uniqueQueue('evmulti');
    const producer = new Fennel({ broker: url });
    let worker: RunningWorker | undefined;
    try {
      const messages: Array<{ key: string; events: FennelEvent[] }> = [];
      raw.on('pmessage', (_p: string, _channel: string, message: string) => {
        const envelope = JSON.parse(message) as { body: string; properties: { delivery_info: { routing_key: string } } };
        const body = JSON.parse(Buffer.from(envelope.body, 'base64').toString()) as FennelEvent | FennelEvent[];
        messages.push({ key: envelope.properties.delivery_info.routing_key, events: Array.isArray(body) ? body : [body] });
      });
      await raw.psubscribe(`${eventChannelPrefix(REDIS_DB.eventBuses)}task.*`);
      worker = await startWorker(TASKS, url, ['-E', '-c', '20', '-P', 'async', '-Q', queue]);
      const results = Array.from({ length: 40 }, (_, i) => producer.sendTask('gw.add', [i, 1], { queue }));
      for (const [i, r] of results.entries()) assert.equal(await r.get({ timeoutMs: 20_000 }), i + 1);
      const ids = new Set(results.map((r) => r.id));
      const ours = (): FennelEvent[] => messages.flatMap((m) => m.events).filter((e) => ids.has(e['uuid'] as string));
      await waitFor(() => ours().length === 120, 'three events per task');
      for (const id of ids) assert.deepEqual(ours().filter((e) => e['uuid'] === id).map((e) => e.type), ['task-received', 'task-started', 'task-succeeded']);
      const lists = messages.filter((m) => m.key === 'task.multi');
      assert.ok(lists.some((m) => m.events.length > 1), 'several events in one message');
      for (const m of messages) assert.equal(m.key, m.events.length > 1 ? 'task.multi' : m.events[0]!.type.replace(/-/g, '.'));
      const clocks = messages.flatMap((m) => m.events).map((e) => e['clock'] as number);
      assert.deepEqual(clocks, [...clocks].sort((a, b) => a - b), "the worker's clock never goes back");
    } finally {
      if (worker) await stopProcess(worker);
      raw.disconnect();
      await producer.close();
    }
  });

  it('drops messages on the channel that are not events, and keeps delivering', async () => {
    const bus = new RedisEventBus(url);
    const raw = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    try {
      const seen: FennelEvent[] = [];
      await bus.subscribe((e) => seen.push(e));
      const prefix = eventChannelPrefix(REDIS_DB.eventBuses);
      await raw.publish(`${prefix}x`, 'not json');
      await raw.publish(`${prefix}x`, JSON.stringify({ body: Buffer.from('[1,2]').toString('base64'), properties: { body_encoding: 'base64' } }));
      bus.publish({ type: 'worker-online', hostname: 'h', timestamp: 0 });
      await waitFor(() => seen.length === 1, 'the good event');
      assert.equal(seen[0]!.type, 'worker-online');
    } finally {
      raw.disconnect();
      await bus.close();
    }
  });
});

describe('amqp:// event bus', { skip: await rabbitSkipReason() }, () => {
  it('carries a worker process\'s worker and task events to a subscriber in another process', async () => {
    const queue = uniqueQueue('ev');
    try {
      await workerEventsRoundTrip(RABBIT_URL, queue);
    } finally {
      // The worker declared the queue (and its direct exchange) as Celery does; remove them.
      const connection = await amqpConnect(RABBIT_URL);
      const channel = await connection.createChannel();
      await channel.deleteQueue(queue);
      await channel.deleteExchange(queue);
      await connection.close();
    }
  });

  it('publishes in Celery\'s topology: topic exchange celeryev, routing key task.succeeded, JSON body', async () => {
    const connection = await amqpConnect(RABBIT_URL);
    const channel = await connection.createChannel();
    const bus = new AmqpEventBus(RABBIT_URL);
    try {
      await channel.assertExchange('celeryev', 'topic', { durable: true });
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      await channel.bindQueue(queue, 'celeryev', 'task.#');
      const got: Array<{ key: string; type: string | undefined; body: unknown }> = [];
      await channel.consume(queue, (m) => m && got.push({ key: m.fields.routingKey, type: m.properties.contentType as string | undefined, body: JSON.parse(m.content.toString()) }), { noAck: true });
      bus.publish({ type: 'worker-heartbeat', hostname: 'h', timestamp: 1 }); // not bound: task.# only
      bus.publish({ type: 'task-succeeded', hostname: 'h', timestamp: 1, uuid: 'u1', result: '5', runtime: 0.1 });
      await waitFor(() => got.length === 1, 'the task event');
      assert.deepEqual(got[0], { key: 'task.succeeded', type: 'application/json', body: { type: 'task-succeeded', hostname: 'h', timestamp: 1, uuid: 'u1', result: '5', runtime: 0.1 } });
    } finally {
      await bus.close();
      await connection.close();
    }
  });

  it("sends a list of events (publishMany) as Celery's workers do: one message, routing key task.multi, each event delivered in order", async () => {
    const connection = await amqpConnect(RABBIT_URL);
    const channel = await connection.createChannel();
    const bus = new AmqpEventBus(RABBIT_URL);
    const monitor = new AmqpEventBus(RABBIT_URL);
    try {
      await channel.assertExchange('celeryev', 'topic', { durable: true });
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      await channel.bindQueue(queue, 'celeryev', 'task.#');
      const got: Array<{ key: string; body: unknown }> = [];
      await channel.consume(queue, (m) => m && got.push({ key: m.fields.routingKey, body: JSON.parse(m.content.toString()) }), { noAck: true });
      const seen: FennelEvent[] = [];
      await monitor.subscribe((e) => {
        if (e['uuid'] === 'u1') seen.push(e);
      });
      bus.publishMany(TURN);
      await waitFor(() => got.length === 1 && seen.length === 3, 'one message, three events');
      assert.deepEqual(got[0], { key: 'task.multi', body: TURN });
      assert.deepEqual(seen, TURN);
    } finally {
      await Promise.all([bus.close(), monitor.close()]);
      await connection.close();
    }
  });

  it('drops messages on the exchange that are not events, and keeps delivering', async () => {
    const bus = new AmqpEventBus(RABBIT_URL);
    const connection = await amqpConnect(RABBIT_URL);
    const channel = await connection.createChannel();
    try {
      const seen: FennelEvent[] = [];
      await bus.subscribe((e) => {
        if (e.hostname === 'bad-input-test') seen.push(e);
      });
      channel.publish('celeryev', 'task.x', Buffer.from('not json'));
      channel.publish('celeryev', 'task.x', Buffer.from('[1,2]'));
      bus.publish({ type: 'worker-online', hostname: 'bad-input-test', timestamp: 0 });
      await waitFor(() => seen.length === 1, 'the good event');
    } finally {
      await bus.close();
      await connection.close();
    }
  });
});

describe('nats:// event bus', { skip: await natsSkipReason() }, () => {
  const url = natsUrlForTest('fennel-test-events');

  /** A plain client's subscription to the task event subjects of the test prefix: [subject, body] as they arrive. */
  async function rawTaskEvents(): Promise<{ got: Array<[string, unknown]>; close: () => Promise<void> }> {
    const raw = await natsConnect({ servers: '127.0.0.1:4222' });
    const got: Array<[string, unknown]> = [];
    raw.subscribe('fennel-test-events.events.task.>', { callback: (_error, m) => void got.push([m.subject, JSON.parse(m.string())]) });
    await raw.flush();
    return { got, close: () => raw.close() };
  }

  it('carries a worker process\'s worker and task events to a subscriber in another process', async () => {
    await workerEventsRoundTrip(url);
  });

  it('publishes on <prefix>.events.<type with dots>, the event as JSON, in order, to subscriptions live now', async () => {
    const raw = await rawTaskEvents();
    const { got } = raw;
    const bus = new NatsEventBus(url);
    const monitor = new NatsEventBus(url);
    try {
      bus.publish({ type: 'worker-heartbeat', hostname: 'before', timestamp: 0 }); // no monitor subscribed yet
      const seen: number[] = [];
      await monitor.subscribe((e) => {
        assert.notEqual(e.hostname, 'before');
        if (e.type === 'worker-heartbeat') seen.push(e['n'] as number);
      });
      bus.publish({ type: 'worker-heartbeat', hostname: 'h', timestamp: 1 }); // not under task.>
      bus.publish({ type: 'task-succeeded', hostname: 'h', timestamp: 1, uuid: 'u1', result: '5', runtime: 0.1 });
      for (let n = 0; n < 1200; n++) bus.publish({ type: 'worker-heartbeat', hostname: 'h', timestamp: 0, n });
      await waitFor(() => got.length === 1 && seen.length === 1201, 'the task event and 1200 heartbeats');
      assert.deepEqual(got[0], ['fennel-test-events.events.task.succeeded', { type: 'task-succeeded', hostname: 'h', timestamp: 1, uuid: 'u1', result: '5', runtime: 0.1 }]);
      assert.deepEqual(seen.slice(1), [...Array(1200).keys()]);
    } finally {
      await raw.close();
      await Promise.all([bus.close(), monitor.close()]);
    }
  });

  it('sends a list of events (publishMany) as one message on <prefix>.events.task.multi, each event delivered in order', async () => {
    const raw = await rawTaskEvents();
    const { got } = raw;
    const bus = new NatsEventBus(url);
    const monitor = new NatsEventBus(url);
    try {
      const seen: FennelEvent[] = [];
      await monitor.subscribe((e) => {
        if (e['uuid'] === 'u1') seen.push(e);
      });
      bus.publishMany(TURN);
      await waitFor(() => got.length === 1 && seen.length === 3, 'one message, three events');
      assert.deepEqual(got[0], ['fennel-test-events.events.task.multi', TURN]);
      assert.deepEqual(seen, TURN);
    } finally {
      await raw.close();
      await Promise.all([bus.close(), monitor.close()]);
    }
  });

  it('drops messages on the subjects that are not events, and events it cannot send, and keeps delivering', async () => {
    const bus = new NatsEventBus(url);
    const raw = await natsConnect({ servers: '127.0.0.1:4222' });
    try {
      const seen: FennelEvent[] = [];
      await bus.subscribe((e) => seen.push(e));
      for (const junk of ['not json', '[1,2]', '{"type":5}', '']) raw.publish('fennel-test-events.events.task.x', junk);
      await raw.flush();
      bus.publish({ type: 'task-x', hostname: 'h', timestamp: 0, big: 10n }); // JSON cannot carry it
      bus.publish({ type: 'odd type.*', hostname: 'h', timestamp: 0 }); // not subject tokens: under <prefix>.events._
      bus.publish({ type: 'worker-online', hostname: 'h', timestamp: 0 });
      await waitFor(() => seen.length === 2, 'the good events');
      assert.deepEqual(seen.map((e) => e.type), ['odd type.*', 'worker-online']);
    } finally {
      await raw.close();
      await bus.close();
    }
  });

  it('fails a subscribe with BrokerUnavailableError within connectTimeoutMs when no server answers; publish drops', async () => {
    const bus = new NatsEventBus('nats://127.0.0.1:1', { connectTimeoutMs: 500 });
    try {
      bus.publish({ type: 'worker-online', hostname: 'h', timestamp: 0 });
      await assert.rejects(bus.subscribe(() => {}), (error: unknown) => (error as { code?: string }).code === 'FENNEL_BROKER_UNAVAILABLE');
    } finally {
      await bus.close();
    }
  });
});
