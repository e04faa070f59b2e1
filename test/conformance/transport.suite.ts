// The conformance suite every transport engine must pass (STYLE.md principle 8): `transportSuite` registers
// describe/it blocks against an engine factory, and tests opt in by the capabilities the engine declares.
// Each test opens its own transports (the factory hands out a fresh, empty broker), uses randomUUID queue
// names and closes what it opens. Waits poll with generous deadlines; a negative check ("nothing more
// arrives") first pauses for a grace period, so a slow machine can only make it pass more easily, not fail.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { decodeEnvelope } from '../../src/protocol/envelope.ts';
import { buildTaskMessage, type TaskCall, type WireMessage } from '../../src/protocol/message.ts';
import { DEDUPE_HEADER, type Delivery, type QueueConsumers, type QueueStats, type Route, type Transport, type TransportCapabilities } from '../../src/transports/transport.ts';
import { celeryA1, rawEnvelope } from '../fixtures/celery.ts';
import { spawnHelperProcess, type Child } from './helpers/child.ts';
import { sleep, waitFor } from './helpers/wait.ts';
import { CleanupScope, scopedWith } from './helpers/scope.ts';

export interface TransportOpenOptions {
  visibilityTimeoutSec: number;
}

export type TransportFactory = (opts: TransportOpenOptions) => Promise<Transport> | Transport;

export interface TransportSuiteOptions {
  /**
   * Opens a second transport on the same broker as `transport`, on its own connection. Required for
   * crossProcess engines: the suite uses it to check that two connections never share a message.
   */
  reopen?: (transport: Transport, opts: TransportOpenOptions) => Promise<Transport> | Transport;
  /**
   * The engine's priority order, for engines with `priorities`: messages are handed out by ascending rank,
   * FIFO within one rank. Default `(p) => -p`: higher priorities first, each priority its own rank (sqlite://,
   * memory://, RabbitMQ). kombu's Redis layout serves 0 first and 9 last, in buckets 0–2, 3–5, 6–8, 9.
   */
  priorityRank?: (priority: number) => number;
  /**
   * Headers the broker itself sets on a message it hands out again (kombu's Redis restore sets
   * `redelivered: true`). A redelivered message may carry these, with the value true, on top of the
   * published headers; everything else must be unchanged. Default: none.
   */
  redeliveryHeaders?: readonly string[];
  /**
   * Properties the broker derives from where it actually routed the message instead of carrying the
   * publisher's value (AMQP: `delivery_info` is the delivery's exchange and routing key, so a Celery message
   * captured on queue `celery` and published to another queue reads that queue). The suite checks that
   * `delivery_info` names the queue it was published to. Default: none (kombu's Redis envelope keeps them).
   */
  routedProperties?: readonly string[];
  /**
   * How the engine reports live consumers (`Transport.consumers`): `announced`, workers announce themselves
   * (`announceConsumer` / `withdrawConsumer`, each announcement good for its TTL) and are listed by name;
   * `broker`, the broker counts its live consumes itself (AMQP), without names. Default: no presence.
   */
  presence?: 'announced' | 'broker';
}

/** Pause before a negative check: long enough for several wake-ups and fallback polls of any engine. */
const GRACE_MS = 700;
/** Properties an envelope may add on the way through a broker (kombu puts these in `properties` too). */
const ENVELOPE_PROPERTIES = new Set(['body_encoding', 'delivery_tag']);
const DEFAULT_OPEN: TransportOpenOptions = { visibilityTimeoutSec: 30 };

function queueName(label = 'q'): string {
  return `conformance-${label}-${randomUUID()}`;
}

type CallOverrides = Partial<Omit<TaskCall, 'id' | 'queue'>>;

function task(queue: string, overrides: CallOverrides = {}): { id: string; message: WireMessage } {
  const id = randomUUID();
  return { id, message: buildTaskMessage({ name: 'tests.echo', args: [id], ...overrides, id, queue }) };
}

/** The message as a publish with `deduplicate` sends it: marked, so its consumer releases the id when it settles it. */
function once(message: WireMessage): WireMessage {
  return { ...message, headers: { ...message.headers, [DEDUPE_HEADER]: true } };
}

function idOf(delivery: Delivery): string {
  return String(delivery.message.headers['id']);
}

function withoutEnvelopeProperties(properties: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(properties).filter(([key]) => !ENVELOPE_PROPERTIES.has(key)));
}

/** The live consumers of one queue as the engine reports them (an entry is promised for the queue asked about). */
async function consumersOf(transport: Transport, queue: string): Promise<QueueConsumers> {
  const row = (await transport.consumers!(queue)).get(queue);
  assert.ok(row, `consumers('${queue}') has an entry for '${queue}'`);
  return row;
}

async function statsOf(transport: Transport, queue: string): Promise<QueueStats> {
  const row = (await transport.stats()).find((s) => s.queue === queue);
  return row ?? { queue, ready: 0, scheduled: 0, unacked: 0 };
}

/** Records deliveries and settles them on request, tracking how many are held at once. */
class Inbox {
  readonly deliveries: Delivery[] = [];
  readonly receivedAt: number[] = [];
  readonly errors: unknown[] = [];
  /** Task ids whose ack resolved, and those whose automatic reject with requeue did. */
  readonly acked: string[] = [];
  readonly requeued: string[] = [];
  private readonly settled = new Set<Delivery>();
  maxHeld = 0;
  private auto: 'ack' | 'requeue-first' | undefined;

  readonly onDelivery = (delivery: Delivery): void => {
    this.deliveries.push(delivery);
    this.receivedAt.push(Date.now());
    this.maxHeld = Math.max(this.maxHeld, this.held);
    if (this.auto) setImmediate(() => void this.settleAuto(delivery));
  };

  get held(): number {
    return this.deliveries.length - this.settled.size;
  }

  get ids(): string[] {
    return this.deliveries.map(idOf);
  }

  async ack(delivery: Delivery): Promise<void> {
    if (this.settled.has(delivery)) return;
    this.settled.add(delivery);
    try {
      await delivery.ack();
      this.acked.push(idOf(delivery));
    } catch (error) {
      this.errors.push(error);
    }
  }

  async reject(delivery: Delivery, opts: { requeue: boolean; reason?: string }): Promise<void> {
    this.settled.add(delivery);
    await delivery.reject(opts);
  }

  /** Acks every delivery held now and, from here on, each one as it arrives (on a later turn, as a worker would). */
  async drain(): Promise<void> {
    this.auto = 'ack';
    await Promise.all(this.deliveries.map((d) => this.ack(d)));
  }

  /** From here on, as each delivery arrives (on a later turn): rejects it with requeue unless it is marked redelivered, else acks it. */
  requeueFirstTime(): void {
    this.auto = 'requeue-first';
  }

  private async settleAuto(delivery: Delivery): Promise<void> {
    if (this.auto !== 'requeue-first' || delivery.redelivered) return this.ack(delivery);
    if (this.settled.has(delivery)) return;
    this.settled.add(delivery);
    try {
      await delivery.reject({ requeue: true });
      this.requeued.push(idOf(delivery));
    } catch (error) {
      this.errors.push(error);
    }
  }

