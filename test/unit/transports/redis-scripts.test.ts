// The redis:// engines' layout, checked key by key on a real Redis (127.0.0.1:6379, database 13, owned by
// this file and flushed before each test): what a publish, fetch, ack, restore, dead letter and countdown
// leave in Redis must be kombu's layout (CELERY-WIRE.md 2.2), and results Celery's (2.4), so Python Celery
// clients and workers can share the server. Scripts are driven through the transport where it has an API,
// and run directly (their typed wrappers in src/transports/redis/scripts.ts) where a test needs one step on its
// own (a sweep at a chosen time).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { RedisBackend } from '../../../src/backends/redis.ts';
import { buildTaskMessage, type WireMessage } from '../../../src/protocol/message.ts';
import type { TaskMeta } from '../../../src/protocol/result.ts';
import { REDIS_KEYS, RedisTransport, SEP } from '../../../src/transports/redis.ts';
import { fetchScript, restoreScript } from '../../../src/transports/redis/scripts.ts';
import { DEDUPE_HEADER, type Delivery } from '../../../src/transports/transport.ts';
import { sleep, waitFor } from '../../conformance/helpers/wait.ts';
import { celeryA1, rawEnvelope } from '../../fixtures/celery.ts';
import { flushRedisDb, REDIS_DB, redisSkipReason, redisUrlForTest, testRedisClient } from '../../support/services.ts';

const DB = REDIS_DB.unit;
const URL = redisUrlForTest(DB);
const skip = await redisSkipReason();

// The layout under test; LEASES are Fennel's own: the tags its consumers hold, scored by last renewal.
const { unacked: UNACKED, unackedIndex: UNACKED_INDEX, unackedMutex: UNACKED_MUTEX, leases: LEASES, scheduled: SCHEDULED, wakePrefix: WAKE } = REDIS_KEYS;
/** Pause before a negative check: several consumer loops and sweeps of a 1 s visibility timeout. */
const GRACE_MS = 1_500;

function task(queue: string, priority?: number): { id: string; message: WireMessage } {
  const id = randomUUID();
  return { id, message: buildTaskMessage({ id, name: 'tests.echo', args: [id, 'é ✓'], queue, ...(priority === undefined ? {} : { priority }) }) };
}

function queueName(): string {
  return `unit-${randomUUID()}`;
}

interface Envelope {
  body: string;
  'content-encoding': string;
  'content-type': string;
  headers: Record<string, unknown>;
  properties: Record<string, unknown> & { delivery_tag: string; delivery_info: Record<string, unknown> };
}