  async waitForCount(n: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(() => this.deliveries.length >= n, { timeoutMs, what: `${n} deliveries (have ${this.deliveries.length})` });
  }
}

/**
 * One consumer in a claim-once test, in this process or in a child process (compete-consumer.ts): what it was
 * handed, what it settled, and anything that went wrong with it.
 */
interface Competitor {
  readonly where: 'here' | 'process';
  stopped: boolean;
  /** Every hand-out so far, in order: task id and the redelivered mark. */
  handedOut(): Array<{ id: string; redelivered: boolean }>;
  /** Task ids whose ack resolved. */
  acked(): string[];
  /** Task ids whose reject with requeue resolved. */
  requeued(): string[];
  /** Stops it as a worker's warm shutdown does: cancel, then settle what it holds (a child then exits). Idempotent. */
  stop(): Promise<void>;
  /** A settle that failed, a child that did not stop cleanly. */
  problems(): string[];
}

/** The hand-outs of each message among `competitors`: task id → their redelivered marks, in no particular order. */
function handOuts(competitors: readonly Competitor[]): Map<string, boolean[]> {
  const byId = new Map<string, boolean[]>();
  for (const c of competitors) {
    for (const { id, redelivered } of c.handedOut()) {
      const marks = byId.get(id);
      if (marks) marks.push(redelivered);
      else byId.set(id, [redelivered]);
    }
  }
  return byId;
}

export function transportSuite(name: string, factory: TransportFactory, capabilities: TransportCapabilities, options: TransportSuiteOptions = {}): void {
  if (capabilities.crossProcess && !options.reopen) {
    throw new Error(`transportSuite(${name}): a crossProcess engine must pass options.reopen`);
  }
  const rank = options.priorityRank ?? ((priority: number) => -priority);
  const byRank = Array.from({ length: 10 }, (_, p) => p).sort((a, b) => rank(a) - rank(b)); // stable: ties keep ascending p
  /** The priority served first and the one served last, in this engine's order. */
  const mostUrgent = byRank[0]!;
  const leastUrgent = byRank[byRank.length - 1]!;

  /** The headers of a redelivered message, less the broker's own redelivery marks (each checked to be true). */
  const publishedHeaders = (delivery: Delivery): Record<string, unknown> => {
    const headers = { ...delivery.message.headers };
    for (const key of options.redeliveryHeaders ?? []) {
      if (key in headers) {
        assert.equal(headers[key], true, `the broker's redelivery header ${key} is true`);
        delete headers[key];
      }
    }
    return headers;
  };

  /** Everything a test opens, closed in reverse order however the test ends. */
  class Scope extends CleanupScope {

    async open(opts: TransportOpenOptions = DEFAULT_OPEN): Promise<Transport> {
      const transport = await factory(opts);
      this.cleanups.push(() => transport.close());
      return transport;
    }

    async reopen(transport: Transport, opts: TransportOpenOptions = DEFAULT_OPEN): Promise<Transport> {
      const second = await options.reopen!(transport, opts);
      this.cleanups.push(() => second.close());
      return second;
    }

    async consume(transport: Transport, queues: string[], prefetch: number, inbox: Inbox) {
      const subscription = await transport.consume({ queues, prefetch }, inbox.onDelivery);
      this.cleanups.push(() => subscription.cancel());
      return subscription;
    }

    spawnHelper(script: string, args: string[]): Child {
      const child = spawnHelperProcess(script, args);
      this.cleanups.push(() => child.kill('SIGKILL'));
      return child;
    }

    /**
     * A consumer of `queue` in this process, on a connection of its own where the engine has connections (else
     * on `transport`), settling each delivery on a later turn: `ack` acks it, `requeue-first` rejects it with
     * requeue unless it is marked redelivered (then acks it).
     */
    async competeHere(transport: Transport, queue: string, prefetch: number, mode: 'ack' | 'requeue-first'): Promise<Competitor> {
      const own = capabilities.crossProcess ? await this.reopen(transport) : transport;
      const inbox = new Inbox();
      if (mode === 'ack') await inbox.drain();
      else inbox.requeueFirstTime();
      const subscription = await this.consume(own, [queue], prefetch, inbox);
      const competitor: Competitor = {
        where: 'here',
        stopped: false,
        handedOut: () => inbox.deliveries.map((d) => ({ id: idOf(d), redelivered: d.redelivered })),
        acked: () => inbox.acked,
        requeued: () => inbox.requeued,
        stop: async () => {
          if (competitor.stopped) return;
          competitor.stopped = true;
          await subscription.cancel();
          const settled = (): number => inbox.acked.length + inbox.requeued.length + inbox.errors.length;
          await waitFor(() => settled() >= inbox.deliveries.length, { timeoutMs: 30_000, what: `the held deliveries to be settled (${settled()} of ${inbox.deliveries.length})` });
        },
        problems: () => inbox.errors.map((error) => `settle failed here: ${String(error)}`),
      };
      return competitor;
    }

    /** The same, in a child process of its own (compete-consumer.ts); stop() sends it SIGTERM and waits for it to exit. */
    async competeInProcess(transport: Transport, queue: string, prefetch: number, mode: 'ack' | 'requeue-first'): Promise<Competitor> {
      const child = this.spawnHelper('compete-consumer.ts', [transport.url, queue, String(prefetch), mode]);
      await child.waitForLine('READY');
      const competitor: Competitor = {
        where: 'process',
        stopped: false,
        handedOut: () =>
          child.linesAfter('DELIVERED ').map((rest) => {
            const [id, redelivered] = rest.split(' ');
            return { id: id!, redelivered: redelivered === '1' };
          }),
        acked: () => child.linesAfter('ACKED '),
        requeued: () => child.linesAfter('REQUEUED '),
        stop: async () => {
          competitor.stopped = true;
          await child.kill('SIGTERM');
        },
        problems: () => {
          const pid = child.proc.pid;
          const problems = child.linesAfter('SETTLEFAIL ').map((rest) => `settle failed in pid ${pid}: ${rest}`);
          const clean = child.exit === undefined ? !competitor.stopped : child.exit.code === 0 && child.lines.includes('STOPPED');
          if (!clean) problems.push(`pid ${pid} did not stop cleanly (${JSON.stringify(child.exit)}): ${child.errors}`);
          return problems;
        },
      };
      return competitor;
    }
  }

  const scoped = scopedWith(() => new Scope());

  describe(`transport conformance: ${name}`, () => {
    it('declares the capabilities the suite was run with', scoped(async (s) => {
      const t = await s.open();
      assert.deepEqual({ ...t.capabilities }, { ...capabilities });
    }));

    describe('publish and consume', () => {
      it('delivers exactly the published headers, properties and body', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const { id, message } = task(q, {
          args: [1, 'héllo wörld ✓ 🚀', { nested: [true, null, 2.5] }],
          kwargs: { when: new Date('2026-01-02T03:04:05.678Z'), raw: Buffer.from([0, 1, 254, 255]) },
          replyTo: randomUUID(),
          expires: new Date(Date.now() + 3_600_000),
          timeLimitSec: 30,
          softTimeLimitSec: 20,
          retries: 2,
        });
        await t.publish(message, { queue: q });
        const inbox = new Inbox();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        const got = inbox.deliveries[0]!;
        assert.equal(idOf(got), id);
        assert.equal(got.queue, q);
        assert.equal(got.redelivered, false);
        assert.deepEqual(got.message.headers, message.headers);
        assert.deepEqual(Object.keys(got.message.headers), Object.keys(message.headers), 'header order is kept');
        assert.deepEqual(withoutEnvelopeProperties(got.message.properties), message.properties);
        assert.equal(got.message.body, message.body);
        assert.equal(got.message.contentType, message.contentType);
        assert.equal(got.message.contentEncoding, message.contentEncoding);
        assert.equal(got.message.malformed, undefined);
        await inbox.ack(got);
      }));

      it('carries a message produced by Celery itself unchanged', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const celery = decodeEnvelope(rawEnvelope(celeryA1.envelope));
        await t.publish(celery, { queue: q });
        const inbox = new Inbox();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        const got = inbox.deliveries[0]!;
        assert.deepEqual(got.message.headers, celery.headers);
        const routed = new Set(options.routedProperties ?? []);
        const carried = (properties: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(withoutEnvelopeProperties(properties)).filter(([key]) => !routed.has(key)));
        assert.deepEqual(carried(got.message.properties), carried(celery.properties));
        if (routed.has('delivery_info')) assert.deepEqual(got.message.properties.delivery_info, { exchange: '', routing_key: q });
        assert.equal(got.message.body, celery.body);
        await inbox.ack(got);
      }));

      it('hands out messages of one priority in publish order', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const ids: string[] = [];
        for (let i = 0; i < 20; i++) {
          const { id, message } = task(q);
          ids.push(id);
          await t.publish(message, { queue: q });
        }
        const inbox = new Inbox();
        await inbox.drain();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(20);
        assert.deepEqual(inbox.ids, ids);
      }));

      it('delivers every message of a publishMany batch, each to its own queue', scoped(async (s) => {
        const t = await s.open();
        const qa = queueName('a');
        const qb = queueName('b');
        const batch: Array<readonly [WireMessage, Route]> = [];
        const expected = new Map<string, string>();
        for (let i = 0; i < 50; i++) {
          const queue = i % 3 === 0 ? qb : qa;
          const { id, message } = task(queue);
          expected.set(id, queue);
          batch.push([message, { queue }]);
        }
        await t.publishMany(batch);
        assert.equal((await t.depth(qa)) + (await t.depth(qb)), 50);
        const inbox = new Inbox();
        await inbox.drain();
        await s.consume(t, [qa, qb], 10, inbox);
        await inbox.waitForCount(50);
        await sleep(GRACE_MS);
        assert.equal(inbox.deliveries.length, 50, 'no message is delivered twice');
        assert.deepEqual(new Map(inbox.deliveries.map((d) => [idOf(d), d.queue])), expected);
        await waitFor(async () => (await t.depth(qa)) + (await t.depth(qb)) === 0, { what: 'both queues empty' });
      }));

      it('delivers a publishMany batch of 2,500 to two queues, mixing priorities and delays, each where it belongs and in order', scoped(async (s) => {
        // Past the lengths engines write in slices (Redis's publish.lua unpacks 1,000 values at a time).
        const t = await s.open();
        const queues = [queueName('a'), queueName('b')];
        const delayUntil = new Date(Date.now() + 1_000);
        const batch: Array<readonly [WireMessage, Route]> = [];
        const ready = new Map<string, Array<{ id: string; priority: number }>>(queues.map((q) => [q, []]));
        const delayed = new Set<string>();
        for (let i = 0; i < 2_500; i++) {
          const queue = queues[i % 7 === 0 ? 1 : 0]!;
          // Most at one priority, so that one queue's bucket gets over 1,000 of them.
          const priority = capabilities.priorities ? ([9, 5][i % 10] ?? 0) : 0;
          const { id, message } = task(queue, capabilities.priorities ? { priority } : {});
          if (capabilities.delayedDelivery && i % 500 === 1) {
            delayed.add(id);
            batch.push([message, { queue, delayUntil }]);
          } else {
            ready.get(queue)!.push({ id, priority });
            batch.push([message, capabilities.priorities ? { queue, priority } : { queue }]);
          }
        }
        await t.publishMany(batch);
        const inbox = new Inbox();
        await inbox.drain();
        await s.consume(t, queues, 50, inbox);
        await inbox.waitForCount(2_500, 30_000);
        await sleep(GRACE_MS);
        assert.equal(inbox.deliveries.length, 2_500, 'no message is delivered twice');
        for (const queue of queues) {
          // Published before anyone consumed: by rank, then in publish order (a stable sort keeps it).
          const expected = [...ready.get(queue)!].sort((a, b) => rank(a.priority) - rank(b.priority)).map((m) => m.id);
          const got = inbox.deliveries.filter((d) => d.queue === queue && !delayed.has(idOf(d))).map(idOf);
          assert.deepEqual(got, expected, `the order of ${queue}`);
        }
        inbox.deliveries.forEach((d, i) => {
          if (delayed.has(idOf(d))) assert.ok(inbox.receivedAt[i]! >= delayUntil.getTime(), 'a delayed message comes at or after delayUntil');
        });
      }));

      it('a consumer of two queues receives from both', scoped(async (s) => {
        const t = await s.open();
        const qa = queueName('a');
        const qb = queueName('b');
        const expected = new Map<string, string>();
        for (const queue of [qa, qb, qa, qb, qa, qb]) {
          const { id, message } = task(queue);
          expected.set(id, queue);
          await t.publish(message, { queue });
        }
        const inbox = new Inbox();
        await inbox.drain();
        await s.consume(t, [qa, qb], 10, inbox);
        await inbox.waitForCount(6);
        assert.deepEqual(new Map(inbox.deliveries.map((d) => [idOf(d), d.queue])), expected);
      }));

      it('two consumers of one queue on one transport never receive the same message and together receive all', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const batch = Array.from({ length: 500 }, () => task(q));
        const first = new Inbox();
        const second = new Inbox();
        await first.drain();
        await second.drain();
        await s.consume(t, [q], 10, first);
        await s.consume(t, [q], 10, second);
        await t.publishMany(batch.map(({ message }) => [message, { queue: q }] as const));
        await waitFor(() => first.deliveries.length + second.deliveries.length >= 500, { timeoutMs: 60_000, what: '500 deliveries' });
        await sleep(GRACE_MS);
        const all = [...first.ids, ...second.ids];
        assert.equal(all.length, 500, 'no message is delivered twice');
        assert.deepEqual(new Set(all), new Set(batch.map((b) => b.id)));
        assert.deepEqual([...first.errors, ...second.errors], []);
      }));
    });

    describe('priorities', { skip: !capabilities.priorities && 'engine declares no priorities' }, () => {
      for (const prefetch of [1, 10]) {
        it(`hands out priorities in the engine's order (most urgent first) and FIFO within one (prefetch ${prefetch})`, scoped(async (s) => {
          const t = await s.open();
          const q = queueName();
          const published: Array<{ id: string; priority: number }> = [];
          for (const priority of [0, 9, 5, 9, 0, 5, 3]) {
            const { id, message } = task(q, { priority });
            published.push({ id, priority });
            await t.publish(message, { queue: q, priority });
          }
          const expected = [...published].sort((a, b) => rank(a.priority) - rank(b.priority)).map((p) => p.id); // stable sort keeps FIFO
          const inbox = new Inbox();
          await inbox.drain();
          await s.consume(t, [q], prefetch, inbox);
          await inbox.waitForCount(published.length);
          assert.deepEqual(inbox.ids, expected);
        }));
      }

      it('a requeued dead letter keeps its priority', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const urgent = task(q, { priority: mostUrgent });
        await t.publish(urgent.message, { queue: q, priority: mostUrgent });
        const inbox = new Inbox();
        const sub = await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        await inbox.reject(inbox.deliveries[0]!, { requeue: false, reason: 'parked' });
        await sub.cancel();
        const letter = (await t.listDeadLetters()).find((l) => l.taskId === urgent.id);
        assert.ok(letter, 'the rejected message is a dead letter');
        const routine = [task(q, { priority: leastUrgent }), task(q, { priority: leastUrgent }), task(q, { priority: leastUrgent })];
        for (const r of routine) await t.publish(r.message, { queue: q, priority: leastUrgent });
        assert.equal(await t.requeueDeadLetter(letter.id), true);
        const after = new Inbox();
        await after.drain();
        await s.consume(t, [q], 1, after);
        await after.waitForCount(4);
        assert.deepEqual(after.ids, [urgent.id, ...routine.map((r) => r.id)], `the priority-${mostUrgent} message comes out before the priority-${leastUrgent} ones`);
      }));
    });

    describe('prefetch', () => {
      it('never holds more than the prefetch window, and one ack lets exactly one more in', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        for (let i = 0; i < 10; i++) await t.publish(task(q).message, { queue: q });
        const inbox = new Inbox();
        await s.consume(t, [q], 3, inbox);
        await inbox.waitForCount(3);
        // Wake the consumer with a new message while its window is full: it must still take nothing.
        await t.publish(task(q).message, { queue: q });
        await sleep(GRACE_MS);
        assert.equal(inbox.deliveries.length, 3);
        await inbox.ack(inbox.deliveries[0]!);
        await inbox.waitForCount(4);
        await sleep(GRACE_MS);
        assert.equal(inbox.deliveries.length, 4, 'one ack frees exactly one slot');
        await inbox.drain();
        await inbox.waitForCount(11);
        assert.equal(inbox.maxHeld, 3);
        assert.equal(new Set(inbox.ids).size, 11);
      }));
    });

    describe('ack and reject', () => {
      it('ack removes the message for good', scoped(async (s) => {
        const t = await s.open({ visibilityTimeoutSec: 1 });
        const q = queueName();
        const { id, message } = task(q);
        await t.publish(message, { queue: q });
        const inbox = new Inbox();
        const sub = await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        assert.equal((await statsOf(t, q)).unacked, 1);
        await inbox.ack(inbox.deliveries[0]!);
        assert.deepEqual(inbox.errors, []);
        assert.equal(await t.depth(q), 0);
        assert.deepEqual(await statsOf(t, q), { queue: q, ready: 0, scheduled: 0, unacked: 0 });
        // Past the visibility timeout, neither the old consumer nor a new one sees it again.
        await sub.cancel();
        const later = new Inbox();
        await s.consume(t, [q], 1, later);
        await sleep(2_000 + GRACE_MS);
        assert.deepEqual([...inbox.ids, ...later.ids], [id]);
      }));

      it('reject with requeue hands the message out again, marked redelivered', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const { id, message } = task(q);
        await t.publish(message, { queue: q });
        const inbox = new Inbox();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        assert.equal(inbox.deliveries[0]!.redelivered, false);
        await inbox.reject(inbox.deliveries[0]!, { requeue: true });
        await inbox.waitForCount(2);
        const again = inbox.deliveries[1]!;
        assert.equal(idOf(again), id);
        assert.equal(again.redelivered, true);
        assert.deepEqual(publishedHeaders(again), message.headers);
        assert.equal(again.message.body, message.body);
        await inbox.ack(again);
        assert.equal(await t.depth(q), 0);
      }));

      it('reject without requeue moves the message to the dead letters, and requeueDeadLetter sends it again', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const { id, message } = task(q, { name: 'tests.poison' });
        await t.publish(message, { queue: q });
        const inbox = new Inbox();
        const sub = await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        await inbox.reject(inbox.deliveries[0]!, { requeue: false, reason: 'poison: body[0] is not an array' });
        assert.equal(await t.depth(q), 0);
        assert.deepEqual(await statsOf(t, q), { queue: q, ready: 0, scheduled: 0, unacked: 0 });
        const letters = (await t.listDeadLetters()).filter((l) => l.taskId === id);
        assert.equal(letters.length, 1);
        const letter = letters[0]!;
        assert.equal(letter.queue, q);
        assert.equal(letter.reason, 'poison: body[0] is not an array');
        assert.equal(letter.taskName, 'tests.poison');
        assert.ok(letter.createdAt instanceof Date && !Number.isNaN(letter.createdAt.getTime()));
        assert.deepEqual(letter.message.headers, message.headers);
        assert.equal(letter.message.body, message.body);
        await sleep(GRACE_MS);
        assert.equal(inbox.deliveries.length, 1, 'a dead letter is not handed out');
        await sub.cancel();

        assert.equal(await t.requeueDeadLetter(letter.id), true);
        assert.deepEqual((await t.listDeadLetters()).filter((l) => l.taskId === id), []);
        assert.equal(await t.requeueDeadLetter(letter.id), false, 'a requeued letter is gone');
        const again = new Inbox();
        await s.consume(t, [q], 1, again);
        await again.waitForCount(1);
        assert.equal(idOf(again.deliveries[0]!), id);
        assert.deepEqual(again.deliveries[0]!.message.headers, message.headers);
        await again.ack(again.deliveries[0]!);
      }));

      it('requeueDeadLetter returns false for an id it never issued', scoped(async (s) => {
        const t = await s.open();
        assert.equal(await t.requeueDeadLetter(randomUUID()), false);
        assert.equal(await t.requeueDeadLetter('999999'), false);
      }));

      it('a dead letter records the reason given, or a default when none is', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const { id, message } = task(q);
        await t.publish(message, { queue: q });
        const inbox = new Inbox();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        await inbox.reject(inbox.deliveries[0]!, { requeue: false });
        const letter = (await t.listDeadLetters()).find((l) => l.taskId === id);
        assert.ok(letter);
        assert.equal(typeof letter.reason, 'string');
        assert.notEqual(letter.reason, '');
      }));
    });

    describe('purge, depth and stats', () => {
      it('purge removes the waiting messages of one queue and returns how many', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const other = queueName('other');
        for (let i = 0; i < 5; i++) await t.publish(task(q).message, { queue: q });
        for (let i = 0; i < 2; i++) await t.publish(task(other).message, { queue: other });
        const inbox = new Inbox();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        assert.equal(await t.purge(q), 4, 'the held message is not waiting');
        assert.equal(await t.depth(q), 0);
        assert.equal(await t.depth(other), 2);
        assert.equal(await t.purge(q), 0);
        assert.equal(await t.purge(queueName('never-used')), 0);
        await inbox.ack(inbox.deliveries[0]!);
        assert.deepEqual(inbox.errors, [], 'the held message can still be acked');
        await sleep(GRACE_MS);
        assert.equal(inbox.deliveries.length, 1, 'purged messages are not delivered');
      }));

      it('depth counts waiting messages, not those handed out', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        assert.equal(await t.depth(q), 0);
        for (let i = 0; i < 3; i++) await t.publish(task(q).message, { queue: q });
        let waiting = 3;
        if (capabilities.delayedDelivery) {
          await t.publish(task(q).message, { queue: q, delayUntil: new Date(Date.now() + 600_000) });
          waiting++;
        }
        assert.equal(await t.depth(q), waiting);
        const inbox = new Inbox();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        assert.equal(await t.depth(q), waiting - 1);
        await inbox.ack(inbox.deliveries[0]!);
        await inbox.waitForCount(2);
        assert.equal(await t.depth(q), waiting - 2, 'the next message was handed out');
      }));

      it('stats reports ready, scheduled and unacked per queue', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const other = queueName('other');
        await t.publish(task(q).message, { queue: q });
        await t.publish(task(q).message, { queue: q });
        if (capabilities.delayedDelivery) await t.publish(task(q).message, { queue: q, delayUntil: new Date(Date.now() + 600_000) });
        await t.publish(task(other).message, { queue: other });
        const inbox = new Inbox();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        assert.deepEqual(await statsOf(t, q), { queue: q, ready: 1, scheduled: capabilities.delayedDelivery ? 1 : 0, unacked: 1 });
        assert.deepEqual(await statsOf(t, other), { queue: other, ready: 1, scheduled: 0, unacked: 0 });
        await inbox.drain();
        await inbox.waitForCount(2);
        await waitFor(async () => (await statsOf(t, q)).unacked === 0, { what: 'no unacked messages' });
        assert.deepEqual(await statsOf(t, q), { queue: q, ready: 0, scheduled: capabilities.delayedDelivery ? 1 : 0, unacked: 0 });
      }));
    });

    describe('delayed delivery', { skip: !capabilities.delayedDelivery && 'engine declares no delayed delivery' }, () => {
      it('a message is not handed out before delayUntil, and is handed out after it', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const delayUntil = new Date(Date.now() + 1_000);
        const delayed = task(q);
        const ready = task(q);
        // Published first: a transport that ignored the delay would hand it out first.
        await t.publish(delayed.message, { queue: q, delayUntil });
        await t.publish(ready.message, { queue: q });
        const inbox = new Inbox();
        await inbox.drain();
        await s.consume(t, [q], 5, inbox);
        await inbox.waitForCount(2, 15_000);
        assert.deepEqual(inbox.ids, [ready.id, delayed.id]);
        assert.ok(inbox.receivedAt[1]! >= delayUntil.getTime(), 'received at or after delayUntil');
        assert.equal(inbox.deliveries[1]!.redelivered, false);
      }));
    });

    describe('deduplication', { skip: !capabilities.deduplication && 'engine declares no deduplication' }, () => {

      it('publishes a deduplicated task id once while it is pending; after its ack, or its dead letter, or a purge, it may be published again', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const { id, message } = task(q);
        await t.publish(once(message), { queue: q, deduplicate: true });
        await t.publishMany([[once(message), { queue: q, deduplicate: true }], [once(message), { queue: q, deduplicate: true }]]);
        assert.equal(await t.depth(q), 1, 'waiting: the duplicates were not enqueued');
        const inbox = new Inbox();
        const sub = await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        await t.publish(once(message), { queue: q, deduplicate: true });
        assert.equal(await t.depth(q), 0, 'held: still pending, not enqueued again');
        await inbox.ack(inbox.deliveries[0]!);
        await t.publish(once(message), { queue: q, deduplicate: true });
        await inbox.waitForCount(2);
        assert.deepEqual(inbox.ids, [id, id], 'acked: the id is free again');
        await inbox.deliveries[1]!.reject({ requeue: false, reason: 'test' });
        await sub.cancel();
        await t.publish(once(message), { queue: q, deduplicate: true });
        assert.equal(await t.depth(q), 1, 'dead-lettered: free again');
        assert.equal(await t.purge(q), 1);
        await t.publish(once(message), { queue: q, deduplicate: true });
        assert.equal(await t.depth(q), 1, 'purged: free again');
      }));

      it('a deduplicated countdown message holds its id while it waits', scoped(async (s) => {
        const t = await s.open();
        if (!t.capabilities.delayedDelivery) return;
        const q = queueName();
        const { message } = task(q);
        const later = new Date(Date.now() + 600_000);
        await t.publish(once(message), { queue: q, deduplicate: true, delayUntil: later });
        await t.publish(once(message), { queue: q, deduplicate: true, delayUntil: later });
        assert.deepEqual(await statsOf(t, q), { queue: q, ready: 0, scheduled: 1, unacked: 0 });
      }));

      // `deduplicate: { ttlMs }` (beat's fires): the id stays taken for the ttl whatever becomes of the message.
      const forMs = (ttlMs: number): { ttlMs: number } => ({ ttlMs });

      it('deduplicate { ttlMs }: a second publish of the task id while the first waits is dropped; another id is not', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const { message } = task(q);
        const other = task(q);
        await t.publish(message, { queue: q, deduplicate: forMs(60_000) });
        await t.publish(message, { queue: q, deduplicate: forMs(60_000) });
        await t.publishMany([[message, { queue: q, deduplicate: forMs(60_000) }], [message, { queue: q, deduplicate: forMs(60_000) }]]);
        assert.equal(await t.depth(q), 1, 'the duplicates were not enqueued');
        await t.publishMany([[other.message, { queue: q, deduplicate: forMs(60_000) }], [other.message, { queue: q, deduplicate: forMs(60_000) }]]);
        assert.equal(await t.depth(q), 2, 'another task id is taken on its own, once');
      }));

      it('deduplicate { ttlMs }: after the first was consumed and acked, a publish within the ttl is still dropped (unlike deduplicate: true); the message carries no fennel_dedupe header', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const { id, message } = task(q);
        await t.publish(message, { queue: q, deduplicate: forMs(60_000) });
        const inbox = new Inbox();
        await s.consume(t, [q], 5, inbox);
        await inbox.waitForCount(1);
        assert.equal(idOf(inbox.deliveries[0]!), id);
        assert.equal(DEDUPE_HEADER in inbox.deliveries[0]!.message.headers, false, 'no fennel_dedupe header: nothing frees the id when it settles');
        await inbox.ack(inbox.deliveries[0]!);
        assert.deepEqual(inbox.acked, [id]);
        await waitFor(async () => (await statsOf(t, q)).unacked === 0, { what: 'the ack to be done' });
        await t.publish(message, { queue: q, deduplicate: forMs(60_000) });
        await t.publishMany([[message, { queue: q, deduplicate: forMs(60_000) }]]);
        await sleep(GRACE_MS);
        assert.equal(inbox.deliveries.length, 1, 'acked, yet still taken: the later publishes were dropped');
        assert.equal(await t.depth(q), 0);
      }));

      it('deduplicate { ttlMs }: a dead letter or a purge does not free the id within the ttl', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const parked = task(q);
        const purged = task(q);
        await t.publish(parked.message, { queue: q, deduplicate: forMs(60_000) });
        const inbox = new Inbox();
        const sub = await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        await inbox.reject(inbox.deliveries[0]!, { requeue: false, reason: 'test' });
        await sub.cancel();
        await t.publish(parked.message, { queue: q, deduplicate: forMs(60_000) });
        assert.equal(await t.depth(q), 0, 'dead-lettered: still taken');
        await t.publish(purged.message, { queue: q, deduplicate: forMs(60_000) });
        assert.equal(await t.purge(q), 1);
        await t.publish(purged.message, { queue: q, deduplicate: forMs(60_000) });
        assert.equal(await t.depth(q), 0, 'purged: still taken');
      }));

      it('deduplicate { ttlMs }: once the ttl has lapsed the task id is published again, and taken again for a new ttl', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const { id, message } = task(q);
        // 1.5 s: Redis keeps the id for whole seconds (2 s here); every engine lets it go some time after.
        await t.publish(message, { queue: q, deduplicate: forMs(1_500) });
        await t.publish(message, { queue: q, deduplicate: forMs(1_500) });
        assert.equal(await t.depth(q), 1, 'within the ttl: dropped');
        await waitFor(
          async () => {
            await t.publish(message, { queue: q, deduplicate: forMs(60_000) });
            return (await t.depth(q)) === 2;
          },
          { timeoutMs: 20_000, intervalMs: 200, what: 'a publish after the ttl lapsed to go through' },
        );
        await t.publish(message, { queue: q, deduplicate: forMs(60_000) });
        assert.equal(await t.depth(q), 2, 'the publish that went through took the id again');
        const inbox = new Inbox();
        await inbox.drain();
        await s.consume(t, [q], 5, inbox);
        await inbox.waitForCount(2);
        await sleep(GRACE_MS);
        assert.deepEqual(inbox.ids, [id, id]);
      }));

      it('deduplicate { ttlMs }: a countdown message holds its id while it waits', scoped(async (s) => {
        const t = await s.open();
        if (!t.capabilities.delayedDelivery) return;
        const q = queueName();
        const { message } = task(q);
        const later = new Date(Date.now() + 600_000);
        await t.publish(message, { queue: q, deduplicate: forMs(60_000), delayUntil: later });
        await t.publish(message, { queue: q, deduplicate: forMs(60_000), delayUntil: later });
        await t.publish(message, { queue: q, deduplicate: forMs(60_000) });
        assert.deepEqual(await statsOf(t, q), { queue: q, ready: 0, scheduled: 1, unacked: 0 });
      }));
    });

    describe('cancel', () => {
      it('stops new deliveries while held ones can still be acked', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) {
          const { id, message } = task(q);
          ids.push(id);
          await t.publish(message, { queue: q });
        }
        const inbox = new Inbox();
        const sub = await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1);
        await sub.cancel();
        await inbox.ack(inbox.deliveries[0]!);
        assert.deepEqual(inbox.errors, []);
        const poke = task(q);
        await t.publish(poke.message, { queue: q });
        await sleep(GRACE_MS);
        assert.equal(inbox.deliveries.length, 1, 'nothing is handed out after cancel');
        assert.equal(await t.depth(q), 3);
        const next = new Inbox();
        await next.drain();
        await s.consume(t, [q], 5, next);
        await next.waitForCount(3);
        assert.deepEqual(next.ids, [ids[1], ids[2], poke.id]);
      }));

      it('hands out nothing once cancel() has resolved, when it is called while messages stream in; the rest go to the next consumer, each once', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const published: string[] = [];
        const inboxes: Inbox[] = [];
        const handedOutByCancel: number[] = [];
        // Five consumers in turn, each cancelled once it has been handed 50 (seen by a poll, so at any point of its
        // claim cycle: a claim may be on its way). Each round adds 500 messages: a fast engine hands out a few
        // hundred between two polls, and the queue must not run dry before the cancel.
        for (let round = 0; round < 5; round++) {
          const batch = Array.from({ length: 500 }, () => task(q));
          published.push(...batch.map((m) => m.id));
          await t.publishMany(batch.map(({ message }) => [message, { queue: q }] as const));
          const inbox = new Inbox();
          await inbox.drain();
          inboxes.push(inbox);
          const sub = await s.consume(t, [q], 10, inbox);
          await inbox.waitForCount(50, 30_000);
          await sub.cancel();
          handedOutByCancel.push(inbox.deliveries.length);
        }
        const last = new Inbox();
        await last.drain();
        inboxes.push(last);
        await s.consume(t, [q], 10, last);
        const total = (): number => inboxes.reduce((n, i) => n + i.deliveries.length, 0);
        await waitFor(() => total() >= published.length, { timeoutMs: 60_000, what: `${published.length} deliveries (have ${total()})` });
        await sleep(GRACE_MS);
        assert.deepEqual(handedOutByCancel.map((n, i) => inboxes[i]!.deliveries.length - n), [0, 0, 0, 0, 0], 'deliveries after cancel() resolved, per cancelled consumer');
        assert.deepEqual(inboxes.flatMap((i) => i.errors), [], 'what was held at the cancel could be acked');
        const ids = inboxes.flatMap((i) => i.ids);
        assert.equal(ids.length, published.length, 'no message is delivered twice');
        assert.deepEqual(new Set(ids), new Set(published));
      }));

      it('takes nothing once cancel() has resolved: a message published after it waits on the queue, even when a claim was on its way at the cancel', scoped(async (s) => {
        const t = await s.open();
        // An ack lets a consumer claim again at once, so the cancel that follows often finds that claim on its
        // way. A cancel that resolved before the claim came back let the claim take the next message: nats://
        // can serve a pull request after a publish that followed it, and did so in 1 of 100 rounds of this loop,
        // 5 of 100 with deduplicated messages (their publish takes the server longer), which the CI run that
        // found it used.
        const route = (q: string): Route => ({ queue: q, deduplicate: capabilities.deduplication === true });
        const message = (q: string): WireMessage => (capabilities.deduplication ? once(task(q).message) : task(q).message);
        const stolen: number[] = [];
        for (let round = 0; round < 60; round++) {
          const q = queueName();
          await t.publish(message(q), route(q));
          const inbox = new Inbox();
          const sub = await s.consume(t, [q], 1, inbox);
          await inbox.waitForCount(1);
          await inbox.ack(inbox.deliveries[0]!);
          await sub.cancel();
          await t.publish(message(q), route(q));
          if ((await t.depth(q)) !== 1 || inbox.deliveries.length !== 1) stolen.push(round);
        }
        assert.deepEqual(stolen, [], 'rounds whose second message was taken by the cancelled consumer');
      }));
    });

    describe('presence (live consumers)', () => {
      const announced = options.presence === 'announced';
      const counted = options.presence === 'broker';

      it('offers consumers() exactly when it reports presence, and announceConsumer / withdrawConsumer when workers announce', scoped(async (s) => {
        const t = await s.open();
        assert.equal(typeof t.consumers === 'function', options.presence !== undefined, 'consumers()');
        assert.equal(typeof t.announceConsumer === 'function', announced, 'announceConsumer()');
        assert.equal(typeof t.withdrawConsumer === 'function', announced, 'withdrawConsumer()');
      }));

      it('lists an announced consumer by name under each of its queues, and a queue nobody consumes with none', { skip: !announced && 'workers do not announce themselves on this engine' }, scoped(async (s) => {
        const t = await s.open();
        const [a, b, idle] = [queueName('a'), queueName('b'), queueName('idle')];
        await t.announceConsumer!('w1@test', [a, b], 60);
        await t.announceConsumer!('w2@test', [a], 60);
        await t.announceConsumer!('w1@test', [a, b], 60); // renewing adds no second entry
        assert.deepEqual(await consumersOf(t, a), { count: 2, names: ['w1@test', 'w2@test'] });
        assert.deepEqual(await consumersOf(t, b), { count: 1, names: ['w1@test'] });
        assert.deepEqual(await consumersOf(t, idle), { count: 0, names: [] });
        const all = await t.consumers!();
        assert.deepEqual(all.get(a), { count: 2, names: ['w1@test', 'w2@test'] });
        assert.deepEqual(all.get(b), { count: 1, names: ['w1@test'] });
        assert.equal(all.has(idle), false, 'without a queue asked about, only queues with a consumer are listed');
        if (capabilities.crossProcess) {
          const other = await s.reopen(t);
          assert.deepEqual(await consumersOf(other, a), { count: 2, names: ['w1@test', 'w2@test'] }, 'another connection sees the announcements');
        }
      }));

      it('does not list a consumer whose announcement is past its TTL, nor one that withdrew', { skip: !announced && 'workers do not announce themselves on this engine' }, scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        await t.announceConsumer!('alive@test', [q], 60);
        await t.announceConsumer!('lapsed@test', [q], 0.2);
        await t.announceConsumer!('leaving@test', [q], 60);
        await t.withdrawConsumer!('leaving@test', [q]);
        assert.equal((await consumersOf(t, q)).names.includes('leaving@test'), false, 'withdrawn at once');
        await sleep(200 + GRACE_MS);
        assert.deepEqual(await consumersOf(t, q), { count: 1, names: ['alive@test'] });
        assert.equal((await t.consumers!()).get(q)?.count, 1);
      }));

      it('counts a live consume on the queue, from any connection, until it is cancelled', { skip: !counted && 'the broker does not count consumers on this engine' }, scoped(async (s) => {
        const t = await s.open();
        const [q, idle] = [queueName(), queueName('idle')];
        const other = await s.reopen(t);
        const sub = await s.consume(other, [q], 1, new Inbox());
        assert.deepEqual(await consumersOf(t, q), { count: 1, names: [] }, 'a count, without names');
        assert.deepEqual(await consumersOf(t, idle), { count: 0, names: [] }, 'a queue that does not exist has none');
        await sub.cancel();
        assert.deepEqual(await consumersOf(t, q), { count: 0, names: [] });
      }));
    });

    describe('across processes', { skip: !capabilities.crossProcess && 'engine is not shared across processes' }, () => {
      it('redelivers, marked redelivered, after the visibility timeout when the holding process is SIGKILLed', scoped(async (s) => {
        const t = await s.open({ visibilityTimeoutSec: 1 });
        const q = queueName();
        const { id, message } = task(q);
        await t.publish(message, { queue: q });
        const holder = s.spawnHelper('hold-consumer.ts', [t.url, q, '1']);
        assert.equal(await holder.waitForLine('HELD '), `HELD ${id}`);
        await holder.kill('SIGKILL');
        assert.equal(holder.exit?.signal, 'SIGKILL');
        const inbox = new Inbox();
        await s.consume(t, [q], 1, inbox);
        await inbox.waitForCount(1, 20_000);
        const got = inbox.deliveries[0]!;
        assert.equal(idOf(got), id);
        assert.equal(got.redelivered, true);
        assert.deepEqual(publishedHeaders(got), message.headers);
        await inbox.ack(got);
        assert.equal(await t.depth(q), 0);
      }));

      it('does not redeliver a message its live holder keeps past three visibility timeouts', scoped(async (s) => {
        // Renewals come every third of the timeout, so a lease lapses only if the holder's event loop stalls for
        // two thirds of it: 2 s rather than 1 s keeps a loaded two-core machine (a file's helper processes
        // compiling beside it) from stalling that long, while the wait still spans three timeouts.
        const VISIBILITY_SEC = 2;
        const holderSide = await s.open({ visibilityTimeoutSec: VISIBILITY_SEC });
        const otherSide = await s.reopen(holderSide, { visibilityTimeoutSec: VISIBILITY_SEC });
        const q = queueName();
        const { id, message } = task(q);
        await holderSide.publish(message, { queue: q });
        const held = new Inbox();
        await s.consume(holderSide, [q], 1, held);
        await held.waitForCount(1);
        const other = new Inbox();
        await s.consume(otherSide, [q], 1, other);
        await sleep(3 * VISIBILITY_SEC * 1_000 + GRACE_MS);
        assert.deepEqual(other.ids, [], 'the other connection got nothing');
        assert.deepEqual(held.ids, [id], 'the holder was not handed it again either');
        assert.equal((await statsOf(otherSide, q)).unacked, 1);
        await held.ack(held.deliveries[0]!);
        assert.deepEqual(held.errors, [], 'the lease was still the holder’s to ack');
        await sleep(GRACE_MS);
        assert.deepEqual(other.ids, []);
        assert.equal(await otherSide.depth(q), 0);
      }));

      it('two transports on separate connections never both receive a message of one queue, and together receive all 500', scoped(async (s) => {
        const a = await s.open();
        const b = await s.reopen(a);
        const q = queueName();
        const batch = Array.from({ length: 500 }, () => task(q));
        const inboxA = new Inbox();
        const inboxB = new Inbox();
        await inboxA.drain();
        await inboxB.drain();
        await s.consume(a, [q], 10, inboxA);
        await s.consume(b, [q], 10, inboxB);
        await a.publishMany(batch.map(({ message }) => [message, { queue: q }] as const));
        await waitFor(() => inboxA.deliveries.length + inboxB.deliveries.length >= 500, { timeoutMs: 60_000, what: '500 deliveries' });
        await sleep(GRACE_MS);
        const all = [...inboxA.ids, ...inboxB.ids];
        assert.equal(all.length, 500, 'no message is delivered twice');
        assert.deepEqual(new Set(all), new Set(batch.map((m) => m.id)));
        assert.deepEqual([...inboxA.errors, ...inboxB.errors], []);
        assert.equal(await a.depth(q), 0);
      }));

      it('two consumer processes never both receive a message of one queue, and together receive all 500', scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const consumers = [s.spawnHelper('drain-consumer.ts', [t.url, q, '30']), s.spawnHelper('drain-consumer.ts', [t.url, q, '30'])];
        for (const c of consumers) await c.waitForLine('READY');
        const batch = Array.from({ length: 500 }, () => task(q));
        await t.publishMany(batch.map(({ message }) => [message, { queue: q }] as const));
        const got = (): string[] => consumers.flatMap((c) => c.lines.filter((l) => l.startsWith('GOT ')).map((l) => l.slice(4)));
        await waitFor(() => got().length >= 500, { timeoutMs: 60_000, what: '500 acks from the two processes' });
        await sleep(GRACE_MS);
        for (const c of consumers) await c.kill('SIGTERM');
        const all = got();
        assert.deepEqual(consumers.flatMap((c) => c.lines.filter((l) => l.startsWith('ACKFAIL'))), []);
        assert.equal(all.length, 500, 'no message is delivered twice');
        assert.deepEqual(new Set(all), new Set(batch.map((m) => m.id)));
        assert.equal(await t.depth(q), 0);
        assert.equal((await statsOf(t, q)).unacked, 0);
      }));
    });

    // Several consumers compete for one queue: here on connections of their own and, where the engine is shared
    // across processes, in child processes too. Nobody dies, so every message is handed out exactly once (or,
    // rejected with requeue, exactly once more). What a consumer was handed is counted in its callback, before
    // it settles anything.
    describe('claim once', () => {
      const where = capabilities.crossProcess ? 'on their own connections and in other processes' : 'on one transport';

      it(`hands out each of 2,000 messages exactly once among competing consumers ${where}, while consumers stop and new ones start mid-stream`, scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        const batches = Array.from({ length: 20 }, () => Array.from({ length: 100 }, () => task(q)));
        const ids = batches.flat().map((m) => m.id);
        const competitors: Competitor[] = [];
        const start = async (at: 'here' | 'process'): Promise<void> => {
          competitors.push(at === 'here' ? await s.competeHere(t, q, 10, 'ack') : await s.competeInProcess(t, q, 10, 'ack'));
        };
        const handedOut = (): number => competitors.reduce((n, c) => n + c.handedOut().length, 0);
        await start('here');
        await start('here');
        if (capabilities.crossProcess) {
          await start('process');
          await start('process');
        }
        let published = 0;
        for (const [b, batch] of batches.entries()) {
          await t.publishMany(batch.map(({ message }) => [message, { queue: q }] as const));
          published += batch.length;
          // Mid-stream, with up to two batches waiting or held: the oldest consumer still running here (and, every
          // fifth batch, the oldest in another process) stops as a warm shutdown does, while a new one starts beside it.
          for (const at of capabilities.crossProcess && b % 5 === 4 ? (['here', 'process'] as const) : (['here'] as const)) {
            const oldest = competitors.find((c) => c.where === at && !c.stopped)!;
            await Promise.all([oldest.stop(), start(at)]);
          }
          // The next batch goes out once the consumers are at most one batch behind, so the stops and starts
          // above always happen while messages are being handed out.
          await waitFor(() => handedOut() >= published - 100, { timeoutMs: 60_000, what: `the consumers to catch up (${handedOut()} of ${published} handed out)` });
        }
        await waitFor(() => handedOut() >= ids.length, { timeoutMs: 60_000, what: `${ids.length} hand-outs (have ${handedOut()})` });
        await sleep(GRACE_MS);
        for (const c of competitors) await c.stop();
        assert.deepEqual(competitors.flatMap((c) => c.problems()), [], 'no consumer died or failed to settle');
        const byId = handOuts(competitors);
        assert.deepEqual([...byId].filter(([, marks]) => marks.length > 1).map(([id, marks]) => `${id} handed out ${marks.length} times`), [], 'no message is handed out twice');
        assert.deepEqual(ids.filter((id) => !byId.has(id)), [], 'no message is missing');
        assert.equal(byId.size, ids.length, 'nothing else is handed out');
        const acked = competitors.flatMap((c) => c.acked());
        const ackedOnce = new Set(acked);
        assert.deepEqual(ids.filter((id) => !ackedOnce.has(id)), [], 'every message handed out was acked before its consumer stopped (one left unsettled would be handed out again after the visibility timeout)');
        assert.equal(acked.length, ids.length, 'and acked once');
        assert.equal(await t.depth(q), 0);
        await waitFor(async () => (await statsOf(t, q)).unacked === 0, { what: 'no unacked messages' });
      }));

      it(`a message rejected with requeue by one of several competing consumers ${where} is handed out again exactly once more, marked redelivered`, scoped(async (s) => {
        const t = await s.open();
        const q = queueName();
        // Every consumer gives back what it is handed the first time and acks what comes back marked redelivered.
        const competitors = [await s.competeHere(t, q, 10, 'requeue-first'), await s.competeHere(t, q, 10, 'requeue-first')];
        if (capabilities.crossProcess) competitors.push(await s.competeInProcess(t, q, 10, 'requeue-first'), await s.competeInProcess(t, q, 10, 'requeue-first'));
        const batch = Array.from({ length: 500 }, () => task(q));
        const ids = batch.map((m) => m.id);
        await t.publishMany(batch.map(({ message }) => [message, { queue: q }] as const));
        const acked = (): number => competitors.reduce((n, c) => n + c.acked().length, 0);
        await waitFor(() => acked() >= ids.length, { timeoutMs: 60_000, what: `${ids.length} acks (have ${acked()})` });
        await sleep(GRACE_MS);
        for (const c of competitors) await c.stop();
        assert.deepEqual(competitors.flatMap((c) => c.problems()), [], 'no consumer died or failed to settle');
        const byId = handOuts(competitors);
        const handedOutOtherwise = ids.flatMap((id) => {
          const marks = (byId.get(id) ?? []).map((r) => (r ? 'redelivered' : 'new')).sort();
          return marks.join() === 'new,redelivered' ? [] : [`${id}: ${marks.join(', ') || 'never'}`];
        });
        assert.deepEqual(handedOutOtherwise, [], 'each message is handed out twice: once new, once more marked redelivered');
        assert.equal(byId.size, ids.length, 'nothing else is handed out');
        assert.deepEqual(competitors.flatMap((c) => c.requeued()).sort(), [...ids].sort(), 'each was rejected with requeue once');
        assert.deepEqual(competitors.flatMap((c) => c.acked()).sort(), [...ids].sort(), 'each was acked once');
        assert.equal(await t.depth(q), 0);
        await waitFor(async () => (await statsOf(t, q)).unacked === 0, { what: 'no unacked messages' });
      }));
    });
  });
}