describe('redis:// layout (kombu and Celery keys)', { skip }, () => {
  let redis: Redis;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];

  before(async () => {
    await flushRedisDb(DB);
    redis = testRedisClient(DB);
  });
  after(async () => {
    redis?.disconnect();
    await flushRedisDb(DB);
  });
  beforeEach(() => flushRedisDb(DB));
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch {
        // keep closing the rest
      }
    }
  });

  function openTransport(visibilityTimeoutSec = 30): RedisTransport {
    const t = new RedisTransport(URL, { visibilityTimeoutSec, pollIntervalMs: 50 });
    cleanups.push(() => t.close());
    return t;
  }

  /** How many times the server has run a command (scripts' commands included), server-wide: for deltas within one test. */
  async function calls(command: string): Promise<number> {
    const text = (await redis.info('commandstats'));
    return Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  }

  /** Consumes without settling anything: every delivery stays held (and leased) until the test settles it. */
  async function hold(t: RedisTransport, queue: string, prefetch = 10): Promise<Delivery[]> {
    const got: Delivery[] = [];
    const sub = await t.consume({ queues: [queue], prefetch }, (d) => got.push(d));
    cleanups.push(() => sub.cancel());
    return got;
  }

  // The two helpers below run one script step on its own, with the KEYS and ARGV the transport passes
  // (named by the wrappers in src/transports/redis/scripts.ts, after the header of each .lua file).

  /** One fetch step on its own (no consumer loop, so no lease renewal and no sweep). Returns the delivery tags. */
  async function fetchOnce(t: RedisTransport, queue: string, max = 10): Promise<string[]> {
    const buckets = [queue, `${queue}${SEP}3`, `${queue}${SEP}6`, `${queue}${SEP}9`];
    const keys = { unacked: UNACKED, unackedIndex: UNACKED_INDEX, leases: LEASES, deadLetters: 'fennel.dead_letters', deadLetterSeq: 'fennel.dead_letters.seq', buckets };
    const out = (await fetchScript.run(t.client, keys, { max, nowSec: Date.now() / 1000, wakePrefix: WAKE, bucketQueues: buckets.map(() => queue) })) as string[];
    const tags: string[] = [];
    for (let i = 0; i < out.length; i += 3) tags.push(out[i + 1]!);
    return tags;
  }

  /** The visibility sweep as a consumer runs it: restore every tag whose lease was last renewed at or before `cutoffSec`. */
  function sweep(t: RedisTransport, cutoffSec: number): Promise<unknown> {
    return restoreScript.run(t.client, { unacked: UNACKED, unackedIndex: UNACKED_INDEX, unackedMutex: UNACKED_MUTEX, leases: LEASES }, { lapsedBeforeSec: cutoffSec, max: 1000, tag: '', separator: SEP, wakePrefix: WAKE });
  }

  /** Makes a held message look delivered (and its lease last renewed) at `atSec`, as when its holder died then. */
  async function age(tag: string, atSec: number): Promise<void> {
    await redis.zadd(UNACKED_INDEX, atSec, tag);
    await redis.zadd(LEASES, atSec, tag);
  }

  async function listOf(key: string): Promise<Envelope[]> {
    return (await redis.lrange(key, 0, -1)).map((raw) => JSON.parse(raw) as Envelope);
  }

  describe('publish', () => {
    it("LPUSHes kombu's envelope (base64 body, a fresh delivery_tag) onto the list named after the queue", async () => {
      const t = openTransport();
      const q = queueName();
      const { message } = task(q);
      await t.publish(message, { queue: q });
      await t.publish(message, { queue: q });
      const [second, first] = await listOf(q);
      assert.ok(first && second, 'both messages are in the list');
      assert.equal(first.body, Buffer.from(message.body, 'utf8').toString('base64'));
      assert.equal(Buffer.from(first.body, 'base64').toString('utf8'), message.body);
      assert.equal(first['content-type'], 'application/json');
      assert.equal(first['content-encoding'], 'utf-8');
      assert.deepEqual(first.headers, message.headers);
      assert.equal(first.properties.body_encoding, 'base64');
      assert.match(first.properties.delivery_tag, /^[0-9a-f-]{36}$/);
      assert.notEqual(first.properties.delivery_tag, second.properties.delivery_tag, 'a fresh delivery_tag per publish');
      assert.deepEqual(first.properties.delivery_info, { exchange: '', routing_key: q });
      assert.equal(first.properties.correlation_id, message.headers['id']);
      assert.equal(first.properties.priority, 0);
      // Publish is LPUSH: the first message published is at the right, the end BRPOP (and fetch) takes from.
      assert.equal((JSON.parse((await redis.lindex(q, -1))!) as Envelope).properties.delivery_tag, first.properties.delivery_tag);
    });

    it("puts priorities in kombu's buckets: 0–2 the bare name, 3–5 queue\\x06\\x163, 6–8 …\\x06\\x166, 9 …\\x06\\x169", async () => {
      const t = openTransport();
      const q = queueName();
      const expected: Record<string, string[]> = { [q]: [], [`${q}\x06\x163`]: [], [`${q}\x06\x166`]: [], [`${q}\x06\x169`]: [] };
      for (const [priority, key] of [[0, q], [2, q], [3, `${q}\x06\x163`], [5, `${q}\x06\x163`], [6, `${q}\x06\x166`], [9, `${q}\x06\x169`]] as const) {
        const m = task(q, priority);
        await t.publish(m.message, { queue: q, priority });
        expected[key]!.unshift(m.id);
      }
      for (const [key, ids] of Object.entries(expected)) {
        assert.deepEqual((await listOf(key)).map((e) => e.headers['id']), ids, `bucket ${JSON.stringify(key)}`);
      }
      assert.equal((await listOf(`${q}\x06\x163`))[0]!.properties.priority, 5);
      assert.equal(await t.depth(q), 6);
    });
  });

  describe('a connection dropped mid-publish', () => {
    it('publishes once the connection is back: a publish dropped unanswered is sent again and lands once', async () => {
      // CLIENT PAUSE … WRITE holds the publish (one script, publish.lua) before it runs: the connection is then
      // killed with the script sent and unanswered, as a failover or a proxy can do.
      const t = openTransport();
      const q = queueName();
      assert.equal(await t.depth(q), 0); // connected
      await redis.client('PAUSE', 5_000, 'WRITE');
      let outcome: Promise<string>;
      try {
        const { message } = task(q);
        outcome = t.publish(message, { queue: q }).then(
          () => 'published',
          (error: unknown) => `failed: ${(error as Error).name}: ${(error as Error).message}`,
        );
        let line: string | undefined;
        await waitFor(
          async () => {
            line = ((await redis.client('LIST')) as string).split('\n').find((l) => l.includes(`name=fennel:${process.pid} `) && / cmd=eval(sha)? /.test(l));
            return line !== undefined;
          },
          { what: 'the producer connection held in its publish' },
        );
        await redis.client('KILL', 'ID', /^id=(\d+)/.exec(line!)![1]!);
      } finally {
        await redis.client('UNPAUSE');
      }
      assert.equal(await outcome, 'published');
      assert.equal(await redis.llen(q), 1, 'on the queue once');
    });
  });

  describe('fetch and ack', () => {
    it('records a fetched message in unacked as [message, "", queue] and in unacked_index scored in unix seconds; the list no longer has it', async () => {
      const t = openTransport();
      const q = queueName();
      const { id, message } = task(q);
      await t.publish(message, { queue: q });
      const raw = (await redis.lindex(q, 0))!;
      const tag = (JSON.parse(raw) as Envelope).properties.delivery_tag;
      const before = Date.now() / 1000;
      const got = await hold(t, q, 1);
      await waitFor(() => got.length === 1, { what: 'the delivery' });
      const after = Date.now() / 1000;
      assert.equal(got[0]!.message.headers['id'], id);
      assert.equal(await redis.llen(q), 0, 'the list no longer has it');
      const entry = await redis.hget(UNACKED, tag);
      assert.ok(entry, 'unacked has the delivery_tag');
      const triple = JSON.parse(entry) as [Envelope, string, string];
      assert.equal(triple.length, 3);
      assert.deepEqual(triple[0], JSON.parse(raw), 'the message as it was on the list');
      assert.equal(triple[1], '', 'the exchange');
      assert.equal(triple[2], q, 'the routing key (the queue)');
      const score = Number(await redis.zscore(UNACKED_INDEX, tag));
      assert.ok(score >= Math.floor(before) - 1 && score <= after + 60, `score ${score} is unix seconds (not ms)`);
      assert.ok((await redis.zscore(LEASES, tag)) !== null, "and in Fennel's leases");
      assert.deepEqual((await t.stats()).find((s) => s.queue === q), { queue: q, ready: 0, scheduled: 0, unacked: 1 });
    });

    it('sets the queue\'s wake marker when it takes its max and leaves messages behind, and only then', async () => {
      const t = openTransport();
      const q = queueName();
      const marker = `${WAKE}${q}`;
      await t.publishMany(Array.from({ length: 5 }, () => [task(q).message, { queue: q }] as const));
      await redis.del(marker); // the publish's own wake-up, taken as a blocked consumer takes it
      assert.equal((await fetchOnce(t, q, 2)).length, 2);
      assert.equal(await redis.zcard(marker), 1, 'two taken, three left: another consumer is woken');
      await redis.del(marker);
      assert.equal((await fetchOnce(t, q, 3)).length, 3);
      assert.equal(await redis.zcard(marker), 0, 'its max taken, none left: nobody to wake');
      await t.publishMany(Array.from({ length: 2 }, () => [task(q).message, { queue: q }] as const));
      await redis.del(marker);
      assert.equal((await fetchOnce(t, q, 10)).length, 2);
      assert.equal(await redis.zcard(marker), 0, 'fewer than its max: the queue is empty');

      // Its max taken from the first bucket, which it emptied: a message in a later priority bucket still wakes.
      await t.publishMany([[task(q).message, { queue: q }], [task(q).message, { queue: q }], [task(q, 9).message, { queue: q, priority: 9 }]] as const);
      await redis.del(marker);
      assert.equal((await fetchOnce(t, q, 2)).length, 2);
      assert.equal(await redis.llen(q), 0);
      assert.equal(await redis.zcard(marker), 1, 'one left in a bucket after the one it stopped in');
    });

    it('moves each message from the list to unacked in one step: an observer never sees a message in neither place', async () => {
      const q = queueName();
      const total = 2_000;
      const producer = openTransport();
      await producer.publishMany(Array.from({ length: total }, () => [task(q).message, { queue: q }] as const));
      const tags = new Set((await listOf(q)).map((e) => e.properties.delivery_tag));
      assert.equal(tags.size, total);
      // Two consumers on their own connections take 10 at a time (hundreds of fetch scripts) and ack each
      // delivery on a later turn; a tag is noted as acked just before its ack is sent.
      const acked = new Set<string>();
      let delivered = 0;
      for (const t of [openTransport(), openTransport()]) {
        const sub = await t.consume({ queues: [q], prefetch: 10 }, (d) => {
          delivered++;
          setImmediate(() => {
            acked.add(String(d.message.properties['delivery_tag']));
            void d.ack();
          });
        });
        cleanups.push(() => sub.cancel());
      }
      const observer = testRedisClient(DB);
      cleanups.push(() => observer.disconnect());
      let snapshots = 0;
      let missing: string[] = [];
      // Each snapshot is one MULTI: the list and unacked as of one instant between two scripts.
      while (acked.size < total && missing.length === 0) {
        const results = (await observer.multi().lrange(q, 0, -1).hkeys(UNACKED).exec())!;
        const listed = (results[0]![1] as string[]).map((raw) => (JSON.parse(raw) as Envelope).properties.delivery_tag);
        const seen = new Set([...listed, ...(results[1]![1] as string[])]);
        missing = [...tags].filter((tag) => !seen.has(tag) && !acked.has(tag));
        snapshots++;
      }
      assert.deepEqual(missing, [], `after ${snapshots} snapshots: a message was in neither the list nor unacked, and not acked`);
      await waitFor(() => acked.size === total, { timeoutMs: 30_000, what: `${total} acks` });
      assert.equal(delivered, total, 'each message was delivered once');
      await waitFor(async () => (await redis.hlen(UNACKED)) === 0, { what: 'the last acks' });
      assert.equal(await redis.zcard(UNACKED_INDEX), 0);
      assert.equal(await redis.zcard(LEASES), 0);
      assert.equal(await redis.llen(q), 0);
    });

    it('acknowledges the messages settled in one turn together, in one script call, and every ack resolves', async () => {
      const t = openTransport();
      const q = queueName();
      await t.publishMany(Array.from({ length: 50 }, () => [task(q).message, { queue: q }] as const));
      const got = await hold(t, q, 50);
      await waitFor(() => got.length === 50, { what: '50 deliveries' });
      const before = await calls('hdel');
      await Promise.all(got.map((d) => d.ack()));
      assert.equal((await calls('hdel')) - before, 1, '50 acks in one turn: one HDEL');
      assert.equal(await redis.exists(UNACKED, UNACKED_INDEX, LEASES), 0);
    });

    it('finds the delivery tag in properties even when a header has the same name', async () => {
      const t = openTransport();
      const q = queueName();
      const { message } = task(q);
      await t.publish({ ...message, headers: { ...message.headers, delivery_tag: 'not-the-tag' } }, { queue: q });
      const envelope = JSON.parse((await redis.lindex(q, 0))!) as Envelope;
      const got = await hold(t, q, 1);
      await waitFor(() => got.length === 1, { what: 'the delivery' });
      assert.deepEqual(await redis.hkeys(UNACKED), [envelope.properties.delivery_tag]);
      await got[0]!.ack();
      assert.equal(await redis.exists(UNACKED, UNACKED_INDEX, LEASES), 0);
    });

    it('ack removes the message from unacked, unacked_index and the leases', async () => {
      const t = openTransport();
      const q = queueName();
      await t.publish(task(q).message, { queue: q });
      await t.publish(task(q).message, { queue: q });
      const got = await hold(t, q, 2);
      await waitFor(() => got.length === 2, { what: 'two deliveries' });
      assert.equal(await redis.hlen(UNACKED), 2);
      await got[0]!.ack();
      const tags = await redis.hkeys(UNACKED);
      assert.equal(tags.length, 1, 'only the acked message is gone');
      assert.deepEqual(await redis.zrange(UNACKED_INDEX, 0, -1), tags);
      assert.deepEqual(await redis.zrange(LEASES, 0, -1), tags);
      await got[1]!.ack();
      assert.equal(await redis.exists(UNACKED, UNACKED_INDEX, LEASES), 0);
      assert.equal(await redis.llen(q), 0);
    });
  });

  describe('restore (the visibility sweep)', () => {
    it('RPUSHes a message whose lease (unacked_index and fennel.leases score) is older than the visibility timeout back onto its queue, marked redelivered', async () => {
      const t = openTransport(2);
      const q = queueName();
      const held = task(q);
      await t.publish(held.message, { queue: q });
      const raw = (await redis.lindex(q, 0))!;
      const [tag] = await fetchOnce(t, q);
      assert.ok(tag);
      const waiting = task(q);
      await t.publish(waiting.message, { queue: q });
      const now = Date.now() / 1000;
      assert.equal(await sweep(t, now - 2), 0, 'a message delivered just now is not restored');
      assert.equal(await redis.hexists(UNACKED, tag), 1);
      await age(tag, now - 10); // delivered 10 s ago, its holder gone since
      assert.equal(await sweep(t, now - 2), 1);
      assert.equal(await redis.hexists(UNACKED, tag), 0);
      assert.equal(await redis.zscore(UNACKED_INDEX, tag), null);
      assert.equal(await redis.zscore(LEASES, tag), null);
      const list = await listOf(q);
      assert.deepEqual(list.map((e) => e.headers['id']), [waiting.id, held.id], 'RPUSH: the restored message is at the consuming end, ahead of the waiting one');
      const restored = list[1]!;
      assert.equal(restored.headers['redelivered'], true);
      assert.equal(restored.properties.delivery_info['redelivered'], true);
      const original = JSON.parse(raw) as Envelope;
      assert.equal(restored.body, original.body);
      assert.equal(restored.properties.delivery_tag, original.properties.delivery_tag);
      // A consumer receives it next, flagged redelivered, with the published headers plus kombu's mark.
      const got = await hold(t, q, 1);
      await waitFor(() => got.length === 1, { what: 'the redelivery' });
      assert.equal(got[0]!.message.headers['id'], held.id);
      assert.equal(got[0]!.redelivered, true);
      assert.deepEqual({ ...got[0]!.message.headers, redelivered: undefined }, { ...held.message.headers, redelivered: undefined });
      assert.equal(got[0]!.message.body, held.message.body);
    });

    it('a consumer sweeps: a message left unacked by a holder that is gone is handed out again after the visibility timeout', async () => {
      const holder = openTransport(1);
      const q = queueName();
      const { id, message } = task(q, 6);
      await holder.publish(message, { queue: q, priority: 6 });
      const [tag] = await fetchOnce(holder, q); // taken, and never renewed: as if its process had died
      assert.ok(tag);
      const other = openTransport(1);
      const got = await hold(other, q, 1);
      await waitFor(() => got.length === 1, { timeoutMs: 20_000, what: 'the redelivery' });
      assert.equal(got[0]!.message.headers['id'], id);
      assert.equal(got[0]!.redelivered, true);
      assert.equal(got[0]!.message.properties.priority, 6, 'restored to its priority bucket');
    });

    it("does nothing while kombu's unacked_mutex exists, and restores once it is gone", async () => {
      const t = openTransport(1);
      const q = queueName();
      const { id, message } = task(q);
      await t.publish(message, { queue: q });
      const [tag] = await fetchOnce(t, q);
      assert.ok(tag);
      await age(tag, Date.now() / 1000 - 60);
      await redis.set(UNACKED_MUTEX, 'a-python-worker', 'EX', 300); // kombu's Mutex: a Python worker is sweeping
      assert.equal(await sweep(t, Date.now() / 1000), -1, 'the sweep reports the lock');
      assert.equal(await redis.hexists(UNACKED, tag), 1);
      assert.equal(await redis.llen(q), 0);
      const got = await hold(t, q, 1); // a consumer's own sweeps respect the lock too
      await sleep(GRACE_MS);
      assert.equal(got.length, 0, 'nothing restored while the mutex is held');
      assert.equal(await redis.hexists(UNACKED, tag), 1);
      await redis.del(UNACKED_MUTEX);
      await waitFor(() => got.length === 1, { timeoutMs: 20_000, what: 'the redelivery once the mutex is gone' });
      assert.equal(got[0]!.message.headers['id'], id);
      assert.equal(got[0]!.redelivered, true);
    });

    it("leaves a Python worker's unacked entry (in unacked_index, with no Fennel lease) to kombu's own sweep", async () => {
      // kombu never renews what it holds (etas, prefetched and acks_late messages); only kombu restores them.
      const t = openTransport(1);
      const q = queueName();
      const tag = randomUUID();
      const envelope = rawEnvelope({ ...celeryA1.envelope, properties: { ...celeryA1.envelope.properties, delivery_tag: tag } });
      await redis.hset(UNACKED, tag, `[${envelope}, "", ${JSON.stringify(q)}]`);
      await redis.zadd(UNACKED_INDEX, Date.now() / 1000 - 3_600, tag);
      assert.equal(await sweep(t, Date.now() / 1000), 0);
      const got = await hold(t, q, 1);
      await sleep(GRACE_MS);
      assert.equal(got.length, 0);
      assert.equal(await redis.hexists(UNACKED, tag), 1, 'still held by the Python worker');
    });

    it("hands a Celery-produced envelope back unchanged apart from kombu's redelivered marks", async () => {
      // kombu restores with Python's json (loads/dumps), which keeps every value as it was. Here: an empty
      // list, a 16-digit integer and a float that needs 17 significant digits, as any producer may send.
      const t = openTransport();
      const q = queueName();
      const envelope = structuredClone(celeryA1.envelope);
      envelope.headers = { ...envelope.headers, stamped_headers: [], 'x-trace-ns': 1732590606208145123, 'x-epoch': 1732590606.2081451, 'x-empty': {} };
      envelope.properties = { ...envelope.properties, delivery_tag: randomUUID(), delivery_info: { exchange: '', routing_key: q } };
      await redis.lpush(q, rawEnvelope(envelope));
      const [tag] = await fetchOnce(t, q);
      assert.ok(tag);
      await age(tag, 0);
      assert.equal(await sweep(t, Date.now() / 1000), 1);
      const [restored] = await listOf(q);
      assert.ok(restored);
      const expected = structuredClone(envelope) as unknown as Envelope;
      expected.headers['redelivered'] = true;
      expected.properties.delivery_info['redelivered'] = true;
      assert.deepEqual(restored, expected);
    });

    it("never loses a held message the sweep cannot re-encode (Python's json writes float('inf') as Infinity): it stays unacked, goes back on the queue or to the dead letters", async () => {
      // Celery's json.dumps writes apply_async(time_limit=float('inf')) as "timelimit": [Infinity, null].
      // Lua's cjson reads Infinity, but refuses to write it.
      const t = openTransport();
      const q = queueName();
      const tag = randomUUID();
      const envelope = rawEnvelope({ ...celeryA1.envelope, properties: { ...celeryA1.envelope.properties, delivery_tag: tag } }).replace('"timelimit":[null,null]', '"timelimit":[Infinity,null]');
      assert.ok(envelope.includes('[Infinity,null]'));
      await redis.lpush(q, envelope);
      assert.deepEqual(await fetchOnce(t, q), [tag]);
      await age(tag, 0);
      await sweep(t, Date.now() / 1000).catch(() => {}); // whether or not the script reports an error
      const onQueue = await redis.llen(q);
      const unacked = await redis.hexists(UNACKED, tag);
      const dead = (await t.listDeadLetters()).length;
      assert.equal(onQueue + unacked + dead, 1, `the message is somewhere (queue ${onQueue}, unacked ${unacked}, dead letters ${dead})`);
    });
  });

  describe('dead letters', () => {
    it("a raw LPUSH of 'not json' goes to the dead letters with a reason; the consumer keeps consuming", async () => {
      const t = openTransport();
      const q = queueName();
      await redis.lpush(q, 'not json');
      await redis.lpush(q, '{"body":"e30=","headers":{},"properties":{}}');
      const got: Delivery[] = [];
      const sub = await t.consume({ queues: [q], prefetch: 2 }, (d) => {
        got.push(d);
        void d.ack();
      });
      cleanups.push(() => sub.cancel());
      await waitFor(async () => (await t.listDeadLetters()).length === 2, { what: 'two dead letters' });
      const letters = await t.listDeadLetters();
      assert.deepEqual(letters.map((l) => l.queue), [q, q]);
      assert.match(letters[0]!.reason, /not JSON/i);
      assert.match(letters[1]!.reason, /delivery_tag/);
      assert.equal(letters[0]!.message.body, 'not json', 'the raw text is kept');
      assert.ok(letters.every((l) => l.createdAt instanceof Date && !Number.isNaN(l.createdAt.getTime())));
      assert.equal(got.length, 0, 'neither was handed out');
      assert.equal(await redis.llen(q), 0);
      assert.equal(await redis.hlen(UNACKED), 0, 'nothing is left unacked');
      // The consumer is still consuming.
      const good = task(q);
      await t.publish(good.message, { queue: q });
      await waitFor(() => got.length === 1, { what: 'the next good message' });
      assert.equal(got[0]!.message.headers['id'], good.id);
      assert.equal(got[0]!.message.malformed, undefined);
    });
  });

  describe('dead letters (an envelope that names a tag but does not decode)', () => {
    it('is handed out marked malformed (the executor dead-letters it); rejecting it leaves nothing unacked', async () => {
      const t = openTransport();
      const q = queueName();
      await redis.lpush(q, '{"properties": {"delivery_tag": "t-1", "body_encoding": "base64"}, "body": "%%%", "headers": ');
      const got = await hold(t, q, 2);
      await waitFor(() => got.length === 1, { what: 'the delivery' });
      assert.match(got[0]!.message.malformed ?? '', /not JSON/);
      await got[0]!.reject({ requeue: false, reason: 'ProtocolError: not JSON' });
      assert.equal((await t.listDeadLetters()).length, 1);
      assert.equal(await redis.exists(UNACKED, UNACKED_INDEX, LEASES), 0);
    });
  });

  describe('countdown (delayed delivery)', () => {
    it('keeps a countdown message in fennel.scheduled, scored by its due time in ms, and moves it to its bucket when due', async () => {
      const t = openTransport();
      const q = queueName();
      const { id, message } = task(q, 6);
      const due = Date.now() + 1_500;
      await t.publish(message, { queue: q, priority: 6, delayUntil: new Date(due) });
      const members = await redis.zrange(SCHEDULED, 0, -1, 'WITHSCORES');
      assert.equal(members.length, 2);
      const [member, score] = members as [string, string];
      assert.equal(Number(score), due);
      assert.ok(member.startsWith(`${q}\x06\x166\n`), 'the member names its bucket, then a newline');
      const envelope = JSON.parse(member.slice(member.indexOf('\n') + 1)) as Envelope;
      assert.equal(envelope.headers['id'], id);
      assert.equal(await redis.llen(`${q}\x06\x166`), 0, 'not on the queue before it is due');
      assert.deepEqual((await t.stats()).find((s) => s.queue === q)?.scheduled, 1);
      // Any consumer's housekeeping promotes it when due (the wait is for the due time, not a timing check).
      const got = await hold(t, `other-${q}`, 1);
      await waitFor(async () => (await redis.llen(`${q}\x06\x166`)) === 1, { timeoutMs: 20_000, what: 'the message on its bucket' });
      assert.ok(Date.now() >= due, 'not before it was due');
      assert.equal(await redis.zcard(SCHEDULED), 0);
      assert.equal(got.length, 0);
      assert.equal((JSON.parse((await redis.lindex(`${q}\x06\x166`, 0))!) as Envelope).headers['id'], id);
    });

    it('purge removes the scheduled messages of a queue too (depth counts them: ready plus scheduled)', async () => {
      const t = openTransport();
      const q = queueName();
      const other = queueName();
      await t.publish(task(q).message, { queue: q });
      await t.publish(task(q).message, { queue: q, priority: 9, delayUntil: new Date(Date.now() + 600_000) });
      await t.publish(task(other).message, { queue: other, delayUntil: new Date(Date.now() + 600_000) });
      assert.equal(await t.purge(q), 2, 'the ready message and the scheduled one');
      assert.equal(await redis.zcard(SCHEDULED), 1, "a purged countdown message does not come back later; the other queue's stays");
    });

    it('purges a queue too long for one argument list (200,000 messages) and frees its deduplicated ids', async () => {
      const t = openTransport();
      const q = queueName();
      const filler = JSON.stringify({ body: '', headers: {}, properties: {} });
      for (let i = 0; i < 200_000; i += 10_000) await redis.lpush(q, ...Array.from({ length: 10_000 }, () => filler));
      const deduplicated = task(q);
      // The producer marks a deduplicated message with the header (the app does it in prepare).
      deduplicated.message.headers[DEDUPE_HEADER] = true;
      await t.publish(deduplicated.message, { queue: q, deduplicate: true });
      const key = `${REDIS_KEYS.dedupePrefix}${deduplicated.id}`;
      assert.equal(await redis.exists(key), 1);
      assert.equal(await t.purge(q), 200_001);
      assert.equal(await redis.llen(q), 0);
      assert.equal(await redis.exists(key), 0, 'the deduplicated id is free again');
    });
  });

  describe('result backend', () => {
    function meta(taskId: string, status: string, result: unknown): TaskMeta {
      return { status, result, traceback: null, children: [], date_done: '2026-11-26T02:30:06.208145+00:00', task_id: taskId };
    }

    it('writes celery-task-meta-<id> with a TTL and PUBLISHes the same text on the channel of that name', async () => {
      const backend = new RedisBackend(URL, { resultExpiresSec: 600 });
      cleanups.push(() => backend.close());
      const id = randomUUID();
      const key = `celery-task-meta-${id}`;
      const subscriber = testRedisClient(DB);
      cleanups.push(() => subscriber.disconnect());
      const heard: Array<[string, string]> = [];
      subscriber.on('message', (channel: string, text: string) => heard.push([channel, text]));
      await subscriber.subscribe(key);
      await backend.store(meta(id, 'STARTED', { pid: 1, hostname: 'w@h' }));
      await backend.store(meta(id, 'SUCCESS', 42));
      const stored = (await redis.get(key))!;
      assert.deepEqual(JSON.parse(stored), meta(id, 'SUCCESS', 42));
      const ttl = await redis.ttl(key);
      assert.ok(ttl > 0 && ttl <= 600, `a TTL of at most result_expires (${ttl})`);
      await waitFor(() => heard.length === 2, { what: 'two messages on the channel' });
      assert.deepEqual(heard.map(([channel]) => channel), [key, key]);
      assert.equal(heard[1]![1], stored, 'the published text is the stored text');
      assert.equal((JSON.parse(heard[0]![1]) as TaskMeta).status, 'STARTED');
    });

    it('keeps no expiry when resultExpiresSec is 0', async () => {
      const backend = new RedisBackend(URL, { resultExpiresSec: 0 });
      cleanups.push(() => backend.close());
      const id = randomUUID();
      await backend.store(meta(id, 'SUCCESS', 1));
      assert.equal(await redis.ttl(`celery-task-meta-${id}`), -1);
    });

    it('stores one turn\'s metas in one call: a STARTED followed by its SUCCESS is not written, a STARTED after a SUCCESS is refused', async () => {
      const backend = new RedisBackend(URL, { resultExpiresSec: 600 });
      cleanups.push(() => backend.close());
      const [fast, done] = [randomUUID(), randomUUID()];
      const subscriber = testRedisClient(DB);
      cleanups.push(() => subscriber.disconnect());
      const heard: string[] = [];
      subscriber.on('message', (channel: string, text: string) => heard.push(`${channel.slice('celery-task-meta-'.length)} ${(JSON.parse(text) as { status: string }).status}`));
      await subscriber.subscribe(`celery-task-meta-${fast}`, `celery-task-meta-${done}`);
      const [sets, mgets] = [await calls('set'), await calls('mget')];
      await Promise.all([
        backend.store(meta(fast, 'STARTED', { pid: 1, hostname: 'w@h' })),
        backend.store(meta(done, 'SUCCESS', 'first')),
        backend.store(meta(fast, 'SUCCESS', 'fast')),
        backend.store(meta(done, 'STARTED', { pid: 1, hostname: 'w@h' })), // a late duplicate's STARTED
      ]);
      assert.equal((await calls('mget')) - mgets, 1, 'one batch: one MGET for the guard');
      assert.equal((await calls('set')) - sets, 2, 'two SETs: the superseded STARTED and the refused one are not written');
      const marker = randomUUID();
      await redis.publish(`celery-task-meta-${fast}`, JSON.stringify({ status: marker }));
      await waitFor(() => heard.includes(`${fast} ${marker}`), { what: 'the marker' });
      assert.deepEqual(heard, [`${done} SUCCESS`, `${fast} SUCCESS`, `${fast} ${marker}`]);
      assert.equal((await backend.get(fast))?.result, 'fast');
      assert.equal((await backend.get(done))?.result, 'first');
    });

    it('does not overwrite (or publish over) a stored SUCCESS', async () => {
      const backend = new RedisBackend(URL, { resultExpiresSec: 600 });
      cleanups.push(() => backend.close());
      const id = randomUUID();
      const key = `celery-task-meta-${id}`;
      await backend.store(meta(id, 'SUCCESS', 'first'));
      const subscriber = testRedisClient(DB);
      cleanups.push(() => subscriber.disconnect());
      const heard: string[] = [];
      subscriber.on('message', (_channel: string, text: string) => heard.push(text));
      await subscriber.subscribe(key);
      await backend.store(meta(id, 'FAILURE', { exc_type: 'WorkerLostError', exc_message: ['lost'], exc_module: 'billiard.exceptions' }));
      await backend.store(meta(id, 'SUCCESS', 'second'));
      const marker = randomUUID();
      await redis.publish(key, marker); // everything published before it has arrived once it has
      await waitFor(() => heard.includes(marker), { what: 'the marker' });
      assert.deepEqual(heard, [marker], 'nothing was published for the refused writes');
      assert.deepEqual(JSON.parse((await redis.get(key))!), meta(id, 'SUCCESS', 'first'));
    });

    it('a stored state whose args or result merely contain {"status": "SUCCESS"} does not block the outcome', async () => {
      // Fennel stores args and kwargs in every meta (result_extended); a SUCCESS inside them is not a SUCCESS.
      const backend = new RedisBackend(URL, { resultExpiresSec: 600 });
      cleanups.push(() => backend.close());
      const id = randomUUID();
      await backend.store({ ...meta(id, 'STARTED', { pid: 1, hostname: 'w@h' }), args: [{ order: 7, status: 'SUCCESS' }], kwargs: {} });
      await backend.store({ ...meta(id, 'FAILURE', { exc_type: 'ValueError', exc_message: ['no'], exc_module: 'builtins' }), args: [{ order: 7, status: 'SUCCESS' }], kwargs: {} });
      assert.equal((await backend.get(id))?.status, 'FAILURE');
      const other = randomUUID();
      await backend.store(meta(other, 'PROGRESS', { step: 1, status: 'SUCCESS' }));
      await backend.store(meta(other, 'SUCCESS', 'done'));
      assert.equal((await backend.get(other))?.result, 'done');
    });

    it('a wait() begun while the subscriber connection is reconnecting resolves with the result instead of failing', async () => {
      // The moment is reached through the backend's subscriber connection (an internal): it is killed by
      // the server, and a wait() is made in its 'connect' event, during the handshake, as a get() may
      // happen to be at any time. ioredis writes SUBSCRIBE at once in that phase (the command may run while
      // Redis loads), and then its own ready check (INFO) is refused in subscriber mode.
      const backend = new RedisBackend(URL);
      cleanups.push(() => backend.close());
      const first = randomUUID();
      const firstWait = backend.wait(first, { timeoutMs: 10_000 });
      const subscriber = (backend as unknown as { subscriber?: Redis }).subscriber;
      assert.ok(subscriber, 'the backend keeps its subscriber connection in `subscriber`');
      await waitFor(() => subscriber.status === 'ready', { what: 'the subscriber to be ready' });
      const second = randomUUID();
      let started = false;
      const outcome = new Promise<{ value: TaskMeta | undefined } | { error: string }>((resolve) =>
        subscriber.once('connect', () => {
          started = true;
          backend.wait(second, { timeoutMs: 10_000 }).then(
            (value) => resolve({ value }),
            (error: unknown) => resolve({ error: String(error) }),
          );
        }),
      );
      const clients = ((await redis.client('LIST')) as string).split('\n').filter((line) => / flags=P /.test(line) && line.includes(`name=fennel:${process.pid} `));
      assert.equal(clients.length, 1, 'one subscriber connection of this process');
      await redis.client('KILL', 'ID', /^id=(\d+)/.exec(clients[0]!)![1]!);
      await waitFor(() => started, { timeoutMs: 20_000, what: 'the reconnect' });
      const writer = new RedisBackend(URL);
      cleanups.push(() => writer.close());
      await waitFor(() => subscriber.status === 'ready', { timeoutMs: 20_000, what: 'the subscriber to be ready again' });
      await writer.store(meta(first, 'SUCCESS', 'first'));
      await writer.store(meta(second, 'SUCCESS', 'second'));
      assert.deepEqual(await outcome, { value: meta(second, 'SUCCESS', 'second') });
      assert.equal((await firstWait)?.result, 'first');
    });

    it("reads a result a Python worker wrote (Celery's SETEX + PUBLISH), through wait()", async () => {
      const backend = new RedisBackend(URL);
      cleanups.push(() => backend.close());
      const id = randomUUID();
      const waiting = backend.wait(id, { timeoutMs: 20_000 });
      await sleep(200);
      const text = JSON.stringify(meta(id, 'SUCCESS', [2, 3]));
      await redis.setex(`celery-task-meta-${id}`, 86_400, text);
      await redis.publish(`celery-task-meta-${id}`, text);
      assert.deepEqual((await waiting)?.result, [2, 3]);
    });
  });
});
